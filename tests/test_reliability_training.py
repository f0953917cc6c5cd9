"""Issue #19, training: a diverging run stops and says so; nothing non-finite is kept as the best model."""

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
