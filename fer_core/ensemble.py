"""Ensembles: several trained models combined into one model file that averages their
probabilities.

The ensemble is an ordinary Keras model (input -> each member -> mean of the members'
softmax outputs), saved as one .keras file with one model card, so inference, serving,
export and evaluation use it like any other model. The members must share labels (in the
same order), input size and face margin; the card lists each member's own card figures and
training history, so the combined model stays traceable to the runs that made it.
"""

from __future__ import annotations

from pathlib import Path

from fer_core.card import load_card, make_card, save_card

ENSEMBLE_ARCH = "ensemble"  # card["training"]["arch"] of a combined model
MEAN_LAYER = "ensemble_mean"  # the output layer that averages the members; marks an ensemble


def ensemble_members(model) -> list:
    """The member models of an ensemble built here, in order; [] for any other model."""
    import keras

    if not any(layer.name == MEAN_LAYER for layer in model.layers):
        return []
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def build_ensemble(members: list, name: str = "ensemble"):
    """One Keras model whose output is the mean of the members' probabilities.

    Args:
        members: two or more Keras models with the same input shape and number of outputs
            (renamed member_0, member_1, ... so their layers stay apart in the saved file).
        name: the combined model's name.
    """
    import keras

    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two models. Received: {len(members)}")
    shapes = {tuple(m.input_shape[1:]) for m in members}
    outputs = {int(m.output_shape[-1]) for m in members}
    if len(shapes) > 1 or len(outputs) > 1:
        raise ValueError(f"ensemble members must share input shape and outputs. Received: {shapes}, {outputs}")
    inp = keras.Input(shape=shapes.pop(), name="image")
    probs = []
    for i, member in enumerate(members):
        member.name = f"member_{i}"
        probs.append(member(inp))
    out = keras.layers.Average(name=MEAN_LAYER, dtype="float32")(probs)
    return keras.Model(inp, out, name=name)


def combine(model_paths: list[str | Path], dest: str | Path, tta: str = "tencrop") -> dict:
    """Build the ensemble of the model files and save it with its card at `dest`.

    The members' cards must agree on labels, input and face margin (ValueError names the
    first difference). Returns the new card (without figures: evaluate it to add them).
    """
    import keras

    paths = [Path(p) for p in model_paths]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: model file not found.")
    cards = [load_card(p) for p in paths]
    first = cards[0]
    for p, card in zip(paths[1:], cards[1:], strict=True):
        for key in ("labels", "input", "face_margin"):
            if card.get(key) != first.get(key):
                raise ValueError(f"{p}: its card's {key} differs from {paths[0]}'s; only like models can be combined.")
    models = [keras.models.load_model(p, compile=False) for p in paths]
    dest = Path(dest)
    model = build_ensemble(models, name=dest.stem)
    card = make_card(
        name=dest.stem,
        class_names=first["labels"],
        crop_size=first["input"]["crop_size"],
        image_size=first["input"]["image_size"],
        tta=tta,
        face_margin=first.get("face_margin", 0.1),
        config={"arch": ENSEMBLE_ARCH, "members": len(paths), "combine": "mean of probabilities"},
        dataset=first.get("dataset"),
        params=model.count_params(),
    )
    card["members"] = [
        {
            "path": str(p),
            "name": c.get("name"),
            "source_run": c.get("source_run"),
            "params": c.get("params"),
            "metrics": c.get("metrics"),
            "tta": c.get("tta"),
            "training": c.get("training"),
            "training_history": c.get("training_history"),
            "init_from": c.get("init_from"),
            "finalize": c.get("finalize"),
        }
        for p, c in zip(paths, cards, strict=True)
    ]
    dest.parent.mkdir(parents=True, exist_ok=True)
    model.save(dest)
    save_card(dest, card)
    return card
