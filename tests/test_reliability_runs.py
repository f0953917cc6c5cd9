"""Run folders: one bad file never hides the other runs; names, pids and launches are checked."""

from __future__ import annotations

import json
import os
import time

import pytest
from streamlit.testing.v1 import AppTest

from fer_core import jobs, runs
from fer_core.cli import main
from fer_core.config import TrainConfig
from fer_core.jsonio import write_json_atomic

from .conftest import SAMPLE
from .test_pages_train import PAGE, make_run
from .test_reliability_training import TINY


def break_runs(runs_dir):
    """A healthy run, one whose metrics.jsonl has an epoch row without "epoch", one whose status.json is a list."""
    make_run(runs_dir, "healthy", "finished", 3)
    bad_row = make_run(runs_dir, "bad-row-newest", "finished", 4)
    with open(bad_row / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"type": "epoch", "loss": 1.0}) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"type": "epoch", "epoch": 5, "val_accuracy": "high"}) + "\n")
    listed = make_run(runs_dir, "list-status", "finished", 2)
    (listed / "status.json").write_text("[1, 2]\n")
    return bad_row, listed


def test_bad_files_are_reported_and_the_rest_shown(runs_dir):
    bad_row, listed = break_runs(runs_dir)
    rows, _ = runs.read_metrics(bad_row, problems := [])
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5] and "val_accuracy" not in rows[-1]
    assert len(problems) == 2 and "line 6: not JSON" in problems[1]
    assert runs.read_status(listed)["state"] == "failed"
    table = {r["run"]: r for r in runs.list_runs(runs_dir)}
    assert set(table) == {"healthy", "bad-row-newest", "list-status"}
    assert table["healthy"]["problems"] == [] and "not an object" in table["list-status"]["problems"][0]


def test_train_page_runs_and_compare_tabs_survive_bad_files(runs_dir):
    break_runs(runs_dir)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert set(at.dataframe[0].value["run"]) == {"healthy", "bad-row-newest", "list-status"}
    assert any("bad-row-newest" in w.value and "without a valid epoch" in w.value for w in at.warning)
    compare = next(m for m in at.multiselect if m.label == "Runs to compare")
    compare.set_value(["healthy", "bad-row-newest", "list-status"]).run()
    assert not at.exception
    run_box = next(s for s in at.selectbox if s.label == "Run")
    run_box.select("list-status").run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["State"] == "failed"


def test_cli_resume_of_a_run_with_bad_files(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    TrainConfig(**TINY, epochs=1).save(run_dir / "config.json")
    (run_dir / "metrics.jsonl").write_text(json.dumps({"type": "epoch", "loss": 1.0}) + "\n")
    (run_dir / "status.json").write_text("[]")
    rc = main(["train", "--run-dir", str(run_dir), "--resume", "--epochs", "2"])
    assert rc == 0, capsys.readouterr().err
    assert [r["epoch"] for r in runs.read_metrics(run_dir)[0]] == [1, 2]
    assert runs.read_status(run_dir)["state"] == "finished"


def test_a_pid_that_is_not_the_run_does_not_read_as_running(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    # This pytest process is alive but is not a training process (no recorded start time).
    write_json_atomic(d / "status.json", {"state": "running", "pid": os.getpid()})
    assert runs.read_status(d)["state"] == "failed"
    # A recorded start time that differs: the pid was reused by another process.
    write_json_atomic(d / "status.json", {"state": "running", "pid": os.getpid(), "pid_start": 1})
    assert runs.read_status(d)["state"] == "failed"
    write_json_atomic(d / "status.json", {"state": "queued", "pid": 2**22 + 12345})
    assert runs.read_status(d)["state"] == "failed"  # a dead launch does not stay queued
    # The real process, as update_status records it, is running.
    runs.update_status(d, state="running", pid=os.getpid())
    assert runs.read_status(d)["state"] == "running"


@pytest.mark.parametrize("name", ["../x", "/tmp/abs-run", "a/b", ".hidden", "..", "", "x" * 101, "a\0b"])
def test_run_names_must_be_one_path_component(tmp_path, name):
    runs_dir = tmp_path / "deep" / "runs"
    with pytest.raises(jobs.JobError, match="run name .* is not allowed"):
        jobs.launch(TrainConfig(data=str(SAMPLE)), runs_dir, name)
    assert not (tmp_path / "deep" / "x").exists() and not os.path.exists("/tmp/abs-run")
    assert not runs_dir.exists() or not any(p.is_dir() for p in runs_dir.iterdir())


def test_two_quick_launches_start_one_job_and_leave_nothing_queued(tmp_path):
    runs_dir = tmp_path / "runs"
    cfg = TrainConfig(**{**TINY, "max_train_images": 64}, epochs=1)
    first = jobs.launch(cfg, runs_dir)
    try:
        with pytest.raises(jobs.JobError, match="another training job is running"):
            jobs.launch(cfg, runs_dir)
        assert [p.name for p in runs_dir.iterdir() if p.is_dir()] == [first.name]
        end = time.time() + 240
        while runs.read_status(first).get("state") in ("queued", "running") and time.time() < end:
            time.sleep(0.2)
        assert runs.read_status(first)["state"] == "finished", (first / "train.log").read_text()[-2000:]
        assert jobs.running_job(runs_dir) is None
    finally:
        st = runs.read_status(first)
        if st.get("state") in ("queued", "running") and st.get("pid"):
            os.kill(int(st["pid"]), 9)
