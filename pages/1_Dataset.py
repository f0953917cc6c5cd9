"""Dataset: class balance per split, sample faces, pixel statistics, and the data-quality report."""

import json

import numpy as np
import streamlit as st

import dashboard  # noqa: F401  (first: import-order guard, see dashboard/__init__.py)
from dashboard import figures, resources
from dashboard.quality_ui import quality_browser_ui
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
c1, c2, c3 = st.columns(3)
split = c1.selectbox("Split", list(report["counts"]), index=0)
per_class = c2.slider("Faces per class", 2, 16, 8)
seed = c3.number_input("Seed", 0, 10_000, 0, step=1)
rng = np.random.default_rng(int(seed))
for name, idx in zip(ds.class_names, resources.class_indices(root, split), strict=True):
    if len(idx) == 0:
        continue
    pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
    st.markdown(f"**{name}** ({len(idx):,} in {split})")
    st.image([ds.images[j] for j in pick], width=72)

st.subheader("Pixel intensity per class")
st.plotly_chart(resources.intensity_figure(root), width="stretch")

st.subheader("Data-quality report")
quality_browser_ui(ds, report)
st.download_button(
    "Download the whole report (JSON)",
    data=json.dumps(report, indent=2),
    file_name="quality_report.json",
    mime="application/json",
)
