"""Experiment tracking a Keras user expects: TensorBoard event files in every run folder, and
MLflow when it is installed (optional: nothing in the workbench needs it).

`tracking_callbacks(run_dir, config)` is what training adds to its callbacks list.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

TENSORBOARD_DIR = "tensorboard"  # inside the run folder: `tensorboard --logdir runs/` shows every run


def tracking_callbacks(run_dir: str | Path, config: dict | None = None) -> list:
    """Keras callbacks writing TensorBoard event files to run_dir/tensorboard (always) and logging to
    MLflow (when `mlflow` is importable)."""
    import keras

    log_dir = Path(run_dir) / TENSORBOARD_DIR
    if importlib.util.find_spec("tensorboard") is not None:
        tb = keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False, profile_batch=0)
    else:  # keras.callbacks.TensorBoard needs the tensorboard package for tf.summary.scalar
        tb = _event_file_callback(log_dir)
    out = [tb]
    if importlib.util.find_spec("mlflow") is not None:
        out.append(_mlflow_callback(Path(run_dir).name, config or {}))
    return out


def write_scalars(folder: str | Path, step: int, scalars: dict[str, float], writer=None):
    """Append one TensorBoard Event per scalar (TFRecord of tensorflow Event protos) to an
    events.out.tfevents file in `folder`; returns the writer to pass next time."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2
    from tensorflow.core.util import event_pb2

    if writer is None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"events.out.tfevents.{int(time.time())}.fer-workbench"
        writer = tf.io.TFRecordWriter(str(path))
        writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    for tag, value in scalars.items():
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        writer.write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary).SerializeToString())
    writer.flush()
    return writer


def _event_file_callback(log_dir: Path):
    """The scalars keras.callbacks.TensorBoard writes (train/ and validation/ folders, epoch_* tags),
    written without the tensorboard package."""
    import keras

    class EventFiles(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.writers = {}

        def on_epoch_end(self, epoch, logs=None):
            split = {"train": {}, "validation": {}}
            for key, value in (logs or {}).items():
                if isinstance(value, int | float):
                    side = "validation" if key.startswith("val_") else "train"
                    split[side]["epoch_" + key.removeprefix("val_")] = value
            lr = getattr(self.model.optimizer, "learning_rate", None)
            if lr is not None:
                split["train"]["epoch_learning_rate"] = float(keras.ops.convert_to_numpy(lr))
            for side, scalars in split.items():
                if scalars:
                    self.writers[side] = write_scalars(log_dir / side, epoch, scalars, self.writers.get(side))

        def on_train_end(self, logs=None):
            for w in self.writers.values():
                w.close()
            self.writers = {}

    return EventFiles()


def _mlflow_callback(run_name: str, config: dict):
    """Parameters once, metrics every epoch, to the MLflow tracking URI of the environment.

    MLflow is a convenience beside the run folder, so a tracking backend that cannot be used (no
    server, a store this mlflow install cannot open: mlflow-skinny's default SQLite URI needs
    SQLAlchemy) costs one line in the log and the rest of the run's logging to MLflow, never the run.
    """
    import keras
    import mlflow

    class MLflowLogger(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.active, self.started = True, False

        def _call(self, fn, *args, **kwargs) -> bool:
            if not self.active:
                return False
            try:
                fn(*args, **kwargs)
                return True
            except Exception as exc:  # noqa: BLE001 - any tracking failure must leave training running
                self.active = False
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                print(f"MLflow logging off for this run: {type(exc).__name__}: {first}", file=sys.stderr, flush=True)
                return False

        def on_train_begin(self, logs=None):
            params = {k: v for k, v in config.items() if isinstance(v, str | int | float | bool)}
            self.started = self._call(mlflow.start_run, run_name=run_name)
            self._call(mlflow.log_params, params)

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
            self._call(mlflow.log_metrics, metrics, step=epoch)

        def on_train_end(self, logs=None):
            if self.started:  # close what was opened, even after a failed log call
                self.active = True
                self._call(mlflow.end_run)

    return MLflowLogger()


def read_scalars(folder: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from the event files in `folder` (for tests and quick checks)."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            for v in event.summary.value:
                value = v.simple_value if v.HasField("simple_value") else float(tf.make_ndarray(v.tensor))
                out.setdefault(v.tag, []).append((int(event.step), value))
    return out
