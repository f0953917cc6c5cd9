"""Settings: non-finite and out-of-range numbers are refused with one line."""

from __future__ import annotations

import dataclasses

import pytest

from fer_core.cli import main
from fer_core.config import ConfigError, TrainConfig
from fer_core.errors import FerError

from .conftest import SAMPLE

BAD_SETTINGS = [
    ("learning_rate", float("nan"), "learning_rate must be a finite number"),
    ("learning_rate", float("inf"), "learning_rate must be a finite number"),
    ("weight_decay", float("-inf"), "weight_decay must be a finite number"),
    ("warmup_epochs", -1.0, "warmup_epochs must be 0 or more"),
    ("max_train_images", -5, "max_train_images must be 0 or more"),
    ("mixup", -0.5, "mixup must be 0 or more"),
    ("dropout", 1.5, r"dropout must be in \[0.0, 0.99\]"),
    ("erasing", 2.0, r"erasing must be in \[0.0, 1.0\]"),
    ("momentum", float("nan"), "momentum must be a finite number"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_SETTINGS)
def test_bad_numbers_are_refused(name, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        dataclasses.replace(TrainConfig(), **{name: value}).validated()
    assert isinstance(err.value, FerError) and isinstance(err.value, ValueError)  # what the CLI and pages catch


def test_an_unknown_setting_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="Unknown config key"):
        TrainConfig.from_dict({"learning_rat": 0.1})


def test_a_distilled_run_saved_before_the_targets_setting_resumes_as_it_was_made():
    """Runs saved before `distill_targets` existed ran the teacher online; a resume keeps that."""
    assert TrainConfig().distill_targets == "cached"
    assert TrainConfig.from_dict({"teacher": "models/t.keras"}).distill_targets == "online"
    saved = {"teacher": "models/t.keras", "distill_targets": "cached"}
    assert TrainConfig.from_dict(saved).distill_targets == "cached"
    assert TrainConfig.from_dict({}).distill_targets == "cached"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--learning-rate", "nan", "learning_rate must be a finite number"),
        ("--warmup-epochs", "-1", "warmup_epochs must be 0 or more"),
        ("--max-train-images", "-5", "max_train_images must be 0 or more"),
    ],
)
def test_cli_refuses_them_in_one_line_before_training(tmp_path, capsys, flag, value, message):
    run_dir = tmp_path / "runs" / "r"
    rc = main(["train", "--data", str(SAMPLE), "--run-dir", str(run_dir), flag, value])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not run_dir.exists()  # nothing was started


def test_defaults_still_validate():
    assert TrainConfig().validated() == TrainConfig()
