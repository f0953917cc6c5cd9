"""Ensembles: one model file averaging several models, used like any model (card, inference,
Grad-CAM, export), and the `ensemble` command that builds and evaluates it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_core.card import load_card
from fer_core.ensemble import combine, ensemble_members
from tests.conftest import eager_proba

from .conftest import SAMPLE, make_tiny_model
from .test_train import fer_cli, run

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    folder = tmp_path_factory.mktemp("members")
    keras.utils.set_random_seed(1)
    a = make_tiny_model(folder, name="a")
    b = make_tiny_model(folder, name="b", policy="mixed_bfloat16")
    return a, b


def _faces(n=12):
    return np.random.default_rng(0).integers(0, 256, (n, 48, 48)).astype(np.uint8)


def test_output_is_the_mean_of_the_members(members, tmp_path):
    out = tmp_path / "ens.keras"
    card = combine(members, out, tta="flip")
    assert card["training"]["arch"] == "ensemble" and card["tta"] == "flip"
    assert [m["name"] for m in card["members"]] == ["a", "b"] and card["labels"] == load_card(members[0])["labels"]
    model = keras.models.load_model(out, compile=False)
    assert [m.name for m in ensemble_members(model)] == ["member_0", "member_1"]
    faces = _faces()
    each = [eager_proba(keras.models.load_model(p, compile=False), faces, "flip") for p in members]
    both = eager_proba(model, faces, "flip")
    assert not np.allclose(each[0], each[1], atol=1e-3)
    np.testing.assert_allclose(both, (each[0] + each[1]) / 2, atol=2e-3)  # member b computes in bfloat16
    assert np.allclose(both.sum(axis=1), 1.0, atol=1e-4)
    assert card["params"] == sum(keras.models.load_model(p, compile=False).count_params() for p in members)


def test_only_like_models_combine(members, tmp_path):
    other = make_tiny_model(tmp_path, name="other", labels=("angry", "happy", "sad"))
    with pytest.raises(ValueError, match="card's labels differs"):
        combine([members[0], other], tmp_path / "x.keras")
    with pytest.raises(ValueError, match="at least two models"):
        combine([members[0]], tmp_path / "y.keras")
    assert not (tmp_path / "x.keras").exists()


def test_gradcam_is_the_mean_of_member_maps(members, tmp_path):
    from fer_core.explain import gradcam

    out = tmp_path / "ens.keras"
    combine(members, out)
    model = keras.models.load_model(out, compile=False)
    face = _faces(1)[0]
    hm = gradcam(model, face, 44, 3)
    maps = [gradcam(m, face, 44, 3) for m in ensemble_members(model)]
    mean = np.mean(maps, axis=0)
    assert hm.shape == (48, 48) and hm.max() <= 1.0 and hm.min() >= 0.0
    np.testing.assert_allclose(hm, mean / mean.max(), atol=1e-6)


def test_recognizer_and_export_treat_it_as_one_model(members, tmp_path):
    from fer_core.export import export_model
    from fer_core.inference import Recognizer

    out = tmp_path / "ens.keras"
    combine(members, out, tta="none")
    rec = Recognizer(out)
    faces = _faces(4)
    expected = eager_proba(keras.models.load_model(out, compile=False), faces, "none")
    np.testing.assert_allclose(rec.classify(faces), expected, atol=1e-4)
    report = export_model(out, "tflite", tmp_path / "exported.tflite")
    assert report["passed"] and (tmp_path / "exported.tflite").is_file() and report["top1_agreement"] >= 0.99


def test_cli_builds_and_evaluates(members, tmp_path):
    out = tmp_path / "models" / "ens.keras"
    r = run(fer_cli("ensemble", *map(str, members), "--out", str(out), "--data", str(SAMPLE), "--tta", "none"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mean of 2 models" in r.stdout and f"member {members[0]}" in r.stdout
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["metrics"]["val_n"] == 210 and 0.0 <= card["metrics"]["val_accuracy"] <= 1.0
    assert (out.parent / "ens.eval" / "val_predictions.npz").is_file()
    r = run(
        fer_cli("ensemble", str(members[0]), str(tmp_path / "nope.keras"), "--out", str(out), "--data", str(SAMPLE))
    )
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "nope.keras: model file not found" in r.stderr
