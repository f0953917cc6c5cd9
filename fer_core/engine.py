"""The one way a model is run for inference: compiled once per process, batches bounded in crops.

Every path that classifies faces (evaluation, the end of a training run, promote and
ensemble, predict, video, the webcam, serve, the Evaluate page, Grad-CAM's class choice)
goes through `InferenceEngine.predict_proba`, the TTA views of `fer_core.preprocess`.

Two runtimes, chosen per call by measurement (``benchmarks/inference.py`` prints both):

- **onnxruntime** on the model's float32 form (converted in-process with tf2onnx, cached on
  disk per model file). Fastest for small batches on every CPU measured (one face of the
  shipped three-network model: 7 ms against 21 ms for bfloat16 TensorFlow on an
  avx512_bf16 EPYC; 10.5 against 28 ms on an AVX2-only one), and for every batch size on
  CPUs without native bfloat16.
- **TensorFlow**, one `tf.function` with a fixed input signature (traced once, never
  again) over the model in bfloat16, used only on CPUs with AMX/avx512_bf16 and only for
  calls of at least `BF16_MIN_CROPS` crops, where it beats onnxruntime (1.5x at 256 crops
  on the avx512_bf16 EPYC).

On a CPU without native bfloat16 nothing computes in bfloat16 (emulated bf16 is slower
than float32), the same check training's ``precision=auto`` makes.

Memory stays bounded: views are built and run `max_crops` at a time, so ten-crop TTA or a
whole dataset costs no more than one batch (one eager ten-crop call of 2,560 crops would
peak at several GB).
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_core.card import load_model_file
from fer_core.data import default_cache_dir
from fer_core.export import ONNX_OPSET, _export_onnx, float32_clone, is_mixed_precision
from fer_core.hardware import cpu_supports_bf16
from fer_core.preprocess import tta_views

RUNTIMES = ("auto", "onnx", "tensorflow")
# Crops per model call: memory is bounded by this, whatever the TTA or the number of faces.
MAX_CROPS = 256
# From this many crops in one call, bfloat16 TensorFlow beats onnxruntime on AMX/avx512_bf16 CPUs
# (measured crossover 10-64 crops on an avx512_bf16 EPYC; below it onnxruntime's lower overhead wins).
BF16_MIN_CROPS = 32

Runner = Callable[[np.ndarray], np.ndarray]


def default_runtime() -> str:
    """$FER_RUNTIME (auto | onnx | tensorflow) or auto."""
    value = os.environ.get("FER_RUNTIME", "auto") or "auto"
    if value not in RUNTIMES:
        raise ValueError(f"FER_RUNTIME must be one of {', '.join(RUNTIMES)}. Received: FER_RUNTIME={value!r}")
    return value


def _cache_dir() -> Path:
    return default_cache_dir() / "onnx"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:32]


def onnx_bytes(model, source: str | Path | None = None) -> bytes:
    """The model as an ONNX graph (float32, input (N, crop, crop, 1) raw 0-255, output probabilities).

    With `source` (the model's .keras file) the graph is cached in ``$FER_CACHE/onnx`` under
    the file's content hash and the converter's version, so a model is converted once per
    machine (a few seconds for one network, ~12 s for a three-network ensemble).
    """
    import tf2onnx

    cached = None
    if source is not None and Path(source).is_file():
        key = f"{_file_digest(Path(source))}-tf2onnx{tf2onnx.__version__}-opset{ONNX_OPSET}"
        cached = _cache_dir() / f"{key}.onnx"
        if cached.is_file():
            return cached.read_bytes()
    f32 = float32_clone(model) if is_mixed_precision(model) else model
    out = (cached or _cache_dir() / f"tmp-{os.getpid()}-{id(model)}.onnx").with_suffix(f".{os.getpid()}.part")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        _export_onnx(f32, out)
        data = out.read_bytes()
        if cached is not None:
            os.replace(out, cached)
        return data
    finally:
        out.unlink(missing_ok=True)


def _onnx_runner(model, source) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # No busy-waiting between calls: the live paths share the CPU with video decoding and encoding
    # (and often the browser). Measured on a busy 2-core EPYC, one face of the shipped model:
    # 25.1 ms with onnxruntime's default spinning, 12.8 ms without.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(onnx_bytes(model, source), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: np.asarray(session.run(None, {name: x})[0], np.float32)


def _tf_runner(model) -> Runner:
    import tensorflow as tf

    if is_mixed_precision(model) and not cpu_supports_bf16():
        model = float32_clone(model)
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(fn(x), np.float32)

    run.function = fn  # for tests: fn.experimental_get_tracing_count() stays 1
    return run


class InferenceEngine:
    """A model's forward pass, compiled once, for (N, 48, 48) uint8 faces.

    Args:
        model: a loaded Keras model (input (N, crop, crop, 1) raw 0-255, output probabilities).
        source: the model's .keras file, if any (its ONNX conversion is then cached on disk).
        runtime: "auto" (onnxruntime, or bfloat16 TensorFlow for large calls on CPUs that
            compute bfloat16 natively), "onnx" or "tensorflow"; None -> $FER_RUNTIME or auto.
        max_crops: at most this many crops per model call.

    Thread-safe: runtimes are built once under a lock; onnxruntime sessions and
    tf.functions may be called from several threads.
    """

    def __init__(
        self, model, *, source: str | Path | None = None, runtime: str | None = None, max_crops: int = MAX_CROPS
    ):
        runtime = runtime or default_runtime()
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}. Received: runtime={runtime!r}")
        if max_crops < 10:
            raise ValueError(f"max_crops must be at least 10 (one ten-crop face). Received: max_crops={max_crops}")
        self.model = model
        self.source = source
        self.runtime = runtime
        self.max_crops = int(max_crops)
        self.crop_size = int(model.input_shape[1])
        self.num_classes = int(model.output_shape[-1])
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        built = ", ".join(self._runners) or "none yet"
        return f"InferenceEngine(runtime={self.runtime!r}, max_crops={self.max_crops}, built: {built})"

    def runtime_for(self, crops: int) -> str:
        """The runtime a call of `crops` crops uses."""
        if self.runtime != "auto":
            return self.runtime
        return "tensorflow" if cpu_supports_bf16() and crops >= BF16_MIN_CROPS else "onnx"

    def _runner(self, name: str) -> Runner:
        runner = self._runners.get(name)
        if runner is None:
            with self._lock:
                runner = self._runners.get(name)
                if runner is None:
                    runner = _onnx_runner(self.model, self.source) if name == "onnx" else _tf_runner(self.model)
                    self._runners[name] = runner
        return runner

    def run(self, views: np.ndarray, runtime: str | None = None) -> np.ndarray:
        """Probabilities (M, C) for model-ready views (M, crop, crop, 1), `max_crops` at a time."""
        views = np.ascontiguousarray(views, dtype=np.float32)
        if len(views) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        runner = self._runner(runtime or self.runtime_for(len(views)))
        return np.concatenate([runner(views[i : i + self.max_crops]) for i in range(0, len(views), self.max_crops)])

    def predict_proba(self, faces: np.ndarray, tta: str = "none", progress: Callable[[int, int], None] | None = None):
        """Class probabilities (N, C) for (N, 48, 48) uint8 faces, averaged over the TTA views.

        Args:
            faces: (N, 48, 48) uint8 gray faces (or one (48, 48) face).
            tta: "none", "flip" or "tencrop" (see `fer_core.preprocess.tta_views`).
            progress: called as progress(faces done, faces in all) after each batch.
        """
        return self.predict_views(faces, tta, progress).mean(axis=0)

    def predict_views(self, faces: np.ndarray, tta: str = "none", progress: Callable[[int, int], None] | None = None):
        """Class probabilities of every TTA view, (V, N, C) in `tta_views`' order (not averaged)."""
        faces = np.asarray(faces)
        if faces.ndim == 2:
            faces = faces[None]
        n_views = len(tta_views(np.zeros((1, 48, 48), np.uint8), self.crop_size, tta))
        out = np.empty((n_views, len(faces), self.num_classes), np.float32)
        per_batch = max(1, self.max_crops // n_views)
        # One runtime for the whole call, so a small last batch is not computed differently.
        runtime = self.runtime_for(min(len(faces), per_batch) * n_views)
        for start in range(0, len(faces), per_batch):
            views = tta_views(faces[start : start + per_batch], self.crop_size, tta)
            v, n = views.shape[:2]
            out[:, start : start + n] = self.run(views.reshape(v * n, *views.shape[2:]), runtime).reshape(v, n, -1)
            if progress is not None:
                progress(start + n, len(faces))
        return out

    def warmup(self) -> InferenceEngine:
        """Build and run the runtimes a live call uses once, so the first real frame is not the slow one."""
        self.predict_proba(np.zeros((1, 48, 48), np.uint8))
        return self


# model -> its engine; weak keys so a model dropped from a cache frees its engine too.
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def engine_for(model, source: str | Path | None = None) -> InferenceEngine:
    """The process's engine for a loaded model (built on first use, then shared).

    Pass `source` (the model's file) where the model was loaded, so its ONNX form is cached on disk.
    """
    with _ENGINES_LOCK:
        engine = _ENGINES.get(model)
        if engine is None:
            engine = _ENGINES[model] = InferenceEngine(model, source=source)
        if engine.source is None and source is not None:
            engine.source = source
        return engine


def load_engine(path: str | Path) -> InferenceEngine:
    """Load a .keras model file and return its engine (the Keras model is ``engine.model``).

    Raises:
        CardError: the file is missing, truncated or not a Keras model (one line saying which).
    """
    return engine_for(load_model_file(path), path)
