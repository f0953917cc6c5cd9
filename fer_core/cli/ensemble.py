"""``python -m fer_core ensemble MODEL... --out PATH``: one model that averages several models' probabilities."""

from __future__ import annotations

import argparse
from pathlib import Path

from fer_core.card import load_card
from fer_core.cli.common import add_data_option, add_tta_option
from fer_core.data import load_dataset
from fer_core.ensemble import combine
from fer_core.errors import UsageError
from fer_core.evaluate import rewrite_evaluation


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``ensemble`` sub-command."""
    p = subparsers.add_parser(
        "ensemble", help="combine trained models into one model that averages their probabilities"
    )
    p.add_argument("models", nargs="+", help="two or more .keras model files (each with its card)")
    p.add_argument("--out", required=True, help="the combined model file to write, e.g. models/fer_resnet.keras")
    add_data_option(p, "dataset to evaluate on (default: the first model's training data)")
    add_tta_option(p, default="tencrop")
    p.set_defaults(func=cmd_ensemble)
    return p


def cmd_ensemble(args) -> int:
    """Combine, evaluate into the new card, print each member's and the ensemble's accuracy."""
    for path in args.models:
        if not Path(path).is_file():
            raise UsageError(f"{path}: model file not found.")
    root = args.data or load_card(args.models[0]).get("training", {}).get("data")
    if not root:
        raise UsageError(f"{args.models[0]}: its card names no training data; pass --data ROOT.")
    ds = load_dataset(root)
    dest = Path(args.out)
    combine(args.models, dest, tta=args.tta)
    rewrite_evaluation(dest, ds, args.tta)
    card = load_card(dest)
    for member in card["members"]:
        m = member.get("metrics") or {}
        acc = m.get("val_accuracy")
        print(
            f"  member {member['path']}: val accuracy {acc:.4f} (tta {member.get('tta')})"
            if acc is not None
            else f"  member {member['path']}"
        )
    m = card["metrics"]
    print(
        f"{dest}: mean of {len(card['members'])} models, val accuracy {m.get('val_accuracy', float('nan')):.4f} "
        f"(tta {card['tta']}, {m.get('val_n')} faces)"
    )
    return 0
