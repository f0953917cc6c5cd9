"""General JSON file helpers: atomic writes, forgiving reads, JSON lines.

Nothing here knows about runs or models; `fer_core.runs` and `fer_core.card` build their
file contracts on these.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path


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


def append_jsonl(path: str | Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row, default=_json_default) + "\n")
