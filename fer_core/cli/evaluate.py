"""``python -m fer_core evaluate``: a model's accuracy, per-class metrics and confusion matrix on a split."""

from __future__ import annotations

import argparse
from pathlib import Path

from fer_core.card import label_mapping, load_card
from fer_core.cli.common import add_data_option, add_json_option, add_model_option, add_tta_option, progress, write_json
from fer_core.data import load_dataset
from fer_core.engine import load_engine
from fer_core.errors import UsageError
from fer_core.evaluate import evaluate_dataset, require_split, split_sizes


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``evaluate`` sub-command."""
    p = subparsers.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix of a model on a split")
    add_data_option(p, "dataset root: FER-2013 CSV, Kaggle-layout folder or class folders", required=True)
    p.add_argument(
        "--split",
        default="val",
        choices=("val", "test"),
        help="val = PublicTest, test = PrivateTest or unprefixed test files (default: val)",
    )
    add_model_option(p)
    add_tta_option(p, default=None)
    add_json_option(p, "the metrics")
    p.set_defaults(func=cmd_evaluate)
    return p


def cmd_evaluate(args) -> int:
    """Run the evaluation; print a summary (or write --json). Returns the exit code."""
    model_path = Path(args.model)
    if not model_path.is_file():
        raise UsageError(f"{model_path}: model file not found; pass --model PATH (a .keras file with its .json card).")
    card = load_card(model_path)
    ds = load_dataset(args.data, progress=progress("decoding"))
    sizes = split_sizes(ds)
    print(f"{ds.root}: {len(ds)} faces; split sizes: train {sizes['train']}, val {sizes['val']}, test {sizes['test']}")
    if ds.format == "folders":
        print(
            f"note: {ds.root} is plain class folders: its {args.split} split is a seeded random part of each "
            "class, not a separate test set (FER-2013 file names or train/ test/ folders give real splits)."
        )
    label_mapping(ds.class_names, card["labels"])  # fail fast, before TensorFlow loads
    require_split(ds, args.split)
    model = load_engine(model_path).model
    metrics, _ = evaluate_dataset(model, card, ds, args.split, args.tta, progress=progress("classifying"))
    metrics = {"model": str(model_path), "data": ds.root, **metrics}
    if args.json:
        write_json(args.json, metrics)
        print(f"{args.split}: accuracy {metrics['accuracy']:.4f} on {metrics['n']} faces (tta {metrics['tta']})")
    else:
        print("\n".join(summary_lines(metrics)))
    return 0


def summary_lines(metrics: dict) -> list[str]:
    """A readable report: headline figures, a per-class table and the confusion matrix."""
    names = list(metrics["per_class"])
    w = max(9, *(len(n) for n in names))
    lines = [
        f"split {metrics['split']} ({metrics['n']} faces, tta {metrics['tta']})",
        f"accuracy {metrics['accuracy']:.4f}   balanced accuracy {metrics['balanced_accuracy']:.4f}   "
        f"macro F1 {metrics['macro_f1']:.4f}   top-2 {metrics['top2_accuracy']:.4f}   "
        f"ECE {metrics['calibration']['ece']:.4f}",
    ]
    by_tta = metrics.get("accuracy_by_tta") or {}
    if len(by_tta) > 1:
        lines.append("accuracy from the same pass: " + ", ".join(f"{k} {v:.4f}" for k, v in by_tta.items()))
    lines += [
        "",
        f"{'class':<{w}} precision  recall      f1  support",
    ]
    for n, m in metrics["per_class"].items():
        lines.append(f"{n:<{w}} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:7.3f} {m['support']:8d}")
    cw = max(6, *(len(n[:8]) + 1 for n in names))
    lines += [
        "",
        "confusion matrix (rows: true, columns: predicted)",
        f"{'':<{w}}" + "".join(f"{n[:8]:>{cw}}" for n in names),
    ]
    for n, row in zip(names, metrics["confusion_matrix"], strict=True):
        lines.append(f"{n:<{w}}" + "".join(f"{v:>{cw}d}" for v in row))
    if metrics.get("most_confused"):
        lines += [
            "",
            "most confused: "
            + "; ".join(f"{p['true']} -> {p['predicted']} {p['count']}" for p in metrics["most_confused"][:3]),
        ]
    return lines
