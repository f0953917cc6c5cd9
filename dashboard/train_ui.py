"""Widgets and pure helpers for the Train page."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import streamlit as st

from fer_core.config import CHOICES, TrainConfig

DEFAULTS = TrainConfig()
NO_WARM_START = ""  # the "Start from model file" choice that means random initial weights


def choice(where, label: str, setting: str, help: str | None = None) -> str:
    """A selectbox over the allowed values of a TrainConfig setting (`CHOICES`), at its default."""
    options = CHOICES[setting]
    return where.selectbox(label, options, index=options.index(getattr(DEFAULTS, setting)), help=help)


def warm_start_candidates(arch: str, width: int, crop_size: int, models_dir: Path, runs_dir: Path) -> dict[str, str]:
    """{path: label} of the model files a run with this architecture, width and crop size can start
    from: single networks in `models_dir` and the best models of finished runs in `runs_dir` whose
    card states the same three settings. Ensembles (several networks in one file) are left out, and
    so are files without a card or whose card does not say, since nothing shows that they fit."""
    from fer_core.card import card_path
    from fer_core.runs import MODEL_FILE, read_json_object, read_status

    files = sorted(Path(models_dir).glob("*.keras"))
    if Path(runs_dir).is_dir():
        runs = sorted((d for d in Path(runs_dir).iterdir() if d.is_dir()), key=lambda d: d.name)
        files += [d / MODEL_FILE for d in runs if read_status(d).get("state") == "finished"]
    out = {}
    for path in files:
        card = read_json_object(card_path(path)) if path.is_file() else {}
        trained = card.get("training") or {}
        crop = (card.get("input") or {}).get("crop_size")
        if card.get("members") or (trained.get("arch"), trained.get("width"), crop) != (arch, width, crop_size):
            continue
        acc = (card.get("metrics") or {}).get("val_accuracy")
        where = f"run {path.parent.name}" if path.name == MODEL_FILE else f"{path.parent.name}/{path.name}"
        out[str(path)] = where + (f" (val {acc:.1%})" if isinstance(acc, int | float) else "")
    return out


def config_form(data_root: str, models_dir: Path, runs_dir: Path) -> TrainConfig | None:
    """The new-run form; returns the validated config when Launch is pressed, else None.

    Architecture and width sit above the form: changing them reruns the page at once, so the
    "Start from model file" list only ever offers models those settings can start from."""
    c1, c2, _ = st.columns([1, 1, 2])
    arch = choice(c1, "Architecture", "arch")
    width = int(c2.select_slider("Width", [8, 16, 24, 32, 48, 64], value=DEFAULTS.width))
    candidates = warm_start_candidates(arch, width, DEFAULTS.crop_size, models_dir, runs_dir)
    with st.form("new_run"):
        c1, c2, c3, c4 = st.columns(4)
        epochs = c1.number_input("Epochs", 1, 1000, DEFAULTS.epochs)
        batch = c2.select_slider("Batch size", [16, 32, 64, 128, 256], value=DEFAULTS.batch_size)
        early = c3.number_input("Early stopping patience (0 = off)", 0, 100, DEFAULTS.early_stopping)
        limit = c4.number_input("Use only N training images (0 = all)", 0, 1_000_000, 0)
        c1, c2, c3, c4 = st.columns(4)
        optimizer = choice(c1, "Optimizer", "optimizer")
        lr = c2.number_input("Learning rate", 1e-5, 1.0, DEFAULTS.learning_rate, format="%.4f")
        schedule = choice(c3, "Schedule", "schedule")
        precision = choice(c4, "Precision", "precision")
        c1, c2, c3, c4 = st.columns(4)
        augment = c1.checkbox("Augmentation", DEFAULTS.augment, help="crop, flip, rotation, translation, zoom")
        erasing = c2.slider("Random erasing p", 0.0, 1.0, DEFAULTS.erasing, 0.05)
        class_weights = choice(c3, "Class weights", "class_weights")
        smoothing = c4.slider("Label smoothing", 0.0, 0.3, DEFAULTS.label_smoothing, 0.05)
        c1, c2, c3 = st.columns([1, 1, 2])
        mixup = c1.slider("Mixup alpha", 0.0, 1.0, DEFAULTS.mixup, 0.1)
        keep = c2.number_input(
            "Keep last N epochs' weights", 0, 1000, DEFAULTS.keep_epochs, help="for promote --average N (0 = none)"
        )
        run_name = c3.text_input("Run name (optional)", "")
        c1, c2 = st.columns(2)
        chosen = c1.selectbox(
            "Start from model file (optional)",
            [NO_WARM_START, *candidates],
            format_func=lambda p: candidates.get(p, "none: random initial weights"),
            help=f"a warm start: the run begins with this network's weights. Offered: single networks in "
            f"{models_dir} and finished runs whose card says {arch}, width {width}, crop {DEFAULTS.crop_size}; "
            "an ensemble can be a teacher below, not a warm start",
        )
        typed = c2.text_input(
            "...or another model file",
            "",
            placeholder="path/to/network.keras",
            help="used instead of the list when filled in; checked against this run's architecture, width "
            "and crop size before the run starts",
        )
        c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
        teacher = c1.text_input(
            "Learn from a model (optional)",
            "",
            placeholder="models/fer_resnet.keras",
            help="knowledge distillation: the run also learns this model's softened probabilities "
            "(any architecture, an ensemble too; same crop size)",
        )
        temperature = c2.number_input(
            "Temperature", 0.5, 20.0, DEFAULTS.distill_temperature, 0.5, help="softens teacher and student"
        )
        alpha = c3.slider("Weight of the teacher", 0.0, 1.0, DEFAULTS.distill_alpha, 0.05, help="1 - it on the labels")
        targets = choice(
            c4,
            "Teacher targets",
            "distill_targets",
            help="online: the teacher scores every augmented batch (its forward passes on every step; "
            "1.7-2x the epoch time, ahead on long runs); cached: it scores each face once before training "
            "(centre crop and mirror), then costs nothing (ahead on short runs)",
        )
        launched = st.form_submit_button("Launch", type="primary")
    if not launched:
        return None
    cfg = dataclasses.replace(
        DEFAULTS,
        data=data_root,
        arch=arch,
        width=int(width),
        epochs=int(epochs),
        batch_size=int(batch),
        optimizer=optimizer,
        learning_rate=float(lr),
        schedule=schedule,
        precision=precision,
        augment=augment,
        erasing=float(erasing),
        class_weights=class_weights,
        label_smoothing=float(smoothing),
        mixup=float(mixup),
        early_stopping=int(early),
        max_train_images=int(limit),
        init_weights=typed.strip() or chosen,
        keep_epochs=int(keep),
        teacher=teacher.strip(),
        distill_temperature=float(temperature),
        distill_alpha=float(alpha),
        distill_targets=targets,
    )
    st.session_state["new_run_name"] = run_name.strip() or None
    cfg = cfg.validated()
    from fer_core.train import check_start_models

    check_start_models(cfg)  # a missing or mismatched model: ConfigError, shown by the page
    return cfg


def progress_summary(status: dict, epochs: list[dict], progress: dict | None, total_epochs: int) -> dict:
    """What the live view shows: epoch x of N, batch fraction, images/s and an ETA in seconds.

    The ETA uses the median duration of the last finished epochs; before the first epoch ends it
    extrapolates from the current epoch's progress. Pure (no UI), so it is tested directly.
    """
    done = epochs[-1]["epoch"] if epochs else 0
    running = status.get("state") == "running"
    started = _timestamp(status.get("started"))
    if progress and started is not None and float(progress.get("time") or 0) < started:
        # Left by the process before a resume (its epoch was stopped and discarded): until
        # the new process reports, it says nothing about the current epoch or its speed.
        progress = None
    current = done + 1 if running and done < total_epochs else done
    frac = progress["step"] / max(progress["steps"], 1) if progress else 0.0
    ips = (progress or {}).get("images_per_s") or (epochs[-1].get("images_per_s") if epochs else None)
    eta = None
    if running:
        secs = [e["seconds"] for e in epochs[-5:] if e.get("seconds")]
        if secs:
            per_epoch = sorted(secs)[len(secs) // 2]
        elif progress and frac > 0:
            per_epoch = (progress["time"] - progress.get("epoch_start", progress["time"])) / frac or None
        else:
            per_epoch = None
        if per_epoch:
            eta = per_epoch * max(total_epochs - done - frac, 0.0)
    return {"epoch": current, "epochs": total_epochs, "batch_fraction": frac, "images_per_s": ips, "eta_s": eta}


def _timestamp(iso: str | None) -> float | None:
    """Seconds since the epoch for status.json's ISO times, or None."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso)).timestamp() if iso else None
    except ValueError:
        return None


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


# Lines TensorFlow prints while it starts (C++ logging, CUDA probing on a CPU machine, CPU
# feature notes): noise to someone reading a run's log. Hidden, and counted, by `clean_log`.
_STARTUP_NOISE = (
    "cuda",
    "cudart",
    "cuinit",
    "absl::initializelog",
    "onednn custom operations",
    "cpu_feature_guard",
    "to enable the following instructions",
    "rebuild tensorflow with the appropriate compiler flags",
    "tf_enable_onednn_opts",
    "unable to register cu",
    "computation placer already registered",
)


def clean_log(text: str) -> tuple[str, int]:
    """(the log without TensorFlow's start-up noise, how many lines were hidden)."""
    kept, hidden = [], 0
    for line in text.splitlines():
        low = line.lower()
        if any(n in low for n in _STARTUP_NOISE) or low.startswith(("w0000 ", "i0000 ", "e0000 ")):
            hidden += 1
        else:
            kept.append(line)
    return "\n".join(kept), hidden


def chance_warning(epochs: list[dict], n_classes: int, min_epochs: int = 2) -> str | None:
    """A one-line warning when a run's val accuracy sits at chance (1/classes, within a point) after
    `min_epochs` epochs: the model is most likely answering one class for every face."""
    if len(epochs) < min_epochs or n_classes < 2:
        return None
    key = "val_accuracy" if epochs[-1].get("val_accuracy") is not None else "accuracy"
    acc = epochs[-1].get(key)
    chance = 1.0 / n_classes
    if acc is None or abs(acc - chance) > 0.01:
        return None
    return (
        f"{key} is {acc:.1%} after {len(epochs)} epochs: chance level for {n_classes} classes "
        f"({chance:.1%}), so the model probably answers one class for every face. Try a lower learning "
        "rate, more training images or more epochs."
    )


def runs_rows(rows: list[dict]) -> list[dict]:
    """The runs table with readable cells: '–' where a run has no figure yet, accuracy as a percentage."""
    out = []
    for r in rows:
        best = r.get("best_val_accuracy")
        out.append(
            {
                "run": r["run"],
                "state": r["state"],
                "epoch": f"{r['epoch']} of {r['epochs']}" if r.get("epochs") else str(r["epoch"] or "–"),
                "best val accuracy": f"{best:.1%}" if best is not None else "–",
                "started": (r.get("started") or "–")[:19].replace("T", " "),
                "model": "yes" if r.get("has_model") else "–",
            }
        )
    return out
