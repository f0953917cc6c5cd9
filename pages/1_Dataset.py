"""Dataset: class balance per split, sample faces, pixel statistics, and the data-quality report."""

import json

import numpy as np
import streamlit as st

import dashboard  # noqa: F401  (first: import-order guard, see dashboard/__init__.py)
from dashboard import figures, resources
from dashboard.widgets import dataset_ui
from fer_core.data import DataError

st.set_page_config(page_title="Dataset", layout="wide")
st.title("Dataset")
root = dataset_ui()
try:
    ds = resources.dataset(root)
    report = resources.quality(root)
except DataError as exc:
    st.error(str(exc))
    st.stop()

totals = report["totals"]
st.caption(f"{ds.root} — format: {ds.format}")
cols = st.columns(len(totals))
for col, (split, n) in zip(cols, totals.items(), strict=True):
    col.metric(split, f"{n:,}")

st.subheader("Class distribution")
st.plotly_chart(figures.class_distribution(report["counts"], report["imbalance_ratio"]), use_container_width=True)

st.subheader("Sample faces")
c1, c2, c3 = st.columns(3)
split = c1.selectbox("Split", list(report["counts"]), index=0)
per_class = c2.slider("Faces per class", 2, 16, 8)
seed = c3.number_input("Seed", 0, 10_000, 0, step=1)
rng = np.random.default_rng(int(seed))
sub = ds.split(split)
for i, name in enumerate(ds.class_names):
    idx = np.flatnonzero(sub.labels == i)
    if len(idx) == 0:
        continue
    pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
    st.markdown(f"**{name}** ({len(idx):,} in {split})")
    st.image([sub.images[j] for j in pick], width=72, caption=[str(sub.sources[j]).split("/")[-1] for j in pick])

st.subheader("Pixel intensity per class")
st.plotly_chart(figures.intensity_histograms(ds.images, ds.labels, ds.class_names), use_container_width=True)

st.subheader("Data-quality report")
dup = report["duplicates"]
q1, q2, q3, q4 = st.columns(4)
q1.metric("Duplicate groups", f"{dup['group_count']:,}", help="exactly identical pixels")
q2.metric("Across splits (leaks)", f"{dup['cross_split']:,}")
q3.metric("Near-blank images", f"{len(report['near_blank']):,}")
q4.metric("Unreadable files", f"{len(report['skipped']):,}")

if dup["groups"]:
    with st.expander(f"Duplicates: {dup['group_count']} groups, {dup['conflicting_labels']} with conflicting labels"):
        shown = st.slider("Groups to show", 1, min(50, dup["group_count"]), min(10, dup["group_count"]))
        for g in dup["groups"][:shown]:
            items = g["items"]
            st.image(
                [ds.images[it["index"]] for it in items[:8]],
                width=64,
                caption=[f"{it['split']}/{it['label']}: {it['source'].split('/')[-1]}" for it in items[:8]],
            )
if report["near_blank"]:
    with st.expander(f"Near-blank images ({len(report['near_blank'])})"):
        items = report["near_blank"][:40]
        st.image(
            [ds.images[it["index"]] for it in items],
            width=64,
            caption=[f"{it['split']}/{it['label']} std {it['std']}" for it in items],
        )
if report["skipped"]:
    with st.expander(f"Unreadable or skipped files ({len(report['skipped'])})"):
        st.dataframe(report["skipped"], use_container_width=True)
st.download_button(
    "Download the report (JSON)",
    data=json.dumps(report, indent=2),
    file_name="quality_report.json",
    mime="application/json",
)
