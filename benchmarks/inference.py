"""The inference engine against a raw onnxruntime session: faces/s, peak memory and accuracy per TTA mode.

Usage::

    python benchmarks/inference.py [--data ../shared/fer2013] [--model models/fer_resnet.keras]
        [--split val] [--tta none,flip,tencrop] [--faces N] [--json OUT]

For every TTA mode, two fresh processes classify the same faces of one split:

* engine: `fer_core.engine.InferenceEngine.predict_proba` as evaluation calls it (the runtime it
  picks on this CPU, batches of at most 256 crops), with its accuracy beside the model card's;
* raw: a plain `onnxruntime.InferenceSession` on the model's ONNX form (the engine's cached
  conversion, float32), fed pre-built views in batches of 256 crops: this CPU's practical
  rate for the model, with no Python around it.

Each process reports wall time (data decoding and model loading excluded) and its peak
resident memory (ru_maxrss, which includes the loaded libraries). The engine/raw ratio is
how close the engine runs to what this CPU can do. This prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = Path(os.environ.get("FER_SHARED", REPO.parent / "shared")) / "fer2013"


def _faces(data: str, split: str, limit: int):
    from fer_core.data import load_dataset

    sub = load_dataset(data).split(split)
    n = len(sub) if not limit else min(limit, len(sub))
    return sub, n


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(kind: str, args) -> dict:
    """One measurement in this process; returns its figures."""
    from fer_core.card import label_mapping, load_card
    from fer_core.engine import load_engine, onnx_bytes

    sub, n = _faces(args.data, args.split, args.faces)
    faces = sub.images[:n]
    engine = load_engine(args.model)
    card = load_card(args.model)
    if kind == "engine":
        engine.predict_proba(faces[:2], args.tta)  # build the runtime (and any conversion) untimed
        views = {"none": 1, "flip": 2}.get(args.tta, 10)
        runtime = engine.runtime_for(min(n, engine.max_crops // views) * views)
        t0 = time.perf_counter()
        probs = engine.predict_proba(faces, args.tta)
        seconds = time.perf_counter() - t0
        mapping = label_mapping(sub.class_names, card["labels"])
        acc = float((probs.argmax(1) == mapping[sub.labels[:n]]).mean())
        return {"kind": kind, "runtime": runtime, "faces": n, "seconds": seconds, "accuracy": acc}
    import onnxruntime as ort

    from fer_core.preprocess import tta_views

    session = ort.InferenceSession(onnx_bytes(engine.model, args.model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    views = tta_views(faces, engine.crop_size, args.tta)
    flat = np.ascontiguousarray(views.reshape(-1, *views.shape[2:]))
    session.run(None, {name: flat[:256]})
    t0 = time.perf_counter()
    for i in range(0, len(flat), 256):
        session.run(None, {name: flat[i : i + 256]})
    return {"kind": kind, "runtime": "onnxruntime", "faces": n, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="dataset root (default: ../shared/fer2013)")
    ap.add_argument("--model", default=str(REPO / "models" / "fer_resnet.keras"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--tta", default="none,flip,tencrop", help="comma-separated TTA modes")
    ap.add_argument("--faces", type=int, default=0, help="use only the first N faces (0 = all)")
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--worker", choices=["engine", "raw"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        out = worker(args.worker, args)
        out["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(out))
        return 0

    from fer_core.card import load_card
    from fer_core.hardware import cpu_summary

    card = load_card(args.model)
    by_tta = (card.get("metrics") or {}).get("val_accuracy_by_tta") or {}
    print(f"CPU: {cpu_summary()}")
    print(f"model {args.model} ({card.get('params') or 0:,} parameters); load average {os.getloadavg()[0]:.2f}")
    rows = []
    for tta in args.tta.split(","):
        row = {"tta": tta}
        for kind in ("engine", "raw"):
            cmd = [sys.executable, __file__, "--worker", kind, "--tta", tta, "--data", args.data]
            cmd += ["--model", args.model, "--split", args.split, "--faces", str(args.faces)]
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            if r.returncode:
                print(r.stderr[-3000:], file=sys.stderr)
                return 1
            row[kind] = json.loads(r.stdout.strip().splitlines()[-1])
        eng, raw = row["engine"], row["raw"]
        row["engine_faces_per_s"] = eng["faces"] / eng["seconds"]
        row["raw_faces_per_s"] = raw["faces"] / raw["seconds"]
        row["ratio"] = row["engine_faces_per_s"] / row["raw_faces_per_s"]
        card_acc = (
            by_tta.get(tta) if by_tta else (card["metrics"].get("val_accuracy") if tta == card.get("tta") else None)
        )
        if args.faces or args.split != "val":
            card_acc = None  # the card's figure is for the whole val split
        row["card_accuracy"] = card_acc
        rows.append(row)
        print(
            f"  {tta:8s} engine ({eng['runtime']}) {row['engine_faces_per_s']:7.1f} faces/s, "
            f"peak RSS {eng['peak_rss_mb']:6.0f} MB, accuracy {100 * eng['accuracy']:.2f}%"
            + (f" (card {100 * card_acc:.2f}%)" if card_acc is not None else "")
            + f" | raw onnxruntime {row['raw_faces_per_s']:7.1f} faces/s, peak RSS {raw['peak_rss_mb']:6.0f} MB"
            f" | engine/raw {row['ratio']:.2f}",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_summary(), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
