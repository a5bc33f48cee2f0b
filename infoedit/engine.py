"""Operations on a loaded model: encode, generate grids. Shared by the CLI and the trainer."""

from __future__ import annotations

import torch

from infoedit import codes


def fixed_noise(model, n: int, seed: int = 0) -> torch.Tensor:
    """Noise z for rendering: drawn from the prior with a fixed seed, so outputs are repeatable."""
    g = torch.Generator().manual_seed(seed)
    return codes.sample_noise(n, model.config.z_dim, g).to(model.device)


@torch.inference_mode()
def class_grid(model, rows: int = 10, seed: int = 0) -> torch.Tensor:
    """Images [rows * K, C, H, W]: columns = the K categories, rows = continuous variation.

    Row r sets the first continuous code to the r-th of ``rows`` values evenly spaced over
    [-1, 1] (other codes 0), with one fixed noise vector per row (paper Fig. 12/15).
    """
    cfg = model.config
    k = cfg.n_classes
    z = fixed_noise(model, rows, seed).repeat_interleave(k, dim=0)
    s = torch.eye(k, device=model.device).repeat(rows, 1)
    c = torch.zeros(rows * k, cfg.c_dim, device=model.device)
    if cfg.c_dim:
        c[:, 0] = codes.traversal_values(-1, 1, rows).to(model.device).repeat_interleave(k)
    return model.generate(z, s, c)
