"""The Home page: the model card is readable (figures, recall per class, intended use, limitations,
training) with the raw JSON behind an expander, and a first-steps box."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from .conftest import REPO

SHIPPED = REPO / "models" / "fer_resnet.json"


def _card(**extra) -> dict:
    card = {
        "name": "m",
        "labels": ["a", "b", "c"],
        "input": {"image_size": 48, "crop_size": 44},
        "tta": "flip",
        "params": 1234567,
        "metrics": {
            "val_accuracy": 0.654,
            "val_n": 300,
            "val_recall": {"a": 0.9, "b": 0.31, "c": 0.55},
            "best_epoch": 7,
        },
        "training": {"arch": "resnet10", "width": 16, "epochs": 9, "optimizer": "adam", "learning_rate": 0.001},
        "training_history": {"epochs_finished": 9, "train_seconds": 5400},
        "dataset": {"format": "csv", "counts": {"train": {"a": 50, "b": 7, "c": 40}}},
    }
    return card | extra


def test_headline_values_are_short_and_follow_the_card():
    from dashboard.card_ui import headline

    single = dict((label, value) for label, value, _ in headline(_card()))
    assert single == {
        "Accuracy on PublicTest (val)": "65.4%",
        "Input": "44x44 gray",
        "Parameters": "1,234,567",
        "Best epoch": "7",
    }
    ens = dict((label, value) for label, value, _ in headline(_card(members=[_card(), _card()])))
    assert ens["Ensemble"] == "2 models"  # 'N models, probabilities averaged' would be cut off
    assert all(len(v) <= 16 for v in ens.values())


def test_limitations_name_this_cards_weak_and_small_classes():
    from dashboard.card_ui import GENERAL_LIMITATIONS, limitations

    lines = limitations(_card())
    assert lines[: len(GENERAL_LIMITATIONS)] == GENERAL_LIMITATIONS
    assert "Weak classes on val: b (31% recall), c (55% recall); answers of a (90%) and c (55%)" in lines[-2]
    assert lines[-1] == "Fewest training faces: b (7 of 97)."
    assert limitations(_card(metrics={}, dataset={})) == GENERAL_LIMITATIONS


def test_training_rows_one_per_network():
    from dashboard.card_ui import training_rows

    (row,) = training_rows(_card())
    assert row["architecture"] == "resnet10 width 16" and row["epochs"] == 9 and row["train time"] == "1.5 h"
    assert row["val accuracy"] == "65.4%" and row["augmentation"] == "none"
    assert len(training_rows(_card(members=[_card(source_run="r1"), _card(source_run="r2")]))) == 2


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped model card")
def test_home_shows_a_readable_card_and_first_steps():
    card = json.loads(SHIPPED.read_text())
    at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=60).run()
    assert not at.exception
    assert any("First steps" in m.value for m in at.markdown)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accuracy on PublicTest (val)"] == f"{card['metrics']['val_accuracy']:.1%}"
    if card.get("members"):
        assert metrics["Ensemble"] == f"{len(card['members'])} models"
    recall = at.get("plotly_chart")[0].proto.spec
    assert all(name in recall for name in card["labels"])
    text = " ".join(m.value for m in at.markdown)
    assert "Intended use" in text and "Limitations" in text and "Do not use it to make decisions" in text
    assert len(at.dataframe[0].value) == len(card.get("members") or [card])  # how it was trained
    assert at.expander[0].label.startswith("Full model card") and not at.json  # raw JSON only in the expander
