"""What this CPU can do, read once from /proc/cpuinfo: the bfloat16 check that training's
`precision=auto` and the inference engine share, the one-line CPU description every
benchmark prints (figures taken on different CPUs are not comparable), and the TensorFlow
settings chosen for the CPU (applied by `fer_core/__init__.py` before TensorFlow loads)."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# Flags that decide speed here: AVX2 is the floor of current x86 builds of TensorFlow;
# AVX-512 BF16 and AMX run bfloat16 matmuls natively in oneDNN (elsewhere bf16 is emulated, slower than float32).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model or platform.machine(), frozenset(flags)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is not readable)."""
    return _cpuinfo()[1]


def cpu_supports_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16 (fast bfloat16 matmuls in oneDNN)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"})


def cpu_summary() -> str:
    """One line naming the CPU, its cores and the flags that decide speed, e.g.
    ``AMD EPYC, 2 cores, avx2 avx512f avx512_vnni avx512_bf16 (bf16 native: yes)``."""
    model, flags = _cpuinfo()
    present = " ".join(f for f in SPEED_FLAGS if f in flags) or "none of " + "/".join(SPEED_FLAGS)
    native = "yes" if cpu_supports_bf16() else "no"
    return f"{model}, {os.cpu_count()} cores, {present} (bf16 native: {native})"


def tensorflow_settings() -> dict[str, str]:
    """Environment variables TensorFlow reads once, at import, chosen for this CPU.

    ``TF_ENABLE_ONEDNN_OPTS=1`` on every x86 CPU: TensorFlow's x86 builds turn their oneDNN
    kernels on by default only where the CPU has AVX512-VNNI, AVX512-BF16 or AMX; on an
    AVX2-only CPU they fall back to Eigen's, which trained our ResNet 1.42x slower there
    (docs/benchmarks.md, "Training speed"; ``benchmarks/train_speed.py`` measures both).
    """
    if platform.machine().lower() in ("x86_64", "amd64"):
        return {"TF_ENABLE_ONEDNN_OPTS": "1"}
    return {}


def configure_tensorflow() -> None:
    """Put `tensorflow_settings()` into the environment where the user has not set them.

    Has an effect only before TensorFlow is imported; a value the user exported wins
    (``TF_ENABLE_ONEDNN_OPTS=0`` turns oneDNN off again, e.g. to compare).
    """
    for key, value in tensorflow_settings().items():
        os.environ.setdefault(key, value)


def training_runtime() -> dict:
    """What a run trained on, for its config and card: backend, oneDNN setting and CPU."""
    import keras

    return {
        "backend": keras.backend.backend(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TensorFlow's default for this CPU"),
        "cpu": cpu_summary(),
    }
