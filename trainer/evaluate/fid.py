"""Frechet Inception Distance between a model's samples and a folder or a dataset.

Features are pytorch-fid's FID InceptionV3 (the TF ``2015-12-05`` graph ported to PyTorch),
pool3, 2048-d, loaded from a local weights file: nothing is ever downloaded. Reference
statistics are cached as .npz, keyed by what they were computed from.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               "pt_inception-2015-12-05-6726825d.pth")

# An extractor maps float images [N, C, H, W] in [0, 1] to features [N, D]; its ``key``
# attribute names the network and weights, so cached statistics never mix extractors.
Extractor = Callable[[torch.Tensor], np.ndarray]


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"frechet_distance: shapes differ ({mu1.shape}, {s1.shape}) vs ({mu2.shape}, {s2.shape})")
    # Tr((S1 S2)^1/2) = Tr((A S2 A)^1/2) with A = S1^1/2. A S2 A is symmetric PSD, so the trace
    # is a sum of sqrt eigenvalues: stable even for the singular covariances of few samples,
    # where scipy's sqrtm of the non-symmetric product turns complex (pytorch-fid adds eps).
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(a @ s2 @ a)
    tr_covmean = np.sqrt(np.clip(inner, 0, None)).sum()
    diff = mu1 - mu2
    return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean))


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"FID needs at least 2 feature vectors, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


# -- the Inception feature extractor ----------------------------------------------------------
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class InceptionExtractor:
    """pytorch-fid's FID InceptionV3 (pool3 features), weights read from ``weights``."""

    def __init__(self, weights: str | Path, device: str | torch.device = "cpu", batch_size: int = 50):
        from unittest import mock

        weights = Path(weights).expanduser()
        if not weights.is_file():
            raise ValueError(f"{weights}: Inception weights not found; download {WEIGHTS_URL} "
                             "and pass --inception-weights PATH")
        try:
            from pytorch_fid import inception
        except ImportError:
            raise ValueError("FID needs pytorch-fid: pip install 'infoedit[fid]'") from None
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{weights}: not a PyTorch weights file ({type(exc).__name__})") from None
        # pytorch-fid builds the network, then fetches the weights by URL: hand it the local file.
        with mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: state):
            try:
                net = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
            except RuntimeError as exc:
                raise ValueError(f"{weights}: not the FID Inception weights "
                                 f"({str(exc).splitlines()[0]})") from None
        self.net = net.to(device).eval()
        self.device, self.batch_size = torch.device(device), batch_size
        self.key = f"pytorch-fid-inception-pool3:{file_sha256(weights)[:16]}"

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        out = []
        for i in range(0, len(images), self.batch_size):
            x = images[i:i + self.batch_size].to(self.device).float()
            if x.shape[1] == 1:  # grey images: the same value on R, G and B
                x = x.expand(-1, 3, -1, -1)
            out.append(self.net(x)[0].flatten(1).cpu())  # resizes to 299 and maps to [-1, 1] itself
        return torch.cat(out).double().numpy()


# -- reference statistics, cached --------------------------------------------------------------
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "infoedit" / "fid"


def _batches(images: torch.Tensor, scale: float, size: int = 500) -> Iterator[torch.Tensor]:
    for i in range(0, len(images), size):
        yield images[i:i + size].float().div(scale)


def _folder_batches(paths: list[Path], image_size: int, channels: int, size: int = 500) -> Iterator[torch.Tensor]:
    from infoedit.images import ImageError, load_image

    for i in range(0, len(paths), size):
        loaded = []
        for p in paths[i:i + size]:
            try:
                loaded.append(load_image(p, image_size, channels))
            except ImageError:
                continue  # an unreadable file is skipped, as the training loader does
        if loaded:
            yield torch.stack(loaded)


def _subset(n: int, n_max: int | None) -> np.ndarray:
    """The first n_max of a fixed random order, so a smaller n is a subset of a larger one."""
    order = np.random.default_rng(0).permutation(n)
    return np.sort(order[:n_max] if n_max else order)


def reference_source(against: str, split: str, data_root: str | None, image_size: int, channels: int,
                     n_max: int | None) -> tuple[Iterable[torch.Tensor], dict]:
    """(float batches, identity) for a folder of images or a dataset name's split."""
    folder = Path(against).expanduser()
    if folder.is_dir():
        from infoedit.images import list_images

        paths = list_images(folder)
        if not paths:
            raise ValueError(f"{folder}: no images found for FID")
        paths = [paths[i] for i in _subset(len(paths), n_max)]
        listing = [(str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
        ident = {"folder": str(folder.resolve()), "files": len(paths),
                 "listing": hashlib.sha256(json.dumps(listing).encode()).hexdigest(),
                 "image_size": image_size, "channels": channels}
        return _folder_batches(paths, image_size, channels), ident
    from trainer import data

    ds = data.load(against, data_root, progress=False)
    ident = {"dataset": against, "split": split, "n_max": n_max}
    if split == "test" and ds.test_images is None:
        raise ValueError(f"{against} has no test split; use --split train")
    if split == "test" or ds.images is not None:
        images = ds.test_images if split == "test" else ds.images
        images = images[torch.from_numpy(_subset(len(images), n_max))]
    else:  # rendered (dSprites): a fixed random sample of the factor grid
        images = ds.render(torch.from_numpy(_subset(ds.length, n_max or 10_000)))
    return _batches(images, ds.scale), ident


def features_of(batches: Iterable[torch.Tensor], extractor: Extractor) -> np.ndarray:
    return np.concatenate([np.asarray(extractor(b), dtype=np.float64) for b in batches])


def reference_statistics(against: str, extractor: Extractor, split: str = "train", data_root: str | None = None,
                         image_size: int = 64, channels: int = 3, n_max: int | None = 10_000,
                         cache: Path | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(mu, sigma, info) of the reference set, read from or written to the cache."""
    batches, ident = reference_source(against, split, data_root, image_size, channels, n_max)
    ident["extractor"] = getattr(extractor, "key", type(extractor).__name__)
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
    path = (cache or cache_dir()) / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return z["mu"], z["sigma"], {**ident, "n": int(z["n"]), "cache": str(path), "cached": True}
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is recomputed and overwritten
    feats = features_of(batches, extractor)
    mu, sigma = statistics(feats)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, mu=mu, sigma=sigma, n=len(feats))
    os.replace(tmp, path)
    return mu, sigma, {**ident, "n": len(feats), "cache": str(path), "cached": False}


@torch.inference_mode()
def generated_batches(model, n: int, seed: int = 0, batch_size: int = 250) -> Iterator[torch.Tensor]:
    """n images G(z, s, c) with codes from the priors, in eval mode, seeded."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, n, batch_size):
        z, s, c = model.sample_prior(min(batch_size, n - i), gen)
        yield model.generate(z, s, c).clamp(0, 1).cpu()


def fid(model, against: str, extractor: Extractor, n_samples: int = 10_000, split: str = "train",
        data_root: str | None = None, seed: int = 0, cache: Path | None = None) -> dict:
    """FID between n_samples generated images and (up to n_samples of) the reference set."""
    if n_samples < 2:
        raise ValueError("--fid-samples must be at least 2")
    cfg = model.config
    mu_r, sigma_r, ref = reference_statistics(against, extractor, split, data_root, cfg.image_size,
                                              cfg.channels, n_samples, cache)
    mu_g, sigma_g = statistics(features_of(generated_batches(model, n_samples, seed), extractor))
    return {"fid": frechet_distance(mu_g, sigma_g, mu_r, sigma_r), "n_generated": n_samples,
            "reference": ref, "extractor": ref["extractor"], "seed": seed}
