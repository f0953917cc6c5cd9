"""The sidebar dataset chooser keeps what was typed and recovers from a bad path; dataset
caches are keyed on the data's identity; the quality report lists every image of a finding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from .conftest import REPO, SAMPLE

PAGE = str(REPO / "pages" / "1_Dataset.py")


def write_kaggle(root: Path, per_class: int = 3, classes=("angry", "happy", "sad"), seed: int = 0) -> Path:
    """A tiny Kaggle-layout dataset of random 48x48 faces: per_class in train/ and in test/ (PublicTest)."""
    rng = np.random.default_rng(seed)
    for split, prefix in (("train", "Training"), ("test", "PublicTest")):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                face = rng.integers(0, 256, (48, 48), dtype=np.uint8)
                Image.fromarray(face).save(d / f"{prefix}_{c}{i}.png")
    return root


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """FER_DATA = the bundled sample; tmp_path may be read (FER_DATA_ROOTS)."""
    monkeypatch.setenv("FER_DATA", str(SAMPLE))
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path))
    return tmp_path


def _metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def test_bad_folder_then_good_path_shows_the_good_dataset(roots):
    not_a_dataset = roots / "photos"
    not_a_dataset.mkdir()
    (not_a_dataset / "notes.txt").write_text("no images here")
    good = write_kaggle(roots / "mini", per_class=4)

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert _metrics(at)["train"] == "350"
    at.text_input[0].set_value(str(not_a_dataset)).run()
    assert not at.exception
    assert any("Still showing" in e.value and str(SAMPLE) in e.value for e in at.error)
    assert at.text_input[0].value == str(not_a_dataset)  # what the user typed stays in the box
    assert _metrics(at)["train"] == "350"  # the previous dataset stays on screen

    at.text_input[0].set_value(str(good)).run()
    assert not at.exception and not at.error
    assert at.text_input[0].value == str(good)
    assert _metrics(at)["train"] == "12" and _metrics(at)["val"] == "12"
    at.run()  # and it stays there on the next interaction
    assert _metrics(at)["train"] == "12" and at.text_input[0].value == str(good)


def test_sample_button_recovers_from_a_bad_path(roots):
    good = write_kaggle(roots / "mini", per_class=2)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.text_input[0].set_value(str(good)).run()
    assert _metrics(at)["train"] == "6"
    at.text_input[0].set_value(str(roots / "typo")).run()
    assert any("no such file or folder" in e.value for e in at.error)
    assert _metrics(at)["train"] == "6"
    at.button[0].click().run()  # Use the bundled sample
    assert not at.error
    assert at.text_input[0].value == str(SAMPLE) and _metrics(at)["train"] == "350"


def test_fingerprint_follows_the_files_not_the_name(tmp_path):
    from fer_core.data import DataError, dataset_fingerprint

    root = write_kaggle(tmp_path / "d", per_class=2)
    before = dataset_fingerprint(root)
    assert dataset_fingerprint(str(root) + "/") == before == dataset_fingerprint(tmp_path / "d" / ".." / "d")
    Image.new("L", (48, 48)).save(root / "train" / "happy" / "Training_new.png")
    assert dataset_fingerprint(root) != before
    with pytest.raises(DataError, match="no such file or folder"):
        dataset_fingerprint(tmp_path / "missing")


def test_dataset_page_reloads_a_dataset_changed_on_disk(roots):
    good = write_kaggle(roots / "mini", per_class=2)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.text_input[0].set_value(str(good)).run()
    assert _metrics(at)["train"] == "6"
    Image.new("L", (48, 48), 128).save(good / "train" / "happy" / "Training_added.png")
    at.run()
    assert _metrics(at)["train"] == "7"


def _dup_dataset():
    """12 copies of one face over train and val with 5 different labels, 2 exact duplicates in train,
    one blank face and one unreadable file."""
    from fer_core.data import FaceDataset

    rng = np.random.default_rng(1)
    shared = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    pair = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    others = rng.integers(0, 256, (5, 48, 48), dtype=np.uint8)
    images = np.concatenate(
        [np.repeat(shared[None], 12, 0), np.repeat(pair[None], 2, 0), others, np.zeros((1, 48, 48))]
    )
    labels = np.array([0] * 8 + [1, 2, 3, 4] + [5, 5] + [0, 1, 2, 3, 4] + [6])
    splits = np.array(["train"] * 6 + ["val"] * 6 + ["train"] * 8)
    names = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    return FaceDataset(
        images.astype(np.uint8),
        labels,
        names,
        splits,
        np.array([f"f{i}.png" for i in range(20)]),
        skipped=[{"source": "broken.jpg", "reason": "not an image"}],
    )


def test_findings_list_every_image_and_label_of_a_group():
    from fer_core.quality import filter_findings, findings, findings_rows, quality_report

    groups = findings(quality_report(_dup_dataset()))
    big = groups[0]
    assert big["kinds"] == ["duplicate", "leak", "conflicting labels"]
    assert big["size"] == 12 and len(big["items"]) == 12
    assert big["labels"] == {"angry": 8, "disgust": 1, "fear": 1, "happy": 1, "sad": 1}
    assert big["splits"] == ["train", "val"]
    assert [g["kinds"] for g in groups[1:]] == [["duplicate"], ["near-blank"], ["unreadable"]]
    assert [g["id"] for g in filter_findings(groups, ["conflicting labels"])] == [1]
    assert [g["id"] for g in filter_findings(groups, ["leak", "near-blank"])] == [1, 3]
    with pytest.raises(ValueError, match="Unknown finding kind"):
        filter_findings(groups, ["dupes"])
    rows = findings_rows(groups)
    assert len(rows) == 12 + 2 + 1 + 1
    assert rows[0]["kinds"] == "duplicate; leak; conflicting labels" and rows[-1]["detail"] == "not an image"


def write_dup_dataset(root: Path) -> Path:
    """_dup_dataset() on disk in the Kaggle layout (train/ and test/PublicTest_* = val)."""
    ds = _dup_dataset()
    for i, (face, label, split) in enumerate(zip(ds.images, ds.labels, ds.splits, strict=True)):
        top, prefix = ("train", "Training") if split == "train" else ("test", "PublicTest")
        d = root / top / ds.class_names[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face).save(d / f"{prefix}_{i}.png")
    (root / "train" / "angry" / "Training_broken.jpg").write_bytes(b"not an image")
    return root


def test_quality_browser_shows_all_images_of_a_group(roots):
    data = write_dup_dataset(roots / "dups")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.text_input[0].set_value(str(data)).run()
    assert not at.exception and not at.error
    metrics = _metrics(at)
    assert (metrics["duplicate"], metrics["leak"], metrics["conflicting labels"]) == ("2", "1", "1")
    assert (metrics["near-blank"], metrics["unreadable"]) == ("1", "1")
    table = at.dataframe[0].value
    assert list(table["kind"]) == ["duplicate, leak, conflicting labels", "duplicate", "near-blank", "unreadable"]
    assert table["labels"][0] == "angry x8, disgust, fear, happy, sad"
    group = at.dataframe[1].value  # the first group, every image listed with its label
    assert len(group) == 12 and sorted(set(group["label"])) == ["angry", "disgust", "fear", "happy", "sad"]
    at.session_state["quality_kinds"] = ["near-blank"]  # the kind filter
    at.run()
    assert list(at.dataframe[0].value["kind"]) == ["near-blank"]


def test_intensity_histograms_match_numpy():
    from dashboard.figures import intensity_histograms

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 3, 300)
    fig = intensity_histograms(images, labels, ["a", "b", "c"])
    edges = np.linspace(0, 256, 33)
    for i, trace in enumerate(fig.data):
        h, _ = np.histogram(images[labels == i], bins=edges)
        np.testing.assert_allclose(trace.y, h / h.sum())
        assert trace.name.endswith(f"(mean {images[labels == i].mean():.0f})")
