"""Train page over prepared run folders (AppTest), and its pure helpers."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.train_ui import format_eta, progress_summary
from fer_core.config import TrainConfig
from fer_core.jsonio import write_json_atomic

from .conftest import REPO, SAMPLE

PAGE = str(REPO / "pages" / "2_Train.py")


def make_run(runs_dir, name, state, epochs_done, total=10, error=None, pid=None):
    d = runs_dir / name
    d.mkdir(parents=True)
    TrainConfig(data=str(SAMPLE), epochs=total).save(d / "config.json")
    write_json_atomic(
        d / "status.json", {"state": state, "pid": pid, "started": f"2026-11-2{len(name)}T00:00:00", "error": error}
    )
    with open(d / "metrics.jsonl", "w") as f:
        for e in range(1, epochs_done + 1):
            f.write(
                json.dumps(
                    {
                        "type": "epoch",
                        "epoch": e,
                        "loss": 2 - 0.1 * e,
                        "accuracy": 0.2 + 0.03 * e,
                        "val_loss": 2.1 - 0.1 * e,
                        "val_accuracy": 0.18 + 0.03 * e,
                        "lr": 0.05,
                        "seconds": 100.0,
                        "images_per_s": 287.0,
                    }
                )
                + "\n"
            )
    (d / "train.log").write_text("epoch 1/10 ...\nTraceback (most recent call last):\nMemoryError: boom\n")
    return d


def test_train_page_without_runs(runs_dir):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)


def test_train_page_shows_runs_curves_and_failures(runs_dir):
    make_run(runs_dir, "good", "finished", 5)
    make_run(runs_dir, "broken", "failed", 2, error="MemoryError: boom (out of memory: lower batch_size or width)")
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["run"]) == {"good", "broken"}
    assert dict(zip(table["run"], table["state"], strict=True)) == {"good": "finished", "broken": "failed"}
    run_box = next(s for s in at.selectbox if s.label == "Run")
    run_box.select("broken").run()
    assert not at.exception
    assert any("out of memory" in e.value for e in at.error)
    assert any("MemoryError: boom" in c.value for c in at.code)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["State"] == "failed" and metrics["Epoch"] == "2 of 10"
    run_box = next(s for s in at.selectbox if s.label == "Run")
    run_box.select("good").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["State"] == "finished" and metrics["Epoch"] == "5 of 10"
    # Compare: both runs offered and overlaid.
    compare = next(m for m in at.multiselect if m.label == "Runs to compare")
    assert set(compare.value) == {"good", "broken"}


def test_progress_summary_and_eta():
    epochs = [{"epoch": e, "seconds": s, "images_per_s": 100.0} for e, s in [(1, 300), (2, 100), (3, 110)]]
    progress = {"epoch": 4, "step": 50, "steps": 100, "images_per_s": 120.0, "time": 1000.0, "epoch_start": 950.0}
    s = progress_summary({"state": "running"}, epochs, progress, 10)
    assert s["epoch"] == 4 and s["batch_fraction"] == 0.5 and s["images_per_s"] == 120.0
    assert s["eta_s"] == pytest.approx(110 * 6.5)  # median of recent epochs x remaining 6.5 epochs
    first = progress_summary({"state": "running"}, [], progress, 10)
    assert first["eta_s"] == pytest.approx(100 * 10 - 50)  # 50 s for half an epoch -> 100 s per epoch
    done = progress_summary({"state": "finished"}, epochs, None, 3)
    assert done["epoch"] == 3 and done["eta_s"] is None
    assert format_eta(3725) == "1h 02m" and format_eta(65) == "1m 05s" and format_eta(None) == "–"


def test_launch_from_page_refused_while_a_job_runs(runs_dir):
    from fer_core import jobs

    lock = jobs.RunsLock(runs_dir)
    lock.acquire("busy-run")
    try:
        at = AppTest.from_file(PAGE, default_timeout=60).run()
        at.button(key="FormSubmitter:new_run-Launch").click().run()
        assert not at.exception
        assert any("another training job is running: busy-run" in e.value for e in at.error)
    finally:
        lock.release()
    assert not any(p.is_dir() and p.name != ".train.lock" for p in runs_dir.iterdir())


def test_warm_start_model_is_checked_before_launch(runs_dir, tmp_path):
    from fer_core.card import make_card, save_card

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    start = next(t for t in at.text_input if t.label == "...or another model file")
    start.input(str(tmp_path / "missing.keras"))
    at.button(key="FormSubmitter:new_run-Launch").click().run()
    assert any("missing.keras not found" in e.value for e in at.error)

    other = tmp_path / "narrow.keras"
    other.write_bytes(b"weights are not read before the card check")
    card = make_card(name="narrow", class_names=["a", "b"], crop_size=44, config={"arch": "resnet18", "width": 16})
    save_card(other, card)
    start = next(t for t in at.text_input if t.label == "...or another model file")
    start.input(str(other))
    at.button(key="FormSubmitter:new_run-Launch").click().run()
    assert not at.exception
    assert any("width 16 (this run: 32)" in e.value for e in at.error)
    assert not runs_dir.exists() or not any(p.is_dir() for p in runs_dir.iterdir())


def test_teacher_is_checked_before_launch(runs_dir, tmp_path):
    from tests.conftest import make_tiny_model

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    teacher = next(t for t in at.text_input if t.label.startswith("Learn from a model"))
    teacher.input(str(tmp_path / "missing.keras"))
    at.button(key="FormSubmitter:new_run-Launch").click().run()
    assert not at.exception
    assert any(e.value.startswith("teacher: ") and "missing.keras" in e.value for e in at.error)

    other = make_tiny_model(tmp_path / "t40", name="t40")
    card = json.loads(other.with_suffix(".json").read_text())
    card["input"]["crop_size"] = 40
    other.with_suffix(".json").write_text(json.dumps(card))
    teacher = next(t for t in at.text_input if t.label.startswith("Learn from a model"))
    teacher.input(str(other))
    at.button(key="FormSubmitter:new_run-Launch").click().run()
    assert any("crop size 40" in e.value for e in at.error)
    assert not runs_dir.exists() or not any(p.is_dir() for p in runs_dir.iterdir())


def _carded(path, arch="resnet18", width=24, crop=44, members=None, val=None):
    from fer_core.card import make_card, save_card

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights are not read to list a model")
    card = make_card(name=path.stem, class_names=["a", "b"], crop_size=crop, config={"arch": arch, "width": width})
    if members:
        card["members"] = members
    if val is not None:
        card["metrics"] = {"val_accuracy": val}
    save_card(path, card)
    return path


def _finished_run(runs_dir, name, state="finished", **card):
    d = runs_dir / name
    _carded(d / "model.keras", **card)
    write_json_atomic(d / "status.json", {"state": state})
    return d


def test_warm_start_candidates_match_the_settings_and_leave_out_ensembles(tmp_path):
    from dashboard.train_ui import warm_start_candidates

    models, runs_dir = tmp_path / "models", tmp_path / "runs"
    single = _carded(models / "single.keras", val=0.691)
    _carded(models / "ensemble.keras", members=[{"name": "a"}, {"name": "b"}])
    _carded(models / "narrow.keras", width=16)
    _carded(models / "r34.keras", arch="resnet34")
    _carded(models / "crop48.keras", crop=48)
    (models / "no_card.keras").write_bytes(b"")
    done = _finished_run(runs_dir, "done")
    _finished_run(runs_dir, "still_running", state="running")
    _finished_run(runs_dir, "other_width", width=32)

    found = warm_start_candidates("resnet18", 24, 44, models, runs_dir)
    assert found == {str(single): "models/single.keras (val 69.1%)", str(done / "model.keras"): "run done"}
    assert warm_start_candidates("resnet18", 32, 44, models, runs_dir) == {
        str(runs_dir / "other_width" / "model.keras"): "run other_width"
    }
    assert warm_start_candidates("resnet10", 24, 44, models, tmp_path / "no_runs") == {}


def test_train_page_offers_only_models_that_fit_the_chosen_network(runs_dir, monkeypatch, tmp_path):
    from dashboard import resources
    from fer_core import jobs

    models = tmp_path / "models"
    monkeypatch.setattr(resources, "MODELS_DIR", models)
    _carded(models / "single.keras")
    _carded(models / "ensemble.keras", members=[{"name": "a"}, {"name": "b"}])
    run32 = _finished_run(runs_dir, "w32", width=32)
    launched = []
    monkeypatch.setattr(jobs, "launch", lambda cfg, runs, name, **kw: launched.append(cfg) or runs / "new")

    def start_box():
        return next(s for s in at.selectbox if s.label == "Start from model file (optional)")

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert start_box().options == ["none: random initial weights", "run w32"]
    assert start_box().value == ""
    next(s for s in at.select_slider if s.label == "Width").set_value(24).run()
    assert start_box().options[1:] == ["models/single.keras"]
    next(s for s in at.select_slider if s.label == "Width").set_value(32).run()
    start_box().set_value(str(run32 / "model.keras"))
    at.button(key="FormSubmitter:new_run-Launch").click().run()
    assert not at.exception and not at.error
    assert [(c.init_weights, c.width) for c in launched] == [(str(run32 / "model.keras"), 32)]


def test_new_run_form_offers_every_allowed_value_at_its_default(runs_dir):
    from fer_core.config import CHOICES

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    boxes = {s.label: s for s in at.selectbox}
    defaults = TrainConfig()
    for label, setting in [
        ("Architecture", "arch"),
        ("Optimizer", "optimizer"),
        ("Schedule", "schedule"),
        ("Precision", "precision"),
        ("Class weights", "class_weights"),
        ("Teacher targets", "distill_targets"),
    ]:
        assert tuple(boxes[label].options) == CHOICES[setting], label
        assert boxes[label].value == getattr(defaults, setting), label


def test_teacher_settings_from_the_form_reach_the_launched_config(runs_dir, tmp_path, monkeypatch):
    from fer_core import jobs
    from tests.conftest import make_tiny_model

    launched = []
    monkeypatch.setattr(jobs, "launch", lambda cfg, runs, name=None, **kw: launched.append(cfg) or runs / "r")
    teacher_file = make_tiny_model(tmp_path / "teacher", name="teacher")
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    next(t for t in at.text_input if t.label.startswith("Learn from a model")).input(str(teacher_file))
    next(s for s in at.selectbox if s.label == "Teacher targets").select("online")  # not the default
    at.button(key="FormSubmitter:new_run-Launch").click().run()
    assert not at.exception and not at.error
    assert [(c.teacher, c.distill_targets) for c in launched] == [(str(teacher_file), "online")]
