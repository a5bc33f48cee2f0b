"""Shared fixtures: where the real data lives, and one tiny trained model per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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
    return Dataset("shapes", size, 1, n, images=imgs, test_images=imgs[:64], test_labels=labels[:64])


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small InfoVAEGAN trained for a few dozen steps on toy shapes (28px, K=3, c=2)."""
    from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig
    from trainer.config import TrainConfig
    from trainer.loop import fit

    out = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    model = InfoVAEGAN(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=8, width=0.125, dataset="shapes"))
    fit(model, shapes_dataset(), TrainConfig(epochs=3, batch_size=32, seed=0, device="cpu"), out, progress=False)
    return out


def photo_of(digit: np.ndarray, seed: int = 0, vignette: float = 0.0, paper: str = "plain",
             level: float = 200.0) -> Image.Image:
    """A 28x28 light-on-dark uint8 image as a photo of ink on grey paper: 8x larger, off centre
    on a wider page, with a lighting gradient, corners darker by ``vignette`` and sensor noise
    (what `--frame` undoes). ``paper``: "plain", "ruled" (2 px lines 150 px apart, 30% darker
    than the page, tilted 1 degree), "squared" (lines both ways), "notebook" (ruled, with a red
    margin line 3 px wide down the page, apart from the digit), "box" (a form's box around the
    digit) or "underline" (a form's line the digit stands on); ``level``: the page's grey."""
    rng = np.random.default_rng(seed)
    big = np.asarray(Image.fromarray(digit).resize((224, 224), Image.Resampling.BICUBIC), np.float32) / 255
    page = np.full((480, 640), level, np.float32) + np.linspace(-level / 10, level / 10, 640)[None, :]
    y, x = np.mgrid[-1:1:480j, -1:1:640j]
    gy, gx = np.mgrid[0:480, 0:640]
    tilt = np.tan(np.radians(1.0))
    if paper in ("ruled", "squared", "notebook"):
        page[(gy + tilt * gx + 40) % 150 < 2] *= 0.7
    if paper == "squared":
        page[(gx - tilt * gy + 40) % 150 < 2] *= 0.7
    page *= 1 - vignette * (x * x + y * y) / 2
    top, left = int(rng.integers(0, 480 - 224)), int(rng.integers(0, 640 - 224))
    region = page[top:top + 224, left:left + 224]
    page[top:top + 224, left:left + 224] = region * (1 - big) + 40 * big
    if paper == "box":  # 3 px lines 10 px outside the digit's 224 px square, inside the page
        y0, x0 = min(max(top - 10, 0), 480 - 248), min(max(left - 10, 0), 640 - 248)
        page[y0:y0 + 3, x0:x0 + 248] = page[y0 + 245:y0 + 248, x0:x0 + 248] = 60
        page[y0:y0 + 248, x0:x0 + 3] = page[y0:y0 + 248, x0 + 245:x0 + 248] = 60
    if paper == "underline":  # 3 px, just under the digit's foot, 20 px past its square each way
        page[top + 192:top + 195, max(left - 20, 0):left + 244] = 60
    page += rng.normal(0, 4, page.shape)
    rgb = np.repeat(page[..., None], 3, axis=2)
    if paper == "notebook":
        margin = 60 if left >= 100 else 580
        rgb[:, margin:margin + 3] *= [1.0, 0.3, 0.3]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
