"""The command line: ``python -m fer_core COMMAND ...``, one module per command.

Each module in `COMMANDS` has ``add_parser(subparsers)``, which registers the command, its
options and the function that runs it. Options several commands share (``--model``,
``--data``, ``--tta``, ``--json``) are defined once, in `fer_core.cli.common`.

Exit code 0 on success. A user-caused error (a `fer_core.errors.FerError`, such as a bad
setting's `fer_core.config.ConfigError`; a ValueError; a missing file) prints one line,
``error: <message>``, on stderr and exits with 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

from fer_core.cli import dataset, ensemble, evaluate, export, predict, promote, serve, train
from fer_core.errors import FerError

# The commands, in the order --help lists them.
COMMANDS: dict[str, ModuleType] = {
    "dataset": dataset,
    "train": train,
    "promote": promote,
    "ensemble": ensemble,
    "evaluate": evaluate,
    "predict": predict,
    "export": export,
    "serve": serve,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command of `COMMANDS`."""
    parser = argparse.ArgumentParser(prog="python -m fer_core", description="Facial-emotion-recognition workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv), run the command and return its exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FerError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
