"""Training: a diverging run stops and says so; nothing non-finite is kept as the best model."""

from __future__ import annotations

import json
from pathlib import Path

from fer_core import runs
from fer_core.config import TrainConfig
from fer_core.train import train

from .conftest import SAMPLE

# In-process runs on the bundled sample: float32 (not the machine's bf16 "auto"), tiny network.
TINY = dict(
    data=str(SAMPLE),
    arch="resnet10",
    width=8,
    batch_size=32,
    eval_tta="none",
    precision="float32",
    max_train_images=160,
    augment=False,
)


def epoch_numbers(run_dir) -> list[int]:
    return [r["epoch"] for r in runs.read_metrics(run_dir)[0]]


def test_diverging_loss_fails_the_run_and_keeps_no_nan_model(tmp_path):
    run_dir = tmp_path / "runs" / "diverge"
    cfg = TrainConfig(**TINY, epochs=3, learning_rate=1e30, schedule="constant", optimizer="sgd", momentum=0.0)
    status = train(cfg, run_dir)
    assert status["state"] == "failed", status
    assert "training diverged" in status["error"] and "lower the learning rate" in status["error"]
    assert not (run_dir / "model.keras").exists() and not (run_dir / "best.json").exists()
    assert epoch_numbers(run_dir) == []  # the diverged epoch is not recorded as finished
    assert not (run_dir / "backup" / "training_metadata.json").exists()


def cut_short(path) -> None:
    """Zero the second half of an HDF5 file, as a write cut short by a full disk leaves it; loading
    it raises RuntimeError ("Unable to synchronously check link existence ..."), not OSError."""
    data = Path(path).read_bytes()
    half = len(data) // 2
    Path(path).write_bytes(data[:half] + bytes(len(data) - half))


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_disk_full_during_a_backup_then_resume_loses_at_most_that_epoch(tmp_path, monkeypatch):
    import errno

    import keras

    run_dir = tmp_path / "runs" / "full"
    cfg = TrainConfig(**TINY, epochs=3)
    real_save = keras.Model.save_weights
    calls = []

    def disk_fills_on_the_second_backup(self, filepath, *args, **kwargs):
        calls.append(str(filepath))
        real_save(self, filepath, *args, **kwargs)
        if "backup" in str(filepath) and len([c for c in calls if "backup" in c]) == 2:
            cut_short(filepath)  # HDF5 got half way, then the disk was full
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save_weights", disk_fills_on_the_second_backup)
    status = train(cfg, run_dir)
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert "disk full: free some space, then resume" in status["error"]
    assert runs.read_status(run_dir)["state"] == "failed"  # the failure reached status.json
    assert epoch_numbers(run_dir) == [1]
    assert json.loads((run_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    assert not [n for n in _files(run_dir) if n.startswith(".") and "lock" not in n]  # no temp files left

    monkeypatch.setattr(keras.Model, "save_weights", real_save)  # space is back
    status = train(cfg, run_dir, resume=True)
    assert status["state"] == "finished", status
    assert epoch_numbers(run_dir) == [1, 2, 3]  # epoch 1 was kept, only epoch 2 was redone


def test_a_truncated_backup_resumes_from_the_previous_one(tmp_path):
    run_dir = tmp_path / "runs" / "cut"
    assert train(TrainConfig(**TINY, epochs=2), run_dir)["state"] == "finished"
    cut_short(run_dir / "backup" / "latest.weights.h5")  # what a crash mid-write left
    cfg = TrainConfig(**TINY, epochs=3)
    cfg.save(run_dir / "config.json")
    status = train(cfg, run_dir, resume=True)
    assert status["state"] == "finished", status
    rows = runs.read_metrics(run_dir)[0]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # epoch 2 redone from the epoch-1 backup, then 3


def test_stop_mid_epoch_discards_that_epoch_and_resume_redoes_all_of_it(tmp_path, monkeypatch):
    from fer_core import callbacks

    run_dir = tmp_path / "runs" / "stop"

    class StopsAfterTwoBatches(callbacks.RunLogger):
        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 2 and batch == 2:  # "Stop" pressed after 2 of 5 batches
                self.stop_file.write_text("stop requested\n")

    monkeypatch.setattr(callbacks, "RunLogger", StopsAfterTwoBatches)
    status = train(TrainConfig(**TINY, epochs=3), run_dir)
    assert status["state"] == "stopped"
    assert epoch_numbers(run_dir) == [1]  # epoch 2 is not recorded as finished
    assert json.loads((run_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 1

    monkeypatch.undo()
    assert train(TrainConfig(**TINY, epochs=3), run_dir, resume=True)["state"] == "finished"
    assert epoch_numbers(run_dir) == [1, 2, 3]
    steps = [r for r in runs.metrics_rows(run_dir) if r.get("type") == "progress" and r["epoch"] == 2]
    assert steps[-1]["step"] == steps[-1]["steps"] == 5  # the resumed epoch 2 ran all its batches


def test_eta_after_a_resume_ignores_the_stopped_processs_progress():
    from datetime import UTC, datetime

    from dashboard.train_ui import progress_summary

    resumed_at = 2_000_000_000.0
    status = {"state": "running", "started": datetime.fromtimestamp(resumed_at, UTC).isoformat(timespec="seconds")}
    epochs = [{"epoch": 1, "seconds": 100.0, "images_per_s": 50.0}]
    # The process before the resume stopped epoch 2 after 2 of 22 batches.
    stale = {"epoch": 2, "step": 2, "steps": 22, "images_per_s": 9.0, "time": resumed_at - 600, "epoch_start": 0}
    s = progress_summary(status, epochs, stale, 10)
    assert s["batch_fraction"] == 0.0 and s["images_per_s"] == 50.0
    assert s["eta_s"] == 100.0 * 9  # nine whole epochs to go
    fresh = {**stale, "step": 11, "time": resumed_at + 60, "images_per_s": 60.0}
    assert progress_summary(status, epochs, fresh, 10)["eta_s"] == 100.0 * 8.5


def test_a_failure_that_cannot_be_written_to_status_is_still_reported(tmp_path, monkeypatch, capsys):
    import errno

    from fer_core import train as train_module

    real_update = train_module.update_status

    def no_space_for_the_failure(run_dir, **fields):
        if fields.get("state") == "failed":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_update(run_dir, **fields)

    monkeypatch.setattr(train_module, "update_status", no_space_for_the_failure)
    status = train(TrainConfig(**{**TINY, "data": str(tmp_path / "missing")}, epochs=1), tmp_path / "runs" / "r")
    assert status["state"] == "failed" and "no such file or folder" in status["error"]
    assert "could not record the failure in status.json" in capsys.readouterr().err
