"""Sidebar controls shared by pages: each `*_ui()` draws its widgets and returns the values."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from dashboard.resources import SAMPLE_DATA, default_data_root
from fer_core.constants import FER2013_URL


def data_roots() -> list[Path]:
    """Folders whose datasets the dashboard may open: the bundled data/, $FER_DATA and each
    folder in $FER_DATA_ROOTS. Anything else could list and show any file the process can
    read to whoever reaches the page."""
    roots = [SAMPLE_DATA.parent]
    for value in [os.environ.get("FER_DATA", "")] + os.environ.get("FER_DATA_ROOTS", "").split(os.pathsep):
        if value.strip():
            roots.append(Path(value.strip()).expanduser())
    return [r.resolve() for r in roots]


def data_path_allowed(path: str | Path) -> bool:
    """True when `path` (symlinks resolved) lies inside one of `data_roots()`."""
    target = Path(path).expanduser().resolve()
    return any(target == root or target.is_relative_to(root) for root in data_roots())


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
        elif path and not data_path_allowed(path):
            st.error(
                f"{path} is outside the folders this dashboard may read ({', '.join(map(str, data_roots()))}); "
                f"set FER_DATA or FER_DATA_ROOTS (folders separated by '{os.pathsep}') before starting it. "
                f"Keeping {current}."
            )
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
