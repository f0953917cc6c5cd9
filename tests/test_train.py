"""Training engine: run folder, kill-and-resume, stop/resume through jobs, the lock, multiworker.

These start real `python -m fer_core train` processes on the bundled sample with a tiny
network, as the dashboard and the CLI do.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fer_core import jobs, runs
from fer_core.config import TrainConfig
from fer_core.errors import FerError

from .conftest import REPO, SAMPLE

TINY = ["--arch", "resnet10", "--width", "16", "--batch-size", "32", "--eval-tta", "none"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def fer_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fer_core", *args]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """A finished CLI process, its output captured as text."""
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout, cwd=REPO)


def train_cmd(run_dir: Path, *extra: str) -> list[str]:
    return fer_cli("train", "--data", str(SAMPLE), "--run-dir", str(run_dir), *TINY, *extra)


def wait_for(predicate, timeout: float, what: str, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) before {what}: {proc.stdout.read()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def epoch_rows(run_dir: Path) -> list[int]:
    rows = []
    p = run_dir / "metrics.jsonl"
    if p.exists():
        for line in p.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("type") == "epoch":
                rows.append(r["epoch"])
    return rows


@pytest.mark.slow
def test_two_epoch_run_writes_every_file(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    r = run(train_cmd(run_dir, "--epochs", "2"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "epoch 1/2" in r.stdout and "epoch 2/2" in r.stdout
    for name in ("config.json", "status.json", "metrics.jsonl", "model.keras", "model.json", "best.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "backup").is_dir()
    assert (run_dir / "eval" / "val_metrics.json").is_file() and (run_dir / "eval" / "val_predictions.npz").is_file()
    cfg = TrainConfig.load(run_dir / "config.json")
    assert cfg.epochs == 2 and cfg.width == 16 and cfg.data == str(SAMPLE)
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["eval"]["val"]["n"] == 210
    epochs, _ = runs.read_metrics(run_dir)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all({"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(e) for e in epochs)
    card = json.loads((run_dir / "model.json").read_text())
    assert card["labels"][3] == "happy" and card["input"]["crop_size"] == 44
    assert card["tta"] == "none" and "val_accuracy" in card["metrics"]
    assert card["training"]["width"] == 16


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_continues_from_last_finished_epoch(tmp_path):
    run_dir = tmp_path / "runs" / "r2"
    proc = subprocess.Popen(
        train_cmd(run_dir, "--epochs", "4", "--max-train-images", "350"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
        cwd=REPO,
    )
    try:
        wait_for(lambda: epoch_rows(run_dir) == [1, 2], 240, "two finished epochs", proc)
        # The third epoch is under way once its first progress line lands; kill it there.
        wait_for(lambda: '"epoch": 3' in (run_dir / "metrics.jsonl").read_text(), 60, "epoch 3 progress", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert runs.read_status(run_dir)["state"] == "failed"  # a dead 'running' process reads as failed
    meta = json.loads((run_dir / "backup" / "training_metadata.json").read_text())
    assert meta["epoch"] == 2
    # Resume with a longer run: the epoch count is the one setting a resume may change.
    r = run(fer_cli("train", "--run-dir", str(run_dir), "--resume", "--epochs", "5"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "epoch 1/5" not in r.stdout and "epoch 2/5" not in r.stdout
    assert "epoch 3/5" in r.stdout and "epoch 5/5" in r.stdout
    assert "resumed after epoch 2: data order and augmentation seeded" in r.stdout
    status = runs.read_status(run_dir)
    assert status["state"] == "finished" and status["resumed"] is True
    assert TrainConfig.load(run_dir / "config.json").epochs == 5
    epochs, _ = runs.read_metrics(run_dir)
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    # The learning-rate schedule continued (cosine reaches 0 at the last epoch), it did not restart.
    assert epochs[-1]["lr"] < 1e-6 < epochs[1]["lr"] and epochs[2]["lr"] < epochs[1]["lr"]

    # Promoting the run puts what really happened into the shipped card.
    out = tmp_path / "models" / "promoted.keras"
    r = run(fer_cli("promote", str(run_dir), "--out", str(out), "--tta", "flip", "--recalibrate-bn"))
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads(out.with_suffix(".json").read_text())
    history = card["training_history"]
    assert history["epochs_finished"] == 5 and history["epochs_changed"] == [{"after_epoch": 2, "from": 4, "to": 5}]
    assert history["lr_by_epoch"] == [round(e["lr"], 6) for e in epochs]
    assert len(history["val_accuracy_by_epoch"]) == 5 and history["train_seconds"] > 0
    assert card["tta"] == "flip" and card["metrics"]["val_n"] == 210 and card["source_run"] == "r2"
    assert (out.parent / "promoted.eval" / "val_predictions.npz").is_file()
    recal = card["finalize"]["batchnorm_recalibrated"]
    assert recal["faces"] == 350 and recal["split"] == "train" and recal["layers"] > 5


@pytest.mark.slow
def test_jobs_launch_stop_resume_and_lock(tmp_path):
    runs_dir = tmp_path / "runs"
    cfg = TrainConfig(data=str(SAMPLE), arch="resnet10", width=16, batch_size=32, epochs=200, eval_tta="none")
    run_dir = jobs.launch(cfg, runs_dir, "long")
    try:
        wait_for(
            lambda: runs.read_status(run_dir).get("state") == "running" and epoch_rows(run_dir),
            240,
            "the job to finish an epoch",
        )
        # A second launch in the same runs folder is refused, naming the running job.
        with pytest.raises(jobs.JobError, match=r"another training job is running: long \(pid \d+\)"):
            jobs.launch(cfg, runs_dir, "second")
        assert not (runs_dir / "second").exists()
        assert jobs.running_job(runs_dir)["run"] == "long"
        jobs.request_stop(run_dir)
        wait_for(lambda: runs.read_status(run_dir).get("state") == "stopped", 120, "the job to stop")
        assert jobs.running_job(runs_dir) is None
        stopped_at = epoch_rows(run_dir)[-1]
        with pytest.raises(jobs.JobError, match="is not running"):
            jobs.request_stop(run_dir)
        # Resume continues the same run from where it stopped.
        jobs.launch(None, runs_dir, "long", resume=True)
        wait_for(
            lambda: runs.read_status(run_dir).get("state") == "running" and max(epoch_rows(run_dir)) > stopped_at,
            240,
            "the resumed job to finish an epoch",
        )
        assert runs.read_status(run_dir)["resumed"] is True
        jobs.request_stop(run_dir)
        wait_for(lambda: runs.read_status(run_dir).get("state") == "stopped", 120, "the resumed job to stop")
        log = (run_dir / "train.log").read_text()
        assert f"epoch {stopped_at + 1}/200" in log
    finally:
        st = runs.read_status(run_dir)
        if st.get("state") == "running" and st.get("pid"):
            os.kill(int(st["pid"]), signal.SIGKILL)


def test_cli_refuses_second_job_while_lock_is_held(tmp_path):
    runs_dir = tmp_path / "runs"
    lock = jobs.RunsLock(runs_dir)
    lock.acquire("holder")
    try:
        r = run(train_cmd(runs_dir / "other", "--epochs", "1"), timeout=120)
        assert r.returncode == 2
        assert "another training job is running" in r.stderr and "holder" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        lock.release()
    assert jobs.running_job(runs_dir) is None


def test_failure_lands_in_status(tmp_path):
    run_dir = tmp_path / "runs" / "bad"
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n1,1 2 3,Training\n")
    r = run(fer_cli("train", "--data", str(bad), "--run-dir", str(run_dir), *TINY), timeout=120)
    assert r.returncode == 1
    st = runs.read_status(run_dir)
    assert st["state"] == "failed" and "row 2: 3 pixel values" in st["error"]


def test_bad_arguments_are_one_line_errors(tmp_path):
    r = run(fer_cli("train", "--data", str(tmp_path / "nope")), timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "dataset not found" in r.stderr
    r = run(fer_cli("train", "--data", str(SAMPLE), "--optimizer", "rms"), timeout=60)
    assert r.returncode == 2 and "optimizer must be one of" in r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multiworker_two_processes_on_loopback(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run_dir = tmp_path / "runs" / "mw"
    procs = []
    for i in range(2):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        procs.append(
            subprocess.Popen(
                train_cmd(
                    run_dir,
                    "--epochs",
                    "1",
                    "--strategy",
                    "multiworker",
                    "--max-train-images",
                    "128",
                    "--precision",
                    "float32",
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                cwd=REPO,
            )
        )
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=300)
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "CollectiveAllReduceStrategy (2 replica(s))" in out  # the class behind MultiWorkerMirroredStrategy
    assert runs.read_status(run_dir)["state"] == "finished"
    assert epoch_rows(run_dir) == [1]
    assert (run_dir / "model.keras").exists()
    # The second worker kept its files apart from the chief's.
    assert (run_dir / "workers" / "1" / "status.json").exists()


def test_augmentation_shapes_and_ranges():
    tf = pytest.importorskip("tensorflow")
    from fer_core.augment import augment_batch
    from fer_core.pipeline import class_weight_vector

    cfg = TrainConfig(crop_size=44, erasing=1.0)
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 1)), tf.float32)
    out = augment_batch(x, cfg).numpy()
    assert out.shape == (8, 44, 44, 1)
    assert out.min() >= 0 and out.max() <= 255
    w = class_weight_vector(np.array([0] * 90 + [1] * 10), 2, "balanced")
    assert w[1] / w[0] == pytest.approx(9.0)
    assert (np.array([0] * 90 + [1] * 10).choose(w)).mean() == pytest.approx(1.0)


@pytest.mark.slow
def test_a_resumed_process_does_not_replay_the_first_epochs_batches():
    pytest.importorskip("tensorflow")
    import keras

    from fer_core.augment import stream_seed
    from fer_core.data import load_dataset
    from fer_core.pipeline import make_datasets

    cfg = TrainConfig(data=str(SAMPLE), crop_size=44, batch_size=64, erasing=0.5, seed=3)
    ds = load_dataset(SAMPLE)

    def first_batch_labels(resume_point: int):
        seed = stream_seed(cfg.seed, resume_point)
        keras.utils.set_random_seed(seed)  # as _train does, before building the pipeline
        _, y, _ = next(iter(make_datasets(ds, cfg, len(ds.class_names), shuffle_seed=seed)[0]))
        return y.numpy().argmax(1)

    # The order of faces follows the seed exactly; the augmentation draws do not (the batches
    # are augmented in parallel), so the order is what is compared.
    assert stream_seed(3, 0) == 3 and len({stream_seed(3, k) for k in range(6)}) == 6
    y0 = first_batch_labels(0)
    np.testing.assert_array_equal(y0, first_batch_labels(0))  # a new run's order follows its seed
    assert not np.array_equal(y0, first_batch_labels(2))  # a process resumed after epoch 2 draws other faces


@pytest.mark.slow
def test_keep_epochs_average_and_warm_start(tmp_path):
    import keras

    run_a = tmp_path / "runs" / "a"
    r = run(train_cmd(run_a, "--epochs", "3", "--keep-epochs", "2", "--max-train-images", "200"))
    assert r.returncode == 0, r.stderr[-3000:]
    kept = sorted(p.name for p in (run_a / "epochs").iterdir())
    assert kept == ["epoch_002.weights.h5", "epoch_003.weights.h5"]

    # promote --average ships the mean of the kept epochs, with BatchNorm recomputed for it.
    out = tmp_path / "models" / "avg.keras"
    r = run(fer_cli("promote", str(run_a), "--out", str(out), "--tta", "none", "--average", "2"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mean of epochs 2-3" in r.stdout
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["finalize"]["weight_average"] == {"epochs": [2, 3], "count": 2}
    assert card["finalize"]["batchnorm_recalibrated"]["faces"] == 350  # the whole training split
    assert "best_epoch" not in card["metrics"] and card["metrics"]["val_n"] == 210
    model = keras.models.load_model(run_a / "model.keras", compile=False)
    per_epoch = []
    for name in kept:
        model.load_weights(run_a / "epochs" / name)
        per_epoch.append([w.numpy().copy() for w in model.trainable_weights])
    shipped = [w.numpy() for w in keras.models.load_model(out, compile=False).trainable_weights]
    assert not np.allclose(per_epoch[0][0], per_epoch[1][0])
    for a, b, s in zip(*per_epoch, shipped, strict=True):
        np.testing.assert_allclose(s, (a + b) / 2, rtol=1e-5, atol=1e-6)

    r = run(fer_cli("promote", str(run_a), "--out", str(tmp_path / "x.keras"), "--average", "3"), timeout=120)
    assert r.returncode == 2 and "2 epoch weight file(s) kept, 3 asked" in r.stderr

    # A warm start begins from the averaged weights: at a negligible learning rate they barely move.
    run_b = tmp_path / "runs" / "b"
    r = run(
        train_cmd(
            run_b, "--epochs", "1", "--init-weights", str(out), "--schedule", "constant", "--learning-rate", "1e-9"
        )
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"initial weights from {out}" in r.stdout
    card_b = json.loads((run_b / "model.json").read_text())
    assert card_b["init_from"]["path"] == str(out) and card_b["init_from"]["name"] == "avg"
    started = [w.numpy() for w in keras.models.load_model(run_b / "model.keras", compile=False).trainable_weights]
    for s, b in zip(shipped, started, strict=True):
        np.testing.assert_allclose(b, s, rtol=1e-3, atol=1e-5)

    # A model of another shape is refused before training starts, naming the setting.
    r = run(train_cmd(tmp_path / "runs" / "c", "--epochs", "1", "--init-weights", str(out), "--width", "24"))
    assert r.returncode == 2 and r.stderr.startswith("error: init_weights: ") and "width 16 (this run: 24)" in r.stderr
    assert not (tmp_path / "runs" / "c").exists()


def test_distillation_loss_mixes_labels_and_teacher():
    import keras

    from fer_core.distill import distillation_loss

    labels = np.eye(3, dtype=np.float32)[[0, 2]]
    teacher = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], np.float32)
    student = np.array([[0.5, 0.4, 0.1], [0.1, 0.1, 0.8]], np.float32)
    y = np.concatenate([labels, teacher], axis=1)
    ce = np.asarray(keras.losses.categorical_crossentropy(labels, student))
    np.testing.assert_allclose(distillation_loss(3, 2.0, 0.0)(y, student), ce, rtol=1e-5)
    # alpha 1: only the teacher term, zero when the student matches the teacher, positive otherwise.
    assert np.allclose(distillation_loss(3, 2.0, 1.0)(y, teacher), 0.0, atol=1e-6)
    kl = np.asarray(distillation_loss(3, 1.0, 1.0)(y, student))
    expected = (teacher * np.log(teacher / student)).sum(axis=1)  # T = 1: the plain KL divergence
    np.testing.assert_allclose(kl, expected, rtol=1e-4)


@pytest.mark.slow
def test_distilled_student_names_its_teacher(tmp_path):
    from tests.conftest import make_tiny_model

    teacher = make_tiny_model(tmp_path / "teacher", name="tiny_teacher")
    run_dir = tmp_path / "runs" / "student"
    r = run(
        train_cmd(run_dir, "--epochs", "2", "--max-train-images", "200", "--teacher", str(teacher))
        + ["--distill-temperature", "3", "--distill-alpha", "0.5", "--distill-targets", "online"]
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"distilling from {teacher} (T 3.0, alpha 0.5, online targets)" in r.stdout
    card = json.loads((run_dir / "model.json").read_text())
    assert card["distilled_from"]["path"] == str(teacher) and card["distilled_from"]["name"] == "tiny_teacher"
    assert card["distilled_from"]["temperature"] == 3.0 and card["training"]["teacher"] == str(teacher)
    epochs, _ = runs.read_metrics(run_dir)
    assert [e["epoch"] for e in epochs] == [1, 2] and all(0 <= e["val_accuracy"] <= 1 for e in epochs)

    # Cached targets (the default): the teacher runs once per image, before training; the file is kept for a resume.
    cached_dir = tmp_path / "runs" / "cached"
    r = run(train_cmd(cached_dir, "--epochs", "1", "--max-train-images", "200", "--teacher", str(teacher)))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "teacher targets: 200/200 faces" in r.stdout
    assert json.loads((cached_dir / "model.json").read_text())["distilled_from"]["targets"] == "cached"
    assert np.load(cached_dir / "teacher_targets.npy").shape == (200, 7)

    # A teacher that sees other crops than the student is refused before training, in one line.
    r = run(train_cmd(tmp_path / "runs" / "bad", "--epochs", "1", "--teacher", str(teacher), "--crop-size", "40"))
    assert r.returncode == 2 and r.stderr.startswith("error: teacher: ") and "crop size 44" in r.stderr


def test_cached_teacher_targets_are_the_teachers_mirror_averaged_probabilities(tmp_path):
    from fer_core.data import load_dataset
    from fer_core.distill import cached_teacher_targets
    from fer_core.engine import load_engine
    from fer_core.pipeline import training_arrays
    from fer_core.runs import TEACHER_TARGETS
    from tests.conftest import make_tiny_model

    teacher = make_tiny_model(tmp_path / "teacher")
    cfg = TrainConfig(teacher=str(teacher), max_train_images=50, arch="resnet10", width=8)
    ds = load_dataset(cfg.data)
    faces, _ = training_arrays(ds, cfg)
    targets = cached_teacher_targets(cfg, ds, tmp_path)
    expected = load_engine(teacher).predict_proba(faces, "flip")
    assert targets.shape == (50, 7)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(targets, expected, rtol=1e-5, atol=1e-6)  # the sample's labels are in card order
    # A resumed run reads the saved file instead of running the teacher again.
    np.save(tmp_path / TEACHER_TARGETS, np.full_like(targets, 1 / 7))
    assert np.allclose(cached_teacher_targets(cfg, ds, tmp_path), 1 / 7)


def test_an_ensemble_is_refused_as_a_warm_start_in_plain_words(tmp_path):
    from fer_core.train import initial_weights_origin
    from tests.conftest import make_tiny_model

    path = make_tiny_model(tmp_path)
    card = json.loads(path.with_suffix(".json").read_text())
    card["members"] = [{"name": "a"}, {"name": "b"}]
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(FerError, match="is an ensemble of 2 networks; a warm start needs one network") as err:
        initial_weights_origin(TrainConfig(init_weights=str(path), arch="resnet10", width=8))
    assert "--" not in str(err.value)  # the Train page shows it too: no CLI flags


def test_missing_start_models_are_errors_the_user_can_fix(tmp_path):
    """A missing warm start or teacher is a FerError (the CLI and the Train page show it in one line)."""
    from fer_core.train import check_start_models

    for field in ("init_weights", "teacher"):
        with pytest.raises(FerError, match=f"^{field}: .*nowhere.keras"):
            check_start_models(TrainConfig(**{field: str(tmp_path / "nowhere.keras")}))
