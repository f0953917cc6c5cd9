"""The training callbacks, one at a time: what each writes to a run folder, and when it stops a run.

Each test drives a callback on a tiny Keras model, either through a real `fit` or by calling
its epoch and batch hooks with the logs Keras would pass, and reads the files it left.
"""

from __future__ import annotations

import errno
import json
import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fer_core import callbacks  # noqa: E402  (after the Keras check: it imports Keras)
from fer_core.config import TrainConfig  # noqa: E402
from fer_core.runs import (  # noqa: E402
    BACKUP_DIR,
    BEST_FILE,
    EPOCHS_DIR,
    METRICS_FILE,
    MODEL_FILE,
    PREVIOUS_WEIGHTS,
    STATUS_FILE,
    STOP_FILE,
    backup_epoch,
    metrics_rows,
)


def tiny_model(lr: float = 0.01):
    """4 inputs -> 2 classes, compiled: small enough to save and fit in milliseconds."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def tiny_data(n: int = 32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]


def attached(callback, model):
    callback.set_model(model)
    return callback


# ----------------------------------------------------------------------------- BestCheckpoint


def card_fn(epoch: int, val_acc: float) -> dict:
    return {"name": "tiny", "metrics": {"best_epoch": epoch, "val_accuracy_centre_crop": val_acc}}


def test_best_checkpoint_saves_on_improvement_only(tmp_path):
    best = attached(callbacks.BestCheckpoint(tmp_path, card_fn, write=True), tiny_model())
    best.on_epoch_end(0, {"val_accuracy": 0.40})
    assert json.loads((tmp_path / BEST_FILE).read_text()) == {"epoch": 1, "val_accuracy": 0.40}
    assert json.loads((tmp_path / "model.json").read_text())["metrics"]["best_epoch"] == 1
    saved_at = (tmp_path / MODEL_FILE).stat().st_mtime_ns

    for epoch, acc in ((1, 0.40), (2, 0.35), (3, float("nan"))):  # equal, worse, not a number
        best.on_epoch_end(epoch, {"val_accuracy": acc})
    assert json.loads((tmp_path / BEST_FILE).read_text())["epoch"] == 1
    assert (tmp_path / MODEL_FILE).stat().st_mtime_ns == saved_at

    best.on_epoch_end(4, {"val_accuracy": 0.55})
    assert json.loads((tmp_path / BEST_FILE).read_text()) == {"epoch": 5, "val_accuracy": 0.55}
    assert json.loads((tmp_path / "model.json").read_text())["metrics"]["best_epoch"] == 5
    keras.models.load_model(tmp_path / MODEL_FILE)  # a complete model file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([BEST_FILE, MODEL_FILE, "model.json"])  # no temp file


def test_best_checkpoint_remembers_the_best_of_an_earlier_process(tmp_path):
    (tmp_path / BEST_FILE).write_text(json.dumps({"epoch": 3, "val_accuracy": 0.6}))
    best = attached(callbacks.BestCheckpoint(tmp_path, card_fn, write=True), tiny_model())
    best.on_epoch_end(3, {"val_accuracy": 0.5})  # better than nothing, worse than before the resume
    assert not (tmp_path / MODEL_FILE).exists()
    best.on_epoch_end(4, {"val_accuracy": 0.7})
    assert json.loads((tmp_path / BEST_FILE).read_text())["epoch"] == 5


def test_best_checkpoint_without_validation_follows_training_accuracy(tmp_path):
    best = attached(callbacks.BestCheckpoint(tmp_path, card_fn, write=True), tiny_model())
    best.on_epoch_end(0, {"accuracy": 0.3})
    assert json.loads((tmp_path / BEST_FILE).read_text())["val_accuracy"] == 0.3


def test_a_worker_that_does_not_write_keeps_no_checkpoint(tmp_path):
    best = attached(callbacks.BestCheckpoint(tmp_path, card_fn, write=False), tiny_model())
    best.on_epoch_end(0, {"val_accuracy": 0.9})
    assert best.best == 0.9 and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- KeepEpochs


def test_keep_epochs_keeps_the_weights_of_the_last_n_epochs_only(tmp_path):
    model = tiny_model()
    x, y = tiny_data()
    model.fit(x, y, epochs=5, verbose=0, callbacks=[callbacks.KeepEpochs(tmp_path, epochs=5, keep=2, write=True)])
    folder = tmp_path / EPOCHS_DIR
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_004.weights.h5", "epoch_005.weights.h5"]
    other = tiny_model()
    other.load_weights(folder / "epoch_005.weights.h5")
    for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the last file holds the weights the fit ended with


def test_keep_epochs_writes_nothing_when_told_not_to(tmp_path):
    model = tiny_model()
    x, y = tiny_data()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.KeepEpochs(tmp_path, epochs=2, keep=2, write=False)])
    assert not (tmp_path / EPOCHS_DIR).exists()


# ----------------------------------------------------------------------------- NonFiniteGuard


def test_non_finite_guard_stops_a_fit_at_the_first_nan_loss():
    model = tiny_model()
    x, y = tiny_data()
    x[20] = np.nan  # the second batch of 16
    with pytest.raises(callbacks.TrainingDiverged, match=r"loss became nan at epoch 1, batch 2: training diverged"):
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[callbacks.NonFiniteGuard()])


def test_non_finite_guard_lets_finite_losses_through_and_checks_epoch_logs():
    guard = callbacks.NonFiniteGuard()
    guard.on_epoch_begin(0)
    guard.on_train_batch_end(0, {"loss": 0.7, "accuracy": float("nan")})  # only losses count
    guard.on_epoch_end(0, {"loss": 0.6, "val_loss": 0.8})
    with pytest.raises(callbacks.TrainingDiverged, match="val_loss became inf at the end of epoch 1"):
        guard.on_epoch_end(0, {"loss": 0.6, "val_loss": math.inf})


# ----------------------------------------------------------------------------- RunLogger


def logger_for(run_dir, write: bool = True, steps: int = 2):
    cfg = TrainConfig(epochs=3, batch_size=16)
    return attached(callbacks.RunLogger(run_dir, cfg, steps=steps, n_train=32, write=write), tiny_model(lr=0.02))


def test_run_logger_appends_a_progress_and_an_epoch_row_per_epoch(tmp_path):
    model = tiny_model(lr=0.02)
    x, y = tiny_data()
    logger = callbacks.RunLogger(tmp_path, TrainConfig(epochs=2, batch_size=16), steps=2, n_train=32, write=True)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y), callbacks=[logger])
    rows = list(metrics_rows(tmp_path))
    assert [r["epoch"] for r in rows if r["type"] == "epoch"] == [1, 2]
    for n in (1, 2):  # progress rows come before their epoch's row, and the last batch is always one
        before = rows[: rows.index(next(r for r in rows if r["type"] == "epoch" and r["epoch"] == n))]
        last = [r for r in before if r["type"] == "progress" and r["epoch"] == n][-1]
        assert last["step"] == last["steps"] == 2
    epoch = rows[-1]
    assert epoch["lr"] == pytest.approx(0.02) and epoch["images_per_s"] > 0
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(epoch)
    assert json.loads((tmp_path / STATUS_FILE).read_text())["epoch"] == 1  # epochs finished before the 2nd began
    assert not logger.stopped


def test_run_logger_that_does_not_write_leaves_no_files(tmp_path):
    logger = logger_for(tmp_path, write=False)
    logger.on_epoch_begin(0)
    logger.on_train_batch_end(1, {"loss": 0.5, "accuracy": 0.5})
    logger.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.5})
    assert not (tmp_path / METRICS_FILE).exists() and not (tmp_path / STATUS_FILE).exists()


def test_a_stop_request_mid_epoch_raises_and_on_the_last_batch_finishes_the_epoch(tmp_path):
    logger = logger_for(tmp_path, steps=3)
    logger.on_epoch_begin(0)
    (tmp_path / STOP_FILE).write_text("stop requested\n")
    with pytest.raises(callbacks.StopRequested):
        logger.on_train_batch_end(0, {"loss": 0.5})  # batch 1 of 3
    assert logger.stopped

    logger = logger_for(tmp_path, steps=3)
    logger.on_epoch_begin(0)
    logger.on_train_batch_end(2, {"loss": 0.5})  # batch 3 of 3: no exception
    assert logger.stopped and logger.model.stop_training


# ----------------------------------------------------------------------------- AtomicBackup


def backed_up_fit(run_dir, epochs: int):
    model = tiny_model()
    x, y = tiny_data()
    backup = callbacks.AtomicBackup(str(run_dir / BACKUP_DIR), save_freq="epoch", delete_checkpoint=False)
    model.fit(x, y, epochs=epochs, verbose=0, callbacks=[backup])
    return model


def test_atomic_backup_keeps_the_previous_pair_and_resumes_from_it_when_the_latest_is_damaged(tmp_path, capsys):
    backed_up_fit(tmp_path, epochs=2)
    folder = tmp_path / BACKUP_DIR
    assert backup_epoch(tmp_path) == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["latest.weights.h5", "training_metadata.json", PREVIOUS_WEIGHTS, "previous_training_metadata.json"]
    )
    latest = folder / "latest.weights.h5"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # a save cut short
    model = backed_up_fit(tmp_path, epochs=3)  # resumes after epoch 1, runs epochs 2 and 3
    assert "resumed from the previous backup (epoch 1)" in capsys.readouterr().out
    assert backup_epoch(tmp_path) == 3 and len(model.get_weights()) == 2


def test_atomic_backup_refuses_a_save_that_will_not_fit_and_keeps_the_old_backup(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    backed_up_fit(tmp_path, epochs=1)
    before = sorted(p.name for p in (tmp_path / BACKUP_DIR).iterdir())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError) as err:
        backed_up_fit(tmp_path, epochs=2)
    assert err.value.errno == errno.ENOSPC and "the backup needs about" in str(err.value)
    assert sorted(p.name for p in (tmp_path / BACKUP_DIR).iterdir()) == before  # no temporary files
    assert backup_epoch(tmp_path) == 1
