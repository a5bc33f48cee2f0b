"""Random warps of image batches: the nuisances the real-data MI term is made invariant to
(InfoVAEGANConfig.real_mi_weight, .augment).

``augment`` names the parts joined by '+': "affine" (rotation, scale, shift: always on),
"flip" (mirror left-right), "shear" (slant and width: a digit's handwriting style, not its
identity), "stroke" (thinner or thicker strokes: the pen, not the shape), "contrast" (a
darker or lighter shade: a garment's colour or a scan's exposure, not the object), "centre"
(each view centred on its centre of mass and scaled to one size: where and how large an object
is, not what it is, as dSprites' position and scale) and "spin" (any rotation: orientation).

The warps below assume a dark background (MNIST's light strokes on black): borders fill with
black, strokes are the bright pixels. ``views`` turns light-background images (ink on paper)
into their negative for the warp and back, so the same parts apply to both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from infoedit.models.infovaegan import augment_parts


def views(x: torch.Tensor, augment: str, generator: torch.Generator | None = None,
          background: str = "dark") -> torch.Tensor:
    """A random view of each image of x (in [0, 1]) under the named parts; ``background``
    is the model's (config.BACKGROUNDS): "light" images are warped as their negative."""
    if background == "light":
        return 1 - views(1 - x, augment, generator)
    parts = augment_parts(augment)
    x = random_affine(x, generator, degrees=180.0 if "spin" in parts else 15.0, flip="flip" in parts,
                      shear=0.3 if "shear" in parts else 0.0, aspect=0.2 if "shear" in parts else 0.0,
                      centre="centre" in parts)
    if "stroke" in parts:
        x = random_stroke(x, generator)
    return random_contrast(x, generator) if "contrast" in parts else x


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None, degrees: float = 15.0,
                  scale: tuple[float, float] = (0.85, 1.15), translate: float = 0.15,
                  flip: bool = False, shear: float = 0.0, aspect: float = 0.0, centre: bool = False
                  ) -> torch.Tensor:
    """Each image of x [N, C, H, W] rotated by up to ``degrees``, scaled within ``scale`` and
    shifted by up to ``translate`` of its half-size; with ``flip`` mirrored left-right half of
    the time; sheared horizontally by up to ``shear`` (x += shear * y) and its width scaled by
    up to 1 +- ``aspect``. With ``centre`` the warp is taken about each image's centre of mass,
    which it moves to the middle, and the image is first scaled to a radius of gyration of
    ``CENTRED_RADIUS`` (the random shift and scale then act on top). The border is filled with
    zeros (the background of dark-background data such as MNIST).
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
    theta = theta.to(x.device, x.dtype)
    if centre:
        middle, radius = mass_frame(x)
        theta = torch.cat([theta[:, :, :2] * (radius / CENTRED_RADIUS)[:, None, None],
                           theta[:, :, 2:] + middle[:, :, None]], 2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


CENTRED_RADIUS = 0.25  # radius of gyration of a centred view, in [-1, 1] image coordinates


def mass_frame(x: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's centre of mass [N, 2] (x, y) and radius of gyration [N] in affine_grid's
    [-1, 1] coordinates, the intensities summed over channels as weights; an empty image gets
    the middle and CENTRED_RADIUS (left as it is)."""
    n, _, h, w = x.shape
    weight = x.clamp_min(0).sum(1).flatten(1)                      # [N, H*W]
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([gx.flatten(), gy.flatten()], 1)          # [H*W, 2]
    mass = weight.sum(1, keepdim=True)
    empty = mass[:, 0] <= eps
    p = weight / mass.clamp_min(eps)
    middle = p @ coords
    spread = (p * ((coords[None] - middle[:, None]) ** 2).sum(2)).sum(1)
    radius = torch.where(empty | (spread <= eps), torch.full_like(spread, CENTRED_RADIUS ** 2), spread).sqrt()
    return torch.where(empty[:, None], torch.zeros_like(middle), middle), radius


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


def for_critic(x: torch.Tensor, parts: list[str], generator: torch.Generator | None = None) -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020; InfoVAEGANConfig.critic_augment): each image of x [N, C, H, W]
    in [0, 1] warped by the named parts, in DiffAugment's order: "colour" (brightness +-0.25, then
    saturation x[0, 2] and contrast x[0.5, 1.5] about the image's mean: DiffAugment's ranges, its
    brightness halved for [0, 1] images), "translation" (a whole-pixel shift of up to 1/8 of the
    size each way, zeros coming in) and "cutout" (a square of half the size, anywhere, zeroed).
    Differentiable in x, so a generator learns through it. No parts: x itself, no draw taken."""
    n, _, h, w = x.shape

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(n, 1, 1, 1, generator=generator)).to(x.device, x.dtype)

    if "colour" in parts:
        x = x + uniform(-0.25, 0.25)
        grey = x.mean(1, keepdim=True)
        x = (x - grey) * uniform(0.0, 2.0) + grey
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * uniform(0.5, 1.5) + mean
    if "translation" in parts:
        # whole pixels in affine_grid's [-1, 1] coordinates: 2 / size a pixel; nearest keeps them whole
        pixels = torch.stack([torch.randint(-(w // 8), w // 8 + 1, (n,), generator=generator) * 2 / w,
                              torch.randint(-(h // 8), h // 8 + 1, (n,), generator=generator) * 2 / h], 1)
        theta = torch.cat([torch.eye(2).expand(n, 2, 2), -pixels[:, :, None]], 2).to(x.device, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    if "cutout" in parts:
        side_y, side_x = (h + 1) // 2, (w + 1) // 2
        top = torch.randint(0, h, (n, 1, 1), generator=generator).to(x.device) - side_y // 2
        left = torch.randint(0, w, (n, 1, 1), generator=generator).to(x.device) - side_x // 2
        ys = torch.arange(h, device=x.device)[None, :, None] - top
        xs = torch.arange(w, device=x.device)[None, None, :] - left
        hole = (ys >= 0) & (ys < side_y) & (xs >= 0) & (xs < side_x)
        x = x * (~hole).unsqueeze(1).to(x.dtype)
    return x
