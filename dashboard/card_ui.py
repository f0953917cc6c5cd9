"""Home page: the shipped model's card made readable, and the first steps for a new user.

The builders (`headline`, `training_rows`, `limitations`, `recall_figure`) are pure, so they are
tested without a Streamlit runtime; `model_card_ui` draws them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

INTENDED_USE = (
    "Research and teaching: exploring FER-2013, comparing training recipes, and showing which of seven "
    "basic expressions (angry, disgust, fear, happy, sad, surprise, neutral) a face most resembles in "
    "photos, videos and a webcam, offline on a CPU."
)
# What holds for any model trained here; `limitations()` adds what this card's figures show.
GENERAL_LIMITATIONS = [
    "It reads facial *expressions*, not felt emotions: a posed smile is 'happy'.",
    "Trained on FER-2013: 48x48 gray web images with noisy labels (human agreement on FER-2013 is "
    "about 65%), mostly frontal faces; side views, occlusion, low light and children are weak spots.",
    "Not evaluated for fairness across age, gender or skin tone: FER-2013 carries no such labels.",
    "Do not use it to make decisions about people (hiring, policing, health, education).",
]
WEAK_RECALL = 0.6  # classes below this val recall are named as limitations


def headline(card: dict) -> list[tuple[str, str, str | None]]:
    """(label, value, help) for the metric row: short values, so none is cut off."""
    m = card.get("metrics", {})
    out = []
    if "val_accuracy" in m:
        out.append(
            (
                "Accuracy on PublicTest (val)",
                f"{m['val_accuracy']:.1%}",
                f"{m.get('val_n', '?')} faces, {card.get('tta', 'none')} test-time augmentation",
            )
        )
    crop = card["input"]["crop_size"]
    out.append(("Input", f"{crop}x{crop} gray", f"faces resized to {card['input']['image_size']} px, then cropped"))
    out.append(("Parameters", f"{card.get('params') or 0:,}", None))
    if card.get("members"):
        out.append(("Ensemble", f"{len(card['members'])} models", "their probabilities are averaged"))
    elif (card.get("finalize") or {}).get("weight_average"):
        kept = card["finalize"]["weight_average"]["epochs"]
        out.append(("Weights", f"epochs {kept[0]}-{kept[-1]}", "the mean of these epochs' weights"))
    else:
        out.append(("Best epoch", str(m.get("best_epoch", "?")), None))
    return out


def recall_figure(recall: dict[str, float]) -> go.Figure:
    """Horizontal bars: val recall per class, weakest at the top, the weak threshold drawn."""
    items = sorted(recall.items(), key=lambda kv: kv[1])
    fig = go.Figure(
        go.Bar(
            x=[v for _, v in items],
            y=[k for k, _ in items],
            orientation="h",
            text=[f"{v:.0%}" for _, v in items],
            textposition="outside",
            marker_color=["#E45756" if v < WEAK_RECALL else "#4C78A8" for _, v in items],
            hovertemplate="%{y}: %{x:.1%} of val faces found<extra></extra>",
        )
    )
    fig.add_vline(x=WEAK_RECALL, line_dash="dot", line_color="#888")
    fig.update_layout(
        xaxis=dict(
            title="recall on val (share of each class's faces the model finds)", range=[0, 1.08], tickformat=".0%"
        ),
        height=300,
        margin=dict(l=10, r=10, t=10, b=10),
    )
    return fig


def training_rows(card: dict) -> list[dict]:
    """One row per trained network (each member of an ensemble): recipe, epochs, time, val accuracy."""
    nets = card.get("members") or [card]
    rows = []
    for net in nets:
        t = net.get("training") or {}
        hist = net.get("training_history") or {}
        m = net.get("metrics") or {}
        secs = hist.get("train_seconds")
        rows.append(
            {
                "run": net.get("source_run") or net.get("name"),
                "architecture": f"{t.get('arch', '?')} width {t.get('width', '?')}",
                "epochs": hist.get("epochs_finished") or t.get("epochs"),
                "optimizer": f"{t.get('optimizer', '?')} lr {t.get('learning_rate', '?')}, {t.get('schedule', '?')}",
                "augmentation": _augmentation(t),
                "train time": f"{secs / 3600:.1f} h" if secs else "",
                "val accuracy": f"{m['val_accuracy']:.1%}" if "val_accuracy" in m else "",
            }
        )
    return rows


def _augmentation(t: dict) -> str:
    if not t.get("augment"):
        return "none"
    parts = ["flip", f"rotation {t.get('rotation')}°", f"erasing {t.get('erasing')}"]
    if t.get("mixup"):
        parts.append(f"mixup {t['mixup']}")
    if t.get("label_smoothing"):
        parts.append(f"label smoothing {t['label_smoothing']}")
    return ", ".join(parts)


def limitations(card: dict) -> list[str]:
    """The general limitations plus what this card's own figures show (weak classes, small classes)."""
    out = list(GENERAL_LIMITATIONS)
    recall = (card.get("metrics") or {}).get("val_recall") or {}
    weak = sorted((v, k) for k, v in recall.items() if v < WEAK_RECALL)
    if weak:
        strong = sorted(recall, key=recall.get, reverse=True)[:2]
        out.append(
            "Weak classes on val: "
            + ", ".join(f"{k} ({v:.0%} recall)" for v, k in weak)
            + "; answers of "
            + " and ".join(f"{k} ({recall[k]:.0%})" for k in strong)
            + " are more reliable."
        )
    train = ((card.get("dataset") or {}).get("counts") or {}).get("train") or {}
    if train:
        smallest = min(train, key=train.get)
        out.append(f"Fewest training faces: {smallest} ({train[smallest]:,} of {sum(train.values()):,}).")
    return out


def first_steps_ui(has_model: bool) -> None:
    """A short numbered path through the pages for someone who just arrived."""
    steps = [
        "**Dataset**: look at the faces and the quality report of the bundled sample, or type the folder "
        "of the full FER-2013 in the sidebar.",
        "**Predict**: upload a photo with faces; each face gets an emotion and a Grad-CAM of what the model looked at."
        if has_model
        else "**Train**: launch a short run on the sample (a few minutes on a CPU) to get a model.",
        "**Evaluate**: see where the model errs: click a cell of the confusion matrix to see those faces.",
        "**Train**: launch your own run and compare it with the shipped model.",
    ]
    with st.container(border=True):
        st.markdown("**First steps**\n\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)))
        st.caption("Everything here also runs headless: `python -m fer_core --help`.")


def model_card_ui(card: dict, card_file: Path) -> None:
    """The card as a reader wants it: figures, recall per class, use, limits, training; raw JSON last."""
    for col, (label, value, help_text) in zip(st.columns(4), headline(card), strict=False):
        col.metric(label, value, help=help_text)
    left, right = st.columns([3, 2])
    with left:
        recall = (card.get("metrics") or {}).get("val_recall")
        if recall:
            st.markdown("**Recall per class on val**")
            st.plotly_chart(recall_figure(recall), width="stretch")
        by_tta = (card.get("metrics") or {}).get("val_accuracy_by_tta")
        if by_tta:
            st.caption("Accuracy by test-time augmentation: " + ", ".join(f"{k} {v:.1%}" for k, v in by_tta.items()))
    with right:
        st.markdown("**Intended use**")
        st.write(INTENDED_USE)
        st.markdown("**Limitations**")
        st.markdown("\n".join(f"- {line}" for line in limitations(card)))
    st.markdown("**How it was trained**")
    ds = card.get("dataset") or {}
    counts = ds.get("counts") or {}
    st.caption(
        f"Data: {ds.get('format', '?')} dataset, "
        + ", ".join(f"{split} {sum(c.values()):,} faces" for split, c in counts.items())
        + (f". {len(card['members'])} networks trained apart, probabilities averaged." if card.get("members") else ".")
    )
    st.dataframe(pd.DataFrame(training_rows(card)), hide_index=True, width="stretch")
    with st.expander(f"Full model card (models/{card_file.name})"):
        st.code(json.dumps(card, indent=1), language="json")
