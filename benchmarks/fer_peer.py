"""The `fer` package as a peer to measure against, when it is installed (it is not a requirement)."""

from __future__ import annotations


def import_fer(consequence: str):
    """(the fer package, its FER class), or None after printing why it is unavailable.

    Args:
        consequence: what the benchmark does instead, for the printed line.
    """
    try:
        import fer as fer_pkg
        from fer.fer import FER  # `from fer import FER` fails in 25.10.3
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        print(f"fer: not importable ({type(exc).__name__}: {exc}); {consequence}")
        return None
    return fer_pkg, FER
