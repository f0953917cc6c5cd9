"""Training: a run from its config to a run folder with a model, metrics and an evaluation.

Reads top to bottom: precision and strategy, optimiser and model, warm start, the entry
point `train(config, run_dir)` and its steps: data, model, callbacks, fit, final evaluation.
The CLI (`python -m fer_core train`) and the dashboard's jobs call `train` in their own
process. The pieces live in their own modules: augmentation (`fer_core.augment`), the
tf.data pipeline (`fer_core.pipeline`), distillation (`fer_core.distill`) and the callbacks
that write the run folder (`fer_core.callbacks`, imported inside the functions that train:
it loads Keras).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import traceback
from dataclasses import asdict
from pathlib import Path

from fer_core.augment import stream_seed
from fer_core.card import card_path
from fer_core.config import ConfigError, TrainConfig
from fer_core.distill import cached_teacher_targets, distillation_loss, label_accuracy, load_teacher, teacher_origin
from fer_core.hardware import cpu_supports_bf16, training_runtime
from fer_core.jsonio import now_iso, read_json
from fer_core.pipeline import make_datasets
from fer_core.runs import (
    BACKUP_DIR,
    BEST_FILE,
    CONFIG_FILE,
    EPOCHS_DIR,
    METRICS_FILE,
    MODEL_FILE,
    STATUS_FILE,
    STOP_FILE,
    WORKERS_DIR,
    backup_epoch,
    update_status,
)

# ----------------------------------------------------------------------------- hardware


def resolve_precision(precision: str) -> str:
    """Map "auto" to mixed_bfloat16 on a GPU or a bf16-capable CPU, else float32."""
    if precision != "auto":
        return precision
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU") or cpu_supports_bf16():
        return "mixed_bfloat16"
    return "float32"


def make_strategy(name: str):
    """The tf.distribute strategy for a config's `strategy` setting."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("strategy=multiworker needs the TF_CONFIG environment variable (cluster and task).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def worker_info() -> tuple[bool, int]:
    """(is_chief, task index) from TF_CONFIG; a single process is the chief."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    return (kind == "chief" or (kind == "worker" and index == 0)), index


# ----------------------------------------------------------------------------- optimiser and model


def make_schedule(cfg: TrainConfig, steps_per_epoch: int):
    """A Keras LearningRateSchedule (cosine with warmup) or a float (plateau / constant)."""
    import keras

    if cfg.schedule != "cosine":
        return cfg.learning_rate
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else cfg.learning_rate,
        decay_steps=max(1, total - warmup),
        alpha=0.0,
        warmup_target=cfg.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int):
    import keras

    lr = make_schedule(cfg, steps_per_epoch)
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    else:
        return keras.optimizers.Adam(lr)
    # Decay conv/dense kernels only: shrinking BatchNorm scales and biases just fights the normalisation.
    opt.exclude_from_weight_decay(var_names=["_bn", "bias"])
    return opt


def build_model(cfg: TrainConfig, num_classes: int, steps_per_epoch: int, fused_batchnorm: bool = True):
    """The config's architecture, compiled with its optimizer, schedule and loss (under the
    current mixed-precision policy and distribution scope); with a teacher, the distillation
    loss on [one-hot | teacher] targets. `fused_batchnorm` (the default; False only to compare
    speeds) trains with `fer_core.model.BatchNormalization`'s fused kernel."""
    import keras

    from fer_core.model import create_model

    model = create_model(
        cfg.arch,
        width=cfg.width,
        input_shape=(cfg.crop_size, cfg.crop_size, 1),
        num_classes=num_classes,
        dropout=cfg.dropout,
        fused_batchnorm=fused_batchnorm,
    )
    if cfg.teacher:
        loss = distillation_loss(num_classes, cfg.distill_temperature, cfg.distill_alpha, cfg.label_smoothing)
        metrics = [label_accuracy(num_classes)]
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
        metrics = ["accuracy"]
    model.compile(optimizer=make_optimizer(cfg, steps_per_epoch), loss=loss, metrics=metrics)
    return model


# ----------------------------------------------------------------------------- warm start


def initial_weights_origin(cfg: TrainConfig) -> dict:
    """Check `cfg.init_weights` before any training starts; return what the run's card records.

    The file must exist and, when it has a model card, that card must describe the same
    architecture, width and crop size (the error names the setting that differs).
    """
    from fer_core.card import card_path, load_card

    src = Path(cfg.init_weights)
    if not src.is_file():
        raise ConfigError(
            f"init_weights: {src} not found; give a trained network's .keras file (e.g. runs/<run>/model.keras)."
        )
    origin: dict = {"path": str(src)}
    if not card_path(src).exists():
        return origin
    card = load_card(src)
    trained = card.get("training") or {}
    if card.get("members"):
        raise ConfigError(
            f"init_weights: {src} is an ensemble of {len(card['members'])} networks; a warm start needs one network "
            "with this run's architecture (e.g. runs/<run>/model.keras). An ensemble can be a teacher instead."
        )
    wanted = {"arch": cfg.arch, "width": cfg.width, "crop_size": cfg.crop_size}
    have = {"arch": trained.get("arch"), "width": trained.get("width"), "crop_size": card["input"]["crop_size"]}
    differ = [f"{k} {have[k]} (this run: {v})" for k, v in wanted.items() if have[k] is not None and have[k] != v]
    if differ:
        raise ConfigError(
            f"init_weights: {src} has {', '.join(differ)}; give this run the same architecture, width and crop size."
        )
    metrics = card.get("metrics") or {}
    origin.update(
        name=card.get("name"),
        source_run=card.get("source_run"),
        val_accuracy=metrics.get("val_accuracy"),
        tta=card.get("tta"),
        epochs_finished=(card.get("training_history") or {}).get("epochs_finished"),
    )
    return origin


def check_start_models(cfg: TrainConfig) -> None:
    """Check the model files a new run starts from (warm start, teacher) before it launches: a missing
    or mismatched file is a one-line ConfigError. The teacher's labels are matched to the data at start."""
    if cfg.init_weights:
        initial_weights_origin(cfg)
    if cfg.teacher:
        teacher_origin(cfg, ())


def load_initial_weights(model, cfg: TrainConfig) -> dict:
    """Copy the weights of the model file `cfg.init_weights` into `model` (a warm start)."""
    origin = initial_weights_origin(cfg)
    try:
        model.load_weights(cfg.init_weights)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"init_weights: {cfg.init_weights} does not fit this model ({first}).") from exc
    return origin


# ----------------------------------------------------------------------------- entry point


def train(cfg: TrainConfig, run_dir: str | Path, *, resume: bool = False) -> dict:
    """Train a model as described by `cfg`, writing the run folder. Returns the final status.

    Never raises for a training failure: the error goes to status.json (state "failed")
    and is re-raised only for programming errors in the caller's arguments.
    """
    cfg = cfg.validated()
    run_dir, write = _prepare_run_folder(cfg, Path(run_dir), resume)
    update_status(
        run_dir,
        state="running",
        pid=os.getpid(),
        started=now_iso(),
        finished=None,
        error=None,
        epochs=cfg.epochs,
        resumed=resume and (run_dir / BACKUP_DIR).exists(),
    )
    try:
        result = _train(cfg, run_dir, write=write)
    except KeyboardInterrupt:
        update_status(run_dir, state="stopped", finished=now_iso(), error="interrupted")
        raise
    except Exception as exc:  # noqa: BLE001 - every failure must reach status.json
        return _record_failure(run_dir, exc)
    return update_status(run_dir, **result, finished=now_iso())


def _prepare_run_folder(cfg: TrainConfig, run_dir: Path, resume: bool) -> tuple[Path, bool]:
    """(the folder this process writes, whether its files count): a new run starts from a clean
    folder with its config; a non-chief worker writes apart from the chief, in workers/<index>."""
    run_dir.mkdir(parents=True, exist_ok=True)
    is_chief, index = worker_info()
    if not is_chief:  # other workers write their (ignored) files apart from the chief's
        run_dir = run_dir / WORKERS_DIR / str(index)
        run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        cfg.save(run_dir / CONFIG_FILE)
        for stale in (METRICS_FILE, BEST_FILE):
            (run_dir / stale).unlink(missing_ok=True)
        shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)
        shutil.rmtree(run_dir / EPOCHS_DIR, ignore_errors=True)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    return run_dir, is_chief


def _record_failure(run_dir: Path, exc: Exception) -> dict:
    """Write a failed run's one-line error (with a hint for running out of memory or disk) to
    status.json and return the status; if even that cannot be written, print it instead."""
    msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if "OOM" in msg or isinstance(exc, MemoryError):
        msg += " (out of memory: lower batch_size or width)"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        msg += " (disk full: free some space, then resume; finished epochs are kept)"
    traceback.print_exc()
    try:
        update_status(run_dir, state="failed", finished=now_iso(), error=msg)
    except OSError as write_exc:  # e.g. still no space: say it where it can be seen
        print(f"error: could not record the failure in status.json ({write_exc}): {msg}", file=sys.stderr)
        return {"state": "failed", "error": msg}
    return read_json(run_dir / STATUS_FILE, {})


def _train(cfg: TrainConfig, run_dir: Path, *, write: bool) -> dict:
    """The run itself, in this process: {"state": "finished", "eval": ...} or {"state": "stopped"}."""
    import keras

    from fer_core.callbacks import StopRequested
    from fer_core.data import load_dataset

    # A resumed process seeds its data order and augmentation anew (the restored weights make
    # the initialisation moot); with the config's seed it would replay epoch 1's batches.
    resume_point = backup_epoch(run_dir)
    seed = stream_seed(cfg.seed, resume_point)
    keras.utils.set_random_seed(seed)
    precision, strategy, runtime = _set_up_hardware(cfg)

    ds = load_dataset(cfg.data)
    num_classes = len(ds.class_names)
    teacher, teacher_targets, distilled_from = _teacher(cfg, ds, run_dir if write else None)
    train_ds, val_ds, counts = make_datasets(
        ds, cfg, num_classes, shuffle_seed=seed, teacher=teacher, teacher_targets=teacher_targets
    )
    if seed != cfg.seed:
        print(f"resumed after epoch {resume_point}: data order and augmentation seeded {seed}", flush=True)
    steps = math.ceil(counts["train"] / cfg.batch_size)
    print(
        f"data {ds.root} ({ds.format}): train {counts['train']}, val {counts['val']}, test {counts['test']}", flush=True
    )

    model = _compiled_model(cfg, num_classes, steps, strategy)
    origins = {"init_from": _warm_start(model, cfg, run_dir), "distilled_from": distilled_from}
    from fer_core.model import batchnorm_kernel

    runtime = {**runtime, "batchnorm": batchnorm_kernel(model)}
    card_fn = _card_maker(cfg, run_dir, ds, model, {"precision_resolved": precision, "runtime": runtime}, origins)
    logger, callbacks = _callbacks(cfg, run_dir, steps, counts["train"], write, card_fn, val_ds is not None)

    try:
        # shuffle=False: the tf.data pipeline shuffles (Keras would only warn that it cannot).
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=0, shuffle=False)
    except StopRequested:  # a stop mid-epoch: that epoch is discarded
        return {"state": "stopped"}
    if logger.stopped:  # a stop on an epoch's last batch: that epoch is kept
        return {"state": "stopped"}
    result = {"state": "finished"}
    if write and (run_dir / MODEL_FILE).exists():
        from fer_core.evaluate import evaluate_run

        result["eval"] = evaluate_run(run_dir, ds, tta=cfg.eval_tta)
    return result


def _set_up_hardware(cfg: TrainConfig) -> tuple[str, object, dict]:
    """Set the mixed-precision policy and build the distribution strategy; say what runs where.
    Returns (the resolved precision, the strategy, `training_runtime()`)."""
    import keras

    precision = resolve_precision(cfg.precision)
    keras.mixed_precision.set_global_policy(precision)
    strategy = make_strategy(cfg.strategy)
    runtime = training_runtime()
    print(f"{runtime['backend']} (oneDNN {runtime['onednn']}) on {runtime['cpu']}", flush=True)
    print(
        f"precision {precision}, strategy {type(strategy).__name__} ({strategy.num_replicas_in_sync} replica(s))",
        flush=True,
    )
    return precision, strategy, runtime


def _teacher(cfg: TrainConfig, ds, cache_dir: Path | None) -> tuple:
    """(online teacher function or None, cached teacher targets or None, the card's distilled_from
    record or None) for the config's teacher; cached targets are kept in `cache_dir` when given."""
    if not cfg.teacher:
        return None, None, None
    distilled_from = teacher_origin(cfg, ds.class_names)
    print(
        f"distilling from {cfg.teacher} (T {cfg.distill_temperature}, alpha {cfg.distill_alpha}, "
        f"{cfg.distill_targets} targets)",
        flush=True,
    )
    if cfg.distill_targets == "cached":
        return None, cached_teacher_targets(cfg, ds, cache_dir), distilled_from
    return load_teacher(cfg, ds.class_names), None, distilled_from


def _compiled_model(cfg: TrainConfig, num_classes: int, steps_per_epoch: int, strategy):
    """`build_model` inside the strategy's scope, made fit for multi-worker training when needed."""
    import tensorflow as tf

    from fer_core.model import batchnorm_kernel

    with strategy.scope():
        model = build_model(cfg, num_classes, steps_per_epoch)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _patch_keras_for_multiworker(model)
    print(f"model {model.name}: {model.count_params():,} parameters, batch norm {batchnorm_kernel(model)}", flush=True)
    return model


def _warm_start(model, cfg: TrainConfig, run_dir: Path) -> dict | None:
    """Load `cfg.init_weights` into a new run's model; the card's init_from record (None without)."""
    if not cfg.init_weights:
        return None
    if (run_dir / BACKUP_DIR).exists():  # resumed: BackupAndRestore brings back the last finished epoch
        return (read_json(card_path(run_dir / MODEL_FILE), {}) or {}).get("init_from")
    init_from = load_initial_weights(model, cfg)
    print(f"initial weights from {cfg.init_weights}", flush=True)
    return init_from


def _card_maker(cfg: TrainConfig, run_dir: Path, ds, model, resolved: dict, origins: dict):
    """card_fn(best epoch, its val accuracy) -> the model card `BestCheckpoint` saves beside model.keras.

    resolved: what the config left to the machine (precision_resolved, runtime), recorded in the
    card's training config; origins: init_from and distilled_from, recorded when not None."""
    from fer_core.card import make_card

    dataset_info = {"root": ds.root, "format": ds.format, "counts": ds.counts(), "skipped": len(ds.skipped)}

    def card_fn(epoch: int, val_acc: float) -> dict:
        card = make_card(
            name=run_dir.name,
            class_names=ds.class_names,
            crop_size=cfg.crop_size,
            tta="none",
            config={**asdict(cfg), **resolved},
            dataset=dataset_info,
            metrics={"best_epoch": epoch, "val_accuracy_centre_crop": val_acc},
            params=model.count_params(),
        )
        card.update({k: v for k, v in origins.items() if v})
        return card

    return card_fn


def _callbacks(cfg: TrainConfig, run_dir: Path, steps: int, n_train: int, write: bool, card_fn, has_val: bool):
    """(the run's RunLogger, every callback of the run in the order Keras must call them)."""
    import keras

    from fer_core import callbacks as cb

    logger = cb.RunLogger(run_dir, cfg, steps, n_train, write)
    monitor = "val_accuracy" if has_val else "accuracy"
    callbacks = [
        cb.NonFiniteGuard(),  # before anything that saves at an epoch's end (it has no on_train_begin)
        # BackupAndRestore next: on resume it sets the initial epoch before others start.
        cb.AtomicBackup(str(run_dir / BACKUP_DIR), save_freq="epoch", delete_checkpoint=False),
        logger,
        cb.BestCheckpoint(run_dir, card_fn, write),
    ]
    if cfg.keep_epochs:
        callbacks.append(cb.KeepEpochs(run_dir, cfg.epochs, cfg.keep_epochs, write))
    if cfg.schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=cfg.plateau_patience, min_lr=1e-5)
        )
    if cfg.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.early_stopping))
    if write:  # TensorBoard event files in the run folder; MLflow too when installed
        from fer_core.tracking import tracking_callbacks

        callbacks += tracking_callbacks(run_dir, asdict(cfg))
    return logger, callbacks


def _patch_keras_for_multiworker(model) -> None:
    """Let Keras 3 `fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Two spots in Keras' TF trainer assume a single worker:
    * the symbolic build averages the first batch across replicas with an eager
      `strategy.reduce`, which fails for PerReplica batches ("Attempt to convert a value
      (PerReplica...)"); the build only needs shapes, so the first local replica's batch does;
    * `reduce_per_replica(..., "mean")` reduces scalar logs along axis 0, which a scalar has
      not ("Invalid reduction dimension 0"); scalars are averaged with axis=None instead.
    Both patches apply only to this model / to multi-worker strategies.
    """
    import types

    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def local_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (
                        self.distribute_strategy.experimental_local_results(v)[0]
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    next(it),
                )
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(local_symbolic_build, model)

    original = getattr(tf_trainer.reduce_per_replica, "__wrapped__", tf_trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=0 if v.shape.rank else None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.__wrapped__ = original
    tf_trainer.reduce_per_replica = reduce_per_replica
