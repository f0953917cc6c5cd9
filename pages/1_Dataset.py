"""Dataset: class balance per split, sample faces, pixel statistics, and the data-quality report."""

import streamlit as st

import dashboard  # noqa: F401  (first: import-order guard, see dashboard/__init__.py)
from dashboard import figures, resources
from dashboard.quality_ui import quality_browser_ui, sample_faces_ui
from dashboard.widgets import dataset_ui
from fer_core.data import DataError

st.set_page_config(page_title="Dataset", layout="wide")
st.title("Dataset")
root = dataset_ui()
try:
    ds = resources.dataset(root)
    report = resources.quality(root)
except DataError as exc:
    st.error(f"{exc} Enter another path in the sidebar, or use the bundled sample.")
    st.stop()

totals = report["totals"]
st.caption(f"{ds.root} — format: {ds.format}")
cols = st.columns(len(totals))
for col, (split, n) in zip(cols, totals.items(), strict=True):
    col.metric(split, f"{n:,}")

st.subheader("Class distribution")
st.plotly_chart(figures.class_distribution(report["counts"], report["imbalance_ratio"]), width="stretch")

st.subheader("Sample faces")
sample_faces_ui(ds, list(report["counts"]), lambda split: resources.class_indices(root, split))

st.subheader("Pixel intensity per class")
st.plotly_chart(resources.intensity_figure(root), width="stretch")

st.subheader("Data-quality report")
quality_browser_ui(ds, report)
st.download_button(
    "Download the whole report (JSON)",
    data=lambda: resources.quality_json(root),  # built when clicked
    file_name="quality_report.json",
    mime="application/json",
)
