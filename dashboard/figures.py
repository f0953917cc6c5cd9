"""Plotly figure builders for the Dataset and Train pages: pure functions, tested without UI."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

SPLIT_COLOURS = {"train": "#4C78A8", "val": "#F58518", "test": "#54A24B"}


def class_distribution(counts: dict[str, dict[str, int]], imbalance: dict[str, float | None]) -> go.Figure:
    """Grouped bars: images per class for each split, imbalance ratio in the legend."""
    fig = go.Figure()
    for split, per_class in counts.items():
        ratio = imbalance.get(split)
        fig.add_bar(
            name=f"{split} (imbalance {ratio}x)" if ratio else split,
            x=list(per_class),
            y=list(per_class.values()),
            marker_color=SPLIT_COLOURS.get(split),
            hovertemplate="%{x}: %{y:,} images<extra>" + split + "</extra>",
        )
    fig.update_layout(
        barmode="group",
        xaxis_title="class",
        yaxis_title="images",
        legend_title="split",
        margin=dict(t=30, b=10),
        height=380,
    )
    return fig


def intensity_histograms(images: np.ndarray, labels: np.ndarray, class_names, bins: int = 32) -> go.Figure:
    """Pixel-intensity distribution per class (normalised), one line each."""
    edges = np.linspace(0, 256, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    per_value = np.arange(256)
    for i, name in enumerate(class_names):
        sel = images[labels == i]
        if len(sel) == 0:
            continue
        # Count the 256 uint8 values once (bincount is ~20x faster than np.histogram on 80M
        # pixels), then fold them into the bins.
        counts = np.bincount(np.asarray(sel, np.uint8).ravel(), minlength=256)
        h = np.bincount(np.digitize(per_value, edges[1:-1]), weights=counts, minlength=bins)
        mean = float(counts @ per_value) / counts.sum()
        fig.add_scatter(x=centres, y=h / h.sum(), mode="lines", name=f"{name} (mean {mean:.0f})")
    fig.update_layout(xaxis_title="pixel value", yaxis_title="fraction of pixels", height=360, margin=dict(t=30, b=10))
    return fig


def training_curves(epochs: list[dict], title: str = "") -> go.Figure:
    """Loss and accuracy (train vs val) and learning rate per epoch, three stacked panels."""
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=("loss", "accuracy", "learning rate"),
        row_heights=[0.4, 0.4, 0.2],
    )
    x = [e["epoch"] for e in epochs]
    for key, row, colour, dash in [
        ("loss", 1, SPLIT_COLOURS["train"], None),
        ("val_loss", 1, SPLIT_COLOURS["val"], None),
        ("accuracy", 2, SPLIT_COLOURS["train"], None),
        ("val_accuracy", 2, SPLIT_COLOURS["val"], None),
        ("lr", 3, "#888", "dot"),
    ]:
        y = [e.get(key) for e in epochs]
        if any(v is not None for v in y):
            fig.add_scatter(
                x=x,
                y=y,
                name=key,
                mode="lines+markers",
                line=dict(color=colour, dash=dash),
                row=row,
                col=1,
                showlegend=row < 3,
            )
    fig.update_xaxes(title_text="epoch", row=3, col=1)
    fig.update_xaxes(tickformat="d", dtick=1 if len(x) <= 15 else None)
    fig.update_layout(height=560, title=title or None, margin=dict(t=40, b=10))
    return fig


# Distinct hues for runs drawn together (Tableau 10): two runs never come out as two shades of one colour.
RUN_COLOURS = [
    "#4E79A7",
    "#F28E2B",
    "#59A14F",
    "#E15759",
    "#B07AA1",
    "#76B7B2",
    "#EDC948",
    "#FF9DA7",
    "#9C755F",
    "#BAB0AC",
]


def compare_curves(runs: dict[str, list[dict]], metric: str = "val_accuracy") -> go.Figure:
    """One metric per epoch for several runs, overlaid, one distinct colour per run, whole-number epochs."""
    fig = go.Figure()
    longest = 0
    for k, (name, epochs) in enumerate(runs.items()):
        x = [e["epoch"] for e in epochs]
        longest = max(longest, len(x))
        fig.add_scatter(
            x=x,
            y=[e.get(metric) for e in epochs],
            name=name,
            mode="lines+markers",
            line=dict(color=RUN_COLOURS[k % len(RUN_COLOURS)]),
        )
    fig.update_xaxes(title_text="epoch", tickformat="d", dtick=1 if longest <= 15 else None)
    fig.update_layout(yaxis_title=metric, height=380, margin=dict(t=30, b=10))
    return fig
