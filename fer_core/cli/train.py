"""``python -m fer_core train``: train a model in this process, writing a run folder.

Every TrainConfig setting is a flag (``--learning-rate 0.01``, ``--no-augment``); the config
validates the values, so a bad one is refused in one line before anything starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from fer_core.cli.common import REPO, add_data_option
from fer_core.config import CHOICES, TrainConfig
from fer_core.errors import UsageError
from fer_core.jobs import JobError, RunsLock
from fer_core.jsonio import append_jsonl, read_json_object
from fer_core.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    new_run_id,
    read_metrics,
    read_status,
    runs_folder,
    update_status,
)
from fer_core.train import check_start_models, train, worker_info

_TRAIN_FLAGS = [f for f in dataclasses.fields(TrainConfig) if f.name != "data"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``train`` sub-command: one flag per TrainConfig setting."""
    p = subparsers.add_parser("train", help="train a model; writes a run folder")
    add_data_option(p, "dataset root (default: the bundled sample, or $FER_DATA)")
    for f in _TRAIN_FLAGS:
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            allowed = f"one of {', '.join(CHOICES[f.name])}; " if f.name in CHOICES else ""
            p.add_argument(flag, type=typ, default=None, help=f"{allowed}default: {f.default}")
    p.add_argument(
        "--run-dir", help="the run folder (default: <runs folder>/<run-id>; the runs folder is $FER_RUNS or runs/)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last finished epoch")
    p.set_defaults(func=cmd_train)
    return p


def cmd_train(args) -> int:
    """Resolve the config, take the runs-folder lock, train, print the outcome. Returns the exit code."""
    overrides = {f.name: getattr(args, f.name) for f in _TRAIN_FLAGS if getattr(args, f.name) is not None}
    if args.resume:
        run_dir, cfg = _resumed(args, overrides)
    else:
        data = args.data or os.environ.get("FER_DATA") or str(REPO / "data" / "sample")
        cfg = TrainConfig.from_dict({**dataclasses.asdict(TrainConfig()), **overrides, "data": data})
        run_dir = Path(args.run_dir) if args.run_dir else runs_folder() / new_run_id()
    if not Path(cfg.data).exists():
        raise UsageError(f"{cfg.data}: dataset not found; pass --data ROOT.")
    if not args.resume:
        check_start_models(cfg)  # a missing or mismatched model is a one-line error before training
    lock = RunsLock(run_dir.parent)
    if worker_info()[0]:  # only the chief takes the runs-folder lock
        try:
            lock.acquire(run_dir.name)
        except JobError as exc:
            if read_status(run_dir).get("state") == "queued":  # launched for nothing: say so, don't stay queued
                update_status(run_dir, state="failed", error=str(exc))
            raise
    try:
        print(f"run folder: {run_dir}", flush=True)
        status = train(cfg, run_dir, resume=args.resume)
    finally:
        lock.release()
    state = status.get("state")
    if state == "finished":
        for split, m in (status.get("eval") or {}).items():
            print(f"{split}: accuracy {m['accuracy']:.4f} on {m['n']} faces (tta {m['tta']})")
        return 0
    if state == "stopped":
        print(f"stopped; resume with: python -m fer_core train --run-dir {run_dir} --resume")
        return 0
    print(f"error: training failed: {status.get('error')}", file=sys.stderr)
    return 1


def _resumed(args, overrides: dict) -> tuple[Path, TrainConfig]:
    """The run folder and saved config to continue; only --epochs may change (the change is logged)."""
    if not args.run_dir:
        raise UsageError("--resume needs --run-dir (the run folder to continue).")
    run_dir = Path(args.run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise UsageError(f"{run_dir}: no config.json there; nothing to resume.")
    problems: list[str] = []
    saved = read_json_object(run_dir / CONFIG_FILE, problems)
    if problems:
        raise UsageError(f"{run_dir}: {problems[0]} The run cannot be resumed; start a new one.")
    cfg = TrainConfig.from_dict(saved)
    extra = set(overrides) - {"epochs"} | ({"data"} if args.data else set())
    if extra:
        raise UsageError(
            f"--resume keeps the run's config; drop {', '.join(sorted(extra))} (only --epochs may change)."
        )
    if "epochs" in overrides and overrides["epochs"] != cfg.epochs:
        done = read_metrics(run_dir)[0]
        append_jsonl(
            run_dir / METRICS_FILE,
            {
                "type": "epochs_changed",
                "after_epoch": done[-1]["epoch"] if done else 0,
                "from": cfg.epochs,
                "to": overrides["epochs"],
                "time": time.time(),
            },
        )
        cfg = dataclasses.replace(cfg, epochs=overrides["epochs"])
        cfg.save(run_dir / CONFIG_FILE)
    return run_dir, cfg
