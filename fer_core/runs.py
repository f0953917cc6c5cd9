"""The run folder contract (see README 'Training runs'): reading and writing its files.

Pure file I/O with no TensorFlow, so the dashboard can read runs cheaply.

    runs/<run-id>/config.json     resolved TrainConfig
                  status.json     {"state", "pid", "started", "updated", "finished", "error", ...}
                  metrics.jsonl   {"type": "epoch", ...} per epoch, {"type": "progress", ...} within one,
                                  {"type": "epochs_changed", ...} when a resume changed the epoch count
                  train.log       the training process's stdout/stderr
                  backup/         keras BackupAndRestore state (resume)
                  model.keras     best checkpoint on val, with model.json (its model card)
                  eval/           predictions and metrics on val/test
                  STOP            present = a stop was requested
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

STATES = ("queued", "running", "finished", "failed", "stopped")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def read_status(run_dir: str | Path) -> dict:
    """status.json, with a dead process's 'running' turned into 'failed'."""
    run_dir = Path(run_dir)
    st = read_json(run_dir / "status.json", {}) or {}
    if st.get("state") == "running" and st.get("pid") and not pid_alive(int(st["pid"])):
        st = {
            **st,
            "state": "failed",
            "error": st.get("error") or "the training process ended without a word (killed?)",
        }
    return st


def update_status(run_dir: str | Path, **fields) -> dict:
    run_dir = Path(run_dir)
    st = read_json(run_dir / "status.json", {}) or {}
    st.update(fields, updated=now_iso())
    write_json_atomic(run_dir / "status.json", st)
    return st


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def metrics_rows(run_dir: str | Path) -> Iterator[dict]:
    """Every complete row of a run's metrics.jsonl, in order (none when the file is missing)."""
    try:
        with open(Path(run_dir) / "metrics.jsonl") as f:
            for line in f:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # a line being written right now
    except OSError:
        return


def read_metrics(run_dir: str | Path) -> tuple[list[dict], dict | None]:
    """(epoch rows, one per epoch, last write wins; the latest progress row or None)."""
    epochs: dict[int, dict] = {}
    progress = None
    for row in metrics_rows(run_dir):
        if row.get("type") == "epoch":
            epochs[int(row["epoch"])] = row
            progress = None
        elif row.get("type") == "progress":
            progress = row
    rows = [epochs[k] for k in sorted(epochs)]
    if progress is not None and rows and progress.get("epoch", 0) <= rows[-1]["epoch"]:
        progress = None
    return rows, progress


def training_history(run_dir: str | Path) -> dict:
    """What a run really did, for a model card: epochs finished, time spent, the learning rate
    and val accuracy of every epoch, and any change of the epoch count on resume (which
    reshapes a cosine schedule from that point on, so config.json alone does not tell it)."""
    rows, _ = read_metrics(run_dir)
    changes = [
        {k: row[k] for k in ("after_epoch", "from", "to") if k in row}
        for row in metrics_rows(run_dir)
        if row.get("type") == "epochs_changed"
    ]

    def col(key, digits):
        return [round(float(r[key]), digits) if key in r else None for r in rows]

    return {
        "epochs_finished": rows[-1]["epoch"] if rows else 0,
        "train_seconds": round(sum(float(r.get("seconds", 0.0)) for r in rows), 1),
        "lr_by_epoch": col("lr", 6),
        "val_accuracy_by_epoch": col("val_accuracy", 4),
        "epochs_changed": changes,
    }


def append_jsonl(path: str | Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row, default=_json_default) + "\n")


def list_runs(runs_dir: str | Path) -> list[dict]:
    """Every run folder with its config and status, newest first."""
    runs_dir = Path(runs_dir)
    out = []
    if not runs_dir.is_dir():
        return out
    for d in runs_dir.iterdir():
        if d.is_dir() and (d / "config.json").exists():
            st = read_status(d)
            epochs, _ = read_metrics(d)
            best = max((e.get("val_accuracy", 0) for e in epochs), default=None)
            out.append(
                {
                    "run": d.name,
                    "path": str(d),
                    "state": st.get("state", "unknown"),
                    "epoch": epochs[-1]["epoch"] if epochs else 0,
                    "epochs": (read_json(d / "config.json", {}) or {}).get("epochs"),
                    "best_val_accuracy": best,
                    "started": st.get("started", ""),
                    "has_model": (d / "model.keras").exists(),
                }
            )
    out.sort(key=lambda r: r["started"] or "", reverse=True)
    return out


def tail(path: str | Path, lines: int = 30) -> str:
    """The last lines of a text file (for showing a failed run's log)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64_000))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = text.replace("\r", "\n")
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])
