"""The training configuration: one frozen dataclass, saved as config.json in each run."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from fer_core.constants import TTA_MODES
from fer_core.errors import FerError

# Names registered in fer_core.model.MODELS (kept here so UIs need not import TensorFlow).
ARCHITECTURES: tuple[str, ...] = ("resnet10", "resnet18", "resnet34", "resnet50_transfer")

# The allowed values of every TrainConfig setting that takes one of a few names: validation,
# the command line and the Train page's widgets all read them from here.
CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ARCHITECTURES,
    "optimizer": ("sgd", "adam", "adamw"),
    "schedule": ("cosine", "plateau", "constant"),
    "class_weights": ("none", "balanced", "sqrt"),
    "precision": ("auto", "mixed_bfloat16", "mixed_float16", "float32"),
    "strategy": ("auto", "mirrored", "multiworker"),
    "eval_tta": TTA_MODES,
    "distill_targets": ("cached", "online"),
}


class ConfigError(FerError, ValueError):
    """A training setting the config cannot take; the message names the setting and the value received."""


# Settings that are counts, sizes or strengths: a negative value has no meaning.
_NON_NEGATIVE = (
    "keep_epochs",
    "max_train_images",
    "warmup_epochs",
    "early_stopping",
    "plateau_patience",
    "weight_decay",
    "rotation",
    "translation",
    "mixup",
    "seed",
)
# Settings that are fractions or probabilities.
_UNIT_RANGES = {"momentum": (0.0, 1.0), "dropout": (0.0, 0.99), "zoom": (0.0, 0.9), "erasing": (0.0, 1.0)}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Each default says what it trades."""

    data: str = "data/sample"  # dataset root (CSV, Kaggle layout or class folders)
    arch: str = "resnet18"  # registry name in fer_core.model.MODELS; resnet10 is ~2x faster, resnet34 ~2x slower
    width: int = 32  # first-stage filters; cost grows ~width^2 (16: 3x faster, 64: 4x slower on CPU)
    crop_size: int = 44  # random crops of the 48x48 faces: translation invariance + ten-crop TTA; 48 = no crop
    epochs: int = 30  # full passes over train; FER-2013 keeps improving for 100+ epochs
    batch_size: int = 128  # larger batches use cores better on CPU; lr scales with it
    optimizer: str = "sgd"  # sgd (Nesterov, best final accuracy) | adam | adamw (fast start, less tuning)
    learning_rate: float = 0.05  # peak lr; 0.1 made val swing hard early on with SGD at batch 128
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4  # L2-style decay; FER-2013 overfits quickly without it
    schedule: str = "cosine"  # cosine (with warmup, to 0 at the last epoch) | plateau (x0.5 after patience) | constant
    warmup_epochs: float = 1.0  # linear warmup; avoids early divergence at high lr with fresh BatchNorm
    plateau_patience: int = 3  # epochs without val improvement before the plateau schedule halves lr
    early_stopping: int = 0  # stop after this many epochs without val improvement; 0 = never
    label_smoothing: float = 0.1  # softer targets: FER-2013 labels are noisy, and it calibrates better
    dropout: float = 0.2  # before the classifier
    class_weights: str = "none"  # none | balanced | sqrt: raise rare classes (disgust) at some cost in accuracy
    augment: bool = True  # random crop, flip, rotation, translation, zoom (on-graph, per batch)
    rotation: float = 10.0  # max degrees
    translation: float = 0.08  # max shift as a fraction of the image size, on top of the crop offset
    zoom: float = 0.10  # max relative zoom in or out
    erasing: float = 0.0  # probability of random erasing per image (0 = off); helps against occlusion
    mixup: float = 0.0  # mixup alpha (0 = off); regularises, slows convergence
    precision: str = "auto"  # auto (bf16 on AMX/avx512_bf16 CPUs or GPUs) | mixed_bfloat16 | mixed_float16 | float32
    strategy: str = "auto"  # auto (default strategy) | mirrored (all local GPUs) | multiworker (TF_CONFIG)
    seed: int = 0  # shuffling, augmentation and weight initialisation
    eval_tta: str = "tencrop"  # TTA for the final val/test evaluation: none | flip | tencrop
    max_train_images: int = 0  # use only the first N training images (0 = all); for quick trials
    init_weights: str = ""  # warm start from this .keras model (same arch, width, crop size); "" = random init
    keep_epochs: int = 0  # keep the last N epochs' weights in the run's epochs/ for `promote --average` (0 = none)
    teacher: str = (
        ""  # distil from this .keras model (e.g. the shipped ensemble), run on each augmented batch; "" = off
    )
    distill_temperature: float = 2.0  # softens teacher and student before the KL term; 1 = plain probabilities
    distill_alpha: float = 0.7  # weight of the teacher (KL) term; 1 - alpha stays on the labels
    # cached: the teacher runs once per image, before training, on the centre crop and its mirror
    # (fixed targets, no per-epoch cost; ahead on short runs: +3.3 points at 20 epochs in docs/model.md) |
    # online: the teacher runs on each augmented batch (sees the student's exact views; an ensemble
    # teacher costs 3 forward passes per image per epoch, 1.7-2x the epoch time; ahead on long runs:
    # +1.1 points at 56 epochs)
    distill_targets: str = "cached"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict; unknown keys raise ConfigError naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"Unknown config key(s): {', '.join(unknown)}")
        if d.get("teacher") and "distill_targets" not in d:
            d = {**d, "distill_targets": "online"}  # saved before the setting existed, when targets were online
        return cls(**d).validated()

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def validated(self) -> TrainConfig:
        """Return self, or raise ConfigError with a message that names the bad setting."""
        # NaN and +-Inf pass every "<" and ">" test below, so non-finite numbers are refused first
        # (a NaN learning rate would train to "finished" and ship a NaN model).
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number. Received: {f.name}={value}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} must be one of {', '.join(allowed)}. Received: {name}={getattr(self, name)!r}"
                )
        for name in ("epochs", "batch_size", "width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1. Received: {name}={getattr(self, name)}")
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more. Received: {name}={getattr(self, name)}")
        for name, (lo, hi) in _UNIT_RANGES.items():
            if not lo <= getattr(self, name) <= hi:
                raise ConfigError(f"{name} must be in [{lo}, {hi}]. Received: {name}={getattr(self, name)}")
        if not 8 <= self.crop_size <= 48:
            raise ConfigError(f"crop_size must be 8..48. Received: crop_size={self.crop_size}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive. Received: learning_rate={self.learning_rate}")
        if not (math.isfinite(self.distill_temperature) and self.distill_temperature > 0):
            raise ConfigError(
                f"distill_temperature must be a positive number. Received: distill_temperature={self.distill_temperature}"
            )
        if not 0 <= self.distill_alpha <= 1:
            raise ConfigError(f"distill_alpha must be in [0, 1]. Received: distill_alpha={self.distill_alpha}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1). Received: label_smoothing={self.label_smoothing}")
        return self
