"""Evaluation: metrics as pure functions of (labels, probabilities), and model evaluation.

The metric functions take numpy arrays and return plain dicts/arrays, so the Evaluate page,
the CLI and tests all use the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_core.preprocess import TTA_MODES, choose_photo_tta
from fer_core.runs import write_json_atomic


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


def evaluate_arrays(
    model, card: dict, images: np.ndarray, labels: np.ndarray, class_names, tta: str, progress=None
) -> tuple[dict, np.ndarray]:
    """(metrics, probabilities) of a model on (N, 48, 48) faces, through the model's inference engine.

    metrics["accuracy_by_tta"] also holds the accuracy of every cheaper TTA mode, taken from the
    same pass (ten-crop's views include the centre crop and its mirror image).
    """
    from fer_core.engine import engine_for
    from fer_core.preprocess import SUBMODE_VIEWS

    views = engine_for(model).predict_views(images, tta, progress)
    probs = views.mean(axis=0)
    metrics = compute_metrics(labels, probs, class_names)
    labels = np.asarray(labels)
    metrics["accuracy_by_tta"] = {
        mode: float((views[idx].mean(axis=0).argmax(axis=1) == labels).mean()) if len(labels) else 0.0
        for mode, idx in SUBMODE_VIEWS[tta].items()
    }
    return metrics, probs


def save_predictions(path: str | Path, labels, probs, sources, class_names) -> None:
    """Predictions as a small .npz (float16 probabilities) for viewers that have no dataset."""
    np.savez_compressed(
        path,
        labels=np.asarray(labels, np.int8),
        probs=np.asarray(probs, np.float16),
        sources=np.asarray(sources).astype(str),
        class_names=np.asarray(class_names).astype(str),
    )


def load_predictions(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {
            "labels": z["labels"].astype(np.int64),
            "probs": z["probs"].astype(np.float32),
            "sources": z["sources"],
            "class_names": tuple(z["class_names"].tolist()),
        }


def eval_dir_for(model_path: str | Path) -> Path:
    """Where a model's stored evaluation lives: ``<run>/eval/`` for a run's model.keras,
    ``models/<name>.eval/`` for a shipped model."""
    model_path = Path(model_path)
    if model_path.name == "model.keras":
        return model_path.parent / "eval"
    return model_path.with_suffix(".eval")


def evaluate_run(run_dir: str | Path, ds, tta: str = "tencrop") -> dict:
    """Evaluate a run's best model on val and test (where present); write eval/. Returns a summary."""
    return evaluate_model_files(Path(run_dir) / "model.keras", ds, tta)


def average_weights(model, files) -> None:
    """Set `model`'s weights to the mean of the weight files (same architecture), in float64."""
    total = None
    for f in files:
        model.load_weights(f)
        ws = [np.asarray(w, np.float64) for w in model.get_weights()]
        total = ws if total is None else [t + w for t, w in zip(total, ws, strict=True)]
    model.set_weights([(t / len(files)).astype(np.float32) for t in total])


def promote(
    run_dir: str | Path,
    dest: str | Path,
    ds,
    tta: str = "tencrop",
    *,
    recalibrate_bn: bool = False,
    average: int = 0,
    progress=None,
) -> dict:
    """Copy a run's best model to `dest` (e.g. models/fer_resnet.keras) with its card, evaluated
    on the dataset's val (and test) split with `tta`; stored predictions go to eval_dir_for(dest).

    With `average` N, the model shipped is instead the mean of the weights of the run's last N
    kept epochs (stochastic weight averaging; the run must have been trained with
    keep_epochs >= N). Averaged weights need BatchNorm statistics of their own, so it implies
    `recalibrate_bn`: the BatchNorm statistics are recomputed on clean centre crops of the
    dataset's training split (`fer_core.finalize`). The card records both.

    Returns:
        The new card.
    """
    import shutil

    from fer_core.card import load_card, save_card
    from fer_core.runs import training_history
    from fer_core.train import kept_epochs

    run_dir, dest = Path(run_dir), Path(dest)
    src = run_dir / "model.keras"
    if not src.exists():
        raise FileNotFoundError(f"{src}: the run has no model yet (no finished epoch).")
    card = load_card(src)
    kept = kept_epochs(run_dir)[-average:] if average else []
    if average and len(kept) < average:
        raise ValueError(
            f"{run_dir}: {len(kept)} epoch weight file(s) kept, {average} asked; "
            f"train with --keep-epochs {average} or average fewer."
        )
    train = ds.split("train") if average or recalibrate_bn else None
    if train is not None and len(train) == 0:
        raise ValueError("recalibrating BatchNorm needs the dataset's training split; this dataset has none.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    card["name"] = dest.stem
    card["source_run"] = run_dir.name
    card["training_history"] = training_history(run_dir)
    if average or recalibrate_bn:
        import keras

        from fer_core.finalize import recalibrate_batchnorm

        model = keras.models.load_model(src, compile=False)
        finalize = {}
        if average:
            average_weights(model, [f for _, f in kept])
            finalize["weight_average"] = {"epochs": [e for e, _ in kept], "count": len(kept)}
            # The best-epoch figures describe another set of weights; evaluation below refills metrics.
            card["metrics"] = {}
        n_layers = recalibrate_batchnorm(model, train.images, card["input"]["crop_size"], progress=progress)
        finalize["batchnorm_recalibrated"] = {
            "layers": n_layers,
            "split": "train",
            "faces": len(train),
            "views": "centre",
        }
        card["finalize"] = finalize
        model.save(dest)
    else:
        shutil.copyfile(src, dest)
    save_card(dest, card)
    evaluate_model_files(dest, ds, tta)
    return load_card(dest)


def evaluate_model_files(model_path: str | Path, ds, tta: str) -> dict:
    """Evaluate a model file on every labelled split but train; update its card and write its
    eval folder afresh (stored predictions of an earlier model or dataset do not linger)."""
    import shutil

    from fer_core.card import load_card, save_card
    from fer_core.engine import load_engine

    model_path = Path(model_path)
    model = load_engine(model_path).model
    card = load_card(model_path)
    out = eval_dir_for(model_path)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    summary = {}
    for split in ("val", "test"):
        if not (ds.splits == split).any():
            continue
        metrics, preds = evaluate_dataset(model, card, ds, split, tta)
        write_json_atomic(out / f"{split}_metrics.json", metrics)
        save_predictions(
            out / f"{split}_predictions.npz", preds["labels"], preds["probs"], preds["sources"], preds["class_names"]
        )
        summary[split] = {"accuracy": metrics["accuracy"], "n": metrics["n"], "tta": tta}
        card["metrics"][f"{split}_accuracy"] = metrics["accuracy"]
        card["metrics"][f"{split}_recall"] = {k: v["recall"] for k, v in metrics["per_class"].items()}
        card["metrics"][f"{split}_n"] = metrics["n"]
        card["metrics"][f"{split}_accuracy_by_tta"] = metrics["accuracy_by_tta"]
    card["tta"] = tta
    by_tta = card["metrics"].get("val_accuracy_by_tta") or {}
    if set(by_tta) == set(TTA_MODES):
        card["photo_tta"] = choose_photo_tta(by_tta, card["metrics"]["val_n"])
    save_card(model_path, card)
    return summary


# ----------------------------------------------------------------------------- datasets vs model cards


def label_mapping(dataset_classes, model_labels) -> np.ndarray:
    """Map a dataset's label indexes to a model's, matching class names (case-insensitive).

    A dataset may hold a subset of the model's classes in any order (e.g. CK+48-style
    folders named with FER-2013 names).

    Args:
        dataset_classes: the dataset's class names in its label order.
        model_labels: the model card's "labels" in output order.

    Returns:
        int array `m` with ``m[dataset_label] == model_label``.

    Raises:
        ValueError: a dataset class the model does not know; the message lists both.
    """
    index = {str(n).lower(): i for i, n in enumerate(model_labels)}
    unknown = [str(c) for c in dataset_classes if str(c).lower() not in index]
    if unknown:
        raise ValueError(
            f"dataset class(es) {', '.join(unknown)} not among the model's labels ({', '.join(model_labels)}); "
            "remove those folders or evaluate a model trained on them."
        )
    return np.array([index[str(c).lower()] for c in dataset_classes], np.int64)


def split_sizes(ds) -> dict[str, int]:
    """{"train", "val", "test"}: number of faces in each split of a FaceDataset."""
    from fer_core.constants import SPLITS

    return {s: int((ds.splits == s).sum()) for s in SPLITS}


def evaluate_dataset(model, card: dict, ds, split: str, tta: str | None = None, progress=None) -> tuple[dict, dict]:
    """Evaluate a model on one split of a dataset, classes matched to the card by name.

    Args:
        model: a Keras model.
        card: its model card (labels, input.crop_size, tta).
        ds: a `FaceDataset`.
        split: "train", "val" or "test".
        tta: "none", "flip" or "tencrop"; None uses the card's "tta".
        progress: called as progress(faces done, faces in all) while classifying.

    Returns:
        (metrics, predictions): metrics as `compute_metrics` plus "split", "tta" and
        "split_sizes"; predictions as `load_predictions` returns them (labels in the
        model's order, probabilities, sources, class names).

    Raises:
        ValueError: an empty split (the message names the splits that have faces) or a
            class the model does not know.
    """
    sizes = require_split(ds, split)
    tta = tta or card.get("tta") or "none"
    names = tuple(card["labels"])
    mapping = label_mapping(ds.class_names, names)
    sub = ds.split(split)
    labels = mapping[sub.labels]
    metrics, probs = evaluate_arrays(model, card, sub.images, labels, names, tta, progress)
    metrics.update(split=split, tta=tta, split_sizes=sizes)
    preds = {"labels": labels, "probs": probs, "sources": sub.sources, "class_names": names}
    return metrics, preds


def require_split(ds, split: str) -> dict[str, int]:
    """The dataset's split sizes; raise ValueError saying which split to use when `split` is empty."""
    sizes = split_sizes(ds)
    if sizes.get(split, 0) == 0:
        others = [s for s in ("val", "test") if s != split and sizes[s]]
        hint = f"use --split {others[0]}" if others else "it has no labelled val or test faces"
        counts = ", ".join(f"{k} {v}" for k, v in sizes.items())
        raise ValueError(f"the {split} split of {ds.root or 'the dataset'} is empty ({counts}); {hint}.")
    return sizes


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
