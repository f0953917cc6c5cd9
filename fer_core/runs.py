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

import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

STATES = ("queued", "running", "finished", "failed", "stopped")
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON so a reader never sees half a file, even after a crash or a full disk."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write aside, fsync, rename over `path`, fsync the folder. On any failure (ENOSPC, a
    folder in the way...) the old file is untouched and the temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def read_json_object(path: str | Path, problems: list[str] | None = None) -> dict:
    """A JSON file that must hold an object: {} when it is missing, and {} plus a line in
    `problems` when it is unreadable or holds something else (a list, a number...)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        if problems is not None:
            problems.append(f"{path.name}: unreadable ({type(exc).__name__}); ignored.")
        return {}
    if not isinstance(obj, dict):
        if problems is not None:
            problems.append(f"{path.name}: holds a JSON {type(obj).__name__}, not an object; ignored.")
        return {}
    return obj


def validate_run_name(name: str) -> str:
    """Return `name` if it can be a run folder directly inside the runs folder, else raise ValueError.

    One path component of letters, digits, '.', '_' and '-', not starting with '.': '../x',
    '/abs' or 'a/b' would put the run outside the folder its lock guards.
    """
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise ValueError(
            f"run name {name!r} is not allowed; use letters, digits, '.', '_' or '-' "
            "(at most 100 characters, not starting with '.' and no '/')."
        )
    return name


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def read_status(run_dir: str | Path, problems: list[str] | None = None) -> dict:
    """status.json as a dict; 'running' or 'queued' whose process is gone (or is another
    process that got the pid) reads as 'failed', an unreadable file as 'failed' too."""
    run_dir = Path(run_dir)
    found: list[str] = []
    st = read_json_object(run_dir / "status.json", found)
    if problems is not None:
        problems.extend(found)
    if found:
        return {"state": "failed", "error": found[0] + " Resume the run or delete its folder."}
    alive = st.get("pid") is None or _is_run_process(st["pid"], st.get("pid_start"))
    if st.get("state") in ("running", "queued") and not alive:
        st = {
            **st,
            "state": "failed",
            "error": st.get("error") or "the training process ended without a word (killed?)",
        }
    return st


def update_status(run_dir: str | Path, **fields) -> dict:
    """Merge `fields` into status.json (written atomically). A pid is stored with its process's
    start time, so a later process that reuses the pid is not taken for the run."""
    run_dir = Path(run_dir)
    if fields.get("pid") is not None:
        fields["pid_start"] = process_start(int(fields["pid"]))
    elif "pid" in fields:
        fields["pid_start"] = None
    # The launcher and the training process both update the file: without the lock one's
    # read-modify-write could undo the other's (a 'running' run read as 'queued' again).
    fd = os.open(run_dir / ".status.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = read_json_object(run_dir / "status.json")
        st.update(fields, updated=now_iso())
        write_json_atomic(run_dir / "status.json", st)
    finally:
        os.close(fd)
    return st


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _is_run_process(pid, pid_start) -> bool:
    """True if `pid` is alive and is the process the status named: the same start time when
    one was recorded, else a process running fer_core (older status files have no start time)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0 or not pid_alive(pid):
        return False
    if pid_start is not None:
        now = process_start(pid)
        return now is None or now == pid_start
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"fer_core" in f.read()
    except OSError:
        return True


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


def metrics_rows(run_dir: str | Path, problems: list[str] | None = None) -> Iterator[dict]:
    """Every complete row of a run's metrics.jsonl, in order (none when the file is missing).

    A line that is not a JSON object is skipped and named in `problems`, except a last line
    without its newline (the one being written right now).
    """
    try:
        with open(Path(run_dir) / "metrics.jsonl", encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                except ValueError:
                    if line.endswith("\n") and problems is not None:
                        problems.append(f"metrics.jsonl line {n}: not JSON; skipped.")
                    continue
                if isinstance(row, dict):
                    yield row
                elif problems is not None:
                    problems.append(f"metrics.jsonl line {n}: a JSON {type(row).__name__}, not an object; skipped.")
    except OSError:
        return


def _epoch_row(row: dict) -> dict | None:
    """An epoch row with a whole-number epoch >= 1 and only numeric metrics, or None."""
    epoch = row.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int | float) or epoch != int(epoch) or epoch < 1:
        return None
    clean = {k: v for k, v in row.items() if k == "type" or (isinstance(v, int | float) and not isinstance(v, bool))}
    clean["epoch"] = int(epoch)
    return clean


def read_metrics(run_dir: str | Path, problems: list[str] | None = None) -> tuple[list[dict], dict | None]:
    """(epoch rows, one per epoch, last write wins; the latest progress row or None).

    Rows without a usable "epoch" are skipped and named in `problems`; the rest are shown.
    """
    epochs: dict[int, dict] = {}
    progress = None
    for row in metrics_rows(run_dir, problems):
        if row.get("type") == "epoch":
            clean = _epoch_row(row)
            if clean is None:
                if problems is not None:
                    problems.append(
                        f"metrics.jsonl: an epoch row without a valid epoch number ({row.get('epoch')!r}); skipped."
                    )
                continue
            epochs[clean["epoch"]] = clean
            progress = None
        elif row.get("type") == "progress":
            progress = row if _epoch_row(row) is not None and isinstance(row.get("step"), int) else None
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
            out.append(run_summary(d))
    out.sort(key=lambda r: str(r["started"] or ""), reverse=True)
    return out


def run_summary(run_dir: str | Path) -> dict:
    """One row of the runs table; `problems` lists whatever in the folder was unreadable
    (and skipped), so one bad file shows as a note on its run instead of hiding every run."""
    d = Path(run_dir)
    problems: list[str] = []
    st = read_status(d, problems)
    epochs, _ = read_metrics(d, problems)
    cfg = read_json_object(d / "config.json", problems)
    best = max((e.get("val_accuracy", 0) for e in epochs), default=None)
    total = cfg.get("epochs")
    return {
        "run": d.name,
        "path": str(d),
        "state": st.get("state", "unknown"),
        "epoch": epochs[-1]["epoch"] if epochs else 0,
        "epochs": total if isinstance(total, int) else None,
        "best_val_accuracy": best,
        "started": str(st.get("started") or ""),
        "has_model": (d / "model.keras").exists(),
        "problems": problems,
    }


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
