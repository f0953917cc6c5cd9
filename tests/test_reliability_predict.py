"""Batch predict and atomic writes: one bad file does not cost the others their results."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from PIL import Image

from fer_core import jsonio
from fer_core.cli import main

from .conftest import make_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def four(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"face{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (48, 48), dtype=np.uint8)).save(p)
        paths.append(str(p))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    paths.insert(2, str(bad))
    return paths


def test_one_bad_file_among_four_keeps_the_good_results(tmp_path, tiny, four, capsys):
    out = tmp_path / "out" / "results.json"
    rc = main(["predict", *four, "--whole-image", "--model", str(tiny), "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 1  # some inputs failed
    results = json.loads(out.read_text())
    assert [r["image"] for r in results] == four
    assert [("error" in r) for r in results] == [False, False, True, False]
    assert all(len(r["faces"]) == 1 for i, r in enumerate(results) if i != 2)
    assert "broken.jpg" in results[2]["error"]
    err = captured.err.strip().splitlines()
    assert err[0].startswith("error: ") and "broken.jpg" in err[0]
    assert err[-1] == "error: 1 of 4 inputs could not be read (listed above)."
    assert sum("%" in line for line in captured.out.splitlines()) == 3


def test_a_missing_file_among_good_ones_is_a_per_file_error(tmp_path, tiny, four, capsys):
    rc = main(["predict", four[0], str(tmp_path / "nope.png"), "--whole-image", "--model", str(tiny)])
    assert rc == 1 and "nope.png: no such file" in capsys.readouterr().err


def test_json_pointing_at_a_folder_is_one_line_and_leaves_no_temp_file(tmp_path, tiny, four, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    rc = main(["predict", four[0], "--whole-image", "--model", str(tiny), "--json", str(folder)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --json") and "is a folder" in err and len(err.strip().splitlines()) == 1
    assert list(folder.iterdir()) == [] and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_failures_keep_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    jsonio.write_json_atomic(target, {"state": "running"})
    with pytest.raises(IsADirectoryError):
        jsonio.write_json_atomic(tmp_path, {"x": 1})

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        jsonio.write_json_atomic(target, {"state": "failed"})
    assert json.loads(target.read_text()) == {"state": "running"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_dataset_json_pointing_at_a_folder_is_one_line(tmp_path, capsys):
    from .conftest import SAMPLE

    rc = main(["dataset", str(SAMPLE), "--json", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --json") and "is a folder" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
