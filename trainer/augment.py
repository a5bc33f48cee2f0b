"""Random warps of image batches: the nuisances the real-data MI term is made invariant to
(InfoVAEGANConfig.real_mi_weight, .augment).

``augment`` names the parts joined by '+': "affine" (rotation, scale, shift: always on),
"flip" (mirror left-right), "shear" (slant and width: a digit's handwriting style, not its
identity), "stroke" (thinner or thicker strokes: the pen, not the shape) and "contrast" (a
darker or lighter shade: a garment's colour or a scan's exposure, not the object).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from infoedit.models.infovaegan import augment_parts


def views(x: torch.Tensor, augment: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random view of each image of x under the named parts."""
    parts = augment_parts(augment)
    x = random_affine(x, generator, flip="flip" in parts, shear=0.3 if "shear" in parts else 0.0,
                      aspect=0.2 if "shear" in parts else 0.0)
    if "stroke" in parts:
        x = random_stroke(x, generator)
    return random_contrast(x, generator) if "contrast" in parts else x


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None, degrees: float = 15.0,
                  scale: tuple[float, float] = (0.85, 1.15), translate: float = 0.15,
                  flip: bool = False, shear: float = 0.0, aspect: float = 0.0) -> torch.Tensor:
    """Each image of x [N, C, H, W] rotated by up to ``degrees``, scaled within ``scale`` and
    shifted by up to ``translate`` of its half-size; with ``flip`` mirrored left-right half of
    the time; sheared horizontally by up to ``shear`` (x += shear * y) and its width scaled by
    up to 1 +- ``aspect``. The border is filled with zeros (the background of dark-background
    data such as MNIST).
    """
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = uniform(-degrees, degrees) * math.pi / 180
    inv_scale = 1.0 / uniform(*scale)
    cos, sin = torch.cos(angle) * inv_scale, torch.sin(angle) * inv_scale
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    # affine_grid maps output to input coordinates, so the warp is the inverse of what the
    # image undergoes: R^-1 S^-1 then the inverse shear and width, then the mirror.
    inv_shear = -uniform(-shear, shear) if shear else torch.zeros(n)
    inv_width = 1.0 / uniform(1 - aspect, 1 + aspect) if aspect else torch.ones(n)
    a, b = cos * mirror * inv_width, (-sin + inv_shear * cos) * inv_width
    theta = torch.stack([torch.stack([a, b, uniform(-translate, translate)], 1),
                         torch.stack([sin * mirror, cos, uniform(-translate, translate)], 1)], 1)
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_stroke(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Strokes made thicker (up to a 3x3 dilation) or thinner (up to half way to a 3x3 erosion,
    which would erase 2-pixel strokes) by a random amount per image: bright strokes on a dark
    background, as MNIST."""
    t = (1.5 * torch.rand(x.shape[0], 1, 1, 1, generator=generator) - 0.5).to(x.device, x.dtype)
    dilated = F.max_pool2d(x, 3, 1, 1)
    eroded = -F.max_pool2d(-x, 3, 1, 1)
    return x + t.clamp_min(0) * (dilated - x) + (-t).clamp_min(0) * (eroded - x)


def random_contrast(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image's intensities in [0, 1] remapped as gain * x ** gamma, gamma log-uniform in
    [1/2, 2] and gain in [0.7, 1], per image: mid-tones shift, black stays black (a dark
    background, as MNIST and Fashion-MNIST) and the shape is untouched."""
    n = x.shape[0]
    gamma = torch.exp((2 * torch.rand(n, 1, 1, 1, generator=generator) - 1) * math.log(2)).to(x.device, x.dtype)
    gain = (0.7 + 0.3 * torch.rand(n, 1, 1, 1, generator=generator)).to(x.device, x.dtype)
    return gain * x.clamp(0, 1) ** gamma
