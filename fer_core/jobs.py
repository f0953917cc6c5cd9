"""Training jobs: one background process per run, one running job per runs folder.

The dashboard never trains. It calls `launch` (which starts ``python -m fer_core train``
in a new process), `request_stop`, and reads the run folder (fer_core.runs).

The lock is an flock on ``<runs>/.train.lock`` held by the training process for its
whole life, so it disappears with the process however it ends (even SIGKILL).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from fer_core.config import TrainConfig
from fer_core.errors import FerError
from fer_core.jsonio import read_json
from fer_core.runs import (
    CONFIG_FILE,
    LOG_FILE,
    STOP_FILE,
    new_run_id,
    read_status,
    update_status,
    validate_run_name,
)

LOCK_NAME = ".train.lock"
# `launch` takes the lock itself and hands its descriptor to the training process through
# this variable, so no second launch can slip in before the process has started.
LOCK_FD_ENV = "FER_RUNS_LOCK_FD"


class JobError(FerError, RuntimeError):
    """A job request that cannot be carried out; the message says why."""


class RunsLock:
    """Exclusive, process-lifetime lock on a runs folder."""

    def __init__(self, runs_dir: str | Path):
        self.path = Path(runs_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self, run_id: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._inherited() or os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = running_job(self.path.parent) or {}
            raise JobError(
                f"another training job is running in {self.path.parent}: "
                f"{holder.get('run', '?')} (pid {holder.get('pid', '?')}); stop it first or use another runs folder."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"run": run_id, "pid": os.getpid()}).encode(), 0)
        self.fd = fd

    def _inherited(self) -> int | None:
        """The lock's descriptor handed down by `launch` (already locked for this process), if any."""
        fd = os.environ.pop(LOCK_FD_ENV, None)
        if fd is None:
            return None
        try:
            fd = int(fd)
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except (ValueError, OSError):
            return None
        return fd if same else None

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def running_job(runs_dir: str | Path) -> dict | None:
    """{"run", "pid"} of the job holding the lock, or None when no job runs."""
    path = Path(runs_dir) / LOCK_NAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_json(path, {}) or {"run": "?", "pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def launch(cfg: TrainConfig | None, runs_dir: str | Path, run_id: str | None = None, *, resume: bool = False) -> Path:
    """Start a training process for `cfg` (or resume run `run_id`); return its run folder.

    Raises:
        JobError: a job is already running in this runs folder, or the run to resume is missing.
    """
    runs_dir = Path(runs_dir)
    if run_id is not None:
        try:
            validate_run_name(run_id)
        except ValueError as exc:
            raise JobError(str(exc)) from None
    # Everything from the check to the process start happens under the runs-folder lock,
    # which the training process then inherits: two quick launches cannot both pass.
    lock = RunsLock(runs_dir)
    try:
        lock.acquire(run_id or "launching")
    except JobError:
        holder = running_job(runs_dir) or {}
        raise JobError(
            f"another training job is running: {holder.get('run', '?')} (pid {holder.get('pid', '?')}); "
            "stop it before launching another."
        ) from None
    try:
        if resume:
            if not run_id or not (runs_dir / run_id / CONFIG_FILE).exists():
                raise JobError(f"cannot resume {run_id!r}: no such run in {runs_dir}.")
            run_dir = runs_dir / run_id
        else:
            cfg = cfg.validated()
            run_dir = runs_dir / (run_id or _unused_run_id(runs_dir))
            if run_dir.exists():
                raise JobError(f"{run_dir} already exists; choose another run name.")
            run_dir.mkdir(parents=True)
            cfg.save(run_dir / CONFIG_FILE)
        update_status(run_dir, state="queued", pid=None, error=None)
        cmd = [sys.executable, "-m", "fer_core", "train", "--run-dir", str(run_dir), "--resume"]
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            LOCK_FD_ENV: str(lock.fd),
        }
        with open(run_dir / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=Path(__file__).resolve().parent.parent,
                start_new_session=True,
                pass_fds=(lock.fd,),
            )
        update_status(run_dir, pid=proc.pid)
    finally:
        # Closing our descriptor does not unlock: the child's inherited copy holds the lock.
        if lock.fd is not None:
            os.close(lock.fd)
            lock.fd = None
    return run_dir


def _unused_run_id(runs_dir: Path) -> str:
    """A new run id; launches within the same second get -2, -3, ... appended."""
    base = new_run_id()
    run_id, n = base, 1
    while (runs_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def request_stop(run_dir: str | Path) -> None:
    """Ask a running job to stop after its current batch (it then writes state 'stopped')."""
    run_dir = Path(run_dir)
    st = read_status(run_dir)
    if st.get("state") not in ("running", "queued"):
        raise JobError(f"{run_dir.name} is not running (state: {st.get('state', 'unknown')}).")
    (run_dir / STOP_FILE).write_text("stop requested\n")
