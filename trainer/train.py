"""`infoedit train`: dataset defaults, model construction and the call into the loop."""

from __future__ import annotations

from pathlib import Path

import torch

from infoedit.models import FAMILIES
from trainer import data
from trainer.loop import TrainConfig, fit

# Per-dataset defaults: image size, channels, noise, K, continuous dims, epochs.
DEFAULTS = {
    "mnist": dict(image_size=28, channels=1, z_dim=62, n_classes=10, c_dim=2, epochs=20),
    "fashion-mnist": dict(image_size=28, channels=1, z_dim=62, n_classes=10, c_dim=2, epochs=20),
    "dsprites": dict(image_size=64, channels=1, z_dim=100, n_classes=3, c_dim=10, epochs=1),
    "celeba": dict(image_size=64, channels=3, z_dim=100, n_classes=10, c_dim=10, epochs=20),
    "chairs": dict(image_size=64, channels=3, z_dim=100, n_classes=10, c_dim=10, epochs=20),
    "folder": dict(image_size=64, channels=3, z_dim=100, n_classes=10, c_dim=10, epochs=20),
}


def defaults_for(dataset: str) -> dict:
    key = "folder" if dataset.startswith("folder:") else dataset
    if key not in DEFAULTS:
        raise data.DataError(f"{dataset}: unknown dataset; use mnist, fashion-mnist, dsprites, celeba, "
                             "chairs or folder:PATH")
    return dict(DEFAULTS[key])


def train(dataset: str, out: Path, model_name: str = "infovaegan", data_root: str | None = None,
          overrides: dict | None = None, tc: TrainConfig | None = None, progress: bool = True) -> dict:
    """Build the model for ``dataset`` (defaults + overrides), train it, return the last record."""
    tc = tc or TrainConfig()
    settings = defaults_for(dataset)
    epochs = settings.pop("epochs")
    if tc.epochs is None:
        tc.epochs = epochs
    settings.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if model_name not in FAMILIES:
        raise ValueError(f"--model {model_name}: unknown; known: {', '.join(sorted(FAMILIES))}")
    config_cls, model_cls = FAMILIES[model_name]
    config = config_cls(dataset=dataset, model=model_name, **settings)
    config.validate()
    ds = data.load(dataset, data_root, limit=tc.limit, progress=progress)
    torch.manual_seed(tc.seed)
    model = model_cls(config)
    return fit(model, ds, tc, out, progress=progress)
