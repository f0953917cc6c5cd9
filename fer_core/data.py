"""Reading face datasets into one in-memory form, with a decode cache.

Three on-disk formats (see docs in README):

* FER-2013 CSV: ``emotion,pixels,Usage`` with 2304 space-separated pixels per row.
* Kaggle folder layout: ``ROOT/train/<emotion>/*.jpg`` and ``ROOT/test/<emotion>/*.jpg``;
  in ``test/``, ``PublicTest_*`` files are the val split, ``PrivateTest_*`` and unprefixed
  files the test split. An optional ``ROOT/val/`` (or ``validation/``) folder is val.
* Class folders: ``ROOT/<class>/*.jpg`` with any class names; a seeded stratified split.

Whatever the source, the result is a `FaceDataset`: uint8 images (N, 48, 48), int labels,
class names, a split name per image and the source (file path or CSV row) per image.
Files that cannot be decoded are skipped and listed in `FaceDataset.skipped`; structural
problems (wrong CSV columns, bad rows, no images at all) raise `DataError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_core.constants import EMOTIONS, IMAGE_EXTENSIONS, IMAGE_SIZE, SPLITS
from fer_core.errors import FerError
from fer_core.images import ImageError, decode_image, resize_face, to_gray

CACHE_VERSION = 1
PIXELS = IMAGE_SIZE * IMAGE_SIZE
# Kaggle-layout folder names that hold the validation split when a dataset ships one.
_VAL_DIRS = ("val", "valid", "validation")
# FER-2013 file-name prefixes (Kaggle layout): Training_* -> train, PublicTest_* -> val, PrivateTest_* -> test.
_FER_PREFIXES = ("Training", "PublicTest", "PrivateTest")


class DataError(FerError, ValueError):
    """A dataset that cannot be read; the message names the file or row and what to do."""


@dataclass
class FaceDataset:
    """Faces in memory: everything training, evaluation and the Dataset page need."""

    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) int64, indexes into class_names
    class_names: tuple[str, ...]
    splits: np.ndarray  # (N,) str: "train" | "val" | "test"
    sources: np.ndarray  # (N,) str: relative file path, or "row 123" for a CSV
    root: str = ""
    format: str = ""  # "csv" | "kaggle" | "folders"
    skipped: list[dict] = field(default_factory=list)  # [{"source": ..., "reason": ...}]

    def __len__(self) -> int:
        return len(self.labels)

    def split(self, name: str) -> FaceDataset:
        """The subset of one split (a view with the same class names)."""
        if name not in SPLITS:
            raise ValueError(f"Unknown split {name!r}; choose one of {', '.join(SPLITS)}.")
        m = self.splits == name
        return FaceDataset(
            self.images[m],
            self.labels[m],
            self.class_names,
            self.splits[m],
            self.sources[m],
            self.root,
            self.format,
            [],
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """{split: {class: count}} for every split present, classes in label order."""
        out: dict[str, dict[str, int]] = {}
        for s in SPLITS:
            m = self.splits == s
            if m.any():
                c = np.bincount(self.labels[m], minlength=len(self.class_names))
                out[s] = {n: int(k) for n, k in zip(self.class_names, c, strict=True)}
        return out


# ----------------------------------------------------------------------------- detection


def detect_format(root: str | os.PathLike) -> str:
    """Return "csv", "kaggle" or "folders" for a dataset path, or raise DataError."""
    p = Path(root)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder; pass the dataset's path.")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"{p}: expected a FER-2013 .csv file or a folder of class folders.")
    subdirs = {d.name.lower() for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")}
    # Any of train/ test/ val/ alone is the Kaggle layout too: a test set on its own is a
    # common thing to evaluate on (its class folders are not classes named "test").
    if subdirs and subdirs <= {"train", "test", *_VAL_DIRS}:
        return "kaggle"
    if subdirs:
        return "folders"
    csvs = sorted(p.glob("*.csv"))
    if len(csvs) == 1:
        return "csv"
    raise DataError(f"{p}: no class folders and no CSV inside; see README 'Datasets'.")


# ----------------------------------------------------------------------------- loading


def load_dataset(
    root: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    progress=None,
) -> FaceDataset:
    """Load a dataset in any supported format, using the decode cache when it is fresh.

    Args:
        root: a FER-2013 CSV, a Kaggle-layout folder, or a folder of class folders.
        cache_dir: where decoded arrays are kept (default: `default_cache_dir()`); None
            uses the default, "" disables caching.
        val_fraction, test_fraction, seed: the stratified split for class folders
            (and for a CSV without a Usage column).
        progress: optional callable(done, total) called while decoding files.

    Returns:
        The `FaceDataset`.

    Raises:
        DataError: the path, CSV structure or contents cannot be used.
    """
    root = Path(root).expanduser().resolve()
    fmt = detect_format(root)
    if fmt == "csv" and root.is_dir():
        root = sorted(root.glob("*.csv"))[0]
    files = _listing(root, fmt)
    key = _cache_key(root, fmt, files, (val_fraction, test_fraction, seed))
    cache = _cache_path(cache_dir, key)
    if cache is not None and cache.exists():
        try:
            return _read_cache(cache)
        except (OSError, ValueError, KeyError):
            pass  # a broken cache file is rebuilt below
    if fmt == "csv":
        ds = _load_csv(root, val_fraction, test_fraction, seed)
    else:
        ds = _load_folders(root, fmt, files, val_fraction, test_fraction, seed, progress)
    if cache is not None:
        _write_cache(cache, ds)
    return ds


def dataset_fingerprint(root: str | os.PathLike) -> str:
    """A cheap identity of the data at `root`, for caches keyed on what is on disk, not on a name.

    A CSV: its resolved path, size and mtime. A folder: the resolved path and the mtime of the
    folder and of every folder inside it (two levels: split/class), which changes whenever a
    file is added, removed or renamed. Milliseconds on FER-2013, where listing every file takes
    a quarter of a second; a file rewritten in place keeps the fingerprint (the decode cache
    still sees it, it keys on every file's size and mtime).

    Raises:
        DataError: `root` does not exist.
    """
    p = Path(root).expanduser().resolve()
    try:
        st = p.stat()
    except OSError as exc:
        raise DataError(f"{p}: no such file or folder; pass the dataset's path.") from exc
    parts = [str(p), str(st.st_size if p.is_file() else 0), str(st.st_mtime_ns)]
    if p.is_dir():
        parts += _folder_stamps(p, depth=2)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _folder_stamps(folder: Path, depth: int, prefix: str = "") -> list[str]:
    """ "name:mtime_ns" of the folders (and CSV files) in `folder`, `depth` levels down; dirents only."""
    out = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return [f"{prefix}:unreadable"]
    for e in entries:
        if e.name.startswith("."):
            continue
        try:
            if e.is_dir():
                out.append(f"{prefix}{e.name}:{e.stat().st_mtime_ns}")
                if depth > 1:
                    out += _folder_stamps(Path(e.path), depth - 1, f"{prefix}{e.name}/")
            elif not prefix and e.name.lower().endswith(".csv"):
                st = e.stat()
                out.append(f"{e.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            out.append(f"{prefix}{e.name}:gone")
    return out


def default_cache_dir() -> Path:
    """$FER_CACHE, else ~/.cache/fer-workbench."""
    return Path(os.environ.get("FER_CACHE", Path.home() / ".cache" / "fer-workbench"))


def _listing(root: Path, fmt: str) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every candidate file, sorted: the cache key's input."""
    if fmt == "csv":
        st = root.stat()
        return [(root.name, st.st_size, st.st_mtime_ns)]
    out = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of folders walked: symlink loops end here
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            continue  # files at the top level are not inside a class folder
        for f in filenames:
            if f.startswith("."):
                continue
            full = os.path.join(dirpath, f)
            try:
                st = os.stat(full)
            except OSError:  # a dangling symlink: listed, then skipped with its reason when decoded
                out.append((os.path.join(rel_dir, f), -1, -1))
                continue
            out.append((os.path.join(rel_dir, f), st.st_size, st.st_mtime_ns))
    out.sort()
    return out


def _cache_key(root: Path, fmt: str, files, params) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, str(root), fmt, list(params)]).encode())
    for rel, size, mtime in files:
        h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:32]


def _cache_path(cache_dir, key: str) -> Path | None:
    if cache_dir == "":
        return None
    d = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return d / f"faces-{key}.npz"


def _write_cache(path: Path, ds: FaceDataset) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        meta = {"class_names": ds.class_names, "root": ds.root, "format": ds.format, "skipped": ds.skipped}
        np.savez(
            tmp,
            images=ds.images,
            labels=ds.labels,
            splits=ds.splits.astype("U5"),
            sources=ds.sources.astype(str),
            meta=np.array(json.dumps(meta)),
        )
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache location only costs speed


def _read_cache(path: Path) -> FaceDataset:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return FaceDataset(
            images=z["images"],
            labels=z["labels"],
            class_names=tuple(meta["class_names"]),
            splits=z["splits"],
            sources=z["sources"],
            root=meta["root"],
            format=meta["format"],
            skipped=meta["skipped"],
        )


# ----------------------------------------------------------------------------- CSV


def _load_csv(path: Path, val_fraction: float, test_fraction: float, seed: int) -> FaceDataset:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]}).") from None
    cols = {c.strip().lower(): c for c in df.columns}
    missing = [c for c in ("emotion", "pixels") if c not in cols]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; a FER-2013 CSV has columns "
            f"emotion,pixels,Usage (found: {', '.join(map(str, df.columns)) or 'none'})."
        )
    if len(df) == 0:
        raise DataError(f"{path}: the CSV has a header but no rows.")
    n = len(df)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    labels = np.empty(n, np.int64)
    # Row numbers as a spreadsheet shows them: header is row 1, first data row is row 2.
    for i, (emo, pix) in enumerate(zip(df[cols["emotion"]], df[cols["pixels"]], strict=True)):
        row = i + 2
        try:
            lab = int(emo)
        except ValueError:
            raise DataError(f"{path} row {row}: emotion {emo!r} is not an integer 0-6.") from None
        if not 0 <= lab < len(EMOTIONS):
            raise DataError(f"{path} row {row}: emotion {lab} is out of range; FER-2013 labels are 0-6.")
        parts = pix.split()
        if len(parts) != PIXELS:
            raise DataError(f"{path} row {row}: {len(parts)} pixel values, expected {PIXELS} (48x48).")
        try:
            vals = np.array(parts, dtype=np.int64)
        except ValueError:
            bad = next(p for p in parts if not p.lstrip("-").isdigit())
            raise DataError(f"{path} row {row}: non-numeric pixel value {bad!r}.") from None
        if vals.min() < 0 or vals.max() > 255:
            raise DataError(f"{path} row {row}: pixel values must be 0-255 (found {vals.min()}..{vals.max()}).")
        images[i] = vals.reshape(IMAGE_SIZE, IMAGE_SIZE)
        labels[i] = lab
    if "usage" in cols:
        usage_map = {"training": "train", "publictest": "val", "privatetest": "test"}
        splits = []
        for i, u in enumerate(df[cols["usage"]]):
            s = usage_map.get(u.strip().lower())
            if s is None:
                raise DataError(f"{path} row {i + 2}: Usage {u!r} is not Training, PublicTest or PrivateTest.")
            splits.append(s)
        splits = np.array(splits)
    else:
        splits = stratified_split(labels, val_fraction, test_fraction, seed)
    sources = np.array([f"row {i + 2}" for i in range(n)])
    return FaceDataset(images, labels, EMOTIONS, splits, sources, str(path), "csv", [])


# ----------------------------------------------------------------------------- folders


def _class_names(names: list[str]) -> tuple[str, ...]:
    """FER-2013 order when the folders are (a subset of) its emotions, else sorted."""
    lower = [n.lower() for n in names]
    if set(lower) <= set(EMOTIONS):
        return EMOTIONS
    return tuple(sorted(names))


def _kaggle_split(top: str, filename: str) -> str:
    top = top.lower()
    if top == "train":
        return "train"
    if top in _VAL_DIRS:
        return "val"
    if filename.startswith("PublicTest"):
        return "val"
    return "test"  # PrivateTest_* or unprefixed files in test/


def _prefix_split(filename: str) -> str:
    return "train" if filename.startswith("Training") else _kaggle_split("test", filename)


def _load_folders(root, fmt, files, val_fraction, test_fraction, seed, progress) -> FaceDataset:
    entries = []  # (relpath, class folder name, split or None)
    skipped = []
    for rel, _size, _mtime in files:
        parts = Path(rel).parts
        if fmt == "kaggle":
            if len(parts) < 3 or parts[0].lower() not in ("train", "test", *_VAL_DIRS):
                continue  # stray files outside split/class folders are not part of the data
            top, cls = parts[0], parts[1]
            split = _kaggle_split(top, parts[-1])
        else:
            if len(parts) < 2:
                continue
            cls, split = parts[0], None
        if Path(rel).suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append({"source": rel, "reason": "not an image file extension"})
            continue
        entries.append((rel, cls, split))
    names = [Path(rel).name for rel, _, _ in entries]
    if fmt == "folders" and names and all(n.startswith(_FER_PREFIXES) for n in names):
        # FER-2013's own file names (e.g. the Kaggle test/ folder itself): they say the split,
        # where a seeded split would silently score a random tenth of a test set.
        fmt = "kaggle"
        entries = [(rel, cls, _prefix_split(Path(rel).name)) for rel, cls, _ in entries]
    if not entries:
        raise DataError(
            f"{root}: found no image files in class folders; expected "
            + ("train/<class>/*.jpg and test/<class>/*.jpg." if fmt == "kaggle" else "<class>/*.jpg.")
        )
    class_names = _class_names(sorted({c for _, c, _ in entries}))
    index = {n.lower(): i for i, n in enumerate(class_names)}

    def decode(rel: str):
        try:
            rgb_or_gray = decode_image(root / rel)
            return resize_face(to_gray(rgb_or_gray)), None
        except ImageError as exc:
            return None, str(exc).split(": ", 1)[-1]

    n = len(entries)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    keep = np.zeros(n, bool)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        for i, (img, err) in enumerate(pool.map(decode, [e[0] for e in entries], chunksize=64)):
            if err is None:
                images[i] = img
                keep[i] = True
            else:
                skipped.append({"source": entries[i][0], "reason": err})
            if progress is not None and (i % 500 == 0 or i == n - 1):
                progress(i + 1, n)
    if not keep.any():
        raise DataError(f"{root}: none of the {n} image files could be decoded (see the first: {skipped[0]}).")
    kept = [e for e, k in zip(entries, keep, strict=True) if k]
    labels = np.array([index[c.lower()] for _, c, _ in kept], np.int64)
    if fmt == "kaggle":
        splits = np.array([s for _, _, s in kept])
    else:
        splits = stratified_split(labels, val_fraction, test_fraction, seed)
    sources = np.array([r for r, _, _ in kept])
    return FaceDataset(images[keep], labels, class_names, splits, sources, str(root), fmt, skipped)


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Assign "train"/"val"/"test" per class, seeded, so each split keeps the class balance."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction + test_fraction must be in [0, 1). Received: {val_fraction=}, {test_fraction=}")
    rng = np.random.default_rng(seed)
    splits = np.full(len(labels), "train", dtype="U5")
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_fraction))
        n_test = int(round(len(idx) * test_fraction))
        splits[idx[:n_val]] = "val"
        splits[idx[n_val : n_val + n_test]] = "test"
    return splits
