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


# Session-state keys of the dataset chooser. DATA_ROOT is the dataset every page shows: the
# last path that opened. TYPED is the text box (a keyed widget, so what the user typed stays
# put on reruns); TYPED_COPY carries it to the next page, where the box is a new widget.
DATA_ROOT, TYPED, TYPED_COPY = "data_root", "data_root_typed", "data_root_typed_copy"


def check_data_path(path: str) -> str | None:
    """None when the dashboard can open the dataset at `path`, else a one-line reason.

    Opening it here (cached, see resources.dataset) means a folder that is not a dataset is
    refused before it replaces the dataset on screen.
    """
    from dashboard.resources import dataset
    from fer_core.data import DataError

    if not path:
        return "Enter the path of a dataset."
    if not Path(path).expanduser().exists():
        return f"{path}: no such file or folder."
    if not data_path_allowed(path):
        return (
            f"{path} is outside the folders this dashboard may read ({', '.join(map(str, data_roots()))}); "
            f"set FER_DATA or FER_DATA_ROOTS (folders separated by '{os.pathsep}') before starting it."
        )
    try:
        dataset(str(Path(path).expanduser()))
    except DataError as exc:
        return str(exc)
    return None


def _use_sample() -> None:
    st.session_state[DATA_ROOT] = st.session_state[TYPED] = str(SAMPLE_DATA)


def dataset_ui() -> str:
    """Pick the dataset root (bundled sample, $FER_DATA, or a typed path); returns a path that opened.

    The box keeps what the user typed. A path that does not open gets a one-line error and
    the previous dataset stays on screen until a good path (or the sample button) replaces
    it. The choice is kept in st.session_state["data_root"] so every page uses the same dataset.
    """
    state = st.session_state
    if DATA_ROOT not in state:
        state[DATA_ROOT] = default_data_root()
    if TYPED not in state:
        state[TYPED] = state.get(TYPED_COPY, state[DATA_ROOT])
    with st.sidebar:
        st.subheader("Dataset")
        typed = st.text_input(
            "Path to a dataset",
            key=TYPED,
            help="A FER-2013 CSV (emotion,pixels,Usage), a Kaggle-layout folder (train/, test/), "
            "or a folder of class folders. $FER_DATA sets the default.",
        )
        state[TYPED_COPY] = typed
        path = str(Path(typed.strip()).expanduser()) if typed.strip() else ""
        if path != state[DATA_ROOT]:
            problem = check_data_path(path)
            if problem is None:
                state[DATA_ROOT] = path
            else:
                st.error(f"{problem} Still showing {state[DATA_ROOT]}.")
        current = state[DATA_ROOT]
        on_sample = Path(current).resolve() == SAMPLE_DATA.resolve()
        st.button("Use the bundled sample", disabled=on_sample, on_click=_use_sample)
        if on_sample:
            st.caption(
                f"This is a small bundled sample. Get the full FER-2013 from [Kaggle]({FER2013_URL}) "
                "and enter its folder above (or set FER_DATA)."
            )
        if os.environ.get("FER_DATA"):
            st.caption(f"FER_DATA = {os.environ['FER_DATA']}")
    return current
