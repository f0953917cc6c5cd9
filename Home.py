"""Landing page: what the workbench does, where to go, and the shipped model's card."""

import json

import streamlit as st

import dashboard  # noqa: F401  (first: import-order guard, see dashboard/__init__.py)
from dashboard.card_ui import first_steps_ui, model_card_ui
from dashboard.resources import DEFAULT_MODEL
from fer_core.card import card_path

st.set_page_config(page_title="FER workbench", page_icon="🙂", layout="wide")
st.title("Facial-emotion-recognition workbench")
st.write(
    "Explore FER-2013, train a ResNet on it, study its mistakes, and use it on photos, videos and a "
    "live webcam: offline, on a CPU, with figures you can reproduce. The same core runs headless: "
    "`python -m fer_core --help`."
)

PAGES = [
    ("pages/1_Dataset.py", "Dataset", "class balance, sample faces, pixel statistics, data-quality report"),
    ("pages/2_Train.py", "Train", "launch, watch, stop and resume training runs; compare runs"),
    ("pages/3_Evaluate.py", "Evaluate", "confusion matrix, per-class metrics, error gallery with Grad-CAM"),
    ("pages/4_Predict.py", "Predict", "upload photos or a video; emotions per face; downloads"),
    ("pages/5_Webcam.py", "Webcam", "live emotions from your camera"),
]
cols = st.columns(len(PAGES))
for col, (path, label, text) in zip(cols, PAGES, strict=True):
    with col:
        try:
            st.page_link(path, label=f"**{label}**")
        except Exception:  # noqa: BLE001 - a page file missing from a partial checkout
            st.markdown(f"**{label}**")
        st.caption(text)

card_file = card_path(DEFAULT_MODEL)
first_steps_ui(card_file.exists())

st.header("Shipped model")
if not card_file.exists():
    st.info("No shipped model in models/ yet. Train one on the Train page, or with `python -m fer_core train`.")
else:
    model_card_ui(json.loads(card_file.read_text()), card_file)
