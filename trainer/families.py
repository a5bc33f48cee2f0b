"""How each model family trains, by the name its config carries: its optimisers, its step, and
what runs after each epoch. The family's networks and config are ``infoedit.models.FAMILIES``
under the same names (the inference package cannot import the trainer); a test keeps the two
registries' names equal.

A step is ``step(model, opt, x, gen, y, iteration=i)`` (y: the batch's labels, or None; i: the
run's steps done before this one) and returns a dict of floats; it leaves this step's .grad in
place. An ``after_epoch(model, ds, seed, epoch)`` hook returns a record for metrics.jsonl, or
None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from trainer import baselines, infovaegan, supervised


@dataclass(frozen=True)
class FamilyTrainer:
    make_optimizers: Callable
    step: Callable
    after_epoch: Callable | None = None


def _any_iteration(step: Callable) -> Callable:
    """A step that is the same on every iteration, called as the loop calls a step."""
    return lambda model, opt, x, gen, y=None, iteration=0: step(model, opt, x, gen, y)


# The InfoVAEGAN entries look their functions up at each call, so tests can patch them.
_INFOVAEGAN = FamilyTrainer(lambda *a: infovaegan.make_optimizers(*a), lambda *a, **k: infovaegan.train_step(*a, **k),
                            lambda *a: infovaegan.after_epoch(*a))
TRAINERS = {
    "infovaegan": _INFOVAEGAN,
    "infovaegan2": _INFOVAEGAN,
    "supervised-single": FamilyTrainer(supervised.make_optimizers, _any_iteration(supervised.train_step)),
    "supervised-dual": FamilyTrainer(supervised.make_optimizers, _any_iteration(supervised.train_step)),
    "infogan": FamilyTrainer(baselines.infogan_optimizers, _any_iteration(baselines.infogan_step)),
    "ali": FamilyTrainer(baselines.ali_optimizers, _any_iteration(baselines.ali_step)),
    "beta-vae": FamilyTrainer(baselines.vae_optimizers, _any_iteration(baselines.vae_step)),
    "jointvae": FamilyTrainer(baselines.vae_optimizers, _any_iteration(baselines.vae_step)),
}


def trainer_for(name: str) -> FamilyTrainer:
    if name not in TRAINERS:
        raise ValueError(f"no trainer for model family {name!r}")
    return TRAINERS[name]
