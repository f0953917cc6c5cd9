"""The command table, the options commands share, the runs folder and the one-line errors."""

from __future__ import annotations

import argparse

import pytest

from fer_core import cli
from fer_core.cli import COMMANDS, build_parser, main
from fer_core.config import CHOICES
from fer_core.errors import FerError

from .conftest import SAMPLE


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_lists_every_command_of_the_table(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert list(COMMANDS) == list(_subparsers(build_parser()))
    for name in COMMANDS:
        assert name in out


def test_tta_takes_the_same_values_everywhere():
    commands = _subparsers(build_parser())
    with_tta = {}
    for name, sub in commands.items():
        for action in sub._actions:
            if "--tta" in action.option_strings:
                with_tta[name] = action
    assert set(with_tta) == {"promote", "ensemble", "evaluate", "predict"}
    for name, action in with_tta.items():
        assert tuple(action.choices) == CHOICES["eval_tta"], name
        assert action.const == "tencrop", name  # a bare --tta means ten-crop in every command


def test_bare_tta_means_tencrop_and_a_value_is_taken():
    parser = build_parser()
    assert parser.parse_args(["predict", "a.jpg", "--tta"]).tta == "tencrop"
    assert parser.parse_args(["predict", "a.jpg", "--tta", "flip"]).tta == "flip"
    assert parser.parse_args(["predict", "a.jpg"]).tta is None  # the card's
    assert parser.parse_args(["evaluate", "--data", "d", "--tta"]).tta == "tencrop"
    assert parser.parse_args(["promote", "run"]).tta == "tencrop"


def test_train_writes_into_the_runs_folder_of_fer_runs(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_train(cfg, run_dir, resume=False):
        seen["run_dir"] = run_dir
        return {"state": "finished", "eval": {}}

    monkeypatch.setenv("FER_RUNS", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(cli.train, "train", fake_train)
    (tmp_path / "elsewhere").mkdir()
    assert main(["train", "--data", str(SAMPLE), "--epochs", "1"]) == 0
    assert seen["run_dir"].parent == tmp_path / "elsewhere"
    assert f"run folder: {seen['run_dir']}" in capsys.readouterr().out


def test_a_user_error_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    def user_error(*args, **kwargs):
        raise FerError("bad.csv: not a dataset; pass another.")

    monkeypatch.setattr(cli.dataset, "load_dataset", user_error)
    assert main(["dataset", "bad.csv"]) == 2
    assert capsys.readouterr().err == "error: bad.csv: not a dataset; pass another.\n"

    def bug(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr(cli.dataset, "load_dataset", bug)
    with pytest.raises(KeyError):
        main(["dataset", "bad.csv"])
