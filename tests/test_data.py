"""Data layer: every loader, every error path, the cache, and the quality report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from fer_core.constants import EMOTIONS
from fer_core.data import DataError, detect_format, load_dataset, stratified_split
from fer_core.quality import quality_report

from .conftest import REPO, SAMPLE, SHARED_FER, needs_shared_fer

# ----------------------------------------------------------------------------- helpers


def pixels(value: int = 0, n: int = 2304, rng=None) -> str:
    if rng is not None:
        return " ".join(str(v) for v in rng.integers(0, 256, n))
    return " ".join([str(value)] * n)


def write_csv(path, rows, header="emotion,pixels,Usage"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def save_img(path, arr, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)


# ----------------------------------------------------------------------------- CSV


def test_csv_reads_labels_splits_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    rows = [f"3,{pixels(rng=rng)},Training", f"0,{pixels(7)},PublicTest", f"6,{pixels(9)},PrivateTest"]
    ds = load_dataset(write_csv(tmp_path / "fer2013.csv", rows), cache_dir="")
    assert ds.format == "csv" and ds.class_names == EMOTIONS
    assert ds.images.shape == (3, 48, 48) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [3, 0, 6]
    assert ds.splits.tolist() == ["train", "val", "test"]
    assert ds.sources.tolist() == ["row 2", "row 3", "row 4"]
    assert (ds.images[1] == 7).all()


def test_csv_in_folder_is_found(tmp_path):
    write_csv(tmp_path / "data.csv", [f"1,{pixels(1)},Training"])
    assert detect_format(tmp_path) == "csv"
    assert len(load_dataset(tmp_path, cache_dir="")) == 1


def test_csv_without_usage_gets_stratified_split(tmp_path):
    rows = [f"{i % 2},{pixels(i % 200)}" for i in range(40)]
    ds = load_dataset(write_csv(tmp_path / "x.csv", rows, header="emotion,pixels"), cache_dir="", seed=1)
    for c in (0, 1):
        s = ds.splits[ds.labels == c]
        assert (s == "val").sum() == 2 and (s == "test").sum() == 2 and (s == "train").sum() == 16


@pytest.mark.parametrize(
    "header,rows,match",
    [
        ("label,image,Usage", ["0,1 2,Training"], r"missing column\(s\) emotion, pixels"),
        ("emotion,pixels,Usage", [f"0,{pixels(1, 2300)},Training"], r"row 2: 2300 pixel values, expected 2304"),
        (
            "emotion,pixels,Usage",
            [f"0,{pixels(1)},Training", f"1,{pixels(1)[:-1]}1x,Training"],
            r"row 3: non-numeric pixel value '1x'",
        ),
        ("emotion,pixels,Usage", [f"9,{pixels(1)},Training"], r"row 2: emotion 9 is out of range"),
        ("emotion,pixels,Usage", [f"happy,{pixels(1)},Training"], r"row 2: emotion 'happy' is not an integer"),
        ("emotion,pixels,Usage", [f"1,{pixels(300)},Training"], r"row 2: pixel values must be 0-255"),
        ("emotion,pixels,Usage", [f"1,{pixels(3)},Holdout"], r"row 2: Usage 'Holdout'"),
        ("emotion,pixels,Usage", [], r"no rows"),
    ],
)
def test_csv_errors_name_the_row(tmp_path, header, rows, match):
    path = write_csv(tmp_path / "bad.csv", rows, header=header)
    with pytest.raises(DataError, match=match) as exc:
        load_dataset(path, cache_dir="")
    assert "\n" not in str(exc.value)
    assert "bad.csv" in str(exc.value)


# ----------------------------------------------------------------------------- Kaggle layout


def test_sample_kaggle_layout_counts(sample_dataset):
    ds = sample_dataset
    assert ds.format == "kaggle" and ds.class_names == EMOTIONS
    counts = ds.counts()
    assert set(counts) == {"train", "val"}
    assert all(v == 50 for v in counts["train"].values())
    assert all(v == 30 for v in counts["val"].values())
    assert all(s.startswith("test/") and "PublicTest_" in s for s in ds.split("val").sources)


def test_kaggle_test_folder_prefixes_decide_split(tmp_path):
    face = np.full((48, 48), 120, np.uint8)
    save_img(tmp_path / "train/happy/Training_1.jpg", face)
    save_img(tmp_path / "test/happy/PublicTest_1.jpg", face)
    save_img(tmp_path / "test/sad/PrivateTest_2.jpg", face)
    save_img(tmp_path / "test/sad/img_3.png", face)
    ds = load_dataset(tmp_path, cache_dir="")
    by_source = dict(zip(ds.sources.tolist(), ds.splits.tolist(), strict=True))
    assert by_source == {
        "train/happy/Training_1.jpg": "train",
        "test/happy/PublicTest_1.jpg": "val",
        "test/sad/PrivateTest_2.jpg": "test",
        "test/sad/img_3.png": "test",
    }
    assert ds.class_names == EMOTIONS  # FER names keep the FER-2013 label order


# ----------------------------------------------------------------------------- class folders


def test_class_folders_any_names_colour_and_size_converted(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("zebra", "apple"):
        for i in range(10):
            save_img(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (96, 80, 3), dtype=np.uint8))
    ds = load_dataset(tmp_path, cache_dir="", val_fraction=0.2, test_fraction=0.1, seed=3)
    assert ds.format == "folders"
    assert ds.class_names == ("apple", "zebra")
    assert ds.images.shape == (20, 48, 48)
    for c in (0, 1):
        s = ds.splits[ds.labels == c]
        assert (s == "val").sum() == 2 and (s == "test").sum() == 1
    again = load_dataset(tmp_path, cache_dir="", val_fraction=0.2, test_fraction=0.1, seed=3)
    assert again.splits.tolist() == ds.splits.tolist()  # seeded


def test_stratified_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(np.zeros(5, int), 0.6, 0.5, 0)


# ----------------------------------------------------------------------------- bad files and folders


def test_bad_files_are_skipped_counted_and_listed(tmp_path):
    face = np.full((48, 48), 100, np.uint8)
    save_img(tmp_path / "happy/good.jpg", face)
    save_img(tmp_path / "sad/good.png", face)
    (tmp_path / "happy/empty.jpg").write_bytes(b"")
    (tmp_path / "happy/not_an_image.jpg").write_text("hello, I am text")
    good = (tmp_path / "happy/good.jpg").read_bytes()
    (tmp_path / "sad/truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "sad/notes.txt").write_text("readme")
    ds = load_dataset(tmp_path, cache_dir="")
    assert len(ds) == 2
    reasons = {s["source"]: s["reason"] for s in ds.skipped}
    assert set(reasons) == {"happy/empty.jpg", "happy/not_an_image.jpg", "sad/truncated.jpg", "sad/notes.txt"}
    assert "empty" in reasons["happy/empty.jpg"]
    assert "not an image" in reasons["happy/not_an_image.jpg"]
    assert "corrupt or truncated" in reasons["sad/truncated.jpg"]
    assert quality_report(ds)["skipped"] == ds.skipped


def test_folder_without_images(tmp_path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="found no image files"):
        load_dataset(tmp_path, cache_dir="")


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="no class folders and no CSV"):
        load_dataset(tmp_path, cache_dir="")
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset(tmp_path / "nope", cache_dir="")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="expected a FER-2013 .csv"):
        load_dataset(tmp_path / "x.json", cache_dir="")


def test_all_files_unreadable(tmp_path):
    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "a.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="none of the 1 image files could be decoded"):
        load_dataset(tmp_path, cache_dir="")


# ----------------------------------------------------------------------------- cache


def test_cache_hit_and_invalidation(tmp_path):
    data = tmp_path / "data"
    face = np.full((48, 48), 50, np.uint8)
    save_img(data / "happy/a.png", face)
    save_img(data / "sad/b.png", face)
    cache = tmp_path / "cache"
    first = load_dataset(data, cache_dir=cache)
    files = list(cache.glob("faces-*.npz"))
    assert len(files) == 1
    second = load_dataset(data, cache_dir=cache)
    np.testing.assert_array_equal(first.images, second.images)
    assert second.sources.tolist() == first.sources.tolist()
    # Changing a file (size/mtime) changes the key: a new cache entry with the new pixels.
    save_img(data / "sad/b.png", np.full((48, 48), 200, np.uint8))
    os.utime(data / "sad/b.png", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    third = load_dataset(data, cache_dir=cache)
    assert len(list(cache.glob("faces-*.npz"))) == 2
    assert third.images[third.sources.tolist().index("sad/b.png")].mean() == 200


# ----------------------------------------------------------------------------- quality report


def test_quality_report_duplicates_and_blank(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    b = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    save_img(tmp_path / "train/happy/Training_1.png", a)
    save_img(tmp_path / "train/happy/Training_2.png", a)  # within-split duplicate
    save_img(tmp_path / "train/sad/Training_3.png", b)
    save_img(tmp_path / "test/angry/PublicTest_4.png", b)  # cross-split leak, conflicting labels
    save_img(tmp_path / "train/fear/Training_5.png", np.zeros((48, 48), np.uint8))  # blank
    save_img(tmp_path / "train/fear/Training_6.png", rng.integers(0, 256, (48, 48), dtype=np.uint8))
    rep = quality_report(load_dataset(tmp_path, cache_dir=""))
    d = rep["duplicates"]
    assert d["group_count"] == 2 and d["within_split"] == 1 and d["cross_split"] == 1
    assert d["conflicting_labels"] == 1
    leak = d["groups"][0]
    assert leak["cross_split"] and leak["splits"] == ["train", "val"] and leak["labels"] == ["angry", "sad"]
    assert [x["source"] for x in rep["near_blank"]] == ["train/fear/Training_5.png"]
    assert rep["totals"] == {"train": 5, "val": 1, "all": 6}
    assert rep["imbalance_ratio"]["train"] == 2.0  # happy 2 / sad 1 (empty classes ignored)


# ----------------------------------------------------------------------------- CLI


def run_cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "fer_core", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_cli_dataset_json(tmp_path):
    out = tmp_path / "report.json"
    r = run_cli("dataset", str(SAMPLE), "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "happy" in r.stdout and "total" in r.stdout
    rep = json.loads(out.read_text())
    assert rep["totals"]["train"] == 350 and rep["counts"]["val"]["disgust"] == 30


def test_cli_dataset_bad_path_one_line_error(tmp_path):
    r = run_cli("dataset", str(tmp_path / "missing"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: ")
    assert "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- full FER-2013


@needs_shared_fer()
def test_shared_fer2013_exact_counts(tmp_path):
    out = tmp_path / "out.json"
    r = run_cli("dataset", str(SHARED_FER), "--json", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["totals"]["train"] == 28709 and rep["totals"]["val"] == 3589
    assert rep["counts"]["train"] == {
        "angry": 3995,
        "disgust": 436,
        "fear": 4097,
        "happy": 7215,
        "sad": 4830,
        "surprise": 3171,
        "neutral": 4965,
    }
    assert rep["counts"]["val"] == {
        "angry": 467,
        "disgust": 56,
        "fear": 496,
        "happy": 895,
        "sad": 653,
        "surprise": 415,
        "neutral": 607,
    }
    # The second load comes from the decode cache.
    t = time.perf_counter()
    ds = load_dataset(SHARED_FER)
    assert len(ds) == 32298
    print(f"second load of FER-2013: {time.perf_counter() - t:.2f} s")
