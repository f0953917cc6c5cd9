"""Model evaluation: a model's predictions on a dataset split, and its stored evaluation.

`evaluate_dataset` runs a model through its inference engine on one split, with classes
matched to the model card by name; `fer_core.metrics` turns the predictions into figures.
`rewrite_evaluation` is the one writer of a model file's eval folder and card metrics.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from fer_core.card import label_mapping, load_card, save_card
from fer_core.constants import SPLITS
from fer_core.engine import engine_for, load_engine
from fer_core.jsonio import write_json_atomic
from fer_core.metrics import compute_metrics
from fer_core.preprocess import SUBMODE_VIEWS, TTA_MODES, choose_photo_tta
from fer_core.runs import EVAL_DIR, MODEL_FILE


def evaluate_arrays(
    model, card: dict, images: np.ndarray, labels: np.ndarray, class_names, tta: str, progress=None
) -> tuple[dict, np.ndarray]:
    """(metrics, probabilities) of a model on (N, 48, 48) faces, through the model's inference engine.

    metrics["accuracy_by_tta"] also holds the accuracy of every cheaper TTA mode, taken from the
    same pass (ten-crop's views include the centre crop and its mirror image).
    """
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
    if model_path.name == MODEL_FILE:
        return model_path.parent / EVAL_DIR
    return model_path.with_suffix(".eval")


def evaluate_run(run_dir: str | Path, ds, tta: str = "tencrop") -> dict:
    """Evaluate a run's best model on val and test (where present); rewrite its eval/ and card."""
    return rewrite_evaluation(Path(run_dir) / MODEL_FILE, ds, tta)


def rewrite_evaluation(model_path: str | Path, ds, tta: str) -> dict:
    """Evaluate a model file on every labelled split but train, then rewrite what is stored
    about it: the eval folder is deleted and written afresh (stored predictions of an earlier
    model or dataset do not linger), and the card's metrics, "tta" and "photo_tta" are replaced.

    Returns:
        {split: {"accuracy", "n", "tta"}} for each split evaluated.
    """
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


def split_sizes(ds) -> dict[str, int]:
    """{"train", "val", "test"}: number of faces in each split of a FaceDataset."""
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
