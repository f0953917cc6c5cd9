"""Export a Keras model to TFLite, ONNX or a TensorFlow SavedModel, with a parity check.

Every export is run on real faces from the bundled sample (``data/sample``) through the
exported runtime (TFLite interpreter, onnxruntime, TensorFlow) and compared with the
Keras model on the same inputs. The figures are written next to the export as
``OUT.parity.json`` and the model card is copied beside it (``card_path(OUT)``). An
export whose top-1 agreement with Keras is below `MIN_TOP1_AGREEMENT`, or that a converter
cannot produce or a runtime cannot load, is refused with a one-line `ExportError` and
nothing is left at ``OUT``.

Models trained under ``mixed_bfloat16`` compute in bfloat16. The TFLite converter cannot
lower bfloat16 ops without TF Select, and tf2onnx writes a bfloat16 graph onnxruntime
refuses to load; so when the model as trained fails, a float32 clone (the same
architecture rebuilt under the float32 policy, with the same float32 weights) is
exported instead, and the parity check still compares against the original model.

Exported models take the same input as the Keras model: float32 (N, crop, crop, 1),
raw 0-255 gray pixels (NHWC), and return (N, classes) softmax probabilities in the
card's label order. Crop geometry and test-time augmentation are the card's business.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_core.card import card_path, label_mapping, load_card
from fer_core.data import load_dataset
from fer_core.errors import FerError
from fer_core.jsonio import write_json_atomic
from fer_core.preprocess import tta_views

FORMATS: tuple[str, ...] = ("tflite", "onnx", "savedmodel")
# Top-1 agreement with the Keras model below this refuses the export: an export that changes
# the predicted emotion of more than 1 face in 100 is not the same model.
MIN_TOP1_AGREEMENT = 0.99
# The faces the parity check runs on.
SAMPLE_DATA = Path(__file__).resolve().parent.parent / "data" / "sample"
# ONNX opset: 17 is read by every onnxruntime since 1.13 and covers every op the ResNets use.
ONNX_OPSET = 17

Runner = Callable[[np.ndarray], np.ndarray]


class ExportError(FerError, ValueError):
    """An export that cannot be made or fails its parity check; the message says why."""


def parity_path(out: str | Path) -> Path:
    """Where the parity figures of an export are written: ``OUT.parity.json``."""
    out = Path(out)
    return out.with_name(out.name + ".parity.json")


def is_mixed_precision(model) -> bool:
    """True when any layer computes in a dtype other than float32 (e.g. mixed_bfloat16)."""
    from fer_core.model import all_layers

    return any(layer.dtype_policy.compute_dtype != "float32" for layer in all_layers(model))


def float32_clone(model):
    """The same architecture rebuilt under the float32 policy, with the model's weights.

    Mixed-precision layers keep float32 variables, so the weights copy over exactly; only
    the arithmetic changes (bfloat16 -> float32).

    Args:
        model: a functional `keras.Model`.

    Returns:
        A new `keras.Model` whose every layer computes in float32.
    """
    config = _float32_config(model.get_config())
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def _float32_config(obj):
    """Replace every serialized dtype policy in a Keras config by "float32"."""
    if isinstance(obj, dict):
        if obj.get("class_name") in ("DTypePolicy", "FloatDTypePolicy", "DTypePolicyMap"):
            return "float32"
        return {k: _float32_config(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_float32_config(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- converters


def _export_savedmodel(model, path: Path) -> None:
    model.export(str(path), format="tf_saved_model", verbose=False)


def _export_tflite(model, path: Path) -> None:
    import tensorflow as tf

    # Keras 3 models convert through a SavedModel; from_keras_model goes the same way.
    tmp = path.with_name(path.name + ".savedmodel-tmp")
    try:
        _export_savedmodel(model, tmp)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp))
        path.write_bytes(converter.convert())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _export_onnx(model, path: Path) -> None:
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name="image"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=ONNX_OPSET, output_path=str(path))


_EXPORTERS = {"tflite": _export_tflite, "onnx": _export_onnx, "savedmodel": _export_savedmodel}


# ----------------------------------------------------------------------------- runtimes


def load_runner(path: str | Path, fmt: str) -> Runner:
    """Load an exported model in its own runtime as a function (N, H, W, 1) -> (N, classes).

    Args:
        path: the exported file (tflite, onnx) or folder (savedmodel).
        fmt: one of `FORMATS`.

    Returns:
        A callable taking float32 raw 0-255 NHWC input and returning float32 probabilities.
    """
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: np.asarray(session.run(None, {name: x})[0], np.float32)
    if fmt == "tflite":
        import tensorflow as tf

        with warnings.catch_warnings():  # tf.lite.Interpreter's move-to-LiteRT notice
            warnings.simplefilter("ignore")
            interp = tf.lite.Interpreter(model_path=str(path))
        inp = interp.get_input_details()[0]["index"]
        out = interp.get_output_details()[0]["index"]

        def run(x: np.ndarray) -> np.ndarray:
            interp.resize_tensor_input(inp, x.shape)
            interp.allocate_tensors()
            interp.set_tensor(inp, x)
            interp.invoke()
            return np.array(interp.get_tensor(out), np.float32)

        return run
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        return lambda x: np.asarray(loaded.serve(tf.constant(x)), np.float32)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}. Received: fmt={fmt!r}")


def _batched(run: Runner, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    return np.concatenate([run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


# ----------------------------------------------------------------------------- parity


def parity_inputs(crop_size: int, data: str | Path = SAMPLE_DATA) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Real faces as model input: every sample face, centre crop and its mirror image.

    Args:
        crop_size: the model's input side (the card's ``input.crop_size``).
        data: a dataset root `fer_core.data.load_dataset` reads (default: the bundled sample).

    Returns:
        (views float32 (2N, crop, crop, 1), labels (2N,), the dataset's class names).
    """
    ds = load_dataset(data)
    views = tta_views(ds.images, crop_size, "flip")  # (2, N, c, c, 1)
    return views.reshape(-1, *views.shape[2:]), np.tile(ds.labels, len(views)), ds.class_names


def compare(reference: np.ndarray, exported: np.ndarray) -> dict:
    """Parity figures between two (N, classes) probability arrays.

    Returns:
        {"max_abs_diff", "mean_abs_diff", "top1_agreement", "top1_disagreements"}.
    """
    diff = np.abs(reference.astype(np.float64) - exported.astype(np.float64))
    agree = reference.argmax(axis=1) == exported.argmax(axis=1)
    return {
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "top1_agreement": float(agree.mean()) if agree.size else 1.0,
        "top1_disagreements": int((~agree).sum()),
    }


def _accuracy(probs: np.ndarray, labels: np.ndarray, data_names, card_labels) -> float | None:
    """Top-1 accuracy against the dataset labels, when its class names match the card's."""
    try:
        to_card = label_mapping(data_names, card_labels)
    except ValueError:
        return None
    return float((probs.argmax(axis=1) == to_card[labels]).mean())


# ----------------------------------------------------------------------------- export


def export_model(
    model_path: str | Path,
    fmt: str,
    out: str | Path,
    *,
    data: str | Path = SAMPLE_DATA,
    allow_float32_clone: bool = True,
    min_agreement: float = MIN_TOP1_AGREEMENT,
) -> dict:
    """Export a Keras model, check it against Keras on real faces, and write it only if it passes.

    Args:
        model_path: a ``.keras`` file with its card JSON beside it.
        fmt: "tflite", "onnx" or "savedmodel".
        out: the exported file (tflite, onnx) or folder (savedmodel).
        data: the faces the parity check runs on (default: the bundled sample).
        allow_float32_clone: when the model as trained cannot be exported (bfloat16),
            try a float32 clone of it; False refuses instead.
        min_agreement: the least top-1 agreement with Keras that is accepted.

    Returns:
        The parity report, also written to `parity_path(out)`.

    Raises:
        ExportError: the converter or runtime fails on every variant tried, the parity
            check fails, or `out` is in the way; nothing is written at `out` then.
        CardError: the model has no usable card.
    """
    model_path, out = Path(model_path), Path(out)
    _check_request(model_path, fmt, out)
    card = load_card(model_path)
    crop = int(card["input"]["crop_size"])
    t0 = time.time()

    import keras

    model = keras.models.load_model(model_path, compile=False)
    x, labels, names = parity_inputs(crop, data)
    reference = _batched(lambda b: np.asarray(model(b, training=False), np.float32), x)

    variants = [("as trained", model)]
    mixed = is_mixed_precision(model)
    policy = _policy_name(model)
    if mixed and allow_float32_clone:
        variants.append(("float32 clone", None))  # built only if needed
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    attempts: list[dict] = []
    passed = _first_passing(fmt, model, variants, x, reference, tmp, min_agreement, attempts)
    if passed is None:
        _remove(tmp)
        raise ExportError(_refusal(fmt, model_path, policy, attempts, min_agreement, allow_float32_clone and mixed))
    variant, target, produced, figures = passed

    _remove(out)
    os.replace(tmp, out)
    report = {
        "format": fmt,
        "path": str(out),
        "source_model": str(model_path),
        "source_dtype_policy": policy,
        "exported_variant": variant,
        "attempts": attempts,
        "data": str(data),
        "inputs": int(len(x)),
        "inputs_note": "every face in the data, centre crop and its mirror image, raw 0-255 float32 NHWC",
        "reference": "the Keras model as trained" if target is reference else "the Keras model's float32 clone",
        **figures,
        "min_top1_agreement": min_agreement,
        **_passed_figures(reference, produced, labels, names, card["labels"]),
        "size_bytes": _size(out),
        "seconds": round(time.time() - t0, 1),
        "versions": _versions(fmt),
    }
    write_json_atomic(parity_path(out), report)
    write_json_atomic(card_path(out), _exported_card(card, report, model_path, out))
    return report


def _passed_figures(reference: np.ndarray, produced: np.ndarray, labels, names, card_labels) -> dict:
    """What the report says of an export that passed: its agreement with the model as trained and
    the accuracy of both on the parity faces (None where the data's labels do not fit the card)."""
    return {
        "vs_keras_as_trained": compare(reference, produced),
        "passed": True,
        "keras_accuracy": _accuracy(reference, labels, names, card_labels),
        "export_accuracy": _accuracy(produced, labels, names, card_labels),
    }


def _exported_card(card: dict, report: dict, model_path: Path, out: Path) -> dict:
    """The source model's card plus what the export is: format, file, input layout, parity figures."""
    crop = int(card["input"]["crop_size"])
    return {
        **card,
        "export": {
            "format": report["format"],
            "file": out.name,
            "source_model": str(model_path),
            "variant": report["exported_variant"],
            "input": {"name": "image", "shape": [None, crop, crop, 1], "dtype": "float32", "layout": "NHWC"},
            "parity": {k: report[k] for k in ("reference", "max_abs_diff", "top1_agreement", "inputs")},
        },
    }


def _check_request(model_path: Path, fmt: str, out: Path) -> None:
    """Refuse, before any work, a format, source or destination that cannot be used."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}. Received: {fmt!r}")
    if not model_path.is_file():
        raise ExportError(f"{model_path}: no such model file; pass --model PATH to a .keras file.")
    if out.resolve() == model_path.resolve() or card_path(out).resolve() == card_path(model_path).resolve():
        raise ExportError(f"{out}: would overwrite the source model or its card; choose another --out.")
    if out.is_dir() and any(out.iterdir()) and not (out / "saved_model.pb").exists():
        raise ExportError(f"{out}: a non-empty folder that is not a SavedModel is in the way; choose another --out.")


def _first_passing(fmt, model, variants, x, reference, tmp: Path, min_agreement: float, attempts: list[dict]):
    """Convert each variant into `tmp` in turn until one agrees with Keras on `x`.

    Returns (variant, Keras probabilities it was compared with, exported probabilities,
    figures) of the first that passes, or None; `attempts` gets one entry per variant tried.
    """
    for variant, m in variants:
        _remove(tmp)
        target = reference
        if m is None:
            m = float32_clone(model)
            # The gate compares like with like: the same weights computed in float32 by Keras.
            # What the bfloat16 -> float32 switch itself changes is reported apart.
            target = _batched(lambda b, m=m: np.asarray(m(b, training=False), np.float32), x)
        try:
            with _quiet_stderr():  # converters print pages of MLIR on failure; the reason is kept below
                _EXPORTERS[fmt](m, tmp)
            produced = _batched(load_runner(tmp, fmt), x)
        except Exception as exc:  # noqa: BLE001 - converters and runtimes raise many types
            attempts.append({"variant": variant, "error": _one_line(exc)})
            continue
        figures = compare(target, produced)
        attempts.append({"variant": variant, **figures})
        if figures["top1_agreement"] >= min_agreement:
            return variant, target, produced, figures
    return None


def _policy_name(model) -> str:
    from fer_core.model import all_layers

    names = sorted({layer.dtype_policy.name for layer in all_layers(model)} - {"float32"})
    return names[0] if names else "float32"


def _refusal(fmt, model_path, policy, attempts, min_agreement, tried_clone) -> str:
    last = attempts[-1]
    if "error" in last:
        why = last["error"]
    else:
        why = f"top-1 agreement with Keras {last['top1_agreement']:.2%} is below {min_agreement:.0%}"
    hint = "" if tried_clone or policy == "float32" else " (a float32 clone was not tried)"
    return f"cannot export {model_path} ({policy}) to {fmt}: {why}{hint}; nothing was written."


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    # Converter messages run to pages of MLIR; the first sentence names the problem.
    for marker in ("Some ops are not supported", "Type Error", "is neither a custom op"):
        i = text.find(marker)
        if i >= 0:
            text = text[i:]
            break
    return f"{type(exc).__name__}: {text[:240]}"


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C++ converter logs bypass Python's sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _versions(fmt: str) -> dict:
    import keras
    import tensorflow as tf

    v = {"tensorflow": tf.__version__, "keras": keras.__version__}
    if fmt == "onnx":
        import onnxruntime
        import tf2onnx

        v |= {"tf2onnx": tf2onnx.__version__, "onnxruntime": onnxruntime.__version__, "opset": ONNX_OPSET}
    return v
