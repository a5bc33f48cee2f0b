"""Random small affine warps of image batches: the nuisance the real-data MI term is made
invariant to (InfoVAEGANConfig.real_mi_weight)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None, degrees: float = 15.0,
                  scale: tuple[float, float] = (0.85, 1.15), translate: float = 0.15,
                  flip: bool = False) -> torch.Tensor:
    """Each image of x [N, C, H, W] rotated by up to ``degrees``, scaled within ``scale`` and
    shifted by up to ``translate`` of its half-size, and with ``flip`` mirrored left-right half
    of the time; the border is filled with zeros (the background of dark-background data such
    as MNIST).
    """
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = uniform(-degrees, degrees) * math.pi / 180
    inv_scale = 1.0 / uniform(*scale)
    cos, sin = torch.cos(angle) * inv_scale, torch.sin(angle) * inv_scale
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    theta = torch.stack([torch.stack([cos * mirror, -sin, uniform(-translate, translate)], 1),
                         torch.stack([sin * mirror, cos, uniform(-translate, translate)], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
