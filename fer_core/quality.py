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


# The kinds of finding a report holds, in the order the Dataset page lists them.
FINDING_KINDS = ("duplicate", "leak", "conflicting labels", "near-blank", "unreadable")


def findings(report: dict) -> list[dict]:
    """The report's findings as groups, one row each, every image of a group listed with its label.

    A duplicate group is a "duplicate", plus "leak" when it spans splits and "conflicting labels"
    when its images carry more than one label. Each near-blank image and each unreadable file is a
    group of one.

    Returns:
        [{"id", "kinds": [...], "size", "splits": [...], "labels": {label: count}, "items": [...]}], where
        items are {"source", "split", "label", "index" (row in the dataset, None when unreadable), "detail"}.
    """
    out = []
    for g in report["duplicates"]["groups"]:
        kinds = ["duplicate"]
        if g["cross_split"]:
            kinds.append("leak")
        if len(g["labels"]) > 1:
            kinds.append("conflicting labels")
        items = [{**it, "detail": ""} for it in g["items"]]
        out.append(_group(len(out) + 1, kinds, items))
    for it in report["near_blank"]:
        item = {k: it[k] for k in ("source", "split", "label", "index")} | {"detail": f"pixel std {it['std']}"}
        out.append(_group(len(out) + 1, ["near-blank"], [item]))
    for it in report["skipped"]:
        item = {"source": it["source"], "split": "", "label": "", "index": None, "detail": it.get("reason", "")}
        out.append(_group(len(out) + 1, ["unreadable"], [item]))
    return out


def _group(number: int, kinds: list[str], items: list[dict]) -> dict:
    labels: dict[str, int] = {}
    for it in items:
        if it["label"]:
            labels[it["label"]] = labels.get(it["label"], 0) + 1
    splits = sorted({it["split"] for it in items if it["split"]}, key=SPLITS.index)
    return {"id": number, "kinds": kinds, "size": len(items), "splits": splits, "labels": labels, "items": items}


def filter_findings(groups: list[dict], kinds) -> list[dict]:
    """The groups that have at least one of `kinds`."""
    wanted = set(kinds)
    unknown = wanted - set(FINDING_KINDS)
    if unknown:
        raise ValueError(f"Unknown finding kind(s) {sorted(unknown)}; choose from {', '.join(FINDING_KINDS)}.")
    return [g for g in groups if wanted & set(g["kinds"])]


def findings_rows(groups: list[dict]) -> list[dict]:
    """One flat row per image of each group (for a CSV): group id, kinds, split, label, source, detail."""
    return [
        {
            "group": g["id"],
            "kinds": "; ".join(g["kinds"]),
            "group_size": g["size"],
            "split": it["split"],
            "label": it["label"],
            "source": it["source"],
            "detail": it["detail"],
        }
        for g in groups
        for it in g["items"]
    ]
