"""The Dataset page's data-quality browser: filter findings by kind, pick a group, see all its images."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from fer_core.quality import FINDING_KINDS, filter_findings, findings, findings_rows

SAMPLE_WIDTH = 72  # px per sample face: small enough for 16 in a row on a laptop

# A group can be large (all-black images are one duplicate group); beyond this many images the
# page says how many more there are, and the CSV lists them all.
MAX_SHOWN = 120


def groups_frame(groups: list[dict]) -> pd.DataFrame:
    """One row per group: what it is, how many images, which splits and labels (with counts)."""
    return pd.DataFrame(
        [
            {
                "group": g["id"],
                "kind": ", ".join(g["kinds"]),
                "images": g["size"],
                "splits": ", ".join(g["splits"]),
                "labels": ", ".join(f"{k} x{v}" if v > 1 else k for k, v in g["labels"].items()),
                "first file": g["items"][0]["source"].split("/")[-1],
            }
            for g in groups
        ],
        columns=["group", "kind", "images", "splits", "labels", "first file"],
    )


@st.fragment  # a filter or a row click reruns this section only, not the whole Dataset page
def quality_browser_ui(ds, report: dict) -> None:
    """Counts per kind, a kind filter, the table of groups, the chosen group's images, downloads."""
    groups = findings(report)
    counts = {k: sum(k in g["kinds"] for g in groups) for k in FINDING_KINDS}
    for col, (kind, n) in zip(st.columns(len(FINDING_KINDS)), counts.items(), strict=True):
        col.metric(kind, f"{n:,}", help="groups of identical images" if kind == "duplicate" else None)
    present = [k for k in FINDING_KINDS if counts[k]]
    if not present:
        st.success("No duplicates, leaks, conflicting labels, near-blank or unreadable images found.")
        return
    # Every kind is always offered (and on by default), so the choice survives a change of dataset.
    kinds = st.pills(
        "Show",
        FINDING_KINDS,
        default=FINDING_KINDS,
        selection_mode="multi",
        format_func=lambda k: f"{k} ({counts[k]:,})",
        key="quality_kinds",
    )
    shown = filter_findings(groups, kinds or [])
    st.caption(f"{len(shown):,} of {len(groups):,} groups. Click a row to see all its images and labels.")
    event = st.dataframe(
        groups_frame(shown),
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="quality_table",
        height=280,
        width="stretch",
    )
    rows = event.selection.rows if event else []
    if shown:
        group_ui(ds, shown[rows[0] if rows and rows[0] < len(shown) else 0])
    c1, c2 = st.columns(2)
    c1.download_button(
        "Findings shown (CSV, one row per image)",
        lambda: pd.DataFrame(findings_rows(shown)).to_csv(index=False).encode(),  # built when clicked
        file_name="quality_findings.csv",
        mime="text/csv",
    )
    c2.download_button(
        "Findings shown (JSON)",
        lambda: json.dumps(shown, indent=1),
        file_name="quality_findings.json",
        mime="application/json",
    )


def group_ui(ds, group: dict) -> None:
    """Every image of one group, captioned with its split and label; file names in a table."""
    st.markdown(f"**Group {group['id']}**: {', '.join(group['kinds'])}, {group['size']} image(s)")
    items = [it for it in group["items"] if it["index"] is not None]
    if items:
        st.image(
            [ds.images[it["index"]] for it in items[:MAX_SHOWN]],
            width=72,
            caption=[f"{it['split']} {it['label']}" for it in items[:MAX_SHOWN]],
        )
        if len(items) > MAX_SHOWN:
            st.caption(f"+{len(items) - MAX_SHOWN} more (all listed below and in the CSV)")
    st.dataframe(
        pd.DataFrame(group["items"], columns=["split", "label", "source", "detail"]),
        hide_index=True,
        width="stretch",
        height=min(36 * (len(group["items"]) + 1) + 2, 250),
    )


@st.fragment  # changing the seed, split or count reruns the samples only
def sample_faces_ui(ds, splits: list[str], class_indices) -> None:
    """Seeded random faces per class from one split; `class_indices(split)` gives each class's rows."""
    import numpy as np

    c1, c2, c3 = st.columns(3)
    split = c1.selectbox("Split", splits, index=0)
    per_class = c2.slider("Faces per class", 2, 16, 8)
    seed = c3.number_input("Seed", 0, 10_000, 0, step=1)
    rng = np.random.default_rng(int(seed))
    for name, idx in zip(ds.class_names, class_indices(split), strict=True):
        if len(idx) == 0:
            continue
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        st.markdown(f"**{name}** ({len(idx):,} in {split})")
        st.image([ds.images[j] for j in pick], width=SAMPLE_WIDTH)
