"""The data-quality report: counts, imbalance, exact duplicates (incl. leaks across splits),
near-blank images and files that could not be read."""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

from fer_core.constants import SPLITS
from fer_core.data import FaceDataset

# Below this pixel standard deviation a 48x48 face is treated as blank (FER-2013 has
# all-black and all-white images at 0; real faces are above 20).
BLANK_STD = 3.0


def image_hashes(images: np.ndarray) -> list[str]:
    """A content hash per image (exact pixel equality)."""
    return [hashlib.blake2b(im.tobytes(), digest_size=12).hexdigest() for im in images]


def quality_report(ds: FaceDataset, blank_std: float = BLANK_STD) -> dict:
    """Counts per split and class, imbalance ratio, duplicates, near-blank images, skipped files.

    Returns:
        A JSON-ready dict: {"format", "root", "classes", "counts", "totals", "imbalance_ratio",
        "duplicates": {"groups": [...], "within_split", "cross_split", "conflicting_labels"},
        "near_blank": [...], "skipped": [...]}.
    """
    counts = ds.counts()
    totals = {s: sum(c.values()) for s, c in counts.items()}
    totals["all"] = len(ds)
    imbalance = {}
    for s, c in counts.items():
        nz = [v for v in c.values() if v > 0]
        imbalance[s] = round(max(nz) / min(nz), 2) if nz else None

    groups = defaultdict(list)
    for i, h in enumerate(image_hashes(ds.images)):
        groups[h].append(i)
    dup_groups = []
    within = cross = conflicting = 0
    for idx in groups.values():
        if len(idx) < 2:
            continue
        splits = sorted({str(ds.splits[i]) for i in idx}, key=SPLITS.index)
        labels = sorted({ds.class_names[int(ds.labels[i])] for i in idx})
        is_cross = len(splits) > 1
        cross += is_cross
        within += not is_cross
        conflicting += len(labels) > 1
        dup_groups.append(
            {
                "items": [
                    {
                        "source": str(ds.sources[i]),
                        "split": str(ds.splits[i]),
                        "label": ds.class_names[int(ds.labels[i])],
                        "index": int(i),
                    }
                    for i in idx
                ],
                "splits": splits,
                "labels": labels,
                "cross_split": is_cross,
            }
        )
    dup_groups.sort(key=lambda g: (not g["cross_split"], -len(g["items"])))

    stds = ds.images.reshape(len(ds), -1).std(axis=1) if len(ds) else np.zeros(0)
    blank = [
        {
            "source": str(ds.sources[i]),
            "split": str(ds.splits[i]),
            "label": ds.class_names[int(ds.labels[i])],
            "std": round(float(stds[i]), 2),
            "index": int(i),
        }
        for i in np.flatnonzero(stds < blank_std)
    ]
    return {
        "root": ds.root,
        "format": ds.format,
        "classes": list(ds.class_names),
        "counts": counts,
        "totals": totals,
        "imbalance_ratio": imbalance,
        "duplicates": {
            "groups": dup_groups,
            "group_count": len(dup_groups),
            "images_involved": sum(len(g["items"]) for g in dup_groups),
            "within_split": within,
            "cross_split": cross,
            "conflicting_labels": conflicting,
        },
        "near_blank": blank,
        "skipped": ds.skipped,
    }


def summary_lines(report: dict) -> list[str]:
    """A readable summary of a report, for the CLI."""
    lines = [f"{report['root']} ({report['format']})"]
    names = report["classes"]
    width = max(len(n) for n in names)
    splits = list(report["counts"])
    lines.append(" " * (width + 2) + "".join(f"{s:>8}" for s in splits))
    for n in names:
        lines.append(f"  {n:<{width}}" + "".join(f"{report['counts'][s][n]:>8,}" for s in splits))
    lines.append(f"  {'total':<{width}}" + "".join(f"{report['totals'][s]:>8,}" for s in splits))
    lines.append(
        "imbalance (largest/smallest class): " + ", ".join(f"{s} {r}x" for s, r in report["imbalance_ratio"].items())
    )
    d = report["duplicates"]
    lines.append(
        f"exact duplicates: {d['group_count']} groups ({d['images_involved']} images), "
        f"{d['cross_split']} across splits, {d['conflicting_labels']} with conflicting labels"
    )
    lines.append(f"near-blank images: {len(report['near_blank'])}")
    lines.append(f"unreadable/skipped files: {len(report['skipped'])}")
    for s in report["skipped"][:10]:
        lines.append(f"  {s['source']}: {s['reason']}")
    return lines
