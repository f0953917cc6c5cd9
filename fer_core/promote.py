"""Shipping a run's model: copy (or average and recalibrate) it, evaluate it, write its card.

Above both training and evaluation: it reads what a run left (`fer_core.runs`), finishes the
weights (`fer_core.finalize`) and rewrites the evaluation (`fer_core.evaluate`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fer_core.card import load_card, save_card
from fer_core.evaluate import rewrite_evaluation
from fer_core.finalize import average_weights, recalibrate_batchnorm
from fer_core.runs import MODEL_FILE, kept_epochs, training_history


def promote(
    run_dir: str | Path,
    dest: str | Path,
    ds,
    tta: str = "tencrop",
    *,
    recalibrate_bn: bool = False,
    average: int = 0,
    progress=None,
) -> dict:
    """Copy a run's best model to `dest` (e.g. models/fer_resnet.keras) with its card, evaluated
    on the dataset's val (and test) split with `tta`; stored predictions go to eval_dir_for(dest).

    With `average` N, the model shipped is instead the mean of the weights of the run's last N
    kept epochs (stochastic weight averaging; the run must have been trained with
    keep_epochs >= N). Averaged weights need BatchNorm statistics of their own, so it implies
    `recalibrate_bn`: the BatchNorm statistics are recomputed on clean centre crops of the
    dataset's training split (`fer_core.finalize`). The card records both.

    Returns:
        The new card.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    src = run_dir / MODEL_FILE
    if not src.exists():
        raise FileNotFoundError(f"{src}: the run has no model yet (no finished epoch).")
    card = load_card(src)
    kept = kept_epochs(run_dir)[-average:] if average else []
    if average and len(kept) < average:
        raise ValueError(
            f"{run_dir}: {len(kept)} epoch weight file(s) kept, {average} asked; "
            f"train with --keep-epochs {average} or average fewer."
        )
    train = ds.split("train") if average or recalibrate_bn else None
    if train is not None and len(train) == 0:
        raise ValueError("recalibrating BatchNorm needs the dataset's training split; this dataset has none.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    card["name"] = dest.stem
    card["source_run"] = run_dir.name
    card["training_history"] = training_history(run_dir)
    if average or recalibrate_bn:
        import keras

        model = keras.models.load_model(src, compile=False)
        finalize = {}
        if average:
            average_weights(model, [f for _, f in kept])
            finalize["weight_average"] = {"epochs": [e for e, _ in kept], "count": len(kept)}
            # The best-epoch figures describe another set of weights; evaluation below refills metrics.
            card["metrics"] = {}
        n_layers = recalibrate_batchnorm(model, train.images, card["input"]["crop_size"], progress=progress)
        finalize["batchnorm_recalibrated"] = {
            "layers": n_layers,
            "split": "train",
            "faces": len(train),
            "views": "centre",
        }
        card["finalize"] = finalize
        model.save(dest)
    else:
        shutil.copyfile(src, dest)
    save_card(dest, card)
    rewrite_evaluation(dest, ds, tta)
    return load_card(dest)
