"""How far an image is from what a model knows: out-of-domain inputs said, not hidden (ours).

A model reads a category off any image, a face given to the digits model included, with a
confidence near 1. Two measures of an image, each set against the same measure on the model's
training images (``ood.json`` in the model folder, written by training):

- its drawing error: the share of the image's variance that the model's own drawing of it from
  its codes (what ``reconstruct`` draws) leaves unexplained, mean squared difference over the
  image's variance. The model draws what it knows. (Per-pixel error alone rates a thin digit
  as familiar to a clothes model: most of its pixels are background, drawn right.)
- its code distance: the Mahalanobis distance of its continuous codes (c, and the style code
  when the model has one) from the training images' codes.

Each measure is taken over its threshold, the QUANTILE of the training images' values.
``ood_score`` is the length of the two ratios' vector over the length that as many training
images exceed as exceed either threshold: above 1, the image is flagged, as is a flat one (one
level, nothing drawn). So two measures each near their threshold flag an image that neither
flags alone, at the same share of training images flagged. (A folder written before the length
was recorded scores the larger ratio.) Chosen on validation images (training images apart from
the reference's, letters and faces apart from bench/ood.py's) against the larger ratio, at the
same share of in-domain images flagged: Fashion-MNIST letters 86% -> 90%, faces 89% -> 93%,
MNIST letters 62% -> 63%, faces 96% -> 98%, noise 98% -> 97% (docs/model.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

FILE_NAME = "ood.json"
QUANTILE = 0.98
FLAT = 0.02  # an image whose pixels all lie within this of each other is flat (blank)
REFERENCE_IMAGES = 2000  # training images the reference is measured on


def reference_sample(n_images: int) -> torch.Tensor:
    """Indices of the training images the reference is measured on: a fixed random sample of
    REFERENCE_IMAGES (its own RNG: training's draws stay as they were), the same in training and
    in trainer.release."""
    return torch.randperm(n_images, generator=torch.Generator().manual_seed(0))[:REFERENCE_IMAGES]


def measures(model, x: torch.Tensor, found) -> tuple[torch.Tensor, torch.Tensor]:
    """(drawing error [N], code vector [N, D]) of images x [N, C, H, W] in [0, 1], whose codes
    E found (``found``, engine.Codes)."""
    from infoedit import engine

    own = engine.render(model, found.onehot(), found.mu, 0, found.style).float().cpu().flatten(1)
    x = x.float().cpu().flatten(1)
    error = ((own - x) ** 2).mean(1) / (x.var(1, correction=0) + 1e-4)
    return error, _code_vector(found)


def _code_vector(found) -> torch.Tensor:
    parts = [found.mu] + ([] if found.style is None else [found.style])
    return torch.cat(parts, dim=1).double().cpu()


def reference(model, images: torch.Tensor, batch: int = 256) -> dict:
    """The training images' measures, as ood.json holds them: the codes' mean and precision
    matrix, and each measure's QUANTILE. ``images`` [N, C, H, W] in [0, 1], a sample of them."""
    from infoedit import engine

    was_training = model.training
    model.eval()

    errors, vectors = [], []
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        error, vector = measures(model, x, engine.encode(model, x))
        errors.append(error)
        vectors.append(vector)
    error, vector = torch.cat(errors).double(), torch.cat(vectors)
    mean, dim = vector.mean(0), vector.shape[1]
    cov = torch.cov(vector.T).reshape(dim, dim) if dim else torch.zeros(0, 0, dtype=vector.dtype)
    precision = torch.linalg.pinv(cov + 1e-6 * torch.eye(dim, dtype=cov.dtype)) if dim else cov
    distance = _mahalanobis(vector, mean, precision) if dim else torch.zeros(len(vector), dtype=vector.dtype)
    model.train(was_training)
    ref = {"images": len(images), "quantile": QUANTILE,
           "drawing_error": float(torch.quantile(error, QUANTILE)),
           "code_distance": float(torch.quantile(distance, QUANTILE)) if dim else 1.0,
           "code_mean": mean.tolist(), "code_precision": precision.tolist()}
    error_ratio, distance_ratio = error / ref["drawing_error"], distance / ref["code_distance"]
    either = float((torch.maximum(error_ratio, distance_ratio) > 1).double().mean())
    ref["combined"] = float(torch.quantile(torch.hypot(error_ratio, distance_ratio), 1 - either))
    return ref


def _mahalanobis(vector: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    d = vector - mean
    return torch.einsum("ni,ij,nj->n", d, precision, d).clamp_min(0).sqrt()


def score(ref: dict, x: torch.Tensor, error: torch.Tensor, vector: torch.Tensor) -> tuple[list, list]:
    """(ood_score, flagged) per image: the length of its two measures over their thresholds,
    over the reference's combined length (the larger ratio, for a reference without one), and
    whether it is above 1 or the image is flat."""
    mean, precision = (torch.tensor(ref[k], dtype=torch.float64) for k in ("code_mean", "code_precision"))
    distance = _mahalanobis(vector, mean, precision) if len(mean) else torch.zeros(len(vector), dtype=mean.dtype)
    error_ratio, distance_ratio = error.double() / ref["drawing_error"], distance / ref["code_distance"]
    if "combined" in ref:
        ratio = torch.hypot(error_ratio, distance_ratio) / ref["combined"]
    else:
        ratio = torch.maximum(error_ratio, distance_ratio)
    flat = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).cpu() < FLAT
    return ratio.round(decimals=3).tolist(), ((ratio > 1) | flat).tolist()


def save(folder: Path, ref: dict) -> None:
    from infoedit.hub import atomic_write_bytes

    atomic_write_bytes(Path(folder) / FILE_NAME, (json.dumps(ref) + "\n").encode())


def code_dim(model) -> int:
    """How many numbers the code vector of the model's images has."""
    return model.config.c_dim + getattr(model.config, "style_dim", 0)


def load(folder: Path, code_dim: int) -> dict | None:
    """The folder's reference, or None when it has none (a folder from before, or not a run's)."""
    from infoedit.hub import ModelLoadError

    path = Path(folder) / FILE_NAME
    if not path.is_file():
        return None
    try:
        ref = json.loads(path.read_text())
        ok = (len(ref["code_mean"]) == code_dim and len(ref["code_precision"]) == code_dim
              and ref["drawing_error"] > 0 and ref["code_distance"] > 0 and ref.get("combined", 1) > 0)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: not a valid reference ({exc})") from None
    if not ok:
        raise ModelLoadError(f"{path}: does not match the model's codes ({code_dim} numbers)")
    return ref
