"""Sidebar controls shared by pages: each `*_ui()` draws its widgets and returns the values."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from dashboard.resources import SAMPLE_DATA, default_data_root
from fer_core.constants import FER2013_URL


def dataset_ui() -> str:
    """Pick the dataset root (bundled sample, $FER_DATA, or a typed path); returns an existing path.

    The choice is kept in st.session_state["data_root"] so every page uses the same dataset.
    """
    current = st.session_state.get("data_root", default_data_root())
    with st.sidebar:
        st.subheader("Dataset")
        typed = st.text_input(
            "Path to a dataset",
            value=current,
            help="A FER-2013 CSV (emotion,pixels,Usage), a Kaggle-layout folder (train/, test/), "
            "or a folder of class folders. $FER_DATA sets the default.",
        )
        path = typed.strip()
        if path and not Path(path).expanduser().exists():
            st.error(f"{path}: no such file or folder. Keeping {current}.")
            path = current
        path = str(Path(path).expanduser()) if path else current
        if st.button("Use the bundled sample", disabled=Path(path) == SAMPLE_DATA):
            path = str(SAMPLE_DATA)
        if Path(path).resolve() == SAMPLE_DATA.resolve():
            st.caption(
                f"This is a small bundled sample. Get the full FER-2013 from [Kaggle]({FER2013_URL}) "
                "and enter its folder above (or set FER_DATA)."
            )
        if os.environ.get("FER_DATA"):
            st.caption(f"FER_DATA = {os.environ['FER_DATA']}")
    st.session_state["data_root"] = path
    return path
