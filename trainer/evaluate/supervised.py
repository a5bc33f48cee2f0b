"""Metrics of the supervised models (Sec. 3, Sec. 5.1) and reconstruction error (Sec. 4.4).

- angle accuracy: argmax q(s|x) against the label. No Hungarian matching: s was trained on the
  labels, so category k must *be* label k.
- leakage: how much of the label the continuous code c still carries. A fresh probe MLP learns
  to predict the label from mu_c on the training split and is scored on the test split; near
  chance (1/K) means the adversary q(y|c) of Eqs. 9-14 did its job.
- reconstruction MSE: x against its regeneration from E's codes (argmax s, mu c).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from infoedit import engine

SUPERVISED = ("supervised-single", "supervised-dual")


@dataclass
class ProbeConfig:
    hidden: int = 256
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0


def infer(model, images: torch.Tensor, scale: float = 255.0, batch_size: int = 500
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(argmax q(s|x), mu_c) of uint8 images, in eval mode, on the CPU."""
    def read(mu: torch.Tensor, _sigma: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits.argmax(1).cpu(), mu.float().cpu()

    return engine.encode_in_batches(model, images, read, scale, batch_size)


def probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                   n_classes: int, config: ProbeConfig | None = None) -> float:
    """Test accuracy of a fresh MLP (one hidden layer) trained to predict y from x."""
    cfg = config or ProbeConfig()
    # Standardise with the training statistics: a code squeezed to a tiny scale by the KL
    # term still carries its information, and the probe should find it.
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    g = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        probe = nn.Sequential(nn.Linear(train_x.shape[1], cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, n_classes))
    opt = torch.optim.Adam(probe.parameters(), cfg.lr)
    for _ in range(cfg.epochs):
        order = torch.randperm(len(train_x), generator=g)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            loss = F.cross_entropy(probe(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float((probe(test_x).argmax(1) == test_y).float().mean())


def supervised_metrics(model, ds, split: str = "test", limit: int | None = None,
                       probe: ProbeConfig | None = None) -> dict:
    """Angle (label) accuracy of q(s|x) on ``split``; leakage of mu_c (probe: train -> test split)."""
    probe = probe or ProbeConfig()
    k = model.config.n_classes

    def cut(t):
        return t[:limit] if limit else t

    train_pred, train_mu = infer(model, cut(ds.images), ds.scale)
    test_pred, test_mu = infer(model, cut(ds.test_images), ds.scale)
    train_y, test_y = cut(ds.labels), cut(ds.test_labels)
    pred, labels = (test_pred, test_y) if split == "test" else (train_pred, train_y)
    return {"label_accuracy": float((pred == labels).float().mean()), "label_accuracy_split": split,
            "leakage": probe_accuracy(train_mu, train_y, test_mu, test_y, k, probe), "chance": 1 / k,
            "rho2": model.config.rho2, "adversary": model.config.rho2 > 0,
            "protocol": {"label_accuracy": "argmax q(s|x) == label, no matching (s is supervised)",
                         "leakage": "fresh MLP probe on mu_c, trained on the train split, accuracy on the "
                                    "test split (chance = 1/K)", "probe": asdict(probe)}}


@torch.inference_mode()
def reconstruction_mse(model, images: torch.Tensor, scale: float = 255.0, batch_size: int = 500) -> float:
    """Mean over images and pixels of (x - x_rec)^2, x in [0, 1]; x_rec from (argmax s, mu c).

    InfoVAEGAN2 regenerates with G2(s, c), and its style code's mean when it has one; a model
    with only G(z, s, c) with z = 0 (the noise prior's mean); a supervised VAE with its decoder
    (which ignores z).
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(model.device).float().div_(scale)
        found = engine.encode(model, x)
        s, mu = found.onehot(), found.mu
        if callable(getattr(model, "generate2", None)):
            x_rec = engine.render(model, s, mu, style=found.style)
        else:
            x_rec = model.generate(mu.new_zeros(len(x), model.config.z_dim), s, mu)
        total += float(((x - x_rec) ** 2).sum())
        count += x.numel()
    model.train(was_training)
    return total / max(1, count)
