"""``python -m fer_core dataset ROOT``: counts per split and class, and the data-quality report."""

from __future__ import annotations

import argparse

from fer_core.cli.common import add_json_option, progress, write_json
from fer_core.data import load_dataset
from fer_core.quality import quality_report, summary_lines


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``dataset`` sub-command."""
    p = subparsers.add_parser("dataset", help="counts per split/class and the data-quality report")
    p.add_argument("root", help="FER-2013 CSV, Kaggle-layout folder or class folders")
    add_json_option(p, "the report")
    p.set_defaults(func=cmd_dataset)
    return p


def cmd_dataset(args) -> int:
    """Decode the dataset, print the quality summary (and write --json). Returns the exit code."""
    ds = load_dataset(args.root, progress=progress("decoding"))
    report = quality_report(ds)
    print("\n".join(summary_lines(report)))
    if args.json:
        write_json(args.json, report)
    return 0
