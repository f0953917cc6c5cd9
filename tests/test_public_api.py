"""The public API imports as documented, and the core never pulls in streamlit."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO

# Every module of the package, found on disk: a new module is checked without being listed.
CORE_MODULES = ["fer_core"] + sorted(
    ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for p in (REPO / "fer_core").rglob("*.py")
    if p.name not in ("__init__.py", "__main__.py") or p.parent.name != "fer_core"
)


def test_core_imports_without_streamlit():
    code = (
        "import importlib, sys\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module(m)\n"
        "from fer_core import EMOTIONS, IMAGE_SIZE, NUM_CLASSES\n"
        "from fer_core.inference import Recognizer, Face\n"
        "from fer_core.data import load_dataset, FaceDataset, DataError\n"
        "from fer_core.model import create_model, ResNet\n"
        "from fer_core.train import train\n"
        "from fer_core.config import TrainConfig\n"
        "assert EMOTIONS == ('angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral')\n"
        "assert IMAGE_SIZE == 48 and NUM_CLASSES == 7\n"
        "bad = sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.'))\n"
        "assert not bad, bad[:5]\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")
