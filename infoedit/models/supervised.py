"""Supervised disentanglement (Ye & Bors 2021, Sec. 3, Fig. 1, Sec. 5.1): a VAE whose discrete code
s is taught the label (e.g. the rotation angle) and whose continuous code c is made label-free by an
adversarial classifier q(y|c).

- ``supervised-single`` (Fig. 1a): one encoder, a shared 2x500 trunk with three heads (mu, sigma, s).
- ``supervised-dual`` (Fig. 1b): two 2x500 encoders, one for q(c|x), one for q(s|x).
The decoder p(x|s, c) and the adversary q(y|c) are 2x500 MLPs too (Sec. 5.1: "fully connected
networks with two layers of 500 hidden nodes each"). The paper calls the continuous code z; here it
is c, as everywhere in infoedit, and there is no noise z (z_dim is 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from infoedit import codes
from infoedit.models.config import ConfigMixin, FolderModel
from infoedit.models.nets import _w, positive_sigma

FORMAT_VERSION = 1
STRUCTURES = ("supervised-single", "supervised-dual")


@dataclass
class SupervisedConfig(ConfigMixin):
    LEARNS_LABELS: ClassVar[bool] = True
    image_size: int = 28
    channels: int = 1
    background: str = "dark"  # 1 channel: what the training images show (config.BACKGROUNDS)
    n_classes: int = 10       # K: the labels (10 rotation angles in Sec. 5.1)
    c_dim: int = 10           # Sec. 5.1: "10-dimensional latent space vectors"
    z_dim: int = 0            # no noise: the decoder sees only (s, c); kept so shared code reads one shape
    c_prior: str = "normal"   # p(c) = N(0, I), the usual VAE prior of Eq. 6
    tau: float = 0.5          # Gumbel-softmax temperature (Eq. 8); the paper gives none, 0.5 is our choice
    kl_s_weight: float = 1.0  # weight of KL(q(s|x) || Cat(1/K)); 1 is Eq. 6 as written
    rho1: float = 10.0        # Eq. 13: weight of the label cross-entropy L_C on q(s|x)
    rho2: float = 10.0        # Eq. 13: weight of L_MI = -H(q(y|c)); 0 switches the adversary off
    width: float = 1.0        # multiplies every hidden width; 1.0 = 500 units (Sec. 5.1)
    source_class: int = -1    # rotated datasets: the digit / clothing item the images show (-1: none)
    model: str = "supervised-single"
    dataset: str = ""
    format_version: int = FORMAT_VERSION

    ADDED_FIELDS: ClassVar[dict] = {"background": "dark"}  # folders older than the field: MNIST-like

    def validate(self) -> None:
        """Raise ValueError naming the first field that cannot build a model."""
        self.check_field_types()
        self.check_format_version(FORMAT_VERSION)
        if self.model not in STRUCTURES:
            raise ValueError(f"model must be one of {STRUCTURES}, got {self.model!r}")
        self.check_image_format()
        if self.n_classes < 2:
            raise ValueError("n_classes must be >= 2 (the labels the discrete code learns)")
        if self.c_dim < 1:
            raise ValueError("c_dim must be >= 1 (the adversary classifies from c)")
        if self.z_dim != 0:
            raise ValueError("z_dim must be 0: supervised models have no noise input")
        if self.c_prior != "normal":
            raise ValueError("c_prior must be 'normal' (Eq. 6's N(0, I) prior)")
        if not self.tau > 0 or not self.width > 0:
            raise ValueError("tau and width must be > 0")
        if self.rho1 < 0 or self.rho2 < 0 or self.kl_s_weight < 0:
            raise ValueError("rho1, rho2 and kl_s_weight must be >= 0")



def mlp(in_dim: int, out_dim: int, width: float) -> nn.Sequential:
    """in -> 500 -> 500 -> out with ReLUs (Sec. 5.1's fully connected nets)."""
    h = _w(500, width)
    return nn.Sequential(nn.Linear(in_dim, h), nn.ReLU(True), nn.Linear(h, h), nn.ReLU(True), nn.Linear(h, out_dim))


def _gaussian(raw: torch.Tensor, c_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    return raw[:, :c_dim], positive_sigma(raw[:, c_dim:])


class SingleEncoder(nn.Module):
    """Fig. 1a: one network, q(c|x) and q(s|x) share every hidden layer."""

    def __init__(self, pixels: int, n_classes: int, c_dim: int, width: float):
        super().__init__()
        self.c_dim = c_dim
        self.net = nn.Sequential(nn.Flatten(), mlp(pixels, 2 * c_dim + n_classes, width))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.net(x)
        mu, sigma = _gaussian(out[:, :2 * self.c_dim], self.c_dim)
        return mu, sigma, out[:, 2 * self.c_dim:]


class DualEncoder(nn.Module):
    """Fig. 1b: separate networks for q(c|x) (``C``) and q(s|x) (``S``)."""

    def __init__(self, pixels: int, n_classes: int, c_dim: int, width: float):
        super().__init__()
        self.c_dim = c_dim
        self.C = nn.Sequential(nn.Flatten(), mlp(pixels, 2 * c_dim, width))
        self.S = nn.Sequential(nn.Flatten(), mlp(pixels, n_classes, width))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, sigma = _gaussian(self.C(x), self.c_dim)
        return mu, sigma, self.S(x)


class SupervisedVAE(FolderModel):
    """E(x) -> q(s|x), q(c|x); decoder p(x|s, c); adversary A = q(y|c) (training only, Eqs. 9-14)."""

    class_names: list[str] | None = None

    def __init__(self, config: SupervisedConfig):
        super().__init__()
        config.validate()
        self.config = cfg = config
        pixels = cfg.channels * cfg.image_size ** 2
        encoder = SingleEncoder if cfg.model == "supervised-single" else DualEncoder
        self.E = encoder(pixels, cfg.n_classes, cfg.c_dim, cfg.width)
        self.dec = mlp(cfg.code_dim, pixels, cfg.width)
        self.A = mlp(cfg.c_dim, cfg.n_classes, cfg.width)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def sample_prior(self, n: int, generator: torch.Generator | None = None):
        """(z, s, c) from the priors on the model's device; z is empty (no noise)."""
        cfg, dev = self.config, self.device
        s = codes.sample_discrete(n, cfg.n_classes, generator, "cpu").to(dev)
        c = codes.sample_continuous(n, cfg.c_dim, cfg.c_prior, generator, "cpu").to(dev)
        return torch.zeros(n, 0, device=dev), s, c

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu_c, sigma_c, logits_s) of q(c|x) q(s|x)."""
        return self.E(x)

    def decode_logits(self, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x | s, c), shaped as images (the loss wants logits, not pixels)."""
        cfg = self.config
        return self.dec(torch.cat([s, c], dim=1)).view(-1, cfg.channels, cfg.image_size, cfg.image_size)

    def generate(self, z: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1]; z is accepted for the shared interface and ignored."""
        return torch.sigmoid(self.decode_logits(s, c))

    def training_only(self) -> tuple[str, ...]:
        return ("A.",)  # the adversary only shapes training

    def classify_c(self, c: torch.Tensor) -> torch.Tensor:
        """Logits of the adversary q(y|c)."""
        return self.A(c)
