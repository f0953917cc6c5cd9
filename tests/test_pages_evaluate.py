"""Evaluate page under streamlit.testing (AppTest) from stored predictions with no dataset,
plus the gallery filter and the page's figure/table builders as plain functions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fer_core.constants import EMOTIONS
from fer_core.evaluate import save_predictions
from fer_core.metrics import compute_metrics, pair_indices
from tests.conftest import REPO

# The dashboard loads pylibsrtp, which segfaults when TensorFlow was imported first (see
# dashboard/__init__.py). When earlier test modules already loaded TensorFlow, this
# module's tests run in a fresh pytest process instead (the last test below).
IN_PROCESS = "pylibsrtp" in sys.modules or "tensorflow" not in sys.modules
if IN_PROCESS:
    import dashboard  # noqa: F401  (before anything imports TensorFlow)
    from dashboard import evaluation_ui as ui

in_process = pytest.mark.skipif(not IN_PROCESS, reason="TensorFlow came first; run by test_in_a_fresh_process")


def _fake_predictions(n: int = 70, seed: int = 0):
    """Labels, softmax-like probabilities (right about 60% of the time) and Kaggle-style sources."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, n)
    probs = rng.dirichlet(np.ones(7), n)
    right = rng.random(n) < 0.6
    probs[right, labels[right]] += 2.0
    probs /= probs.sum(axis=1, keepdims=True)
    sources = np.array([f"test/{EMOTIONS[y]}/PublicTest_{i}.jpg" for i, y in enumerate(labels)])
    return labels, probs.astype(np.float32), sources


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A models folder with an untrained tiny model, its card and stored val predictions."""
    import keras

    from fer_core.card import make_card, save_card
    from fer_core.evaluate import eval_dir_for
    from fer_core.model import create_model

    d = tmp_path_factory.mktemp("models")
    path = d / "tiny.keras"
    keras.utils.set_random_seed(0)
    create_model("resnet10", width=8, input_shape=(44, 44, 1)).save(path)
    save_card(path, make_card(name="tiny", class_names=EMOTIONS, crop_size=44, tta="none"))
    ev = eval_dir_for(path)
    ev.mkdir()
    labels, probs, sources = _fake_predictions()
    save_predictions(ev / "val_predictions.npz", labels, probs, sources, EMOTIONS)
    (ev / "val_metrics.json").write_text(json.dumps({"tta": "flip"}))
    return d


@pytest.fixture
def app(models_dir, tmp_path, monkeypatch):
    """The Evaluate page with only the tiny model, no runs, and a dataset path that holds no data."""
    from streamlit.testing.v1 import AppTest

    from dashboard import resources

    monkeypatch.setattr(resources, "MODELS_DIR", models_dir)
    monkeypatch.setattr(resources, "DEFAULT_MODEL", models_dir / "tiny.keras")
    monkeypatch.setattr(resources, "RUNS_DIR", tmp_path / "no-runs")
    empty = tmp_path / "empty-dataset"
    empty.mkdir()
    monkeypatch.setenv("FER_DATA", str(empty))
    monkeypatch.syspath_prepend(str(REPO))
    return AppTest.from_file(str(REPO / "pages" / "3_Evaluate.py"), default_timeout=180)


@in_process
def test_page_shows_stored_predictions_without_a_dataset(app):
    at = app.run()
    assert not at.exception, at.exception
    labels, probs, _ = _fake_predictions()
    probs = probs.astype(np.float16).astype(np.float32)  # stored as float16
    acc = float((probs.argmax(1) == labels).mean())
    shown = {m.label: m.value for m in at.metric}
    assert shown["faces"] == "70"
    assert shown["accuracy"] == f"{acc:.1%}"
    assert at.selectbox(key="eval_source").value == "stored predictions: val (TTA flip)"
    assert any("Stored predictions still work" in w.value for w in at.sidebar.warning)
    # The gallery starts on the most confused pair; pick another pair and count its faces.
    at.selectbox(key="eval_true").set_value("angry")
    at.selectbox(key="eval_pred").set_value("happy")
    at.run()
    assert not at.exception, at.exception
    n = int(((labels == 0) & (probs.argmax(1) == 3)).sum())
    assert any(c.value.startswith(f"{n} faces: true angry, predicted happy") for c in at.caption)
    # Comparison needs a second model; with one it says so instead of failing.
    assert any("Only one model available" in i.value for i in at.info)


@in_process
def test_gallery_filter_returns_exactly_that_cell():
    labels, probs, _ = _fake_predictions(300, seed=1)
    pred = probs.argmax(1)
    total = 0
    for a in range(7):
        for b in range(7):
            got = pair_indices(labels, probs, a, b)
            assert np.all(labels[got] == a) and np.all(pred[got] == b)
            assert len(got) == int(((labels == a) & (pred == b)).sum())
            total += len(got)
    assert total == 300  # every face is in exactly one cell
    cm = np.array(compute_metrics(labels, probs, EMOTIONS)["confusion_matrix"])
    assert len(pair_indices(labels, probs, 2, 5)) == cm[2, 5]


@in_process
def test_cell_from_selection():
    event = {"selection": {"points": [{"x": "happy", "y": "sad", "curve_number": 1}]}}
    assert ui.cell_from_selection(event, EMOTIONS) == (EMOTIONS.index("sad"), EMOTIONS.index("happy"))
    assert ui.cell_from_selection({"selection": {"points": []}}, EMOTIONS) is None
    assert ui.cell_from_selection(None, EMOTIONS) is None


@in_process
def test_figures_and_tables():
    labels, probs, _ = _fake_predictions()
    m = compute_metrics(labels, probs, EMOTIONS)
    fig = ui.confusion_figure(m["confusion_matrix"], EMOTIONS, normalised=False, selected=(1, 2))
    heat, cells = fig.data
    assert np.array(heat.z).tolist() == m["confusion_matrix"]
    assert len(cells.x) == 49 and len(fig.layout.shapes) == 1
    norm = ui.confusion_figure(m["confusion_matrix"], EMOTIONS, normalised=True).data[0]
    assert np.allclose(np.array(norm.z).sum(axis=1)[np.array(m["confusion_matrix"]).sum(axis=1) > 0], 1.0)
    rel = ui.reliability_figure(m["calibration"])
    assert sum(b["count"] for b in m["calibration"]["bins"]) == 70 and len(rel.data) == 3
    table = ui.per_class_frame(m)
    assert list(table["class"]) == list(EMOTIONS) and table["support"].sum() == 70
    csv = ui.to_csv(ui.confusion_frame(m["confusion_matrix"], EMOTIONS), index=True)
    assert csv.splitlines()[0] == "true \\ predicted," + ",".join(EMOTIONS)
    perfect = compute_metrics(labels, np.eye(7)[labels], EMOTIONS)
    cmp = ui.comparison_frame(m, perfect)
    assert cmp.iloc[-1]["recall_delta"] == pytest.approx(1.0 - m["accuracy"])
    assert (cmp.iloc[:-1]["recall_b"].fillna(1.0) == 1.0).all()


@in_process
def test_model_and_source_options(models_dir, tmp_path):
    opts = ui.model_options(models_dir, tmp_path / "no-runs")
    assert opts == {"shipped: tiny": str(models_dir / "tiny.keras")}
    src = ui.source_options(models_dir / "tiny.keras", {"train": 5, "val": 0, "test": 3})
    assert [(s.kind, s.split) for s in src] == [("stored", "val"), ("dataset", "test")]


@pytest.mark.skipif(IN_PROCESS, reason="ran in this process")
def test_in_a_fresh_process():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "7 passed" in r.stdout, r.stdout[-2000:]


def _add_model(models_dir, tmp_path, name: str, seed: int, flip_sources: bool):
    """A copy of the tiny model as `name` with stored val predictions (other faces when flip_sources)."""
    import shutil

    from fer_core.evaluate import eval_dir_for

    d = tmp_path / "models"
    if not d.exists():
        shutil.copytree(models_dir, d)
    shutil.copy(d / "tiny.keras", d / f"{name}.keras")
    card = json.loads((d / "tiny.json").read_text()) | {"name": name}
    (d / f"{name}.json").write_text(json.dumps(card))
    ev = eval_dir_for(d / f"{name}.keras")
    ev.mkdir()
    labels, probs, sources = _fake_predictions(seed=seed)
    if flip_sources:
        sources = np.array([s.replace("PublicTest", "PrivateTest") for s in sources])
    else:
        labels, _, sources = _fake_predictions()  # A's faces and labels, B's own probabilities
    save_predictions(ev / "val_predictions.npz", labels, probs, sources, EMOTIONS)
    return d


@in_process
def test_compare_offers_only_models_on_the_same_faces(app, models_dir, tmp_path, monkeypatch):
    from dashboard import resources

    d = _add_model(models_dir, tmp_path, "other", seed=1, flip_sources=True)
    monkeypatch.setattr(resources, "MODELS_DIR", d)
    at = app.run()
    at.selectbox(key="eval_model").set_value("shipped: tiny").run()
    assert not at.exception, at.exception
    # "other" was evaluated on other faces: not offered, and no -56.9% bars drawn for it.
    assert any("No other model has predictions on these 70 faces" in i.value for i in at.info)
    assert not [s for s in at.selectbox if s.key == "eval_other"]

    d = _add_model(models_dir, tmp_path, "same", seed=2, flip_sources=False)
    at = app.run()
    at.selectbox(key="eval_model").set_value("shipped: tiny").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="eval_other").options == ["shipped: same"]
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text") for c in at.get("plotly_chart")]
    assert "recall: B (same) minus A (tiny)" in titles


@in_process
def test_per_face_frame():
    labels, probs, sources = _fake_predictions()
    frame = ui.per_face_frame({"labels": labels, "probs": probs, "sources": sources, "class_names": EMOTIONS})
    assert len(frame) == 70 and list(frame.columns[:5]) == ["source", "true", "predicted", "correct", "confidence"]
    assert frame["correct"].mean() == pytest.approx(float((probs.argmax(1) == labels).mean()))
    assert list(frame["predicted"]) == [EMOTIONS[k] for k in probs.argmax(1)]
    np.testing.assert_allclose(frame[[f"p_{n}" for n in EMOTIONS]].to_numpy().sum(axis=1), 1.0, atol=1e-3)
    assert ui.same_faces({"sources": sources}, {"sources": list(sources)})
    assert not ui.same_faces({"sources": sources}, {"sources": sources[::-1]})
