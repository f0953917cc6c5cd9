"""A training run logs to MLflow when mlflow is installed (optional: the workbench does not need it),
and a tracking backend that fails never fails the run."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest

from .conftest import REPO, SAMPLE
from .test_train import ENV, fer_cli


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed")
def test_a_run_logs_params_and_epoch_metrics_to_mlflow(tmp_path, monkeypatch):
    # A file store in the test's folder (MLflow 3 asks for an opt-in to it): the default tracking URI,
    # a SQLite file, needs SQLAlchemy, which the lean mlflow-skinny install does not bring.
    uri = (tmp_path / "mlruns").as_uri()
    run_dir = tmp_path / "runs" / "tracked"
    cmd = fer_cli("train", "--data", str(SAMPLE), "--run-dir", str(run_dir), "--arch", "resnet10", "--width", "8")
    cmd += ["--batch-size", "64", "--epochs", "2", "--eval-tta", "none"]
    env = {**ENV, "MLFLOW_TRACKING_URI": uri, "MLFLOW_ALLOW_FILE_STORE": "true"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    client = MlflowClient(tracking_uri=uri)
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [x.info.run_name for x in found] == ["tracked"]
    logged = found[0]
    assert logged.data.params["arch"] == "resnet10" and logged.data.params["width"] == "8"
    history = client.get_metric_history(logged.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1] and all(0.0 <= m.value <= 1.0 for m in history)
    assert logged.info.status == "FINISHED"


def test_a_tracking_backend_that_fails_leaves_training_running(tmp_path, monkeypatch, capsys):
    import sys
    import types

    keras = pytest.importorskip("keras")
    import numpy as np

    calls = []

    def refuse(*args, **kwargs):
        calls.append("start_run")
        raise RuntimeError("unsupported URI 'sqlite:///mlflow.db'\nmore detail")

    fake = types.SimpleNamespace(
        start_run=refuse,
        log_params=lambda *a, **k: calls.append("log_params"),
        log_metrics=lambda *a, **k: calls.append("log_metrics"),
        end_run=lambda *a, **k: calls.append("end_run"),
    )
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    from fer_core.tracking import _mlflow_callback

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).normal(size=(16, 4)), np.arange(16) % 3
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=[_mlflow_callback("r", {"lr": 0.1})])
    assert len(history.history["loss"]) == 2
    assert calls == ["start_run"]  # nothing more is tried once the backend refused
    err = capsys.readouterr().err
    assert err.count("MLflow logging off for this run: RuntimeError: unsupported URI") == 1 and "more detail" not in err
