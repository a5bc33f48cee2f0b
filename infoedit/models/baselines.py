"""Like-for-like baselines on InfoVAEGAN's own networks (nets.py), each with its paper's objective.

The paper (Sec. 5.2) compares with these "with the same network architecture and hyperparameter
configurations ... for a fair comparison"; the objectives live in trainer/baselines.py.

- ``infogan`` (Chen et al. 2016): G(z, s, c); D and Q share the image trunk and its FC1024;
  D's head gives one logit, Q's head (FC128, as InfoGAN's MNIST net) gives q(s, c | x).
  ``encode`` is Q: InfoGAN's only inference network.
- ``ali`` (Dumoulin et al. 2017, BiGAN): G(z, s, c), E(x) -> q(s, c | x), joint D(x, s, c) as
  InfoVAEGAN's. E infers the codes [s, c], not the noise z, so D's fake pair marginalises z
  exactly as InfoVAEGAN's does: the two differ only in how E and G are trained.
- ``beta-vae`` (Higgins et al. 2017; capacity variant, Burgess et al. 2018) and ``jointvae``
  (Dupont 2018): E is nets.Encoder, the decoder is nets.Generator fed the code alone (no noise:
  ``z_dim`` is 0 and ``generate`` ignores z). beta-VAE has continuous codes only: its
  ``n_classes`` is 1, a constant code, so clustering metrics are not defined for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import nn

from infoedit import codes
from infoedit.models.config import CodeModel, ConfigMixin
from infoedit.models.nets import Encoder, Generator, JointDiscriminator, _norm, _w, conv_trunk, positive_sigma

FORMAT_VERSION = 1


@dataclass
class BaselineConfig(ConfigMixin):
    """What every baseline shares; each family's subclass adds its objective's settings.

    A field a family lacks is an option that does not apply to it (``infoedit train`` says so).
    """

    image_size: int = 28
    channels: int = 1
    background: str = "dark"  # 1 channel: what the training images show (config.BACKGROUNDS)
    c_dim: int = 2            # continuous code dimensions
    c_prior: str = "uniform"  # p(c): "uniform" U(-1,1) (InfoGAN) or "normal" N(0,1) (VAEs)
    width: float = 1.0        # multiplies every hidden width; 1.0 = the paper's networks
    batchnorm: bool = True    # False: the networks without their BatchNorm layers (InfoVAEGANConfig's lever)
    model: str = ""
    dataset: str = ""
    format_version: int = FORMAT_VERSION

    # folders older than the fields: MNIST-like images, the paper's networks
    ADDED_FIELDS: ClassVar[dict] = {"background": "dark", "batchnorm": True}

    FAMILY = ""  # the ``model`` name the subclass builds (a class attribute, not a field)

    def validate(self) -> None:
        """Raise ValueError naming the first field that cannot build a model."""
        self.check_field_types()
        self.check_format_version(FORMAT_VERSION)
        if self.model != self.FAMILY:
            raise ValueError(f"model must be {self.FAMILY!r} for {type(self).__name__}, got {self.model!r}")
        self.check_image_format()
        if self.c_prior not in codes.PRIORS:
            raise ValueError(f"c_prior must be one of {codes.PRIORS}, got {self.c_prior!r}")
        if self.c_dim < 0 or self.n_classes < 1 or self.z_dim < 0:
            raise ValueError("c_dim and z_dim must be >= 0, n_classes >= 1")
        for f in fields(self):  # every float setting (width, tau, weights, capacities) is a scale
            value = getattr(self, f.name)
            if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{f.name} must be a finite number >= 0, got {value}")
        if not self.width > 0 or not getattr(self, "tau", 1.0) > 0:
            raise ValueError("width and tau must be > 0")



@dataclass
class InfoGANConfig(BaselineConfig):
    FAMILY = "infogan"
    z_dim: int = 62
    n_classes: int = 10
    mi_weight_s: float = 1.0  # lambda_cat (InfoGAN Sec. 5: 1 suffices for discrete codes)
    mi_weight_c: float = 1.0  # lambda_cont (InfoGAN's MNIST code: 1, with the fixed-sigma term)
    # -log q(c|x): "fixed" is a Gaussian with sigma = 1, i.e. ||c - mu||^2 / 2 (InfoGAN's code,
    # fix_std=True); "nll" learns sigma (Q gets a sigma output, as nets.Encoder).
    mi_continuous: str = "fixed"
    model: str = "infogan"

    def validate(self) -> None:
        super().validate()
        if self.mi_continuous not in ("fixed", "nll"):
            raise ValueError(f"mi_continuous must be 'fixed' or 'nll' for infogan, got {self.mi_continuous!r}")


@dataclass
class ALIConfig(BaselineConfig):
    FAMILY = "ali"
    z_dim: int = 62
    n_classes: int = 10
    tau: float = 1.0  # Gumbel-softmax temperature of E's straight-through s (backward pass only)
    model: str = "ali"


@dataclass
class BetaVAEConfig(BaselineConfig):
    FAMILY = "beta-vae"
    c_prior: str = "normal"
    beta: float = 4.0          # Higgins et al.: loss = rec + beta * KL
    capacity: bool = False     # Burgess et al.: loss = rec + gamma * |KL - C|, C ramped 0 -> cap_c
    gamma: float = 1000.0      # Burgess et al.'s dSprites settings: gamma 1000, C to 25 nats ...
    cap_c: float = 25.0
    cap_steps: int = 100_000   # ... over 100,000 steps
    model: str = "beta-vae"

    @property
    def n_classes(self) -> int:
        return 1  # no discrete code: s is one constant category, which the decoder never sees

    @property
    def z_dim(self) -> int:
        return 0

    def validate(self) -> None:
        super().validate()
        if self.c_dim < 1 or self.cap_steps < 1:
            raise ValueError("c_dim and cap_steps must be >= 1 for beta-vae")


@dataclass
class JointVAEConfig(BaselineConfig):
    FAMILY = "jointvae"
    n_classes: int = 10
    c_prior: str = "normal"
    tau: float = 0.67         # Dupont's Gumbel-softmax temperature
    gamma: float = 30.0       # Dupont's MNIST settings: gamma 30, both capacities to 5 nats
    cap_c: float = 5.0        # over 25,000 steps; C_s also stops at log K, its largest value
    cap_s: float = 5.0
    cap_steps: int = 25_000
    model: str = "jointvae"

    @property
    def z_dim(self) -> int:
        return 0

    def validate(self) -> None:
        super().validate()
        if self.n_classes < 2 or self.cap_steps < 1:
            raise ValueError("n_classes must be >= 2 and cap_steps >= 1 for jointvae")


class QHead(nn.Module):
    """InfoGAN's Q on the shared trunk's features: FC128 (InfoGAN's MNIST net) -> q(s, c | x)."""

    def __init__(self, hidden: int, cfg: InfoGANConfig):
        super().__init__()
        q = _w(128, cfg.width)
        self.fc = nn.Sequential(nn.Linear(hidden, q), _norm(q, cfg.batchnorm, 1), nn.LeakyReLU(0.1, True))
        self.logits = nn.Linear(q, cfg.n_classes)
        self.mu = nn.Linear(q, cfg.c_dim)
        self.sigma = nn.Linear(q, cfg.c_dim) if cfg.mi_continuous == "nll" else None

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu_c, sigma_c, logits_s); sigma is 1 unless learned."""
        g = self.fc(h)
        mu = self.mu(g)
        sigma = positive_sigma(self.sigma(g)) if self.sigma is not None else torch.ones_like(mu)
        return mu, sigma, self.logits(g)


class InfoGANDiscriminator(nn.Module):
    """InfoGAN's D and Q: a shared trunk (conv trunk + FC1024), D's logit head, Q's head."""

    def __init__(self, cfg: InfoGANConfig):
        super().__init__()
        convs, feat = conv_trunk(cfg.image_size, cfg.channels, cfg.width, cfg.batchnorm)
        hidden = _w(1024, cfg.width)
        self.trunk = nn.Sequential(convs, nn.Linear(feat, hidden), _norm(hidden, cfg.batchnorm, 1),
                                   nn.LeakyReLU(0.1, True))
        self.head = nn.Linear(hidden, 1)
        self.q = QHead(hidden, cfg)

    def logit(self, h: torch.Tensor) -> torch.Tensor:
        """D(x) from trunk features h."""
        return self.head(h).squeeze(1)


class InfoGAN(CodeModel):
    def __init__(self, config: InfoGANConfig):
        super().__init__()
        config.validate()
        self.config = cfg = config
        self.G = Generator(cfg.z_dim + cfg.code_dim, cfg.image_size, cfg.channels, cfg.width, cfg.batchnorm)
        self.D = InfoGANDiscriminator(cfg)  # D = D.trunk + D.head; Q = D.trunk + D.q

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu_c, sigma_c, logits_s) of Q(x)."""
        return self.D.q(self.D.trunk(x))

    def training_only(self) -> tuple[str, ...]:
        return ("D.head.",)  # Q reads D's trunk


class ALI(CodeModel):
    def __init__(self, config: ALIConfig):
        super().__init__()
        config.validate()
        self.config = cfg = config
        self.G = Generator(cfg.z_dim + cfg.code_dim, cfg.image_size, cfg.channels, cfg.width, cfg.batchnorm)
        self.E = Encoder(cfg.image_size, cfg.channels, cfg.n_classes, cfg.c_dim, cfg.width,
                         batchnorm=cfg.batchnorm)
        self.D = JointDiscriminator(cfg.image_size, cfg.channels, cfg.code_dim, cfg.width, cfg.batchnorm)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.E(x)

    def discriminate(self, x: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.D(x, torch.cat([s, c], dim=1))

    def training_only(self) -> tuple[str, ...]:
        return ("D.",)


class VAE(CodeModel):
    """beta-VAE and JointVAE: E = nets.Encoder, decoder G = nets.Generator of the code alone.

    ``steps`` counts training steps (a buffer, so it is saved with the weights) for the
    capacity schedules of Burgess et al. and Dupont.
    """

    def __init__(self, config: BetaVAEConfig | JointVAEConfig):
        super().__init__()
        config.validate()
        self.config = cfg = config
        self.discrete = cfg.model == "jointvae"
        # beta-VAE's E keeps a 1-way logits head: softmax over one class is 1, so its
        # "classification" is one cluster and the head never takes a gradient.
        self.E = Encoder(cfg.image_size, cfg.channels, cfg.n_classes, cfg.c_dim, cfg.width,
                         batchnorm=cfg.batchnorm)
        self.G = Generator(self.code_width, cfg.image_size, cfg.channels, cfg.width, cfg.batchnorm)
        if not isinstance(self.G.deconv[-1], nn.Sigmoid):
            raise TypeError("nets.Generator must end in a sigmoid: the VAE loss reads the logits before it")
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def code_width(self) -> int:
        return self.config.code_dim if self.discrete else self.config.c_dim

    def _code(self, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.cat([s, c], dim=1) if self.discrete else c

    def decode_logits(self, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x | s, c): G without its final sigmoid (a stable BCE needs logits)."""
        return self.G.logits(c.new_zeros(len(c), 0), self._code(s, c))

    def generate(self, z: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1]; z is accepted for the shared interface and ignored (no noise)."""
        return self.G(c.new_zeros(len(c), 0), self._code(s, c))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.E(x)

    def capacities(self, step: int | None = None) -> tuple[float, float]:
        """(C_c, C_s) at a step (default: the model's): both rise linearly from 0 over cap_steps
        (Burgess et al.; Dupont); C_s also stops at log K, KL_s's maximum, as in Dupont's code."""
        cfg = self.config
        t = min(1.0, (int(self.steps) if step is None else step) / cfg.cap_steps)
        cap_s = min(t * cfg.cap_s, math.log(cfg.n_classes)) if self.discrete else 0.0
        return t * cfg.cap_c, cap_s
