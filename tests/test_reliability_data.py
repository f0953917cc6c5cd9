"""Datasets: unreadable files are skipped and listed, symlinks followed, test-only roots read."""

from __future__ import annotations

import json
import os
import pathlib
import struct

import numpy as np
import pytest
from PIL import Image

from fer_core.cli import main
from fer_core.data import load_dataset
from fer_core.images import ImageError, decode_image

from .conftest import make_tiny_model


def face(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)).save(path)


def exotic_dds(path) -> None:
    """A DDS header whose pixel format flags Pillow does not implement (it raises NotImplementedError)."""
    header = struct.pack("<I", 124) + struct.pack("<3I", 0x1007, 48, 48) + bytes(120 - 12)
    path.write_bytes(b"DDS " + header)


@pytest.fixture
def messy(tmp_path, monkeypatch):
    """Class folders with one unreadable file, a dangling symlink, an exotic DDS and a symlinked class folder."""
    root = tmp_path / "faces"
    for cls in ("happy", "sad"):
        for i in range(4):
            face(root / cls / f"{i}.png", hash((cls, i)) % 1000)
    elsewhere = tmp_path / "elsewhere" / "angry"
    for i in range(4):
        face(elsewhere / f"{i}.png", 100 + i)
    os.symlink(elsewhere, root / "angry")
    os.symlink(tmp_path / "gone.png", root / "happy" / "dangling.png")
    exotic_dds(root / "sad" / "texture.png")  # DDS bytes under an image extension
    locked = root / "sad" / "locked.png"
    face(locked, 7)
    # Tests run as root, where chmod 000 does not stop reading: refuse this one file at open().
    real_open = pathlib.Path.open

    def guarded_open(self, *args, **kwargs):
        if self.name == "locked.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", guarded_open)
    return root


def test_unreadable_files_are_skipped_listed_and_symlinked_folders_followed(messy):
    ds = load_dataset(messy, cache_dir="")
    assert ds.class_names[0] == "angry" and len(ds) == 12  # the symlinked class folder is read
    reasons = {s["source"]: s["reason"] for s in ds.skipped}
    assert "Permission denied" in reasons["sad/locked.png"]
    assert "no such file" in reasons["happy/dangling.png"]
    assert "not supported" in reasons["sad/texture.png"]


def test_dataset_command_reports_them_in_the_quality_report(messy, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["dataset", str(messy), "--json", str(out)]) == 0
    assert "unreadable/skipped files: 3" in capsys.readouterr().out
    assert {s["source"] for s in json.loads(out.read_text())["skipped"]} == {
        "sad/locked.png",
        "happy/dangling.png",
        "sad/texture.png",
    }


def test_exotic_dds_is_an_image_error(tmp_path):
    exotic_dds(tmp_path / "x.dds")
    with pytest.raises(ImageError, match="not supported"):
        decode_image(tmp_path / "x.dds")
    with pytest.raises(ImageError, match="not supported"):
        decode_image((tmp_path / "x.dds").read_bytes())


@pytest.fixture
def test_only(tmp_path):
    """What someone evaluating on a test set alone has: ROOT/test/<class>/{PublicTest,PrivateTest}_*.png."""
    root = tmp_path / "kaggle"
    for k, cls in enumerate(("happy", "sad", "neutral")):
        for i in range(3):
            face(root / "test" / cls / f"PublicTest_{k}{i}.png", 10 * k + i)
            face(root / "test" / cls / f"PrivateTest_{k}{i}.png", 50 + 10 * k + i)
    return root


def test_a_root_with_only_test_is_the_kaggle_layout(test_only):
    ds = load_dataset(test_only, cache_dir="")
    assert ds.format == "kaggle" and "test" not in ds.class_names
    assert ds.counts()["test"]["happy"] == 3 and ds.counts()["val"]["sad"] == 3 and "train" not in ds.counts()


def test_the_test_folder_itself_keeps_its_splits(test_only):
    ds = load_dataset(test_only / "test", cache_dir="")
    assert sorted(str(s) for s in ds.sources[ds.splits == "test"]) == sorted(
        f"{c}/PrivateTest_{k}{i}.png" for k, c in enumerate(("happy", "sad", "neutral")) for i in range(3)
    )


def test_evaluate_on_a_test_only_root(test_only, tmp_path, capsys):
    model = make_tiny_model(tmp_path / "m")
    rc = main(["evaluate", "--data", str(test_only), "--split", "test", "--model", str(model), "--tta", "none"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "split sizes: train 0, val 9, test 9" in out and "9 faces" in out
