"""What several commands share: the options they have in common, JSON output and progress bars.

Each shared option is defined once here, so it has one spelling, one type and one set of
choices everywhere it appears; a command passes only its own default and help text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from fer_core.config import CHOICES
from fer_core.constants import DEFAULT_MODEL_NAME
from fer_core.errors import UsageError
from fer_core.jsonio import write_json_atomic

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / f"{DEFAULT_MODEL_NAME}.keras"


def add_model_option(p: argparse.ArgumentParser, help: str = "model file") -> None:
    """``--model PATH``: a .keras model with its card beside it; default the shipped model."""
    p.add_argument(
        "--model",
        default=str(DEFAULT_MODEL),
        help=f"{help}; its card JSON must sit beside it (default: the shipped model)",
    )


def add_data_option(p: argparse.ArgumentParser, help: str, *, required: bool = False) -> None:
    """``--data ROOT``: a FER-2013 CSV, a Kaggle-layout folder or class folders."""
    p.add_argument("--data", required=required, metavar="ROOT", help=help)


def add_tta_option(p: argparse.ArgumentParser, default: str | None) -> None:
    """``--tta [MODE]``: test-time augmentation; a bare ``--tta`` means tencrop, None the card's."""
    said = "the model card's" if default is None else default
    p.add_argument(
        "--tta",
        nargs="?",
        const="tencrop",
        default=default,
        choices=CHOICES["eval_tta"],
        help=f"test-time augmentation (default: {said}); a bare --tta means tencrop",
    )


def add_json_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--json OUT``: also write the results as JSON to this file."""
    p.add_argument("--json", metavar="OUT", help=f"write {what} as JSON here")


def write_json(path: str, obj) -> None:
    """Write `obj` to the --json file (its folder is created) and say so."""
    if Path(path).is_dir():
        raise_json_is_folder(path, "results.json")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj)
    print(f"wrote {path}")


def raise_json_is_folder(path: str, example: str) -> None:
    """Refuse a --json path that is a folder, suggesting a file name inside it."""
    raise UsageError(f"--json {path} is a folder; give a file name, e.g. {Path(path) / example}")


def progress(desc: str):
    """A tqdm-backed callable(done, total), silent when stderr is not a terminal."""
    state = {}

    def cb(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, unit="img", disable=None, file=sys.stderr, leave=False)
        state["bar"].update(done - state["bar"].n)
        if done >= total:
            state["bar"].close()

    return cb
