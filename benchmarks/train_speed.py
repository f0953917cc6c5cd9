"""Training speed on this CPU: every installed Keras backend and TensorFlow setting, where a
training step spends its time, and the project's pipeline against a seed-style baseline.

Usage::

    python benchmarks/train_speed.py [--data ../shared/fer2013] [--width 24] [--max-images 1536] [--rounds 2]

The model is the shipped recipe's network (resnet18, width 24, 44x44 crops, batch 128,
SGD-Nesterov with weight decay, label smoothing), trained with Keras `fit` in float32 unless
the CPU runs bfloat16 natively. Every variant runs in its own process (backends and oneDNN are
chosen when the framework loads), one after the other, on the same real training faces; each
is compiled and warmed up untimed, then timed over `--rounds` fit calls of `--max-images`.

1. Backends and settings (model only: in-memory batches of centre crops, no augmentation):
   TensorFlow with oneDNN off (TensorFlow's own default on CPUs without AVX512-VNNI/BF16/AMX),
   TensorFlow with oneDNN on (what `fer_core` sets on x86), the same with Keras' own batch
   normalization instead of the fused kernel `fer_core.model.BatchNormalization` trains with,
   the same with XLA (`jit_compile`), float32 on CPUs that run bfloat16 natively, and Keras'
   torch and jax backends when those packages are installed (at the precision `auto` picks for
   the CPU, as TensorFlow's line). Rates are one batch over the median training step.
2. Where a step's time goes (project settings): the input pipeline alone, the forward pass,
   forward + backward, the same with batch normalization and ReLU made identities (what is
   left is the convolutions, adds and head), and the whole `fit` step (the rest is the
   optimizer and Keras); then the step's floating-point operations per image and rate.
3. (a) the project's pipeline (`make_datasets`: tf.data, one on-graph warp per batch; the
   settings `fer_core` picks for this CPU) against (b) a seed-style baseline as a notebook runs it:
   TensorFlow's default settings, float32, Keras' own layers, per-image augmentation in Python
   in the manner of Keras' old ImageDataGenerator, served by a `keras.utils.PyDataset`. Their ratio, and one
   full FER-2013 epoch projected from (a): training images at (a)'s rate plus the validation
   pass at its measured rate.

It prints figures (and the CPU they were taken on); it is not a test. Figures from different
CPUs are not comparable, and another busy process lowers every rate: the load average is
printed before and after each variant.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FER2013_TRAIN_IMAGES = 28_709
FER2013_VAL_IMAGES = 3_589
GOAL_RATIO = 2.5
DEFAULT_RUN = Path("/root/fer-runs/fer_resnet18_w24")

# name -> (environment, worker options). TF_ENABLE_ONEDNN_OPTS must be set before TensorFlow loads.
VARIANTS = {
    "tensorflow, oneDNN off": ({"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "0"}, {}),
    "tensorflow, oneDNN on": ({"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"}, {}),
    "tensorflow, oneDNN on, Keras batch norm": (
        {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"},
        {"keras_batchnorm": True},
    ),
    "tensorflow, oneDNN on, XLA": ({"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"}, {"jit": True}),
    # Only where the CPU runs bfloat16 natively (elsewhere every variant is float32 already).
    "tensorflow, oneDNN on, float32": (
        {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "1"},
        {"precision": "float32", "bf16_only": True},
    ),
    "torch": ({"KERAS_BACKEND": "torch"}, {}),
    "jax": ({"KERAS_BACKEND": "jax"}, {}),
}


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


# ----------------------------------------------------------------------------- workers (one process each)


def _load(args):
    """(cfg, dataset, training faces (n, 48, 48) uint8, one-hot labels) for a worker."""
    from fer_core.config import TrainConfig
    from fer_core.data import load_dataset

    cfg = TrainConfig(data=args.data, width=args.width, batch_size=args.batch_size, max_train_images=args.images)
    ds = load_dataset(cfg.data)
    train = ds.split("train")
    idx = np.sort(np.random.default_rng(cfg.seed).permutation(len(train))[: args.images])
    y = np.eye(len(ds.class_names), dtype=np.float32)[train.labels[idx]]
    return cfg, ds, train.images[idx], y


def _model(cfg, num_classes: int, steps: int, precision: str, jit: bool = False, keras_batchnorm: bool = False):
    import keras

    from fer_core.train import build_model

    keras.mixed_precision.set_global_policy(precision)
    model = build_model(cfg, num_classes, steps, fused_batchnorm=not keras_batchnorm)
    if jit:
        model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"], jit_compile=True)
    return model


def _step_timer():
    """A Keras callback collecting the wall-clock seconds of every training step (`.seconds`).

    Rates come from the median step, not from whole `fit` calls: with in-memory arrays this
    TensorFlow build sometimes returns from `fit` seconds after its last step, a wait that a
    long training run pays once per epoch at most.
    """
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self.t0)

    return StepTimer()


def _timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def worker_model(args) -> dict:
    """Model-only rate: fit on in-memory centre crops."""
    import keras

    from fer_core.hardware import cpu_supports_bf16
    from fer_core.preprocess import tta_views
    from fer_core.train import resolve_precision

    cfg, ds, faces, y = _load(args)
    x = tta_views(faces, cfg.crop_size, "none")[0]
    steps = len(x) // cfg.batch_size
    if keras.backend.backend() == "tensorflow":
        precision = resolve_precision(cfg.precision)
    else:  # the same choice as "auto", without loading TensorFlow into the other backend's process
        precision = "mixed_bfloat16" if cpu_supports_bf16() else "float32"
    precision = args.precision or precision
    model = _model(cfg, y.shape[1], steps, precision, args.jit, args.keras_batchnorm)
    model.fit(x[: 3 * cfg.batch_size], y[: 3 * cfg.batch_size], batch_size=cfg.batch_size, verbose=0)  # compile
    timer = _step_timer()
    secs = _timed(
        lambda: model.fit(x, y, batch_size=cfg.batch_size, epochs=1, verbose=0, shuffle=False, callbacks=[timer]),
        args.rounds,
    )
    return {"seconds": secs, "images": len(x), "precision": precision, "steps": timer.seconds, "batch": cfg.batch_size}


def training_flops(model) -> float:
    """About the floating-point operations of one training image: the multiply-adds of the
    convolutions and dense layers, twice for the forward pass and four times for the backward."""
    macs = 0
    for layer in model.layers:
        if type(layer).__name__ == "Conv2D":
            macs += np.prod(layer.output.shape[1:]) * np.prod(layer.kernel.shape[:3])
        elif type(layer).__name__ == "Dense":
            macs += np.prod(layer.kernel.shape)
    return 6.0 * float(macs)


def _convolutions_only(model):
    """A copy of `model` whose batch normalizations and ReLUs are identities: what the step
    would cost if those ops were free (convolutions, adds, pooling, the head)."""
    import keras

    config = model.get_config()
    for entry in config["layers"]:
        c = entry["config"]
        relu = entry["class_name"] == "Activation" and c["activation"] == "relu"  # not a Conv2D's own
        if entry["class_name"] == "BatchNormalization" or relu:
            entry.update(class_name="Identity", module="keras.layers", registered_name=None)
            entry["config"] = {"name": c["name"], "dtype": c["dtype"], "trainable": True}
            for node in entry["inbound_nodes"]:  # Identity takes no mask or training argument
                node["kwargs"] = {}
    return keras.Model.from_config(config)


def worker_profile(args) -> dict:
    """Where a training step's time goes, under the project's settings."""
    import keras
    import tensorflow as tf

    from fer_core.pipeline import make_datasets
    from fer_core.train import resolve_precision

    cfg, ds, faces, y = _load(args)
    precision = args.precision or resolve_precision(cfg.precision)
    train_ds, _, counts = make_datasets(ds, cfg, y.shape[1])
    steps = counts["train"] // cfg.batch_size
    batches = [b for _, b in zip(range(steps), train_ds, strict=False)]
    model = _model(cfg, y.shape[1], steps, precision)
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)

    @tf.function
    def forward(xb):
        return model(xb, training=True)

    convs = _convolutions_only(model)

    def gradients(net):
        @tf.function
        def forward_backward(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, net(xb, training=True))
            return tape.gradient(loss, net.trainable_variables)

        return forward_backward

    forward_backward = gradients(model)

    def run_pipeline():
        for _ in zip(range(steps), train_ds, strict=False):
            pass

    def run(fn, labels: bool = False):
        return lambda: [fn(*b[:2]) if labels else fn(b[0]) for b in batches]

    x_all = np.concatenate([b[0].numpy() for b in batches])
    y_all = np.concatenate([b[1].numpy() for b in batches])
    timer = _step_timer()
    parts = {
        "input pipeline alone": run_pipeline,
        "forward": run(forward),
        "forward + backward": run(forward_backward, labels=True),
        "  same, no batch norm or ReLU": run(gradients(convs), labels=True),
        "fit (+ optimizer, Keras)": lambda: model.fit(
            x_all, y_all, batch_size=cfg.batch_size, epochs=1, verbose=0, shuffle=False, callbacks=[timer]
        ),
    }
    out = {}
    for name, fn in parts.items():
        fn()  # trace / warm up
        timer.seconds.clear()
        out[name] = _timed(fn, args.rounds)
    # fit: the median step times the steps (see _step_timer), like the other parts' whole loops.
    out["fit (+ optimizer, Keras)"] = [float(np.median(timer.seconds)) * len(batches)] * args.rounds
    return {"seconds": out, "images": len(x_all), "precision": precision, "flops": training_flops(model)}


def worker_pipeline(args) -> dict:
    """(a) the project's pipeline and settings, with a validation pass; or (b) the baseline."""
    from fer_core.pipeline import make_datasets
    from fer_core.train import resolve_precision

    cfg, ds, faces, y = _load(args)
    steps = len(faces) // cfg.batch_size
    if args.variant == "a":
        precision = args.precision or resolve_precision(cfg.precision)
        train_ds, val_ds, _ = make_datasets(ds, cfg, y.shape[1])
        data = train_ds.repeat()
    else:
        precision = "float32"
        data = make_baseline_dataset(faces, y, cfg, steps, cfg.seed)
    model = _model(cfg, y.shape[1], steps, precision, keras_batchnorm=args.variant != "a")
    model.fit(data, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)  # compile
    timer = _step_timer()
    secs = _timed(
        lambda: model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[timer]),
        args.rounds,
    )
    out = {"seconds": secs, "images": steps * cfg.batch_size, "precision": precision}
    out.update(steps=timer.seconds, batch=cfg.batch_size)
    if args.variant == "a" and val_ds is not None:
        model.evaluate(val_ds.take(1), verbose=0)
        n_val = sum(len(b[1]) for b in val_ds)
        out["val_seconds"] = _timed(lambda: model.evaluate(val_ds, verbose=0), 1)[0]
        out["val_images"] = n_val
    return out


WORKERS = {"model": worker_model, "profile": worker_profile, "pipeline": worker_pipeline}


def spawn(
    kind: str,
    args,
    env: dict,
    variant: str = "",
    jit: bool = False,
    tf_defaults: bool = False,
    precision: str = "",
    keras_batchnorm: bool = False,
) -> dict:
    """Run one worker in a fresh process with `env`; its JSON result (or {"error": ...})."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, __file__, "--worker", kind, "--worker-out", str(out), "--data", args.data]
        cmd += ["--width", str(args.width), "--batch-size", str(args.batch_size), "--max-images", str(args.images)]
        cmd += ["--rounds", str(args.rounds), "--variant", variant] + (["--jit"] if jit else [])
        cmd += ["--tf-defaults"] if tf_defaults else []
        cmd += ["--precision", precision] if precision else []
        cmd += ["--keras-batchnorm"] if keras_batchnorm else []
        full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
        if tf_defaults:
            full_env.pop("TF_ENABLE_ONEDNN_OPTS", None)
        r = subprocess.run(cmd, env=full_env, capture_output=True, text=True)
        if r.returncode != 0 or not out.exists():
            lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
            return {"error": lines[-1] if lines else f"exit code {r.returncode}"}
        return json.loads(out.read_text())


def rate(result: dict) -> float:
    """Images/s of a worker's result: one batch over the median step (all fit calls when no steps)."""
    if result.get("steps"):
        return result["batch"] / float(np.median(result["steps"]))
    return result["images"] * len(result["seconds"]) / sum(result["seconds"])


def load_avg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Training images/s on this CPU: backends and settings, a step's breakdown, and the "
        "project's pipeline against a seed-style baseline.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--data", default=default_data(), help="dataset root (FER-2013 folder or CSV, class folders)")
    ap.add_argument("--width", type=int, default=24, help="ResNet-18 width (the shipped recipe: 24)")
    ap.add_argument("--batch-size", type=int, default=128, help="batch size")
    ap.add_argument("--max-images", dest="images", type=int, default=1536, help="training images per timed round")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds per variant")
    ap.add_argument("--skip", nargs="*", default=[], choices=["backends", "profile", "pipeline"], help="parts to skip")
    ap.add_argument("--run-dir", default=str(DEFAULT_RUN), help="a training run whose recorded epoch times to show")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to this file")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    ap.add_argument("--variant", default="", help=argparse.SUPPRESS)
    ap.add_argument("--jit", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tf-defaults", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--precision",
        default="",
        choices=["", "float32", "mixed_bfloat16"],
        help="one precision for every variant but the baseline (default: what fer_core picks for this CPU); "
        "float32 with ONEDNN_MAX_CPU_ISA=AVX2 approximates an AVX2-only CPU's setting on a newer one",
    )
    ap.add_argument("--keras-batchnorm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.images = (args.images // args.batch_size) * args.batch_size
    if args.images < args.batch_size:
        ap.error(f"--max-images must be at least one batch ({args.batch_size}).")

    if args.worker:
        if args.tf_defaults:  # TensorFlow loads before fer_core can set anything: its own defaults
            import tensorflow  # noqa: F401
        result = WORKERS[args.worker](args)
        Path(args.worker_out).write_text(json.dumps(result))
        return 0

    from fer_core.hardware import cpu_summary, cpu_supports_bf16

    installed = [b for b in ("tensorflow", "torch", "jax") if importlib.util.find_spec(b)]
    print("Training speed on this CPU")
    print(f"  CPU       {cpu_summary()}")
    print(f"  machine   {os.cpu_count()} CPU(s), Python {platform.python_version()}, backends installed: {installed}")
    print(f"  data      {args.data}: {args.images} training images per round, {args.rounds} round(s) per variant")
    print(f"  model     resnet18 width {args.width}, 44x44x1, batch {args.batch_size}, SGD-Nesterov, label smoothing")
    if args.precision:
        print(f"  precision {args.precision} for every variant but the baseline (--precision)")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if isa:
        print(f"  oneDNN    kernels limited to {isa} (ONEDNN_MAX_CPU_ISA): not this CPU's own speed")
    results: dict = {"cpu": cpu_summary(), "images": args.images, "width": args.width, "backends": {}}
    results.update(precision=args.precision or "auto", onednn_max_cpu_isa=isa)

    if "backends" not in args.skip:
        print("\n1. Backends and settings (model only, in-memory centre crops; median training step)")
        for name, (env, opts) in VARIANTS.items():
            if env["KERAS_BACKEND"] not in installed:
                print(f"  {name:<40} not installed")
                continue
            if opts.get("bf16_only") and (args.precision or not cpu_supports_bf16()):
                continue
            before = load_avg()
            r = spawn(
                "model",
                args,
                env,
                jit=opts.get("jit", False),
                precision=opts.get("precision", "") or args.precision,
                keras_batchnorm=opts.get("keras_batchnorm", False),
            )
            results["backends"][name] = r
            if "error" in r:
                print(f"  {name:<40} failed: {r['error'][:160]}")
            else:
                print(f"  {name:<40} {rate(r):7.1f} img/s  ({r['precision']}; load avg {before} -> {load_avg()})")

    if "profile" not in args.skip:
        print("\n2. Where a training step's time goes (project settings; per image)")
        r = spawn("profile", args, {}, precision=args.precision)
        results["profile"] = r
        if "error" in r:
            print(f"  failed: {r['error'][:200]}")
        else:
            for part, secs in r["seconds"].items():
                ms = 1000 * sum(secs) / (len(secs) * r["images"])
                print(f"  {part:<32} {ms:6.2f} ms/image  ({r['images'] / (sum(secs) / len(secs)):7.1f} img/s)")
            secs = r["seconds"]["forward + backward"]
            gflops = r["flops"] * r["images"] / (sum(secs) / len(secs)) / 1e9
            print(
                f"  compute   {r['flops'] / 1e9:.2f} GFLOP per training image; forward + backward ran at {gflops:.0f} GFLOP/s"
            )

    if "pipeline" not in args.skip:
        print("\n3. (a) project pipeline and settings vs (b) seed-style baseline under TensorFlow's defaults")
        a = spawn("pipeline", args, {}, variant="a", precision=args.precision)
        b = spawn("pipeline", args, {}, variant="b", tf_defaults=True)
        results["pipeline"] = {"a": a, "b": b}
        if "error" in a or "error" in b:
            print(f"  failed: {a.get('error') or b.get('error')}")
        else:
            ra, rb = rate(a), rate(b)
            ratio = ra / rb
            val_rate = a["val_images"] / a["val_seconds"] if a.get("val_seconds") else None
            train_s = FER2013_TRAIN_IMAGES / ra
            val_s = FER2013_VAL_IMAGES / val_rate if val_rate else 0.0
            print(
                f"  (a) project pipeline, {a['precision']:<16} {ra:7.1f} img/s   validation {val_rate or 0:7.1f} img/s"
            )
            print(f"  (b) seed-style baseline, {b['precision']:<14} {rb:7.1f} img/s")
            print(
                f"  ratio (a)/(b)                         {ratio:7.2f}x   goal {GOAL_RATIO}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'}"
            )
            print(
                f"  one FER-2013 epoch at (a)'s rates: {fmt_time(train_s)} training ({FER2013_TRAIN_IMAGES:,} images) "
                f"+ {fmt_time(val_s)} validation ({FER2013_VAL_IMAGES:,}) = {fmt_time(train_s + val_s)}"
            )
            results["pipeline"].update(
                {"ratio": round(ratio, 3), "epoch_seconds": round(train_s + val_s, 1), "rates": [ra, rb]}
            )
    recorded = recorded_epochs(Path(args.run_dir))
    if recorded:
        fastest = ", ".join(f"epoch {e}: {s:.0f} s" for e, s in recorded["fastest_recent"].items())
        print(
            f"\n  recorded by a real run in {recorded['run_dir']} ({recorded['run_config']}; seconds per epoch, "
            f"validation included): epoch 1: {recorded['epoch_1_seconds']:.0f} s; fastest recent: {fastest}"
        )
        results["recorded_run"] = recorded
    print(f"  load avg  {load_avg()} (end)")
    if args.json:
        results["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
        results["command"] = " ".join([Path(sys.executable).name, *sys.argv])
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"  JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
