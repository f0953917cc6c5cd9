"""Issue #19, training: a diverging run stops and says so; nothing non-finite is kept as the best model."""

from __future__ import annotations

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
