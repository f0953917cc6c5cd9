"""What this CPU can do, read once from /proc/cpuinfo: the bfloat16 check that training's
`precision=auto` and the inference engine share, and the one-line CPU description every
benchmark prints (figures taken on different CPUs are not comparable)."""

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
