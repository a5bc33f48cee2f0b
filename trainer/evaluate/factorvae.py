"""FactorVAE disentanglement score (Kim & Mnih 2018), disentanglement_lib's protocol.

The metric knows nothing about dSprites: it takes the factor sizes, an ``observe`` function
(factor classes [n, F] -> images) and a ``represent`` function (images -> codes [n, D]).
Protocol (disentanglement_lib ``factor_vae.compute_factor_vae``):
1. global variance of every code dim from 10,000 random images; prune dims with std < 0.05;
2. one vote: pick a factor k, fix it to one random value, draw 64 images with the other factors
   random, divide each active dim's variance by its global variance, vote (argmin dim, k);
3. majority-vote classifier dim -> factor from 10,000 training votes; the score is its
   accuracy on 5,000 fresh evaluation votes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from infoedit import engine
from trainer.progress import make_progress

Observe = Callable[[np.ndarray], Any]         # factor classes [n, F] -> a batch of images
Represent = Callable[[Any], np.ndarray]       # a batch of images -> codes [n, D]


@dataclass(kw_only=True)  # FactorVAEProtocol(1000, 500, 5000) would set batch_size, not votes
class FactorVAEProtocol:
    batch_size: int = 64
    n_train_votes: int = 10_000
    n_eval_votes: int = 5_000
    n_variance_samples: int = 10_000
    prune_std: float = 0.05
    seed: int = 0
    votes_per_call: int = 16  # votes whose images go through ``represent`` together: speed only


def _codes(observe: Observe, represent: Represent, factors: np.ndarray, chunk: int) -> np.ndarray:
    parts = [np.asarray(represent(observe(factors[i:i + chunk])), dtype=np.float64)
             for i in range(0, len(factors), chunk)]
    return np.concatenate(parts)


def _votes(sizes: np.ndarray, observe: Observe, represent: Represent, n_votes: int,
           global_var: np.ndarray, active: np.ndarray, p: FactorVAEProtocol,
           rng: np.random.Generator, advance: Callable[[int], None]) -> np.ndarray:
    """votes[k, d] = how often fixing factor k made dim d the least variable (normalised)."""
    varying = np.flatnonzero(sizes > 1)  # a factor with one value cannot be "fixed" meaningfully
    active_idx = np.flatnonzero(active)
    votes = np.zeros((len(sizes), len(global_var)), dtype=np.int64)
    done, b = 0, p.batch_size
    while done < n_votes:
        m = min(p.votes_per_call, n_votes - done)
        ks = rng.choice(varying, size=m)
        factors = rng.integers(0, sizes, size=(m, b, len(sizes)))
        rows = np.arange(m)
        factors[rows, :, ks] = factors[rows, 0, ks][:, None]
        codes = _codes(observe, represent, factors.reshape(m * b, -1), m * b).reshape(m, b, -1)
        local_var = codes.var(axis=1, ddof=1)
        dims = active_idx[np.argmin(local_var[:, active] / global_var[active], axis=1)]
        np.add.at(votes, (ks, dims), 1)
        done += m
        advance(m)
    return votes


def factorvae_score(factor_sizes: Sequence[int], observe: Observe, represent: Represent,
                    protocol: FactorVAEProtocol | None = None, progress: bool = False) -> dict:
    """Run the protocol; returns eval_accuracy (the score), train_accuracy and the details.
    ``progress``: a bar over the votes on stderr."""

    p = protocol or FactorVAEProtocol()
    sizes = np.asarray(factor_sizes, dtype=np.int64)
    if not (sizes > 1).any():
        raise ValueError("FactorVAE score: no factor takes more than one value")
    rng = np.random.default_rng(p.seed)
    factors = rng.integers(0, sizes, size=(p.n_variance_samples, len(sizes)))
    global_var = _codes(observe, represent, factors, p.batch_size * p.votes_per_call).var(axis=0, ddof=1)
    active = np.sqrt(global_var) >= p.prune_std
    result = {"protocol": {**asdict(p), "factor_sizes": sizes.tolist(),
                           "reference": "disentanglement_lib factor_vae.compute_factor_vae"},
              "code_dim": int(len(global_var)), "num_active_dims": int(active.sum()),
              "active_dims": np.flatnonzero(active).tolist(),
              "global_std": np.sqrt(global_var).round(4).tolist()}
    if not active.any():  # disentanglement_lib scores a collapsed code 0
        return {"eval_accuracy": 0.0, "train_accuracy": 0.0, **result}
    with make_progress(progress) as bar:
        advance = partial(bar.advance, bar.add_task("FactorVAE votes", total=p.n_train_votes + p.n_eval_votes,
                                                    info=""))
        train = _votes(sizes, observe, represent, p.n_train_votes, global_var, active, p, rng, advance)
        evals = _votes(sizes, observe, represent, p.n_eval_votes, global_var, active, p, rng, advance)
    classifier = train.argmax(axis=0)  # majority vote: each code dim -> the factor it signals
    dims = np.arange(train.shape[1])
    return {"eval_accuracy": float(evals[classifier, dims].sum() / evals.sum()),
            "train_accuracy": float(train[classifier, dims].sum() / train.sum()),
            "classifier": {str(d): int(classifier[d]) for d in np.flatnonzero(train.sum(0))},
            "train_votes": train.tolist(), "eval_votes": evals.tolist(), **result}


# -- adapters: a model as a representation, dSprites as a factor source ---------------------
def model_representation(model, kind: str = "mu", scale: float = 1.0, batch_size: int = 512) -> Represent:
    """Images (uint8 tensor) -> mu_c, or [mu_c, softmax(logits_s)], in eval mode."""
    if kind not in ("mu", "mu+softmax"):
        raise ValueError(f"--representation {kind}: use 'mu' or 'mu+softmax'")

    def read(mu: torch.Tensor, _sigma: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return torch.cat([mu, torch.softmax(logits, 1)], 1) if kind == "mu+softmax" else mu

    def represent(images: torch.Tensor) -> np.ndarray:
        return engine.encode_in_batches(model, images, read, scale, batch_size).cpu().numpy()

    return represent


def grid_source(images, classes) -> tuple[tuple[int, ...], Observe]:
    """A full factorial grid of images as (factor sizes, observe); ValueError if cells are missing.

    Each factor's distinct class values are renumbered 0..n-1, so a subsampled grid (orientation
    every 4th of 40, say) becomes a dense 3x6x10x16x16 grid.
    """
    classes = np.asarray(classes, dtype=np.int64)
    ranks = [np.unique(col, return_inverse=True) for col in classes.T]
    dense = np.stack([inverse.reshape(-1) for _values, inverse in ranks], axis=1)
    sizes = tuple(len(values) for values, _inverse in ranks)
    table = np.full(sizes, -1, dtype=np.int64)
    table[tuple(dense.T)] = np.arange(len(dense))
    if (table < 0).any() or len(dense) != table.size:
        raise ValueError(f"not a full factorial grid: {len(dense)} images for factor sizes {sizes}")
    images = torch.as_tensor(np.asarray(images))

    def observe(factors: np.ndarray) -> torch.Tensor:
        return images[torch.from_numpy(table[tuple(factors.T)])]

    return sizes, observe


def dsprites_source(real_grid: Path | None = None) -> tuple[tuple[int, ...], Observe, str]:
    """(sizes, observe, description): procedural dSprites, or a real full-factorial grid file."""
    from trainer import dsprites

    if real_grid is not None:
        images, classes = dsprites.load_npz(real_grid)
        sizes, observe = grid_source(images, classes)
        return sizes, observe, f"real dSprites grid {real_grid} ({len(images)} images)"
    return tuple(dsprites.FACTOR_SIZES), dsprites.render, "procedural dSprites (trainer.dsprites.render)"
