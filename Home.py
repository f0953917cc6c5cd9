"""Landing page: what the workbench does, where to go, and the shipped model's card."""

import json

import streamlit as st

import dashboard  # noqa: F401  (first: import-order guard, see dashboard/__init__.py)
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

st.header("Shipped model")
card_file = card_path(DEFAULT_MODEL)
if not card_file.exists():
    st.info("No shipped model in models/ yet. Train one on the Train page, or with `python -m fer_core train`.")
else:
    card = json.loads(card_file.read_text())
    m = card.get("metrics", {})
    c1, c2, c3, c4 = st.columns(4)
    if "val_accuracy" in m:
        c1.metric(f"PublicTest (val) accuracy, {card.get('tta', 'none')} TTA", f"{m['val_accuracy']:.1%}")
    c2.metric("Input", f"{card['input']['crop_size']}x{card['input']['crop_size']} gray")
    c3.metric("Parameters", f"{card.get('params') or 0:,}")
    if card.get("members"):
        c4.metric("Ensemble", f"{len(card['members'])} models, probabilities averaged")
    elif (card.get("finalize") or {}).get("weight_average"):
        kept = card["finalize"]["weight_average"]["epochs"]
        c4.metric("Weights", f"mean of epochs {kept[0]}-{kept[-1]}")
    else:
        c4.metric("Best epoch", str(m.get("best_epoch", "?")))
    if "val_recall" in m:
        st.write("Recall per class on val:")
        st.dataframe({k: [f"{v:.1%}"] for k, v in m["val_recall"].items()}, hide_index=True, use_container_width=True)
    with st.expander("Full model card (models/" + card_file.name + ")"):
        st.json(card)
