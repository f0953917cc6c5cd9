"""The Keras callbacks of a training run: what it writes to its run folder while it trains.

- `NonFiniteGuard` ends the run at the first NaN or infinite loss;
- `AtomicBackup` keeps the BackupAndRestore state a resume starts from, safe from crashes
  and full disks;
- `RunLogger` writes metrics.jsonl and status.json, and stops on a stop request;
- `BestCheckpoint` saves model.keras and its card when val accuracy improves;
- `KeepEpochs` keeps the last epochs' weights for averaging.

`fer_core.train` builds the list and its order. This module imports Keras when it is
imported (its classes derive from Keras'), so the rest of the core imports it only inside
the functions that train; tests/test_architecture.py lists it with `model` for that reason.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from fer_core.config import TrainConfig
from fer_core.jsonio import append_jsonl, fsync_dir, read_json, write_json_atomic
from fer_core.runs import (
    BEST_FILE,
    EPOCH_SUFFIX,
    EPOCHS_DIR,
    METRICS_FILE,
    MODEL_FILE,
    PREVIOUS_METADATA,
    PREVIOUS_WEIGHTS,
    STOP_FILE,
    update_status,
)


class StopRequested(Exception):
    """Raised by `RunLogger` when a stop file appears mid-epoch; the run ends as 'stopped'."""


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number; the run ends as 'failed' and keeps its last good epoch."""


def current_lr(optimizer) -> float:
    """The optimizer's learning rate now, whether a constant or a schedule."""
    lr = optimizer.learning_rate
    try:
        return float(np.asarray(lr))
    except TypeError:
        return float(np.asarray(lr(optimizer.iterations)))


class RunLogger(keras.callbacks.Callback):
    """Writes metrics.jsonl + status.json, checks for a stop request, draws a progress bar."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, steps: int, n_train: int, write: bool):
        super().__init__()
        self.run_dir, self.cfg, self.steps, self.n_train, self.write = run_dir, cfg, steps, n_train, write
        self.stop_file = run_dir / STOP_FILE
        self.bar = None
        self.stopped = False

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = self.t_last = time.time()
        self.epoch = epoch + 1
        if self.write:
            update_status(self.run_dir, epoch=epoch, epochs=self.cfg.epochs)
        try:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.steps,
                desc=f"epoch {self.epoch}/{self.cfg.epochs}",
                unit="batch",
                leave=False,
                disable=None,
                file=sys.stderr,
            )
        except ImportError:
            self.bar = None

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(1)
        now = time.time()
        if self.stop_file.exists():
            self.stopped = True
            if batch + 1 < self.steps:
                # Mid-epoch: discard the epoch. Raising skips the end-of-epoch callbacks, so
                # it is neither recorded as finished nor backed up; a resume redoes all of it.
                if self.bar is not None:
                    self.bar.close()
                print(
                    f"stopped in epoch {self.epoch} after {batch + 1} of {self.steps} batches; "
                    "that epoch is discarded and redone on resume",
                    flush=True,
                )
                raise StopRequested
            self.model.stop_training = True  # on the last batch: finish the epoch, then stop
        if self.write and (now - self.t_last > 2.0 or batch + 1 == self.steps):
            self.t_last = now
            done = batch + 1
            ips = done * self.cfg.batch_size / max(now - self.t0, 1e-6)
            append_jsonl(
                self.run_dir / METRICS_FILE,
                {
                    "type": "progress",
                    "epoch": self.epoch,
                    "step": done,
                    "steps": self.steps,
                    "loss": float(logs.get("loss", float("nan"))) if logs else None,
                    "accuracy": float(logs.get("accuracy", float("nan"))) if logs else None,
                    "images_per_s": round(ips, 1),
                    "epoch_start": self.t0,
                    "time": now,
                },
            )

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
        logs = logs or {}
        secs = time.time() - self.t0
        row = {
            "type": "epoch",
            "epoch": epoch + 1,
            "lr": current_lr(self.model.optimizer),
            "seconds": round(secs, 1),
            "images_per_s": round(self.n_train / max(secs, 1e-6), 1),
            "time": time.time(),
        }
        row.update({k: float(v) for k, v in logs.items() if k != "learning_rate"})
        if self.write:
            append_jsonl(self.run_dir / METRICS_FILE, row)
        val = f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.4f}" if "val_loss" in row else ""
        print(
            f"epoch {epoch + 1}/{self.cfg.epochs}  loss {row.get('loss', float('nan')):.4f}  "
            f"acc {row.get('accuracy', float('nan')):.4f}{val}  lr {row['lr']:.5f}  "
            f"{secs:.0f}s  {row['images_per_s']:.0f} img/s",
            flush=True,
        )


class BestCheckpoint(keras.callbacks.Callback):
    """Saves model.keras + model.json whenever val accuracy improves (persists across resume)."""

    def __init__(self, run_dir: Path, card_fn, write: bool):
        super().__init__()
        self.run_dir, self.card_fn, self.write = run_dir, card_fn, write
        self.best_file = run_dir / BEST_FILE
        self.best = (read_json(self.best_file, {}) or {}).get("val_accuracy", -1.0)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        acc = logs.get("val_accuracy", logs.get("accuracy"))
        if acc is None or not math.isfinite(acc) or acc <= self.best:
            return
        self.best = float(acc)
        if not self.write:
            return
        from fer_core.card import save_card
        from fer_core.model import with_keras_layers

        tmp = self.run_dir / ".model.tmp.keras"
        try:
            with_keras_layers(self.model).save(tmp)
            os.replace(tmp, self.run_dir / MODEL_FILE)
        except BaseException:
            tmp.unlink(missing_ok=True)  # e.g. disk full: no litter, the previous best stays
            raise
        save_card(self.run_dir / MODEL_FILE, self.card_fn(epoch + 1, float(acc)))
        write_json_atomic(self.best_file, {"epoch": epoch + 1, "val_accuracy": float(acc)})


class KeepEpochs(keras.callbacks.Callback):
    """Saves the weights of each of the last `keep` epochs as epochs/epoch_NNN.weights.h5
    (for weight averaging at promote time); files of finished epochs survive a resume."""

    def __init__(self, run_dir: Path, epochs: int, keep: int, write: bool):
        super().__init__()
        self.folder, self.first, self.write = run_dir / EPOCHS_DIR, epochs - keep + 1, write

    def on_epoch_end(self, epoch, logs=None):
        if not self.write or epoch + 1 < self.first:
            return
        self.folder.mkdir(exist_ok=True)
        tmp = self.folder / ".epoch.tmp.weights.h5"
        try:
            self.model.save_weights(tmp)
            os.replace(tmp, self.folder / f"epoch_{epoch + 1:03d}{EPOCH_SUFFIX}")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


class NonFiniteGuard(keras.callbacks.Callback):
    """Ends the run as soon as a loss is NaN or infinite. It raises rather than setting
    stop_training, so Keras runs no end-of-epoch callbacks: the diverged weights never
    reach the backup, model.keras or a metrics row (listed first for the same reason)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f"epoch {self.epoch}, batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, f"the end of epoch {epoch + 1}")

    def _check(self, logs, where: str) -> None:
        for key, value in (logs or {}).items():
            if "loss" in key and not math.isfinite(float(value)):
                raise TrainingDiverged(
                    f"{key} became {float(value)} at {where}: training diverged; lower the learning rate "
                    "(or check the data). The last finished epoch's backup and best model are kept."
                )


class AtomicBackup(keras.callbacks.BackupAndRestore):
    """A Keras BackupAndRestore that a crash or a full disk during a save cannot spoil.

    Keras writes the backup in place: a save cut short by ENOSPC leaves a truncated
    latest.weights.h5 that every resume then fails to read ("Can't get deprecated info ...
    addr overflow"), losing all finished epochs. Here each save writes the weights and the
    epoch aside, fsyncs them, and only then renames them in, keeping the previous good pair
    as PREVIOUS_WEIGHTS + PREVIOUS_METADATA; a restore takes the newest pair that loads. A
    failed save removes its temporary files and leaves the previous backup as it was.
    """

    def _pairs(self) -> list[tuple[Path, Path]]:
        # The fallback pair is ours (Keras' *.bkp names do not end in .weights.h5, which load_weights needs).
        w, m = Path(self._weights_path), Path(self._training_metadata_path)
        return [(w, m), (w.with_name(PREVIOUS_WEIGHTS), m.with_name(PREVIOUS_METADATA))]

    def on_train_begin(self, logs=None):
        errors = []
        for weights, meta in self._pairs():
            if not (weights.is_file() and meta.is_file()):
                continue
            try:
                epoch = json.loads(meta.read_text())["epoch"]
                if self.model.optimizer is not None and not self.model.optimizer.built:
                    self.model.optimizer.build(self.model.trainable_variables)
                self.model.load_weights(str(weights))
            except Exception as exc:  # noqa: BLE001 - a damaged pair: try the previous one
                errors.append(f"{weights.name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                continue
            self.model._initial_epoch = int(epoch)
            if errors:
                print(f"backup: {errors[0]}; resumed from the previous backup (epoch {epoch})", flush=True)
            return
        if errors:
            raise RuntimeError(
                f"the run's backup in {self.backup_dir} cannot be read ({'; '.join(errors)}); start a new run."
            )

    def _save_model(self):
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (weights, meta), (prev_weights, prev_meta) = self._pairs()
        incoming = folder / ".incoming.weights.h5"  # Keras wants the .weights.h5 suffix
        incoming_meta = folder / ".incoming_metadata.json"
        try:
            _check_free_space(folder, weights, self.model)
            self.model.save_weights(str(incoming), overwrite=True)
            _fsync_file(incoming)
            write_json_atomic(incoming_meta, {"epoch": self._current_epoch, "batch": self._last_batch_seen})
        except BaseException:
            incoming.unlink(missing_ok=True)
            incoming_meta.unlink(missing_ok=True)
            raise
        # The new pair is complete on disk: the old one becomes the fallback, the new one current.
        if weights.exists() and meta.exists():
            os.replace(weights, prev_weights)
            os.replace(meta, prev_meta)
        os.replace(incoming, weights)
        os.replace(incoming_meta, meta)
        fsync_dir(folder)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _check_free_space(folder: Path, previous: Path, model) -> None:
    """Raise ENOSPC before writing when the backup clearly will not fit: HDF5 hitting a full disk
    mid-write has ended in a segmentation fault instead of an error."""
    try:
        need = previous.stat().st_size
    except OSError:
        need = sum(int(np.prod(v.shape)) * 4 for v in model.weights)
        if model.optimizer is not None:
            need += sum(int(np.prod(v.shape)) * 4 for v in model.optimizer.variables)
    need = int(need * 1.1) + (1 << 20)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: the backup needs about {need / 1e6:.0f} MB in {folder}, {free / 1e6:.0f} MB free",
        )
