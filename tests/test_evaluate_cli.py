"""``python -m fer_core evaluate`` on the sample, on odd Kaggle layouts, and on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SAMPLE

keras = pytest.importorskip("keras")
cv2 = pytest.importorskip("cv2")

from fer_core.card import make_card, save_card  # noqa: E402
from fer_core.cli import main  # noqa: E402
from fer_core.constants import EMOTIONS  # noqa: E402
from fer_core.model import create_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained resnet10 (width 8, 44x44) saved with its card; its accuracy means nothing."""
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    create_model("resnet10", width=8, input_shape=(44, 44, 1)).save(path)
    save_card(path, make_card(name="tiny", class_names=EMOTIONS, crop_size=44, tta="none"))
    return path


def _kaggle(root, files: dict[str, int]):
    """Write a Kaggle-layout root: {relative path: gray level} of 48x48 PNG faces."""
    rng = np.random.default_rng(0)
    for rel, level in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        img = np.clip(rng.normal(level, 20, (48, 48)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(p), img)
    return root


def _run(capsys, *argv):
    code = main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_val_json_matches_direct_computation(tiny_model, tmp_path, capsys):
    from fer_core.data import load_dataset
    from fer_core.metrics import compute_metrics
    from tests.conftest import eager_proba

    out_json = tmp_path / "m.json"
    code, out, err = _run(capsys, "--data", SAMPLE, "--model", tiny_model, "--tta", "flip", "--json", out_json)
    assert code == 0, err
    assert "train 350, val 210, test 0" in out
    m = json.loads(out_json.read_text())
    assert m["split"] == "val" and m["tta"] == "flip" and m["n"] == 210
    assert m["split_sizes"] == {"train": 350, "val": 210, "test": 0}
    assert set(m["per_class"]) == set(EMOTIONS)
    assert all(set(v) == {"precision", "recall", "f1", "support"} for v in m["per_class"].values())
    assert [m["per_class"][e]["support"] for e in EMOTIONS] == [30] * 7
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == 210 and cm.sum(axis=1).tolist() == [30] * 7
    assert m["accuracy"] == pytest.approx(np.trace(cm) / 210)
    # The same figures straight from the core, so the command adds nothing of its own.
    ds = load_dataset(SAMPLE).split("val")
    direct = compute_metrics(ds.labels, eager_proba(keras.models.load_model(tiny_model), ds.images, "flip"), EMOTIONS)
    assert m["confusion_matrix"] == direct["confusion_matrix"]
    assert m["accuracy"] == pytest.approx(direct["accuracy"])


def test_readable_summary_and_card_default_tta(tiny_model, capsys):
    code, out, _ = _run(capsys, "--data", SAMPLE, "--model", tiny_model)
    assert code == 0
    assert "split val (210 faces, tta none)" in out  # the card says tta "none"
    assert "confusion matrix (rows: true, columns: predicted)" in out
    assert all(e in out for e in EMOTIONS)


def test_private_test_only_root(tiny_model, tmp_path, capsys):
    files = {f"train/happy/Training_{i}.png": 200 for i in range(3)}
    files |= {f"test/happy/PrivateTest_{i}.png": 200 for i in range(4)}
    files |= {f"test/sad/PrivateTest_{i + 10}.png": 40 for i in range(2)}
    root = _kaggle(tmp_path / "priv", files)
    code, out, err = _run(
        capsys, "--data", root, "--model", tiny_model, "--split", "test", "--json", tmp_path / "o.json"
    )
    assert code == 0, err
    assert "train 3, val 0, test 6" in out
    m = json.loads((tmp_path / "o.json").read_text())
    assert m["n"] == 6 and m["split"] == "test"
    assert m["per_class"]["happy"]["support"] == 4 and m["per_class"]["sad"]["support"] == 2
    assert m["per_class"]["angry"]["support"] == 0
    # val is empty here: a one-line error that says what to do.
    code, out, err = _run(capsys, "--data", root, "--model", tiny_model)
    assert code == 2
    assert err.startswith("error: the val split of") and "use --split test" in err
    assert len(err.strip().splitlines()) == 1


def test_unprefixed_test_files_subset_of_classes(tiny_model, tmp_path, capsys):
    """A CK+48-style set arranged in FER names: unprefixed test files, three classes."""
    files = {f"train/{c}/img{i}.png": 120 for c in ("happy", "surprise", "fear") for i in range(2)}
    files |= {f"test/{c}/S{i:03d}.png": 120 for c in ("happy", "surprise", "fear") for i in range(3)}
    root = _kaggle(tmp_path / "ck", files)
    code, out, err = _run(
        capsys, "--data", root, "--model", tiny_model, "--split", "test", "--json", tmp_path / "o.json"
    )
    assert code == 0, err
    m = json.loads((tmp_path / "o.json").read_text())
    assert m["n"] == 9
    assert {k for k, v in m["per_class"].items() if v["support"]} == {"happy", "surprise", "fear"}
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (7, 7)
    assert cm[EMOTIONS.index("fear")].sum() == 3 and cm[EMOTIONS.index("angry")].sum() == 0


def test_unknown_class_is_a_clear_error(tiny_model, tmp_path, capsys):
    files = {"train/happy/a.png": 100, "test/happy/b.png": 100, "test/contempt/c.png": 100}
    root = _kaggle(tmp_path / "ck", files)
    code, _, err = _run(capsys, "--data", root, "--model", tiny_model, "--split", "test")
    assert code == 2
    assert "contempt" in err and "not among the model's labels" in err
    assert len(err.strip().splitlines()) == 1


def test_missing_model_and_missing_data(tiny_model, tmp_path, capsys):
    code, _, err = _run(capsys, "--data", SAMPLE, "--model", tmp_path / "nope.keras")
    assert code == 2 and "model file not found" in err and "--model" in err
    code, _, err = _run(capsys, "--data", tmp_path / "nothing", "--model", tiny_model)
    assert code == 2 and "no such file or folder" in err


def test_bad_tta_is_rejected_by_argparse(tiny_model, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--data", str(SAMPLE), "--model", str(tiny_model), "--tta", "sideways"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
