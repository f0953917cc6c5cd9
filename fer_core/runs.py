"""The run folder contract: what a training run writes, and reading it back.

Pure file I/O with no TensorFlow, so the dashboard can read runs cheaply. One run folder,
``runs/<run-id>/`` (the runs folder is $FER_RUNS, default ``runs/`` in the repository):

    config.json          the resolved TrainConfig, saved before the first step (CONFIG_FILE)
    status.json          {"state", "pid", "pid_start", "started", "updated", "finished", "error", ...}
                         (STATUS_FILE)
    .status.lock         serialises read-modify-write updates of status.json (STATUS_LOCK)
    metrics.jsonl        {"type": "epoch", ...} per epoch, {"type": "progress", ...} within one,
                         {"type": "epochs_changed", ...} when a resume changed the epoch count (METRICS_FILE)
    train.log            the training process's stdout/stderr (LOG_FILE)
    STOP                 present = a stop was requested (STOP_FILE)
    backup/              Keras BackupAndRestore state, so a killed run resumes (BACKUP_DIR):
      latest.weights.h5 + training_metadata.json       the last finished epoch (BACKUP_METADATA)
      previous.weights.h5 + previous_training_metadata.json
                         the pair before it, kept until a new one is complete (PREVIOUS_WEIGHTS,
                         PREVIOUS_METADATA; see fer_core.callbacks.AtomicBackup)
    best.json            {"epoch", "val_accuracy"} of the checkpoint in model.keras (BEST_FILE)
    model.keras          the best checkpoint on val, with model.json (its model card) (MODEL_FILE)
    teacher_targets.npy  a distilled run's cached teacher probabilities, reused on resume (TEACHER_TARGETS)
    epochs/              epoch_NNN.weights.h5 of the last keep_epochs epochs, for averaging (EPOCHS_DIR)
    eval/                predictions and metrics on val/test (EVAL_DIR)
    tensorboard/         TensorBoard event files (fer_core.tracking)
    workers/<index>/     status and metrics of each non-chief worker of a multi-worker run (WORKERS_DIR)

The runs folder itself holds `.train.lock` (fer_core.jobs), one training job at a time.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from fer_core.jsonio import now_iso, read_json, read_json_object, write_json_atomic

REPO = Path(__file__).resolve().parent.parent
# The environment variable that moves the runs folder (the dashboard and the CLI both honour it).
RUNS_ENV = "FER_RUNS"
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")

# The files and folders of a run folder (the docstring above says what each holds).
CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
STATUS_LOCK = ".status.lock"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
STOP_FILE = "STOP"
BEST_FILE = "best.json"
MODEL_FILE = "model.keras"
EVAL_DIR = "eval"
TEACHER_TARGETS = "teacher_targets.npy"
WORKERS_DIR = "workers"
# Where a run keeps per-epoch weights (config keep_epochs): EPOCHS_DIR/epoch_NNN.weights.h5.
EPOCHS_DIR = "epochs"
EPOCH_SUFFIX = ".weights.h5"
# Keras BackupAndRestore's state; present once an epoch has finished. The metadata file is
# Keras' name; the previous pair is ours (Keras' own *.bkp names do not end in .weights.h5,
# which load_weights needs).
BACKUP_DIR = "backup"
BACKUP_METADATA = "training_metadata.json"
PREVIOUS_WEIGHTS, PREVIOUS_METADATA = "previous.weights.h5", "previous_training_metadata.json"


def runs_folder() -> Path:
    """The runs folder: $FER_RUNS, else ``runs/`` in the repository."""
    return Path(os.environ.get(RUNS_ENV, REPO / "runs"))


def kept_epochs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """The per-epoch weight files a run kept (config keep_epochs), as (epoch, path), oldest first."""
    files = sorted((Path(run_dir) / EPOCHS_DIR).glob(f"epoch_*{EPOCH_SUFFIX}"))
    return [(int(f.name[len("epoch_") : -len(EPOCH_SUFFIX)]), f) for f in files]


def backup_epoch(run_dir: str | Path) -> int:
    """The number of finished epochs the run's backup holds (0 when there is none)."""
    backup = Path(run_dir) / BACKUP_DIR
    for name in (BACKUP_METADATA, PREVIOUS_METADATA):
        meta = read_json(backup / name, {})
        if isinstance(meta, dict) and isinstance(meta.get("epoch"), int):
            return meta["epoch"]
    return 0


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
    st = read_json_object(run_dir / STATUS_FILE, found)
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
    fd = os.open(run_dir / STATUS_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = read_json_object(run_dir / STATUS_FILE)
        st.update(fields, updated=now_iso())
        write_json_atomic(run_dir / STATUS_FILE, st)
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
        with open(Path(run_dir) / METRICS_FILE, encoding="utf-8", errors="replace") as f:
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


def list_runs(runs_dir: str | Path) -> list[dict]:
    """Every run folder with its config and status, newest first."""
    runs_dir = Path(runs_dir)
    out = []
    if not runs_dir.is_dir():
        return out
    for d in runs_dir.iterdir():
        if d.is_dir() and (d / CONFIG_FILE).exists():
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
    cfg = read_json_object(d / CONFIG_FILE, problems)
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
        "has_model": (d / MODEL_FILE).exists(),
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
