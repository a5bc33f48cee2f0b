"""Latent codes: priors for z, s and c, Gumbel-softmax, KL terms and traversal values.

Notation follows the paper: z is noise, s a one-hot discrete code over K categories,
c a continuous code. A code vector fed to G and D is always ``[s, c]`` (s first).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PRIORS = ("uniform", "normal")


def sample_noise(n: int, dim: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    # The authors' code draws z ~ U(-1, 1) (the paper says Gaussian); we follow the code.
    return torch.rand(n, dim, generator=generator, device=device) * 2 - 1


def sample_discrete(n: int, k: int, generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """One-hot samples of s ~ Cat(K, 1/K), as float [n, K]."""
    idx = torch.randint(k, (n,), generator=generator, device=device)
    return F.one_hot(idx, k).float()


def sample_continuous(n: int, dim: int, prior: str, generator: torch.Generator | None = None,
                      device="cpu") -> torch.Tensor:
    if prior == "uniform":
        return torch.rand(n, dim, generator=generator, device=device) * 2 - 1
    if prior == "normal":
        return torch.randn(n, dim, generator=generator, device=device)
    raise ValueError(f"unknown prior {prior!r}; expected one of {PRIORS}")


def prior_support(prior: str) -> tuple[float, float] | None:
    """The interval the prior draws c from: [-1, 1] for the uniform, None (all of R) for the normal."""
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; expected one of {PRIORS}")
    return (-1.0, 1.0) if prior == "uniform" else None


def prior_std(prior: str) -> float:
    """Std of the Gaussian the continuous-code KL is taken against.

    KL(N(mu, sigma^2) || U(-1, 1)) is infinite (a Gaussian has mass outside [-1, 1]), so for
    the uniform prior we take the KL against the moment-matched Gaussian N(0, 1/3), which has
    the uniform's mean and variance. For the normal prior it is N(0, 1), the exact prior.
    """
    if prior == "uniform":
        return 1 / math.sqrt(3)
    if prior == "normal":
        return 1.0
    raise ValueError(f"unknown prior {prior!r}; expected one of {PRIORS}")


def kl_gaussian(mu: torch.Tensor, sigma: torch.Tensor, prior: str) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, p^2)) summed over dims, one value per row (p from the prior)."""
    p = prior_std(prior)
    var_ratio = (sigma / p) ** 2
    kl = 0.5 * (var_ratio + (mu / p) ** 2 - 1 - torch.log(var_ratio + 1e-12))
    return kl.sum(dim=1)


def kl_categorical_uniform(probs: torch.Tensor) -> torch.Tensor:
    """KL(q(s|x) || Cat(1/K)) per row: sum_k q_k (log q_k + log K)."""
    k = probs.shape[1]
    return (probs * (torch.log(probs + 1e-10) + math.log(k))).sum(dim=1)


def gumbel_softmax(logits: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 8: a relaxed one-hot sample from Cat(softmax(logits)) at temperature tau.

    As tau -> 0 the sample tends to the one-hot of argmax(log p + g).
    """
    return F.softmax((F.log_softmax(logits, dim=1) + gumbel_noise(logits, generator)) / tau, dim=1)


def sample_onehot(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """An exact one-hot sample of Cat(softmax(logits)) (Gumbel-max: argmax of log p + g)."""
    g = gumbel_noise(logits, generator)
    return F.one_hot((F.log_softmax(logits, dim=1) + g).argmax(dim=1), logits.shape[1]).to(logits.dtype)


def gumbel_noise(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel(0, 1) noise shaped like ``like``: one draw, clamped alike, for the relaxed and the exact sample."""
    u = _draw(torch.rand, like, generator)
    return -torch.log(-torch.log(u.clamp_min(1e-10)) + 1e-10)


def reparameterize(mu: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 7: c = mu + xi * sigma, xi ~ N(0, I)."""
    xi = _draw(torch.randn, mu, generator)
    return mu + xi * sigma


def _draw(fn, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``fn`` (torch.rand or torch.randn) of ``like``'s shape and dtype, on its device. Drawn
    where the generator lives, then moved: the trainer's generator is a CPU one (its state goes
    into checkpoints), so a run's random stream is the same on a CPU and a GPU."""
    where = like.device if generator is None else generator.device
    return fn(like.shape, generator=generator, device=where, dtype=like.dtype).to(like.device)


def traversal_values(low: float, high: float, steps: int) -> torch.Tensor:
    """Evenly spaced values for a latent traversal, both ends included."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return torch.linspace(low, high, steps)
