"""Command line: ``python -m fer_core {dataset,train,promote,ensemble,evaluate,predict,export,serve} ...``.

Exit code 0 on success; on bad input a one-line error on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from fer_core.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent


def _write_json(path: str, obj) -> None:
    from fer_core.jsonio import write_json_atomic

    if Path(path).is_dir():
        raise ValueError(f"--json {path} is a folder; give a file name, e.g. {Path(path) / 'results.json'}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj)
    print(f"wrote {path}")


# ----------------------------------------------------------------------------- dataset


def cmd_dataset(args) -> int:
    from fer_core.data import load_dataset
    from fer_core.quality import quality_report, summary_lines

    ds = load_dataset(args.root, progress=_progress("decoding"))
    report = quality_report(ds)
    print("\n".join(summary_lines(report)))
    if args.json:
        _write_json(args.json, report)
    return 0


def _progress(desc: str):
    """A tqdm-backed callable(done, total), silent when stderr is not a terminal."""
    from tqdm import tqdm

    state = {}

    def cb(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, unit="img", disable=None, file=sys.stderr, leave=False)
        state["bar"].update(done - state["bar"].n)
        if done >= total:
            state["bar"].close()

    return cb


# ----------------------------------------------------------------------------- train

_TRAIN_FLAGS = [f for f in dataclasses.fields(TrainConfig) if f.name != "data"]


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset root (default: the bundled sample, or $FER_DATA)")
    for f in _TRAIN_FLAGS:
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            typ = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            p.add_argument(flag, type=typ, default=None, help=f"default: {f.default}")
    p.add_argument("--run-dir", help="the run folder (default: runs/<run-id>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last finished epoch")


def cmd_train(args) -> int:
    from fer_core.jobs import JobError, RunsLock
    from fer_core.jsonio import append_jsonl, read_json_object
    from fer_core.runs import new_run_id, read_metrics, read_status, update_status
    from fer_core.train import train

    overrides = {f.name: getattr(args, f.name) for f in _TRAIN_FLAGS if getattr(args, f.name) is not None}
    if args.resume:
        if not args.run_dir:
            raise ValueError("--resume needs --run-dir (the run folder to continue).")
        run_dir = Path(args.run_dir)
        if not (run_dir / "config.json").exists():
            raise ValueError(f"{run_dir}: no config.json there; nothing to resume.")
        problems: list[str] = []
        saved = read_json_object(run_dir / "config.json", problems)
        if problems:
            raise ValueError(f"{run_dir}: {problems[0]} The run cannot be resumed; start a new one.")
        cfg = TrainConfig.from_dict(saved)
        extra = set(overrides) - {"epochs"} | ({"data"} if args.data else set())
        if extra:
            raise ValueError(
                f"--resume keeps the run's config; drop {', '.join(sorted(extra))} (only --epochs may change)."
            )
        if "epochs" in overrides and overrides["epochs"] != cfg.epochs:
            done = read_metrics(run_dir)[0]
            append_jsonl(
                run_dir / "metrics.jsonl",
                {
                    "type": "epochs_changed",
                    "after_epoch": done[-1]["epoch"] if done else 0,
                    "from": cfg.epochs,
                    "to": overrides["epochs"],
                    "time": time.time(),
                },
            )
            cfg = dataclasses.replace(cfg, epochs=overrides["epochs"])
            cfg.save(run_dir / "config.json")
    else:
        data = args.data or os.environ.get("FER_DATA") or str(REPO / "data" / "sample")
        cfg = TrainConfig.from_dict({**dataclasses.asdict(TrainConfig()), **overrides, "data": data})
        run_dir = Path(args.run_dir) if args.run_dir else REPO / "runs" / new_run_id()
    if not Path(cfg.data).exists():
        raise ValueError(f"{cfg.data}: dataset not found; pass --data ROOT.")
    if not args.resume:
        from fer_core.train import check_start_models

        check_start_models(cfg)  # a missing or mismatched model is a one-line error before training
    lock = RunsLock(run_dir.parent)
    from fer_core.train import worker_info

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


# ----------------------------------------------------------------------------- promote


def cmd_promote(args) -> int:
    from fer_core.card import load_card
    from fer_core.data import load_dataset
    from fer_core.promote import promote

    cfg = load_card(Path(args.run_dir) / "model.keras")["training"]
    ds = load_dataset(args.data or cfg["data"])
    dest = Path(args.out) if args.out else REPO / "models" / f"{args.name}.keras"
    card = promote(
        args.run_dir,
        dest,
        ds,
        tta=args.tta,
        recalibrate_bn=args.recalibrate_bn,
        average=args.average,
        progress=_progress("BatchNorm statistics") if args.recalibrate_bn or args.average else None,
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


def cmd_ensemble(args) -> int:
    from fer_core.card import load_card
    from fer_core.data import load_dataset
    from fer_core.ensemble import combine
    from fer_core.evaluate import rewrite_evaluation

    for path in args.models:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: model file not found.")
    root = args.data or load_card(args.models[0]).get("training", {}).get("data")
    if not root:
        raise ValueError(f"{args.models[0]}: its card names no training data; pass --data ROOT.")
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


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fer_core", description="Facial-emotion-recognition workbench")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dataset", help="counts per split/class and the data-quality report")
    p.add_argument("root", help="FER-2013 CSV, Kaggle-layout folder or class folders")
    p.add_argument("--json", help="write the report as JSON here")
    p.set_defaults(func=cmd_dataset)

    p = sub.add_parser("train", help="train a model; writes a run folder")
    _add_train_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("promote", help="make a run's best model the shipped default (evaluated, with its card)")
    p.add_argument("run_dir", help="the run folder")
    p.add_argument("--name", default="fer_resnet", help="model name under models/ (default: fer_resnet)")
    p.add_argument("--out", help="model path to write instead of models/NAME.keras")
    p.add_argument("--data", help="dataset to evaluate on (default: the run's training data)")
    p.add_argument("--tta", default="tencrop", choices=["none", "flip", "tencrop"], help="default: tencrop")
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

    p = sub.add_parser("ensemble", help="combine trained models into one model that averages their probabilities")
    p.add_argument("models", nargs="+", help="two or more .keras model files (each with its card)")
    p.add_argument("--out", required=True, help="the combined model file to write, e.g. models/fer_resnet.keras")
    p.add_argument("--data", help="dataset to evaluate on (default: the first model's training data)")
    p.add_argument("--tta", default="tencrop", choices=["none", "flip", "tencrop"], help="default: tencrop")
    p.set_defaults(func=cmd_ensemble)

    for name in ("evaluate", "predict", "export", "serve"):
        mod = __import__(f"fer_core.cli_{name}", fromlist=["add_parser"]) if _has(f"cli_{name}") else None
        if mod is not None:
            mod.add_parser(sub)
    return parser


def _has(module: str) -> bool:
    return (Path(__file__).parent / f"{module}.py").exists()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    from fer_core.card import CardError
    from fer_core.data import DataError
    from fer_core.images import ImageError
    from fer_core.jobs import JobError

    try:
        return args.func(args)
    except (DataError, ImageError, CardError, JobError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
