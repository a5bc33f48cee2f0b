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


# Named settings over the dataset defaults: "paper" is the paper-faithful configuration;
# "cpu-fast" trades width for speed so a laptop CPU reaches a good model in half an hour.
# Each entry: model-config overrides ("model") and TrainConfig overrides ("train").
PRESETS = {
    "paper": {"model": {}, "train": {}},
    "cpu-fast": {"model": {"width": 0.5, "mi_weight_c": 0.1}, "train": {}},
}


def defaults_for(dataset: str) -> dict:
    key = "folder" if dataset.startswith("folder:") else dataset
    if key not in DEFAULTS:
        raise data.DataError(f"{dataset}: unknown dataset; use mnist, fashion-mnist, dsprites, celeba, "
                             "chairs or folder:PATH")
    return dict(DEFAULTS[key])


def train(dataset: str, out: Path, model_name: str = "infovaegan", data_root: str | None = None,
          overrides: dict | None = None, tc: TrainConfig | None = None, progress: bool = True,
          preset: str = "paper") -> dict:
    """Build the model for ``dataset`` (defaults, then preset, then overrides), train it,
    return the last record. Explicit overrides win over the preset."""
    if preset not in PRESETS:
        raise ValueError(f"--preset {preset}: unknown; known: {', '.join(sorted(PRESETS))}")
    tc = tc or TrainConfig()
    settings = defaults_for(dataset)
    epochs = settings.pop("epochs")
    if tc.epochs is None:
        tc.epochs = epochs
    for key, value in PRESETS[preset]["train"].items():
        setattr(tc, key, value)
    settings.update(PRESETS[preset]["model"])
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
