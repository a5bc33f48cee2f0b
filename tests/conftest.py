"""Shared fixtures: where the real data lives, and one tiny trained model per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Tests run tiny models: one thread avoids thread-pool overhead that dominates such small ops
# (and stalls badly when the machine is shared).
torch.set_num_threads(1)


def data_root() -> Path:
    """Real datasets: $INFOEDIT_DATA, else ../shared/data beside the checkout."""
    return Path(os.environ.get("INFOEDIT_DATA", REPO.parent / "shared" / "data"))


def require_data(sub: str) -> Path:
    path = data_root() / sub
    if not path.exists():
        pytest.skip(f"{sub} data not found at {path}; set INFOEDIT_DATA")
    return path


def shapes_dataset(n: int = 256, size: int = 28, seed: int = 0):
    """A labelled toy dataset with no download: filled squares, discs and bars at random places."""
    from trainer.data import Dataset

    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = torch.randint(3, (n,), generator=g)
    imgs = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    for i in range(n):
        cy, cx = torch.randint(8, size - 8, (2,), generator=g).tolist()
        if labels[i] == 0:
            mask = ((yy - cy).abs() <= 5) & ((xx - cx).abs() <= 5)
        elif labels[i] == 1:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
        else:
            mask = ((yy - cy).abs() <= 1) & ((xx - cx).abs() <= 7)
        imgs[i, 0][mask] = 255
    return Dataset("shapes", size, 1, 3, n, images=imgs, test_images=imgs[:64], test_labels=labels[:64])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small InfoVAEGAN trained for a few dozen steps on toy shapes (28px, K=3, c=2)."""
    from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig
    from trainer.loop import TrainConfig, fit

    out = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    model = InfoVAEGAN(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=8, width=0.125, dataset="shapes"))
    fit(model, shapes_dataset(), TrainConfig(epochs=3, batch_size=32, seed=0, device="cpu"), out, progress=False)
    return out
