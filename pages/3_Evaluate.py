"""Evaluate: confusion matrix, error gallery with Grad-CAM, per-class metrics, calibration, comparison."""

import dashboard  # noqa: F401, I001  (first: import-order guard, see dashboard/__init__.py)

import streamlit as st

from dashboard import evaluation_ui as ui
from dashboard import resources
from dashboard.widgets import dataset_ui
from fer_core.card import CardError, load_card
from fer_core.data import DataError
from fer_core.evaluate import split_sizes
from fer_core.metrics import pair_indices
from fer_core.preprocess import TTA_MODES

st.set_page_config(page_title="Evaluate", layout="wide")
st.title("Evaluate")

models = ui.model_options(resources.MODELS_DIR, resources.RUNS_DIR)
if not models:
    st.error(f"No model found in {resources.MODELS_DIR} or {resources.RUNS_DIR}; train one on the Train page.")
    st.stop()
root = dataset_ui()
try:
    ds = resources.dataset(root)
    sizes = split_sizes(ds)
except DataError as exc:
    st.sidebar.warning(f"{exc} Stored predictions still work.")
    ds, sizes = None, {}

with st.sidebar:
    st.subheader("Model")
    label = st.selectbox("Model", list(models), key="eval_model")
    model_path = models[label]
    sources = {s.label: s for s in ui.source_options(model_path, sizes)}
    if not sources:
        st.error("This model has no stored predictions and the dataset has no val or test faces; pick another dataset.")
        st.stop()
    src = sources[st.selectbox("Predictions", list(sources), key="eval_source")]
    tta = None
    if src.kind == "dataset":
        card_tta = load_card(model_path).get("tta", "none")
        tta = st.selectbox(
            "Test-time augmentation",
            TTA_MODES,
            index=TTA_MODES.index(card_tta),
            help="The model card's setting is the default. Ten-crop is ten times slower.",
        )

try:
    metrics, preds = ui.predictions_for(model_path, src, root, tta)
except (ValueError, CardError, DataError, OSError) as exc:
    st.error(f"Could not evaluate {label}: {exc}")
    st.stop()
names = list(preds["class_names"])
st.caption(f"{label} · {src.label} · {metrics['n']:,} faces" + (f" · TTA {metrics.get('tta')}" if tta else ""))
for col, (k, v) in zip(st.columns(6), ui.headline(metrics).items(), strict=True):
    col.metric(k, v)

tab_cm, tab_cls, tab_cal, tab_cmp, tab_dl = st.tabs(
    ["Confusion matrix & errors", "Per-class metrics", "Calibration", "Compare models", "Downloads"]
)
with tab_cm:
    left, right = st.columns([11, 9])
    clicked = ui.cell_from_selection(st.session_state.get("eval_cm"), names)
    worst = metrics["most_confused"][0] if metrics["most_confused"] else None
    default = (names.index(worst["true"]), names.index(worst["predicted"])) if worst else (0, 0)
    with right:
        st.markdown("**Faces in a cell**: click a cell, or pick the pair")
        t, p = ui.pair_picker_ui(names, clicked, default)
        items = pair_indices(preds["labels"], preds["probs"], t, p)
        st.caption(
            f"{len(items):,} faces: true {names[t] if t is not None else 'any'}, "
            f"predicted {names[p] if p is not None else 'any'}"
        )
        index = resources.source_index(root) if ds is not None else None
        mtime = resources._mtime(model_path)
        ui.gallery_ui(
            items,
            preds,
            ui.faces_for(preds, items, ds, index),
            per_row=3,
            cam_fn=lambda faces, ks: resources.gradcam_overlays(model_path, mtime, faces, ks),
        )
    with left:
        normalised = st.radio("Show", ["counts", "row-normalised (recall)"], horizontal=True) != "counts"
        sel = (t, p) if t is not None and p is not None else None
        st.plotly_chart(
            ui.confusion_figure(metrics["confusion_matrix"], names, normalised, sel),
            key="eval_cm",
            on_select="rerun",
            selection_mode="points",
        )

with tab_cls:
    st.dataframe(
        ui.per_class_frame(metrics),
        hide_index=True,
        column_config={k: st.column_config.NumberColumn(format="%.3f") for k in ("precision", "recall", "f1")},
    )
    st.caption("Click a column header to sort. Most confused pairs:")
    st.dataframe(metrics["most_confused"], hide_index=True)

with tab_cal:
    st.plotly_chart(ui.reliability_figure(metrics["calibration"]))
    st.caption("Bars below the diagonal: the model is over-confident at that confidence.")

with tab_cmp:
    candidates = dict(ui.compare_candidates(models, label, src, preds, sizes))
    if len(models) == 1:
        st.info("Only one model available; finish a training run to compare it with the shipped model.")
    elif not candidates:
        st.info(
            f"No other model has predictions on these {metrics['n']:,} faces; choose 'predict on the dataset' "
            "as A's predictions to compare any two models on the same faces."
        )
    else:
        other = st.selectbox("Compare with (B)", list(candidates), key="eval_other")
        m_b, p_b = ui.predictions_for(models[other], candidates[other], root, tta)
        if not ui.same_faces(preds, p_b):
            st.error(
                f"{other} was evaluated on other faces than {label}; pick a B from the list evaluated on the same."
            )
        else:
            short_a, short_b = f"A ({ui.short_name(label)})", f"B ({ui.short_name(other)})"
            c1, c2, c3 = st.columns(3)
            c1.metric(f"A: {label}", f"{metrics['accuracy']:.1%}")
            c2.metric(f"B: {other}", f"{m_b['accuracy']:.1%}", f"{m_b['accuracy'] - metrics['accuracy']:+.1%}")
            key = c3.radio("Per-class figure", ["recall", "precision", "f1"], horizontal=True)
            st.plotly_chart(ui.comparison_figure(ui.compare_per_class(metrics, m_b), short_a, short_b, key))
            st.dataframe(ui.comparison_frame(metrics, m_b), hide_index=True)

with tab_dl:
    ui.downloads_ui(metrics, names, f"{src.split}_{ui.short_name(label)}", preds)
