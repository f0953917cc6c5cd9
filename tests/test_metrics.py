"""Metrics against small cases worked out by hand, and the helpers the CLI and page share."""

from __future__ import annotations

import numpy as np
import pytest

from fer_core.card import label_mapping
from fer_core.evaluate import evaluate_dataset, require_split
from fer_core.metrics import (
    calibration,
    compare_per_class,
    compute_metrics,
    confusion,
    normalise_rows,
    pair_indices,
    top_k,
)

NAMES = ("a", "b", "c")
# Six predictions over three classes. Predicted (argmax): 0, 1, 1, 1, 2, 0.
Y = np.array([0, 0, 1, 1, 2, 2])
P = np.array(
    [
        [0.65, 0.25, 0.10],  # true a, predicted a (conf 0.65)
        [0.30, 0.55, 0.15],  # true a, predicted b (conf 0.55)
        [0.15, 0.75, 0.10],  # true b, predicted b (conf 0.75)
        [0.05, 0.85, 0.10],  # true b, predicted b (conf 0.85)
        [0.10, 0.15, 0.75],  # true c, predicted c (conf 0.75)
        [0.45, 0.35, 0.20],  # true c, predicted a (conf 0.45); c not even in the top 2
    ]
)


def test_confusion_and_row_normalisation():
    cm = confusion(Y, P.argmax(1), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    rn = normalise_rows(np.array([[1, 3], [0, 0]]))
    assert rn.tolist() == [[0.25, 0.75], [0.0, 0.0]]  # an empty row stays 0, no division warning


def test_compute_metrics_hand_worked():
    m = compute_metrics(Y, P, NAMES)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # precision: a 1/2 (rows 0 and 5 predicted a), b 2/3, c 1/1; recall: a 1/2, b 2/2, c 1/2
    pc = m["per_class"]
    assert [pc[n]["precision"] for n in NAMES] == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert [pc[n]["recall"] for n in NAMES] == pytest.approx([1 / 2, 1.0, 1 / 2])
    assert [pc[n]["f1"] for n in NAMES] == pytest.approx([0.5, 0.8, 2 / 3])
    assert [pc[n]["support"] for n in NAMES] == [2, 2, 2]
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["top2_accuracy"] == pytest.approx(5 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["confusion_matrix_normalised"] == [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]
    assert m["most_confused"] == [
        {"true": "a", "predicted": "b", "count": 1, "rate": 0.5},
        {"true": "c", "predicted": "a", "count": 1, "rate": 0.5},
    ]


def test_calibration_hand_worked():
    cal = calibration(Y, P, bins=10)
    # bins (0.4,0.5]: 0.45 wrong; (0.5,0.6]: 0.55 wrong; (0.6,0.7]: 0.65 right;
    # (0.7,0.8]: 0.75, 0.75 both right; (0.8,0.9]: 0.85 right.
    counts = [b["count"] for b in cal["bins"]]
    assert counts == [0, 0, 0, 0, 1, 1, 1, 2, 1, 0]
    assert cal["bins"][7]["accuracy"] == 1.0 and cal["bins"][7]["confidence"] == pytest.approx(0.75)
    assert cal["bins"][4]["accuracy"] == 0.0
    assert cal["bins"][0]["accuracy"] is None  # empty bins have no accuracy, not 0
    assert cal["ece"] == pytest.approx((0.45 + 0.55 + 0.35 + 2 * 0.25 + 0.15) / 6)


def test_perfectly_calibrated_and_absent_class():
    # Class c never occurs: it is reported with support 0 but left out of the class means.
    y = np.array([0, 1, 1])
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    m = compute_metrics(y, p, NAMES)
    assert m["accuracy"] == 1.0 and m["balanced_accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["per_class"]["c"]["support"] == 0
    assert m["calibration"]["ece"] == pytest.approx(0.0)


def test_compute_metrics_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(Y, P[:, :2], NAMES)
    with pytest.raises(ValueError, match="No samples"):
        compute_metrics(np.zeros(0, int), np.zeros((0, 3)), NAMES)


def test_label_mapping_by_name():
    model = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert label_mapping(("Happy", "sad"), model).tolist() == [3, 4]
    assert label_mapping(model, model).tolist() == list(range(7))
    with pytest.raises(ValueError, match="contempt.*not among the model's labels"):
        label_mapping(("happy", "contempt"), model)


def test_pair_indices_is_exactly_the_cell():
    pred = P.argmax(1)
    for t in range(3):
        for q in range(3):
            got = pair_indices(Y, P, t, q)
            assert got.tolist() == [i for i in range(6) if Y[i] == t and pred[i] == q]
    assert pair_indices(Y, P, 0, 1).tolist() == [1]
    assert pair_indices(Y, P, None, 0).tolist() == [0, 5]
    assert pair_indices(Y, P, None, None).tolist() == list(range(6))


def test_top_k():
    assert top_k(P[5], NAMES, 2) == [("a", pytest.approx(0.45)), ("b", pytest.approx(0.35))]


def test_compare_per_class():
    a = compute_metrics(Y, P, NAMES)
    b = compute_metrics(Y, np.eye(3)[Y], NAMES)  # a perfect model
    rows = {r["class"]: r for r in compare_per_class(a, b)}
    assert rows["a"]["recall_delta"] == pytest.approx(0.5)
    assert rows["b"]["recall_delta"] == pytest.approx(0.0)
    assert rows["b"]["precision_delta"] == pytest.approx(1 / 3)
    assert rows["c"]["f1_b"] == 1.0 and rows["c"]["f1_a"] == pytest.approx(2 / 3)


def _brightness_model():
    """A real Keras model that predicts "happy" for bright faces and "sad" for dark ones."""
    import keras

    inp = keras.Input((44, 44, 1))
    mean = keras.layers.GlobalAveragePooling2D()(inp)
    dense = keras.layers.Dense(7, activation="softmax")
    model = keras.Model(inp, dense(mean))
    w = np.zeros((1, 7), np.float32)
    b = np.full(7, -100.0, np.float32)
    w[0, 3], b[3] = 1.0, -127.0  # happy: brightness above 127
    w[0, 4], b[4] = -1.0, 127.0  # sad: below
    dense.set_weights([w, b])
    return model


def test_evaluate_dataset_maps_classes_by_name():
    from fer_core.data import FaceDataset

    # A dataset whose own label order is (sad, happy), lower-case and capitalised.
    images = np.concatenate([np.full((3, 48, 48), 20, np.uint8), np.full((2, 48, 48), 230, np.uint8)])
    ds = FaceDataset(
        images=images,
        labels=np.array([0, 0, 1, 1, 1]),  # the third dark face is labelled Happy: one error
        class_names=("sad", "Happy"),
        splits=np.array(["test"] * 5),
        sources=np.array([f"f{i}" for i in range(5)]),
    )
    card = {"labels": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"], "input": {"crop_size": 44}}
    metrics, preds = evaluate_dataset(_brightness_model(), card, ds, "test", "flip")
    assert preds["labels"].tolist() == [4, 4, 3, 3, 3]
    assert metrics["accuracy"] == pytest.approx(4 / 5)
    assert metrics["per_class"]["happy"]["recall"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["angry"]["support"] == 0
    assert metrics["split_sizes"] == {"train": 0, "val": 0, "test": 5}
    assert metrics["tta"] == "flip" and metrics["split"] == "test"
    with pytest.raises(ValueError, match="val split .* is empty.*use --split test"):
        require_split(ds, "val")


def test_photo_tta_is_the_cheapest_mode_within_one_standard_error():
    from fer_core.preprocess import choose_photo_tta

    # 3,589 faces at 71%: one standard error is 0.76 points.
    assert choose_photo_tta({"none": 0.7074, "flip": 0.7086, "tencrop": 0.7116}, 3589) == "none"
    assert choose_photo_tta({"none": 0.690, "flip": 0.7086, "tencrop": 0.7116}, 3589) == "flip"
    assert choose_photo_tta({"none": 0.690, "flip": 0.700, "tencrop": 0.7116}, 3589) == "tencrop"
    # On few faces the error is wide: the cheapest mode wins.
    assert choose_photo_tta({"none": 0.60, "tencrop": 0.70}, 20) == "none"
    with pytest.raises(ValueError, match="n=0"):
        choose_photo_tta({"none": 0.7}, 0)
