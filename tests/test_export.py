"""Export to TFLite / ONNX / SavedModel: parity with Keras on the bundled real faces, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fer_core.card import card_path, load_card
from fer_core.constants import EMOTIONS
from fer_core.export import (
    FORMATS,
    MIN_TOP1_AGREEMENT,
    ExportError,
    compare,
    export_model,
    float32_clone,
    is_mixed_precision,
    load_runner,
    parity_inputs,
    parity_path,
)
from tests.conftest import make_tiny_model

SUFFIX = {"tflite": ".tflite", "onnx": ".onnx", "savedmodel": "_savedmodel"}


def _save_tiny(folder: Path, policy: str = "float32") -> Path:
    """An untrained ResNet-10 (width 8) built under `policy`, saved with its card."""
    return make_tiny_model(folder, policy=policy, name=f"tiny_{policy}")


@pytest.fixture(scope="module")
def tiny_f32(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("export-f32"))


@pytest.fixture(scope="module")
def tiny_bf16(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("export-bf16"), "mixed_bfloat16")


@pytest.fixture(scope="module")
def faces():
    x, labels, names = parity_inputs(44)
    return x


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_passes_parity_and_writes_figures_and_card(fmt, tiny_f32, tmp_path, faces):
    import keras

    out = tmp_path / f"tiny{SUFFIX[fmt]}"
    report = export_model(tiny_f32, fmt, out)
    assert out.exists()
    assert report["passed"] and report["exported_variant"] == "as trained"
    assert report["inputs"] == len(faces) >= 1000  # 560 sample faces x (centre, mirror)
    assert report["top1_agreement"] >= MIN_TOP1_AGREEMENT
    assert report["max_abs_diff"] < 1e-3
    assert json.loads(parity_path(out).read_text()) == report
    card = load_card(out)
    assert card["labels"] == list(EMOTIONS) and card["export"]["format"] == fmt
    # Recompute the figures independently from the written file, in its own runtime.
    keras_probs = np.asarray(keras.models.load_model(tiny_f32)(faces, training=False))
    exported = np.concatenate([load_runner(out, fmt)(faces[i : i + 256]) for i in range(0, len(faces), 256)])
    again = compare(keras_probs, exported)
    assert again["top1_agreement"] == pytest.approx(report["top1_agreement"], abs=2 / len(faces))
    assert again["max_abs_diff"] == pytest.approx(report["max_abs_diff"], abs=1e-4)
    assert np.allclose(exported.sum(axis=1), 1.0, atol=1e-4)


def test_float32_clone_keeps_the_weights(tiny_bf16, faces):
    import keras

    model = keras.models.load_model(tiny_bf16)
    assert is_mixed_precision(model)
    clone = float32_clone(model)
    assert not is_mixed_precision(clone)
    for a, b in zip(model.get_weights(), clone.get_weights(), strict=True):
        assert np.array_equal(a, b)
    p16 = np.asarray(model(faces[:64], training=False))
    p32 = np.asarray(clone(faces[:64], training=False))
    assert np.abs(p16 - p32).max() < 0.05  # bfloat16 rounding only


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_bf16_model_is_refused_without_the_float32_clone(fmt, tiny_bf16, tmp_path):
    """TFLite cannot lower bfloat16 ops; tf2onnx writes a bfloat16 graph onnxruntime will not load."""
    out = tmp_path / f"tiny{SUFFIX[fmt]}"
    with pytest.raises(ExportError) as info:
        export_model(tiny_bf16, fmt, out, allow_float32_clone=False)
    msg = str(info.value)
    assert "\n" not in msg and "mixed_bfloat16" in msg and "nothing was written" in msg
    assert list(tmp_path.iterdir()) == []  # no broken file, no temp file, no parity file, no card


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_bf16_model_exports_as_a_float32_clone(fmt, tiny_bf16, tmp_path):
    out = tmp_path / f"tiny{SUFFIX[fmt]}"
    report = export_model(tiny_bf16, fmt, out)
    assert report["source_dtype_policy"] == "mixed_bfloat16"
    assert report["attempts"][0]["variant"] == "as trained" and "error" in report["attempts"][0]
    assert report["exported_variant"] == "float32 clone"
    assert report["top1_agreement"] >= MIN_TOP1_AGREEMENT and report["max_abs_diff"] < 1e-3
    assert 0.0 <= report["vs_keras_as_trained"]["top1_agreement"] <= 1.0
    assert load_card(out)["export"]["variant"] == "float32 clone"


def test_failed_parity_refuses_and_leaves_nothing(tiny_f32, tmp_path):
    out = tmp_path / "tiny.onnx"
    with pytest.raises(ExportError, match="below"):
        export_model(tiny_f32, "onnx", out, min_agreement=1.01)  # no export can reach 101%
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tiny_f32, tmp_path):
    with pytest.raises(ExportError, match="--format"):
        export_model(tiny_f32, "coreml", tmp_path / "x")
    with pytest.raises(ExportError, match="no such model"):
        export_model(tmp_path / "missing.keras", "onnx", tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="overwrite"):
        export_model(tiny_f32, "onnx", tiny_f32)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="in the way"):
        export_model(tiny_f32, "savedmodel", tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_cli_export(tiny_f32, tmp_path, capsys):
    from fer_core.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export", "--model", str(tiny_f32), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "top-1 agreement" in printed and str(parity_path(out)) in printed
    assert out.is_file() and card_path(out).is_file()
    assert main(["export", "--model", str(tmp_path / "none.keras"), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
