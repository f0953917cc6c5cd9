"""``python -m fer_core promote RUN_DIR``: make a run's model a shipped model, evaluated, with its card."""

from __future__ import annotations

import argparse
from pathlib import Path

from fer_core.card import load_card
from fer_core.cli.common import REPO, add_data_option, add_tta_option, progress
from fer_core.data import load_dataset
from fer_core.promote import promote
from fer_core.runs import MODEL_FILE


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``promote`` sub-command."""
    p = subparsers.add_parser("promote", help="make a run's best model the shipped default (evaluated, with its card)")
    p.add_argument("run_dir", help="the run folder")
    p.add_argument("--name", default="fer_resnet", help="model name under models/ (default: fer_resnet)")
    p.add_argument("--out", help="model path to write instead of models/NAME.keras")
    add_data_option(p, "dataset to evaluate on (default: the run's training data)")
    add_tta_option(p, default="tencrop")
    p.add_argument(
        "--recalibrate-bn",
        action="store_true",
        help="recompute BatchNorm statistics on clean centre crops of the training split before evaluating",
    )
    p.add_argument(
        "--average",
        type=int,
        default=0,
        metavar="N",
        help="ship the mean of the weights of the run's last N epochs (trained with --keep-epochs N or more); "
        "recalibrates BatchNorm",
    )
    p.set_defaults(func=cmd_promote)
    return p


def cmd_promote(args) -> int:
    """Promote, then print which weights shipped and their val accuracy. Returns the exit code."""
    cfg = load_card(Path(args.run_dir) / MODEL_FILE)["training"]
    ds = load_dataset(args.data or cfg["data"])
    dest = Path(args.out) if args.out else REPO / "models" / f"{args.name}.keras"
    card = promote(
        args.run_dir,
        dest,
        ds,
        tta=args.tta,
        recalibrate_bn=args.recalibrate_bn,
        average=args.average,
        progress=progress("BatchNorm statistics") if args.recalibrate_bn or args.average else None,
    )
    m = card["metrics"]
    averaged = (card.get("finalize") or {}).get("weight_average")
    which = (
        f"mean of epochs {averaged['epochs'][0]}-{averaged['epochs'][-1]}"
        if averaged
        else f"best epoch {m.get('best_epoch')}"
    )
    print(
        f"{dest}: {which}, val accuracy {m.get('val_accuracy', float('nan')):.4f} "
        f"(tta {card['tta']}, {m.get('val_n')} faces)"
    )
    return 0
