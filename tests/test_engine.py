"""The inference engine: both runtimes agree with the eager Keras model, batches stay within
`max_crops`, the runtime choice follows the CPU, the ONNX form is cached per file, and the
traced TensorFlow function is never retraced."""

from __future__ import annotations

import numpy as np
import pytest

from fer_core import engine as engine_mod
from fer_core.engine import InferenceEngine, engine_for, load_engine
from tests.conftest import eager_proba, make_tiny_model


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("engine-model"))


@pytest.fixture(scope="module")
def tiny(tiny_path):
    import keras

    return keras.models.load_model(tiny_path, compile=False)


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


@pytest.mark.parametrize("runtime", ["onnx", "tensorflow"])
@pytest.mark.parametrize("tta", ["none", "flip", "tencrop"])
def test_runtimes_match_the_eager_model(tiny, tiny_path, runtime, tta):
    faces = _faces(5)
    engine = InferenceEngine(tiny, source=tiny_path, runtime=runtime)
    got = engine.predict_proba(faces, tta)
    np.testing.assert_allclose(got, eager_proba(tiny, faces, tta), atol=2e-5)
    assert got.shape == (5, 7) and got.dtype == np.float32


def test_bfloat16_model_runs_and_agrees(tmp_path):
    """A model trained under mixed_bfloat16: onnxruntime runs its float32 form, TensorFlow its own dtype."""
    import keras

    path = make_tiny_model(tmp_path, policy="mixed_bfloat16")
    model = keras.models.load_model(path, compile=False)
    faces = _faces(6, seed=3)
    ref = eager_proba(model, faces, "flip")
    for runtime in ("onnx", "tensorflow"):
        got = InferenceEngine(model, source=path, runtime=runtime).predict_proba(faces, "flip")
        np.testing.assert_allclose(got, ref, atol=0.03)  # bfloat16 keeps ~3 significant digits
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 5 / 6


def test_calls_never_exceed_max_crops(tiny, monkeypatch):
    engine = InferenceEngine(tiny, runtime="onnx", max_crops=40)
    sizes = []
    real = engine._runner("onnx")
    engine._runners["onnx"] = lambda x: (sizes.append(len(x)), real(x))[1]
    faces = _faces(9, seed=1)
    got = engine.predict_proba(faces, "tencrop")  # 90 crops
    assert max(sizes) <= 40 and sum(sizes) == 90
    np.testing.assert_allclose(got, eager_proba(tiny, faces, "tencrop"), atol=2e-5)
    assert engine.predict_proba(np.zeros((0, 48, 48), np.uint8), "tencrop").shape == (0, 7)


def test_runtime_choice_follows_the_cpu(tiny, monkeypatch):
    engine = InferenceEngine(tiny, runtime="auto")
    monkeypatch.setattr(engine_mod, "cpu_supports_bf16", lambda: False)
    assert engine.runtime_for(1) == "onnx" and engine.runtime_for(10_000) == "onnx"
    monkeypatch.setattr(engine_mod, "cpu_supports_bf16", lambda: True)
    assert engine.runtime_for(1) == "onnx"
    assert engine.runtime_for(engine_mod.BF16_MIN_CROPS) == "tensorflow"
    assert InferenceEngine(tiny, runtime="tensorflow").runtime_for(1) == "tensorflow"


def test_bad_runtime_is_refused(tiny, monkeypatch):
    with pytest.raises(ValueError, match="runtime must be one of"):
        InferenceEngine(tiny, runtime="cuda")
    monkeypatch.setenv("FER_RUNTIME", "gpu")
    with pytest.raises(ValueError, match="FER_RUNTIME must be one of"):
        InferenceEngine(tiny)


def test_onnx_form_is_cached_per_file(tiny_path, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE", str(tmp_path / "cache"))
    first = load_engine(tiny_path)
    first.predict_proba(_faces(1), "none")  # builds the onnx runtime
    cached = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(cached) == 1 and not list((tmp_path / "cache" / "onnx").glob("*.part"))
    stamp = cached[0].stat().st_mtime_ns
    second = InferenceEngine(first.model, source=tiny_path, runtime="onnx")
    np.testing.assert_allclose(
        second.predict_proba(_faces(2), "flip"), first.predict_proba(_faces(2), "flip"), atol=1e-6
    )
    assert cached[0].stat().st_mtime_ns == stamp  # read, not rewritten


def test_tensorflow_runtime_traces_once(tiny):
    engine = InferenceEngine(tiny, runtime="tensorflow", max_crops=64)
    for n in (1, 3, 7, 20):
        engine.predict_proba(_faces(n), "flip")
    assert engine._runners["tensorflow"].function.experimental_get_tracing_count() == 1


def test_engine_for_shares_one_engine_per_model(tiny, tiny_path):
    a = engine_for(tiny)
    assert engine_for(tiny, tiny_path) is a and a.source == tiny_path
