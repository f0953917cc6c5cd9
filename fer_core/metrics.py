"""Classification metrics as pure functions of (labels, probabilities).

They take numpy arrays and return plain dicts and arrays, so the Evaluate page, the CLI and
the tests all report the same numbers. No model and no files here: `fer_core.evaluate` runs
models and stores what these compute.
"""

from __future__ import annotations

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts: rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def normalise_rows(cm: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix (recall per true class); empty rows stay 0."""
    s = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, s, out=np.zeros(cm.shape, float), where=s > 0)


def calibration(y_true: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict:
    """Reliability bins of top-1 confidence and the expected calibration error (ECE)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        acc = float(correct[m].mean()) if n else None
        cf = float(conf[m].mean()) if n else None
        if n:
            ece += n / len(y_true) * abs(acc - cf)
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n, "accuracy": acc, "confidence": cf})
    return {"bins": rows, "ece": float(ece)}


def confused_pairs(cm: np.ndarray, class_names, top: int = 5) -> list[dict]:
    """The off-diagonal cells with the most errors, largest first."""
    rn = normalise_rows(cm)
    pairs = [
        {"true": class_names[i], "predicted": class_names[j], "count": int(cm[i, j]), "rate": float(rn[i, j])}
        for i in range(len(cm))
        for j in range(len(cm))
        if i != j and cm[i, j] > 0
    ]
    pairs.sort(key=lambda p: (-p["count"], p["true"], p["predicted"]))
    return pairs[:top]


def compute_metrics(y_true, probs, class_names) -> dict:
    """Every figure the Evaluate page and the CLI report, from labels and probabilities.

    Args:
        y_true: (N,) int labels.
        probs: (N, C) probabilities.
        class_names: C names in label order.

    Returns:
        {"accuracy", "balanced_accuracy", "macro_f1", "top2_accuracy", "n", "per_class":
        {name: {precision, recall, f1, support}}, "confusion_matrix", "confusion_matrix_normalised",
        "calibration", "most_confused"}.
    """
    from sklearn.metrics import precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(y_true), k):
        raise ValueError(f"probs must have shape ({len(y_true)}, {k}). Received: {probs.shape}")
    if len(y_true) == 0:
        raise ValueError("No samples to evaluate.")
    y_pred = probs.argmax(axis=1)
    cm = confusion(y_true, y_pred, k)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(k)), zero_division=0)
    present = s > 0
    top2 = np.argsort(-probs, axis=1)[:, :2]
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": float(r[present].mean()),
        "macro_f1": float(f[present].mean()),
        "top2_accuracy": float((top2 == y_true[:, None]).any(axis=1).mean()),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalised": normalise_rows(cm).round(4).tolist(),
        "calibration": calibration(y_true, probs),
        "most_confused": confused_pairs(cm, class_names),
    }


def pair_indices(y_true, probs, true_index: int | None, predicted_index: int | None) -> np.ndarray:
    """Indexes of the items with this true class and this predicted (argmax) class.

    None for either side means "any". The Evaluate page's gallery filter.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(probs).argmax(axis=1)
    m = np.ones(len(y_true), bool)
    if true_index is not None:
        m &= y_true == true_index
    if predicted_index is not None:
        m &= y_pred == predicted_index
    return np.flatnonzero(m)


def top_k(probs_row, class_names, k: int = 3) -> list[tuple[str, float]]:
    """The k most probable (class name, probability) pairs of one prediction, best first."""
    p = np.asarray(probs_row, dtype=float)
    order = np.argsort(-p, kind="stable")[:k]
    return [(str(class_names[i]), float(p[i])) for i in order]


def compare_per_class(a: dict, b: dict) -> list[dict]:
    """Per-class rows of two metric dicts (A, B, B - A) for precision, recall and F1.

    Classes are those of `a`, in its order; a class missing from `b` gets None for B.
    """
    rows = []
    for name, ma in a["per_class"].items():
        mb = b["per_class"].get(name)
        row = {"class": name, "support": ma["support"]}
        for key in ("precision", "recall", "f1"):
            vb = mb[key] if mb else None
            row[f"{key}_a"] = ma[key]
            row[f"{key}_b"] = vb
            row[f"{key}_delta"] = None if vb is None else vb - ma[key]
        rows.append(row)
    return rows
