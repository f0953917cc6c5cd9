"""Training speed: this project's pipeline against a seed-style baseline, same model, same images.

Usage::

    python benchmarks/train_speed.py [--data ../shared/fer2013] [--max-images 4096] [--rounds 2]

Both variants train the default architecture of `TrainConfig` (resnet18, width 32, 44x44
crops, batch 128, SGD-Nesterov with weight decay, label smoothing) with Keras `fit` on the
same real training faces, in one process, one after the other:

(a) project: `fer_core.train.make_datasets` (tf.data; random crop, flip, rotation,
    translation and zoom done on-graph as one projective warp per batch), the precision
    `resolve_precision("auto")` picks (mixed_bfloat16 on a CPU with AMX / avx512_bf16),
    `make_optimizer`.
(b) seed-style baseline: float32, augmentation in Python/NumPy per image in the manner of
    Keras' old ImageDataGenerator (rotation, shift, zoom composed into one affine matrix
    and applied with `scipy.ndimage.affine_transform`, order 1, "nearest" fill; random
    horizontal flip), then a random 44x44 crop, served by a `keras.utils.PyDataset` (Keras
    prefetches it on a background thread, as the old `fit_generator` queue did), same batch
    size and optimizer.

Each variant is compiled and warmed up first (not timed). Then the timed rounds alternate
a, b, a, b... Each round is one `fit` call of `--epochs` epochs of `--steps` batches
(default: one pass over `--max-images` images); its wall-clock time, fit overhead included,
counts. The rate of a variant is all its images over all its seconds. The ratio (a)/(b) is
printed against the speed-up goal (GOAL_RATIO, 2.5x or better), with the projected time of one full
FER-2013 training epoch (28,709 images) at (a)'s rate and, when the run folder exists, the
per-epoch seconds that a real training run recorded in its metrics.jsonl.

This prints figures; it is not a test. The load average is printed with them: on a shared
machine a background job lowers both rates, but the two variants share the same conditions,
so the ratio stays a fair comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FER2013_TRAIN_IMAGES = 28_709
GOAL_RATIO = 2.5
DEFAULT_RUN = Path("/root/fer-runs/fer_resnet18_w24")


def default_data() -> str:
    shared = REPO.parent / "shared" / "fer2013"
    return str(shared if shared.exists() else REPO / "data" / "sample")


# ----------------------------------------------------------------------------- the baseline


def idg_style_augment(img: np.ndarray, rng: np.random.Generator, cfg, crop: int) -> np.ndarray:
    """One 48x48 float32 face, augmented the way ImageDataGenerator.random_transform did it.

    rotation_range=cfg.rotation, width/height_shift_range=cfg.translation,
    zoom_range=cfg.zoom, horizontal_flip=True, fill_mode="nearest"; then a random crop.
    """
    from scipy import ndimage

    h, w = img.shape
    theta = np.deg2rad(rng.uniform(-cfg.rotation, cfg.rotation))
    tx = rng.uniform(-cfg.translation, cfg.translation) * h
    ty = rng.uniform(-cfg.translation, cfg.translation) * w
    zx, zy = rng.uniform(1 - cfg.zoom, 1 + cfg.zoom, 2)
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    m = rotation @ shift @ zoom
    # transform_matrix_offset_center: rotate and zoom about the image centre.
    ox, oy = h / 2 - 0.5, w / 2 - 0.5
    m = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]]) @ m @ np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    out = ndimage.affine_transform(img, m[:2, :2], m[:2, 2], order=1, mode="nearest")
    if rng.random() < 0.5:
        out = out[:, ::-1]
    y0, x0 = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    return out[y0 : y0 + crop, x0 : x0 + crop]


def make_baseline_dataset(x: np.ndarray, y: np.ndarray, cfg, steps: int, seed: int):
    """A keras.utils.PyDataset yielding (images, one-hot labels), augmented per image in Python."""
    import keras

    class SeedStyleBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()  # workers=1: Keras' tf.data wrapper prefetches on a background thread
            self.rng = np.random.default_rng(seed)
            self.per_pass = len(x) // cfg.batch_size
            self.order = self.rng.permutation(len(x))

        def __len__(self):
            return max(steps, self.per_pass)

        def __getitem__(self, i):
            i %= self.per_pass
            idx = self.order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            faces = x[idx].astype(np.float32)
            batch = np.stack([idg_style_augment(f, self.rng, cfg, cfg.crop_size) for f in faces])
            return batch[..., None], y[idx]

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(x))

    return SeedStyleBatches()


# ----------------------------------------------------------------------------- helpers


def build_model(cfg, precision: str, num_classes: int, steps: int):
    """The default architecture under `precision`, built and compiled by fer_core.train itself."""
    import keras

    from fer_core.train import build_model as build_training_model

    keras.mixed_precision.set_global_policy(precision)
    model = build_training_model(cfg, num_classes, steps)
    keras.mixed_precision.set_global_policy("float32")
    return model


def timed_fit(model, data, epochs: int, steps: int) -> tuple[float, float]:
    """(wall-clock seconds, this process's CPU seconds over all threads) of one fit call."""
    c0, t0 = time.process_time(), time.perf_counter()
    model.fit(data, epochs=epochs, steps_per_epoch=steps, verbose=0, shuffle=False)
    return time.perf_counter() - t0, time.process_time() - c0


def recorded_epochs(run_dir: Path) -> dict | None:
    """Per-epoch seconds from a training run's metrics.jsonl (and what that run trained)."""
    from fer_core.runs import read_metrics

    # One row per epoch; a resumed epoch: the last one counts.
    rows = {int(r["epoch"]): float(r["seconds"]) for r in read_metrics(run_dir)[0]}
    if not rows:
        return None
    epochs = sorted(rows)
    recent = epochs[-10:]
    fastest = sorted(recent, key=rows.get)[:3]
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
        what = (
            f"{cfg.get('arch')} width {cfg.get('width')}, batch {cfg.get('batch_size')}, erasing {cfg.get('erasing')}"
        )
    except (OSError, json.JSONDecodeError):
        what = "config.json unreadable"
    return {
        "run_dir": str(run_dir),
        "run_config": what,
        "epochs_recorded": len(epochs),
        "epoch_1_seconds": rows.get(1),
        "fastest_recent": {str(e): rows[e] for e in sorted(fastest)},
        "last": {str(epochs[-1]): rows[epochs[-1]]},
    }


def fmt_time(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Training images/s: the project's pipeline (tf.data + on-graph augmentation + auto "
        "precision) vs a seed-style baseline (float32 + per-image Python augmentation), same model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--data", default=default_data(), help="dataset root (FER-2013 folder or CSV, class folders)")
    ap.add_argument("--max-images", type=int, default=4096, help="training images used (rounded down to whole batches)")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds per variant, alternating a, b, a, b...")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per timed round (one fit call)")
    ap.add_argument("--steps", type=int, default=0, help="batches per epoch (0 = one pass over --max-images)")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed batches per variant (compilation)")
    ap.add_argument("--batch-size", type=int, default=0, help="batch size (0 = TrainConfig default)")
    ap.add_argument("--run-dir", default=str(DEFAULT_RUN), help="a training run whose recorded epoch times to show")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to this file")
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from fer_core.config import TrainConfig
    from fer_core.data import load_dataset
    from fer_core.hardware import cpu_summary, cpu_supports_bf16
    from fer_core.train import make_datasets, resolve_precision

    base = TrainConfig()
    batch = args.batch_size or base.batch_size
    n = (args.max_images // batch) * batch
    if n < batch:
        ap.error(f"--max-images must be at least one batch ({batch}).")
    cfg = TrainConfig(data=args.data, batch_size=batch, max_train_images=n).validated()

    ds = load_dataset(cfg.data)
    num_classes = len(ds.class_names)
    n_train = int((ds.splits == "train").sum())
    if n_train < n:
        n = (n_train // batch) * batch
        if n < batch:
            sys.exit(f"{cfg.data}: only {n_train} training images, fewer than one batch of {batch}.")
        cfg = TrainConfig(data=args.data, batch_size=batch, max_train_images=n).validated()
    steps = args.steps or n // batch
    per_round = args.epochs * steps * batch
    keras.utils.set_random_seed(cfg.seed)

    precision = resolve_precision(cfg.precision)
    print("Training speed: project pipeline (a) vs seed-style baseline (b)")
    print(
        f"  CPU       {cpu_summary()}\n"
        f"  machine   {os.cpu_count()} CPU(s), bf16-capable CPU: {cpu_supports_bf16()}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}"
    )
    print(f"  load avg  {' '.join(f'{v:.2f}' for v in os.getloadavg())} (before)")
    print(f"  data      {ds.root} ({ds.format}): {n} of {n_train} training images, {num_classes} classes")
    print(
        f"  model     {cfg.arch} width {cfg.width}, {cfg.crop_size}x{cfg.crop_size}x1, batch {batch}, "
        f"{cfg.optimizer} lr {cfg.learning_rate}, label smoothing {cfg.label_smoothing}"
    )
    print(f"  (a)       make_datasets (tf.data, on-graph warp per batch) + {precision}")
    print("  (b)       float32 + per-image scipy.ndimage affine (ImageDataGenerator-style) + random crop, PyDataset")
    print(
        f"  timing    {args.rounds} round(s) per variant, alternating; each round {args.epochs} epoch(s) x "
        f"{steps} batches = {per_round} images; warm-up {args.warmup_steps} batches untimed"
    )

    # (a) the project's pipeline
    train_ds, _, counts = make_datasets(ds, cfg, num_classes)
    assert counts["train"] == n, counts
    data_a = train_ds.repeat()
    model_a = build_model(cfg, precision, num_classes, steps)
    # (b) the seed-style baseline
    train = ds.split("train")
    idx = np.sort(np.random.default_rng(cfg.seed).permutation(len(train))[:n])  # the same images as (a)
    x_b, y_b = train.images[idx], np.eye(num_classes, dtype=np.float32)[train.labels[idx]]
    data_b = make_baseline_dataset(x_b, y_b, cfg, steps, cfg.seed)
    model_b = build_model(cfg, "float32", num_classes, steps)
    print(f"  params    {model_a.count_params():,} (both)\n")

    variants = {"a": (model_a, data_a), "b": (model_b, data_b)}
    for name, (model, data) in variants.items():
        secs, _ = timed_fit(model, data, 1, args.warmup_steps)
        print(f"  warm-up ({name}): {args.warmup_steps} batches in {secs:.1f} s (compilation included, not counted)")

    seconds: dict[str, list[float]] = {"a": [], "b": []}
    cpu: dict[str, list[float]] = {"a": [], "b": []}
    for r in range(args.rounds):
        for name, (model, data) in variants.items():
            secs, cpu_secs = timed_fit(model, data, args.epochs, steps)
            seconds[name].append(secs)
            cpu[name].append(cpu_secs)
            print(
                f"  round {r + 1} ({name}): {per_round} images in {secs:6.1f} s = {per_round / secs:6.1f} img/s"
                f"   (CPU {cpu_secs:6.1f} s)   load avg {os.getloadavg()[0]:.2f}",
                flush=True,
            )

    rate = {k: per_round * len(v) / sum(v) for k, v in seconds.items()}
    ratio = rate["a"] / rate["b"]
    epoch_a = FER2013_TRAIN_IMAGES / rate["a"]
    epoch_b = FER2013_TRAIN_IMAGES / rate["b"]
    cpu_ms = {k: 1000 * sum(v) / (per_round * len(v)) for k, v in cpu.items()}
    met = ratio >= GOAL_RATIO
    print("\nResults (wall clock; CPU = this process's CPU time over all threads, per image)")
    for k, label in (("a", f"(a) project pipeline, {precision}"), ("b", "(b) seed-style baseline, float32")):
        print(f"  {label:<40}{rate[k]:7.1f} img/s   ({sum(seconds[k]):.0f} s timed, CPU {cpu_ms[k]:.1f} ms/image)")
    print(
        f"  {'ratio (a)/(b)':<40}{ratio:7.2f}x      goal {GOAL_RATIO}x: {'met' if met else 'NOT met'}"
        f"   (CPU-time ratio (b)/(a): {cpu_ms['b'] / cpu_ms['a']:.2f}x)"
    )
    print(
        f"  one FER-2013 training epoch ({FER2013_TRAIN_IMAGES:,} images), projected from the rates above, "
        f"training only (no validation):\n"
        f"      (a) {fmt_time(epoch_a)}   (b) {fmt_time(epoch_b)}"
    )
    recorded = recorded_epochs(Path(args.run_dir))
    if recorded:
        fastest = ", ".join(f"epoch {e}: {s:.0f} s" for e, s in recorded["fastest_recent"].items())
        last_e, last_s = next(iter(recorded["last"].items()))
        print(
            f"  recorded by a real run in {recorded['run_dir']} ({recorded['run_config']}; the 'seconds' of its "
            f"epoch rows, validation included, {recorded['epochs_recorded']} epochs so far):\n"
            f"      epoch 1: {recorded['epoch_1_seconds']:.0f} s; fastest of the last 10: {fastest}; "
            f"latest (epoch {last_e}): {last_s:.0f} s"
        )
    print(f"  load avg  {' '.join(f'{v:.2f}' for v in os.getloadavg())} (after)")
    print(
        "  Note: absolute rates depend on what else runs on the machine; (a) and (b) ran in the same process,\n"
        "  alternating, under the same conditions, so their ratio is the fair comparison."
    )

    if args.json:
        out = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": {
                "cpus": os.cpu_count(),
                "bf16_cpu": cpu_supports_bf16(),
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            },
            "data": ds.root,
            "images": n,
            "batch_size": batch,
            "model": {
                "arch": cfg.arch,
                "width": cfg.width,
                "crop_size": cfg.crop_size,
                "params": model_a.count_params(),
            },
            "precision_a": precision,
            "round_images": per_round,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "cpu_ms_per_image": {k: round(v, 2) for k, v in cpu_ms.items()},
            "images_per_s": {k: round(v, 2) for k, v in rate.items()},
            "ratio": round(ratio, 3),
            "goal_ratio": GOAL_RATIO,
            "goal_met": met,
            "projected_fer2013_epoch_seconds": {"a": round(epoch_a, 1), "b": round(epoch_b, 1)},
            "recorded_run": recorded,
            "load_average_after": os.getloadavg(),
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"  JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
