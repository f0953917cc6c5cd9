"""The Train page: chance-level warning, start-up noise hidden from the log, a readable runs table,
compare charts with distinct colours and whole-number epochs, TensorBoard event files per run."""

from __future__ import annotations

import numpy as np
import pytest

from dashboard.figures import compare_curves
from dashboard.train_ui import chance_warning, clean_log, runs_rows

LOG = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796171615.378229   25087 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1796171615.378667   25087 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
E0000 00:00:1796171618.805503   25087 cuda_executor.cc:1309] failed call to cuInit: INTERNAL
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
run r1: 2 epochs on 350 images
epoch 1/2 loss 1.95 accuracy 0.143
"""


def test_clean_log_hides_tensorflow_start_up_lines_only():
    text, hidden = clean_log(LOG)
    assert text.splitlines() == ["run r1: 2 epochs on 350 images", "epoch 1/2 loss 1.95 accuracy 0.143"]
    assert hidden == 5
    assert clean_log("Traceback (most recent call last):\nValueError: bad") == (
        "Traceback (most recent call last):\nValueError: bad",
        0,
    )


@pytest.mark.parametrize(
    ("accs", "n", "warns"),
    [
        ([0.2, 0.1428], 7, True),  # exactly 1/7: one class every time
        ([0.15, 0.149], 7, True),  # within a point of chance
        ([0.3, 0.41], 7, False),
        ([0.1428], 7, False),  # one epoch is too early to say
        ([0.5, 0.5], 2, True),
    ],
)
def test_chance_warning(accs, n, warns):
    epochs = [{"epoch": i + 1, "val_accuracy": a} for i, a in enumerate(accs)]
    msg = chance_warning(epochs, n)
    assert (msg is not None) == warns
    if warns:
        assert f"{accs[-1]:.1%}" in msg and f"{1 / n:.1%}" in msg and "one class" in msg


def test_runs_table_has_no_none():
    rows = runs_rows(
        [
            {"run": "a", "state": "queued", "epoch": 0, "epochs": None, "best_val_accuracy": None, "started": ""},
            {
                "run": "b",
                "state": "finished",
                "epoch": 3,
                "epochs": 3,
                "best_val_accuracy": 0.4567,
                "started": "2026-12-01T10:00:00+00:00",
                "has_model": True,
            },
        ]
    )
    assert "None" not in str(rows)
    assert rows[0]["best val accuracy"] == "–" and rows[1]["best val accuracy"] == "45.7%"
    assert rows[1]["epoch"] == "3 of 3" and rows[1]["started"] == "2026-12-01 10:00:00"


def test_compare_curves_distinct_colours_and_integer_epochs():
    runs = {f"r{k}": [{"epoch": e, "val_accuracy": 0.1 * e} for e in (1, 2)] for k in range(3)}
    fig = compare_curves(runs)
    colours = [t.line.color for t in fig.data]
    assert len(set(colours)) == 3
    assert fig.layout.xaxis.tickformat == "d" and fig.layout.xaxis.dtick == 1


def test_event_files_round_trip(tmp_path):
    pytest.importorskip("tensorflow")
    from fer_core.tracking import read_scalars, write_scalars

    w = write_scalars(tmp_path, 0, {"epoch_loss": 2.0, "epoch_accuracy": 0.25})
    write_scalars(tmp_path, 1, {"epoch_loss": 1.5}, w).close()
    assert read_scalars(tmp_path) == {"epoch_loss": [(0, 2.0), (1, 1.5)], "epoch_accuracy": [(0, 0.25)]}


def test_tracking_callbacks_write_tensorboard_files_during_fit(tmp_path):
    keras = pytest.importorskip("keras")
    from fer_core.tracking import TENSORBOARD_DIR, read_scalars, tracking_callbacks

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.random.default_rng(0).normal(size=(16, 4)), np.arange(16) % 3
    model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=tracking_callbacks(tmp_path, {"lr": 0.1}))
    train = read_scalars(tmp_path / TENSORBOARD_DIR / "train")
    val = read_scalars(tmp_path / TENSORBOARD_DIR / "validation")
    assert [s for s, _ in train["epoch_loss"]] == [0, 1] and [s for s, _ in val["epoch_accuracy"]] == [0, 1]
    assert 0.0 <= val["epoch_accuracy"][-1][1] <= 1.0
