"""Models: a model that disagrees with its card, or is broken, is refused at load with one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fer_core.cli import main
from fer_core.constants import EMOTIONS

from .conftest import make_tiny_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A good tiny model and broken variants of it, each with a card beside it."""
    import keras

    from fer_core.card import make_card, save_card

    folder = tmp_path_factory.mktemp("models")
    good = make_tiny_model(folder, name="good")
    card = json.loads(good.with_suffix(".json").read_text())

    nan = folder / "nan.keras"
    m = keras.models.load_model(good, compile=False)
    m.set_weights([np.full_like(w, np.nan) for w in m.get_weights()])
    m.save(nan)
    shutil.copy(good.with_suffix(".json"), nan.with_suffix(".json"))

    logits = folder / "logits.keras"
    inp = keras.Input((44, 44, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    out = keras.layers.Dense(len(EMOTIONS), bias_initializer="ones")(keras.layers.Flatten()(x))
    keras.Model(inp, out).save(logits)
    save_card(logits, make_card(name="logits", class_names=EMOTIONS, crop_size=44))

    crop = folder / "crop.keras"
    shutil.copy(good, crop)
    save_card(crop, {**card, "input": {**card["input"], "crop_size": 40}})

    truncated = folder / "truncated.keras"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    shutil.copy(good.with_suffix(".json"), truncated.with_suffix(".json"))

    face = folder / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)).save(face)
    return {"good": good, "nan": nan, "logits": logits, "crop": crop, "truncated": truncated, "face": face}


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("nan", "outputs NaN or infinite scores"),
        ("logits", "not probabilities"),
        ("crop", "its card says crop_size 40"),
        ("truncated", "corrupt or truncated"),
    ],
)
def test_predict_refuses_a_broken_model_in_one_line(models, capsys, which, message):
    rc = main(["predict", str(models["face"]), "--whole-image", "--model", str(models[which])])
    out, err = capsys.readouterr()
    assert rc == 2, out
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert "nan%" not in out and "File not found" not in err


def test_good_model_still_predicts(models, capsys):
    assert main(["predict", str(models["face"]), "--whole-image", "--model", str(models["good"])]) == 0
    assert "%" in capsys.readouterr().out


def test_serve_with_a_broken_model_refuses_to_start(models, capsys, monkeypatch):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: served.append(a))
    rc = main(["serve", "--model", str(models["nan"]), "--port", "8765"])
    assert rc == 2 and not served
    assert "outputs NaN" in capsys.readouterr().err
