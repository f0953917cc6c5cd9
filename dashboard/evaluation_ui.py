"""The Evaluate page's figures, tables and widgets.

Figure, table and download builders are pure functions of metric dicts (tested without a
Streamlit runtime); the `*_ui()` functions draw widgets and return what the user chose.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fer_core.evaluate import eval_dir_for
from fer_core.jsonio import read_json
from fer_core.metrics import compare_per_class, normalise_rows, top_k

# ----------------------------------------------------------------------------- choices


def model_options(models_dir: str | Path, runs_dir: str | Path) -> dict[str, str]:
    """{label: model path} for every shipped model and every finished or stopped run with a model."""
    from fer_core.runs import MODEL_FILE, list_runs

    out = {}
    for p in sorted(Path(models_dir).glob("*.keras")):
        if p.with_suffix(".json").exists():
            out[f"shipped: {p.stem}"] = str(p)
    for r in list_runs(runs_dir):
        if r["has_model"] and r["state"] in ("finished", "stopped"):
            best = r.get("best_val_accuracy")
            acc = f", best val {best:.1%}" if best else ""
            out[f"run: {r['run']} ({r['state']}{acc})"] = str(Path(r["path"]) / MODEL_FILE)
    return out


def short_name(label: str) -> str:
    """The model's name in a `model_options` label: "run: r1 (finished, ...)" -> "r1"."""
    return label.split(": ", 1)[-1].split(" ")[0]


@dataclass(frozen=True)
class Source:
    """Where predictions come from: a stored .npz beside the model, or a split of the dataset."""

    kind: str  # "stored" | "dataset"
    split: str  # "val" | "test"
    label: str
    path: str = ""  # the .npz for kind "stored"


def source_options(model_path: str | Path, sizes: dict[str, int] | None) -> list[Source]:
    """Stored predictions of the model (fast, no dataset needed) first, then non-empty dataset splits."""
    out = []
    eval_dir = eval_dir_for(model_path)
    for split in ("val", "test"):
        p = eval_dir / f"{split}_predictions.npz"
        if p.exists():
            tta = (read_json(eval_dir / f"{split}_metrics.json", {}) or {}).get("tta")
            out.append(
                Source("stored", split, f"stored predictions: {split}" + (f" (TTA {tta})" if tta else ""), str(p))
            )
    for split in ("val", "test"):
        n = (sizes or {}).get(split, 0)
        if n:
            out.append(Source("dataset", split, f"predict on the dataset's {split} split ({n:,} faces)"))
    return out


def cell_from_selection(event, class_names) -> tuple[int, int] | None:
    """(true, predicted) indexes of the confusion-matrix cell a plotly selection event picked, or None."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    names = list(class_names)
    for pt in points:
        if pt.get("x") in names and pt.get("y") in names:
            return names.index(pt["y"]), names.index(pt["x"])
    return None


# ----------------------------------------------------------------------------- figures


def confusion_figure(cm, class_names, normalised: bool = False, selected: tuple[int, int] | None = None) -> go.Figure:
    """Heatmap, rows true and columns predicted, with counts and row rates in the hover text.

    An invisible marker sits on every cell so a click selects it (plotly selection events
    come from marker traces); `selected` outlines the chosen cell.
    """
    cm = np.asarray(cm)
    names = [str(n) for n in class_names]
    rate = normalise_rows(cm)
    z = rate if normalised else cm
    text = [
        [f"{r:.0%}" if normalised else f"{c:,}" for c, r in zip(cr, rr, strict=True)]
        for cr, rr in zip(cm, rate, strict=True)
    ]
    hover = [
        [
            f"true {t}<br>predicted {p}<br>{cm[i, j]:,} faces<br>{rate[i, j]:.1%} of true {t}"
            for j, p in enumerate(names)
        ]
        for i, t in enumerate(names)
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}",
            hoverinfo="skip",  # the cell markers below carry the hover text
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalised else max(int(cm.max()), 1),
            colorbar={"title": "rate" if normalised else "faces"},
        )
    )
    xs, ys = np.meshgrid(names, names)
    fig.add_scatter(
        x=xs.ravel(),
        y=ys.ravel(),
        mode="markers",
        marker={"size": 30, "symbol": "square", "color": "#888", "opacity": 0.02},
        hovertext=[h for row in hover for h in row],
        hovertemplate="%{hovertext}<extra></extra>",
        showlegend=False,
        name="cells",
    )
    if selected is not None:
        i, j = selected
        fig.add_shape(
            type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line={"color": "#E45756", "width": 3}
        )
    fig.update_yaxes(title="true", autorange="reversed", type="category")
    fig.update_xaxes(title="predicted", type="category", side="bottom")
    fig.update_layout(height=520, margin={"t": 30, "b": 10})
    return fig


def reliability_figure(cal: dict) -> go.Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with bin counts."""
    bins = [b for b in cal["bins"] if b["count"]]
    mids = [(b["lo"] + b["hi"]) / 2 for b in bins]
    fig = go.Figure()
    fig.add_bar(
        x=mids,
        y=[b["accuracy"] for b in bins],
        width=[b["hi"] - b["lo"] for b in bins],
        name="accuracy",
        marker_color="#4C78A8",
        customdata=[[b["count"], b["confidence"]] for b in bins],
        hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.1%}<br>mean confidence %{customdata[1]:.1%}"
        "<br>%{customdata[0]:,} faces<extra></extra>",
    )
    fig.add_scatter(
        x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "gray"}, name="perfect calibration"
    )
    fig.add_scatter(
        x=mids, y=[b["confidence"] for b in bins], mode="markers", marker={"color": "#F58518"}, name="mean confidence"
    )
    fig.update_layout(
        title=f"Reliability (expected calibration error {cal['ece']:.3f})",
        xaxis={"title": "top-1 confidence", "range": [0, 1]},
        yaxis={"title": "accuracy", "range": [0, 1]},
        height=420,
        margin={"t": 50, "b": 10},
        bargap=0.05,
    )
    return fig


def comparison_figure(rows: list[dict], name_a: str, name_b: str, key: str = "recall") -> go.Figure:
    """Per-class `key` of model B minus model A as bars (green: B better)."""
    rows = [r for r in rows if r[f"{key}_delta"] is not None]
    d = [r[f"{key}_delta"] for r in rows]
    fig = go.Figure(
        go.Bar(
            x=[r["class"] for r in rows],
            y=d,
            marker_color=["#54A24B" if v >= 0 else "#E45756" for v in d],
            customdata=[[r[f"{key}_a"], r[f"{key}_b"]] for r in rows],
            hovertemplate="%{x}<br>A %{customdata[0]:.1%}<br>B %{customdata[1]:.1%}<br>B - A %{y:+.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"{key}: {name_b} minus {name_a}",
        yaxis={"title": f"{key} difference", "tickformat": "+.0%"},
        height=360,
        margin={"t": 50, "b": 10},
    )
    return fig


# ----------------------------------------------------------------------------- tables and downloads


def per_class_frame(metrics: dict) -> pd.DataFrame:
    """One row per class: precision, recall, F1, support (sortable in st.dataframe)."""
    df = pd.DataFrame.from_dict(metrics["per_class"], orient="index")[["precision", "recall", "f1", "support"]]
    df.index.name = "class"
    return df.reset_index()


def comparison_frame(a: dict, b: dict) -> pd.DataFrame:
    """Per-class precision, recall and F1 of models A and B with B - A, plus an overall row."""
    rows = compare_per_class(a, b)
    rows.append(
        {
            "class": "(accuracy)",
            "support": a["n"],
            "recall_a": a["accuracy"],
            "recall_b": b["accuracy"],
            "recall_delta": b["accuracy"] - a["accuracy"],
        }
    )
    cols = ["class", "support"] + [f"{k}_{s}" for k in ("recall", "precision", "f1") for s in ("a", "b", "delta")]
    return pd.DataFrame(rows).reindex(columns=cols)


def confusion_frame(cm, class_names, normalised: bool = False) -> pd.DataFrame:
    """The confusion matrix as a table: index true class, columns predicted class."""
    cm = np.asarray(cm)
    if normalised:
        cm = normalise_rows(cm)
    names = list(class_names)
    return pd.DataFrame(cm, index=pd.Index(names, name="true \\ predicted"), columns=names)


def to_csv(df: pd.DataFrame, index: bool = False) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=index)
    return buf.getvalue()


def headline(metrics: dict) -> dict[str, str]:
    """The figures shown at the top of the page, formatted."""
    return {
        "faces": f"{metrics['n']:,}",
        "accuracy": f"{metrics['accuracy']:.1%}",
        "balanced accuracy": f"{metrics['balanced_accuracy']:.1%}",
        "macro F1": f"{metrics['macro_f1']:.3f}",
        "top-2 accuracy": f"{metrics['top2_accuracy']:.1%}",
        "calibration error": f"{metrics['calibration']['ece']:.3f}",
    }


def gallery_caption(true_name: str, probs_row, class_names, k: int = 3) -> str:
    """'true happy · sad 62% · happy 30% · fear 4%' for one face."""
    return f"true {true_name} · " + " · ".join(f"{n} {p:.0%}" for n, p in top_k(probs_row, class_names, k))


# ----------------------------------------------------------------------------- widgets


def per_face_frame(preds: dict) -> pd.DataFrame:
    """One row per face: its source, true and predicted class, whether it was right, and every probability."""
    names = [str(n) for n in preds["class_names"]]
    probs = np.asarray(preds["probs"], np.float32)
    predicted = probs.argmax(axis=1)
    labels = np.asarray(preds["labels"])
    frame = pd.DataFrame(
        {
            "source": [str(s) for s in preds["sources"]],
            "true": [names[i] for i in labels],
            "predicted": [names[i] for i in predicted],
            "correct": predicted == labels,
            "confidence": probs.max(axis=1).round(4),
        }
    )
    for k, name in enumerate(names):
        frame[f"p_{name}"] = probs[:, k].round(4)
    return frame


def same_faces(a: dict, b: dict) -> bool:
    """True when two sets of predictions are on the same faces in the same order (their sources match)."""
    return len(a["sources"]) == len(b["sources"]) and all(
        str(x) == str(y) for x, y in zip(a["sources"], b["sources"], strict=True)
    )


def compare_candidates(models: dict[str, str], label: str, src: Source, preds: dict, sizes) -> list[tuple[str, Source]]:
    """(model label, its source) for every other model that can be compared with A on the same faces.

    Stored predictions count only when they are on exactly A's faces; predicting on the dataset's
    split is on A's faces by construction (when A is on that split too).
    """
    out = []
    for other, path in models.items():
        if other == label:
            continue
        match = next((s for s in source_options(path, sizes) if (s.kind, s.split) == (src.kind, src.split)), None)
        if match is None:
            continue
        if match.kind == "stored":
            from dashboard import resources

            _, other_preds = resources.stored_predictions(match.path, resources._mtime(match.path))
            if not same_faces(preds, other_preds):
                continue
        out.append((other, match))
    return out


def downloads_ui(metrics: dict, class_names, stem: str, preds: dict | None = None) -> None:
    """Download buttons: per-class metrics and the confusion matrix as CSV, everything as JSON, and
    (given the predictions) one row per face as CSV."""
    import streamlit as st

    names = list(class_names)
    if preds is not None:
        st.download_button(
            f"Per-face predictions (CSV, {len(preds['labels']):,} rows)",
            to_csv(per_face_frame(preds)),
            f"{stem}_per_face.csv",
            "text/csv",
        )
    c1, c2, c3, c4 = st.columns(4)
    c1.download_button("Per-class metrics (CSV)", to_csv(per_class_frame(metrics)), f"{stem}_per_class.csv", "text/csv")
    c2.download_button(
        "Confusion matrix (CSV)",
        to_csv(confusion_frame(metrics["confusion_matrix"], names), index=True),
        f"{stem}_confusion.csv",
        "text/csv",
    )
    c3.download_button(
        "Confusion matrix (JSON)",
        json.dumps(
            {"labels": names, "rows": "true", "columns": "predicted", "counts": metrics["confusion_matrix"]}, indent=1
        ),
        f"{stem}_confusion.json",
        "application/json",
    )
    c4.download_button("All metrics (JSON)", json.dumps(metrics, indent=1), f"{stem}_metrics.json", "application/json")


def pair_picker_ui(
    class_names, clicked: tuple[int, int] | None, default: tuple[int, int]
) -> tuple[int | None, int | None]:
    """True/predicted pickers ("any" allowed); they jump to a newly clicked cell.

    Args:
        class_names: the model's labels.
        clicked: the (true, predicted) cell of the latest chart selection, or None.
        default: the cell shown first (e.g. the most confused pair).

    Returns:
        (true index or None for any, predicted index or None for any).
    """
    import streamlit as st

    opts = ["any", *class_names]
    for key, k in (("eval_true", 0), ("eval_pred", 1)):
        if st.session_state.get(key) not in opts:  # first run, or another model's labels
            st.session_state[key] = opts[default[k] + 1]
    if clicked is not None and st.session_state.get("_eval_last_click") != clicked:
        st.session_state["_eval_last_click"] = clicked
        st.session_state["eval_true"] = opts[clicked[0] + 1]
        st.session_state["eval_pred"] = opts[clicked[1] + 1]
    c1, c2 = st.columns(2)
    t = c1.selectbox("True class", opts, key="eval_true")
    p = c2.selectbox("Predicted class", opts, key="eval_pred")
    return (None if t == "any" else opts.index(t) - 1), (None if p == "any" else opts.index(p) - 1)


def gallery_ui(
    items, preds: dict, faces: dict[int, np.ndarray], cam_fn=None, per_row: int = 6, limit: int = 30
) -> None:
    """Faces of the chosen cell with their top probabilities; a Grad-CAM toggle under each.

    Args:
        items: indexes into the predictions (from `pair_indices`).
        preds: {"labels", "probs", "sources", "class_names"}.
        faces: {index: (48, 48) uint8 face} for the items whose image is available.
        cam_fn: callable(faces (N, 48, 48), class indices) -> N RGB overlays, or None when no model is loaded.
        per_row: faces per row.
        limit: at most this many faces are drawn.
    """
    import streamlit as st

    names = preds["class_names"]
    conf = preds["probs"].max(axis=1)
    ranked = sorted(items, key=lambda i: -conf[i])  # most confident predictions first
    with_face = [i for i in ranked if i in faces]
    missing = [i for i in ranked if i not in faces]
    if missing:
        with st.expander(f"{len(missing):,} of these faces are not in the current dataset (names only)"):
            st.caption("Point the sidebar at the dataset these predictions came from to see the faces.")
            st.dataframe(
                pd.DataFrame(
                    {
                        "source": [str(preds["sources"][i]) for i in missing[:500]],
                        "top predictions": [
                            gallery_caption(names[preds["labels"][i]], preds["probs"][i], names) for i in missing[:500]
                        ],
                    }
                ),
                hide_index=True,
            )
    if not with_face:
        return
    shown = with_face[:limit]
    if len(with_face) > limit:
        st.caption(f"Showing the {limit} most confident of {len(with_face):,} faces.")
    show_all = cam_fn is not None and st.toggle("Grad-CAM on every face shown", key="eval_cam_all")
    wanted = [i for i in shown if show_all or (cam_fn is not None and st.session_state.get(f"eval_cam_{i}", False))]
    cams = {}
    if wanted:  # every wanted map in one batch (fer_core.explain.gradcam_batch), not one model call per face
        with st.spinner(f"Grad-CAM for {len(wanted)} face(s)..."):
            overlays = cam_fn(np.stack([faces[i] for i in wanted]), [int(np.argmax(preds["probs"][i])) for i in wanted])
        cams = dict(zip(wanted, overlays, strict=True))
    cols = st.columns(per_row)
    for k, i in enumerate(shown):
        with cols[k % per_row]:
            pred = int(np.argmax(preds["probs"][i]))
            img = cams[i] if i in cams else np.repeat(faces[i][..., None], 3, axis=-1)
            cap = gallery_caption(names[preds["labels"][i]], preds["probs"][i], names, k=2)
            st.image(img, caption=cap, width="stretch")
            if cam_fn is not None and not show_all:
                st.checkbox("Grad-CAM", key=f"eval_cam_{i}", help=f"Where the model looked for '{names[pred]}'")


def predictions_for(model_path: str, source: Source, root: str, tta: str | None) -> tuple[dict, dict]:
    """(metrics, predictions) for a model and a source, through the cached resources."""
    from dashboard import resources

    if source.kind == "stored":
        return resources.stored_predictions(source.path, resources._mtime(source.path))
    return resources.dataset_predictions(model_path, resources._mtime(model_path), root, source.split, tta)


def faces_for(preds: dict, items, ds, index: dict[str, int] | None) -> dict[int, np.ndarray]:
    """{prediction index: 48x48 face} for the items whose source is in the loaded dataset."""
    if ds is None or not index:
        return {}
    out = {}
    for i in items:
        row = index.get(str(preds["sources"][i]))
        if row is not None:
            out[int(i)] = ds.images[row]
    return out
