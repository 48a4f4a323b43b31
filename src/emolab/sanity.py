"""``emolab sanity CONFIG --overfit 20``: can the model memorise a handful of examples?

A model that cannot reach 100% training accuracy on 20 examples with regularisation switched off has a
bug (labels misaligned, learning rate far off, frozen weights, a broken head) that a full run would
only reveal hours later. A practitioner report does this check by hand; here it runs for every model and modality.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any


from emolab.config import RunConfig
from emolab.data import load_dataset
from emolab.data.registry import subsample
from emolab.models import create_model
from emolab.records import Dataset
from emolab.seeding import seed_everything


def overfit_config(cfg: RunConfig, n: int, epochs: int) -> RunConfig:
    """The same model with every regulariser off and enough epochs to memorise ``n`` examples."""
    model = cfg.model.unregularised()
    train = dataclasses.replace(cfg.train, epochs=epochs, batch_size=min(cfg.train.batch_size, n), weight_decay=0.0,
                                label_smoothing=0.0, class_weights=False, patience=None, warmup_ratio=0.0,
                                scheduler="constant", max_steps=None, grad_accum_steps=1)
    return dataclasses.replace(cfg, model=model, train=train)


def sanity_check(cfg: RunConfig, *, n: int = 20, epochs: int = 40, say=print) -> dict[str, Any]:
    """Train on ``n`` training examples and score the same examples; passes at 100% accuracy."""
    from emolab.training import train

    seed_everything(cfg.seed)
    full = load_dataset(cfg.data, cfg.seed)
    few = subsample(full.split("train"), n, cfg.seed)
    ds = Dataset(full.name, full.labels, {"train": few, "validation": few, "test": few}, full.modality)
    run_cfg = overfit_config(cfg, n, epochs)
    model = create_model(run_cfg.model, ds.labels, ds)
    start = time.perf_counter()
    history = train(model, ds, run_cfg)
    probs = model.predict_proba(few.inputs)
    if ds.labels.multi_label:
        accuracy = float(((probs >= 0.5) == few.labels.astype(bool)).all(axis=1).mean())
    else:
        accuracy = float((probs.argmax(axis=1) == few.labels).mean())
    result = {"examples": len(few), "epochs_run": len(history) if history else 1, "train_accuracy": accuracy,
              "final_train_loss": history[-1].train.get("loss") if history else None,
              "passed": accuracy == 1.0, "seconds": time.perf_counter() - start,
              "settings": "dropout 0, weight decay 0, no label smoothing or class weights, constant lr "
                          f"{run_cfg.train.lr:g}, {epochs} epochs"}
    say(("PASSED" if result["passed"] else "FAILED") +
        f": training accuracy {accuracy:.0%} on {len(few)} examples after {result['epochs_run']} epoch(s)")
    return result


def failure_hint() -> str:
    return ("the model cannot memorise 20 examples: check that labels match the inputs, raise train.lr or "
            "the epochs (--epochs), and that the layers are not frozen (model.freeze_layers)")


__all__ = ["failure_hint", "overfit_config", "sanity_check"]
