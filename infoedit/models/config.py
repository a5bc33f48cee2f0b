"""What every model family shares: the config's JSON round trip and the model's code interface."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import ClassVar

import torch
from torch import nn

from infoedit import codes

# A 1-channel model's training images: "dark" background (light strokes, as MNIST) or "light"
# (dark ink on paper). Set by training from its data; `--invert auto` turns inputs to match.
BACKGROUNDS = ("dark", "light")


class ConfigMixin:
    """For @dataclass configs with n_classes, c_dim, format_version and a ``validate()`` that
    raises ValueError."""

    # Fields added after a format version was written, with the value that reproduces how
    # folders without them were trained: a config.json that lacks them still loads.
    ADDED_FIELDS: ClassVar[dict] = {}
    # True where the discrete code s is trained on the labels (the supervised models of Sec. 3):
    # their accuracy is plain, not the unsupervised Hungarian-matched one, and they need labels.
    LEARNS_LABELS: ClassVar[bool] = False
    # The share of the centre square a model's images are cut from: a field of the families that
    # can be trained on a tighter frame (InfoVAEGANConfig.crop), the whole square for the others.
    crop: ClassVar[float] = 1.0

    @property
    def code_dim(self) -> int:
        """Width of the code [s, c] that G and D read."""
        return self.n_classes + self.c_dim

    def check_field_types(self) -> None:
        """Each field holds its declared type (a config.json or a --set value may not): bool,
        int (not a bool), float (an int too) or str. Comparing a str with a number further on
        would fail with a message naming no field."""
        kinds = {"bool": ((bool,), "true or false"), "int": ((int,), "an integer"),
                 "float": ((int, float), "a number"), "str": ((str,), "text")}
        for f in fields(self):
            value, (expected, what) = getattr(self, f.name), kinds[f.type]
            if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
                raise ValueError(f"{f.name} must be {what}, got {value!r}")

    def check_image_format(self) -> None:
        """The image fields every family has: image_size, channels and background."""
        if self.image_size not in (28, 64):
            raise ValueError(f"image_size must be 28 or 64, got {self.image_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {self.background!r}")

    def check_format_version(self, supported: int) -> None:
        if self.format_version != supported:
            raise ValueError(f"unsupported format_version {self.format_version} (this infoedit reads {supported})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """The config a config.json holds; ValueError on unknown, missing or invalid fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        missing = sorted(f.name for f in fields(cls) if f.name not in data and f.name not in cls.ADDED_FIELDS)
        if missing:
            raise ValueError(f"missing config field(s): {', '.join(missing)}")
        cfg = cls(**{**cls.ADDED_FIELDS, **data})
        cfg.validate()
        return cfg


class FolderModel(nn.Module):
    """What a model folder holds of a model: its weights less the training-only ones."""

    def training_only(self) -> tuple[str, ...]:
        """state_dict key prefixes that only training needs (a discriminator): the model folder
        leaves them out, they live in the run's checkpoint."""
        return ()

    def folder_state(self) -> dict[str, torch.Tensor]:
        """The weights a model folder holds: the state dict less the training-only entries."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self.training_only())}


class CodeModel(FolderModel):
    """The interface the trainer and every command use: priors, device, generate from codes.

    Subclasses set ``self.config`` and ``self.G`` (a nets.Generator) and define ``encode``.
    """

    class_names: list[str] | None = None  # per category, from the folder's class_names.json

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        """(z, s, c) drawn from the priors, on the model's device (z is [n, 0] without noise)."""
        cfg, dev = self.config, self.device
        z = codes.sample_noise(n, cfg.z_dim, generator, "cpu").to(dev)
        s = codes.sample_discrete(n, cfg.n_classes, generator, "cpu").to(dev)
        c = codes.sample_continuous(n, cfg.c_dim, cfg.c_prior, generator, "cpu").to(dev)
        return z, s, c

    def encode_with_style(self, x: torch.Tensor) -> tuple:
        """(mu_c, sigma_c, logits_s, mu_w): encode's codes, and the style code that a model whose
        decoder reads one infers (InfoVAEGAN2 with style_dim; None for every other model)."""
        return (*self.encode(x), None)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def generate(self, z: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.G(z, torch.cat([s, c], dim=1))

    def generate_logits(self, z: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """generate before G's final sigmoid (the VAE loss's Bernoulli needs logits)."""
        return self.G.logits(z, torch.cat([s, c], dim=1))
