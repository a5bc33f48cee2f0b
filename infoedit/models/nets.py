"""Network builders shared by every model family (InfoVAEGAN and the baselines).

Two sizes, as in the paper and the authors' code:
- 28x28: InfoGAN's MNIST networks. G: FC1024-FC(7x7x128)-up64-up(channels);
  image trunk: conv64-conv128-FC1024.
- 64x64, two layouts (InfoVAEGANConfig.nets):
  - "dcgan": G: FC(8x8x256)-up128-up64-up(channels), 4x4 kernels; image trunk:
    conv64-conv128-conv256-conv512-FC1024, 4x4 stride 2;
  - "authors" (their InfoVAE_Celeba.py): G: FC(8x8x256), then 3x3 transposed convolutions
    up256-same256-up256-same256-up128-same(channels) (stride 2 then 1); image trunk: the same
    widths with 3x3 stride-2 kernels; E's FC1024 without BatchNorm, LeakyReLU 0.2 throughout.
    Their G ends in tanh on images in [-1, 1]; ours in a sigmoid on [0, 1], the same function
    rescaled (tanh(a) = 2 sigmoid(2a) - 1).
``width`` scales every hidden layer (1.0 = the paper's sizes) for cheaper CPU presets.
Images are in [0, 1]: G ends in a sigmoid.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

# c_dim 0 (a discrete code only) builds empty heads; that their init is a no-op is not news to a user
warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")

SIZES = (28, 64)
LAYOUTS = ("dcgan", "authors")  # the 64 px networks; at 28 px both are InfoGAN's, as the authors' MNIST code


def _w(n: int, width: float) -> int:
    return max(8, int(round(n * width)))


def _norm(n: int, batchnorm: bool, dims: int = 2) -> nn.Module:
    """The paper's BatchNorm after a layer of n features, or nothing (an Identity, so the layers'
    indices and names stay those of the paper's networks). The layers before it keep bias=False."""
    if not batchnorm:
        return nn.Identity()
    return nn.BatchNorm2d(n) if dims == 2 else nn.BatchNorm1d(n)


def positive_sigma(pre: torch.Tensor) -> torch.Tensor:
    """softplus keeps sigma positive (as the authors' code); the 1e-4 floor keeps the NLL and KL finite."""
    return nn.functional.softplus(pre) + 1e-4


def _check_size(image_size: int, layout: str = "dcgan") -> str:
    """The layout the networks are built with (at 28 px there is one: "dcgan"'s, InfoGAN's);
    ValueError for an unknown size or layout."""
    if image_size not in SIZES:
        raise ValueError(f"image_size must be one of {SIZES}, got {image_size}")
    if layout not in LAYOUTS:
        raise ValueError(f"nets must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    return "dcgan" if image_size == 28 else layout


def _deconv(ch: int, out: int, stride: int, layout: str, bias: bool = False) -> nn.ConvTranspose2d:
    """A transposed convolution that multiplies the side by ``stride`` (1 or 2)."""
    if layout == "authors":  # 3x3; output_padding makes stride 2 exactly double, as TF's 'SAME'
        return nn.ConvTranspose2d(ch, out, 3, stride, 1, output_padding=stride - 1, bias=bias)
    return nn.ConvTranspose2d(ch, out, 4, 2, 1, bias=bias)


class Generator(nn.Module):
    """G(z, code) -> image in [0, 1]; code = [s, c]."""

    def __init__(self, in_dim: int, image_size: int, channels: int, width: float = 1.0, batchnorm: bool = True,
                 layout: str = "dcgan"):
        super().__init__()
        layout = _check_size(image_size, layout)
        if image_size == 28:
            self.base, base_ch = 7, _w(128, width)
            fc = [nn.Linear(in_dim, _w(1024, width)), _norm(_w(1024, width), batchnorm, 1), nn.ReLU(True),
                  nn.Linear(_w(1024, width), base_ch * 49), _norm(base_ch * 49, batchnorm, 1), nn.ReLU(True)]
            ups = [(_w(64, width), 2)]
        else:
            self.base, base_ch = 8, _w(256, width)
            fc = [nn.Linear(in_dim, base_ch * 64), _norm(base_ch * 64, batchnorm, 1), nn.ReLU(True)]
            ups = ([(_w(128, width), 2), (_w(64, width), 2)] if layout == "dcgan" else
                   [(_w(256, width), 2), (_w(256, width), 1), (_w(256, width), 2), (_w(256, width), 1),
                    (_w(128, width), 2)])
        self.base_ch = base_ch
        self.fc = nn.Sequential(*fc)
        layers, ch = [], base_ch
        for out, stride in ups:
            layers += [_deconv(ch, out, stride, layout), _norm(out, batchnorm), nn.ReLU(True)]
            ch = out
        last_stride = 2 if layout == "dcgan" else 1
        layers += [_deconv(ch, channels, last_stride, layout, bias=True), nn.Sigmoid()]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.deconv[-1](self.logits(z, code))

    def logits(self, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """The output before the final sigmoid (Bernoulli logits: a stable cross-entropy needs them)."""
        h = self.fc(torch.cat([z, code], dim=1))
        return self.deconv[:-1](h.view(-1, self.base_ch, self.base, self.base))


def conv_trunk(image_size: int, channels: int, width: float = 1.0, batchnorm: bool = True, layout: str = "dcgan"
               ) -> tuple[nn.Sequential, int]:
    """Strided convolutions (no BN on the first, as DCGAN) then flatten; returns (net, out_features)."""
    layout = _check_size(image_size, layout)
    widths = [64, 128] if image_size == 28 else [64, 128, 256, 512]
    kernel = 3 if layout == "authors" else 4
    layers, ch, side = [], channels, image_size
    for i, n in enumerate(widths):
        out = _w(n, width)
        layers.append(nn.Conv2d(ch, out, kernel, 2, 1, bias=i == 0))
        if i > 0:
            layers.append(_norm(out, batchnorm))
        layers.append(nn.LeakyReLU(0.1 if image_size == 28 else 0.2, True))
        ch, side = out, side // 2
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), ch * side * side


class Encoder(nn.Module):
    """E(x) -> (mu_c, sigma_c, logits_s): the inference network q(s, c | x); with ``style_dim``
    also q(w | x), a Gaussian style code for G2 (InfoVAEGANConfig.style_dim)."""

    def __init__(self, image_size: int, channels: int, n_classes: int, c_dim: int, width: float = 1.0,
                 shared_trunk: tuple[nn.Module, int] | None = None, aux_classes: int = 0,
                 batchnorm: bool = True, style_dim: int = 0, layout: str = "dcgan"):
        super().__init__()
        if shared_trunk is None:
            self.trunk, feat = conv_trunk(image_size, channels, width, batchnorm, layout)
        else:
            # Read another network's trunk (InfoGAN's Q-on-D). Held outside the module tree so
            # its parameters belong to, are saved with and are optimised by their owner only.
            trunk, feat = shared_trunk
            object.__setattr__(self, "trunk", trunk)
        hidden = _w(1024, width)
        authors = _check_size(image_size, layout) == "authors"  # their FC1024: no BatchNorm, slope 0.2
        self.fc = nn.Sequential(nn.Linear(feat, hidden), _norm(hidden, batchnorm and not authors, 1),
                                nn.LeakyReLU(0.2 if authors else 0.1, True))
        self.logits = nn.Linear(hidden, n_classes)
        self.mu = nn.Linear(hidden, c_dim)
        self.sigma = nn.Linear(hidden, c_dim)
        # A training-only head over more categories than s has (InfoVAEGANConfig.overcluster).
        self.aux = nn.Linear(hidden, aux_classes) if aux_classes else None
        # The style code's mean and sigma in one layer (absent without a style code).
        self.style = nn.Linear(hidden, 2 * style_dim) if style_dim else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.forward_with_aux(x)[:3]

    def forward_with_aux(self, x: torch.Tensor) -> tuple:
        """(mu_c, sigma_c, logits_s, aux_logits, style); aux_logits is None without the aux head,
        style (mu_w, sigma_w) None without a style code."""
        h = self.fc(self.trunk(x))
        sigma = positive_sigma(self.sigma(h))
        style = None
        if self.style is not None:
            mu_w, pre_w = self.style(h).chunk(2, dim=1)
            style = (mu_w, positive_sigma(pre_w))
        return self.mu(h), sigma, self.logits(h), None if self.aux is None else self.aux(h), style


class JointDiscriminator(nn.Module):
    """D(x, code) -> logit: image trunk, flatten, concat the code, MLP (BiGAN/ALI style)."""

    def __init__(self, image_size: int, channels: int, code_dim: int, width: float = 1.0, batchnorm: bool = True,
                 layout: str = "dcgan"):
        super().__init__()
        self.trunk, feat = conv_trunk(image_size, channels, width, batchnorm, layout)
        self.trunk_features = feat
        hidden = _w(1024, width)
        slope = 0.2 if _check_size(image_size, layout) == "authors" else 0.1
        self.head = nn.Sequential(nn.Linear(feat + code_dim, hidden), nn.LeakyReLU(slope, True),
                                  nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.trunk(x), code], dim=1)).squeeze(1)
