"""Training steps of the baselines (infoedit/models/baselines.py), each its own paper's objective.

Same contract as trainer/loop.py: ``make_optimizers(model, tc)`` and
``step(model, opt, x, gen, y=None) -> dict[str, float]``, leaving this step's .grad in place.
Learning rates are the shared TrainConfig's (D: --lr-d, G: --lr-g, E: --lr-e), so every
family trains with InfoVAEGAN's hyperparameters. Labels y are ignored: all four are unsupervised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from infoedit import codes
from trainer import dist, losses
from trainer.config import TrainConfig, adam, requires_grad


def _step(opt: torch.optim.Optimizer, *modules: torch.nn.Module) -> None:
    for m in modules:
        dist.average_gradients(m)
    opt.step()


# -- InfoGAN (Chen et al. 2016) ---------------------------------------------------------------
def infogan_optimizers(model, tc: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    # As InfoGAN's code: Q's head is part of D's variables, so one Adam (--lr-d) for trunk,
    # D head and Q head; G has its own (--lr-g).
    return {"D": adam(model.D.parameters(), tc.lr_d, tc), "G": adam(model.G.parameters(), tc.lr_g, tc)}


def info_loss(model, h_fake: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L_I negated (InfoGAN Eq. 5, up to the constant entropy H(s, c)): -log Q(s, c | G(z, s, c)).

    h_fake: the shared trunk's features of G(z, s, c). Returns (loss_s, loss_c) unweighted:
    cross-entropy for s, and for c the Gaussian NLL, with sigma = 1 ("fixed", i.e.
    ||c - mu||^2 / 2) or Q's learned sigma ("nll"); log(2 pi) / 2 dropped.
    """
    mu, sigma, logits = model.D.q(h_fake)
    loss_s = F.cross_entropy(logits, s.argmax(dim=1))
    if c.shape[1] == 0:
        return loss_s, loss_s.new_zeros(())
    if model.config.mi_continuous == "fixed":
        loss_c = 0.5 * ((c - mu) ** 2).sum(dim=1).mean()
    else:
        loss_c = losses.gaussian_nll(c, mu, sigma)
    return loss_s, loss_c


def infogan_step(model, opt: dict, x: torch.Tensor, gen: torch.Generator, y: torch.Tensor | None = None
                 ) -> dict[str, float]:
    """InfoGAN Eq. 6, min_{G,Q} max_D V(D, G) - lambda L_I: a D step then a G step, both adding
    lambda L_I (Eq. 5), as InfoGAN's code does (lambda: mi_weight_s for s, mi_weight_c for c).

    Where L_I's gradient goes: in the D step to the shared trunk and Q's head (D's own head
    has no path to it), in the G step (D and Q frozen) to G. So L_I trains G, the trunk and
    Q's head, never D's head.
    """
    cfg = model.config
    z, s, c = model.sample_prior(x.shape[0], gen)
    x_g = model.generate(z, s, c)

    # D step: V(D, G) (InfoGAN Eq. 1, as BCE) + lambda L_I on the same pass over the fakes.
    requires_grad(model.D, True)
    h_fake = model.D.trunk(x_g.detach())
    d_loss = losses.discriminator_loss(model.D.logit(model.D.trunk(x)), model.D.logit(h_fake))
    mi_s, mi_c = info_loss(model, h_fake, s, c)
    opt["D"].zero_grad(set_to_none=True)
    (d_loss + cfg.mi_weight_s * mi_s + cfg.mi_weight_c * mi_c).backward()
    _step(opt["D"], model.D)

    # G step: non-saturating GAN loss + lambda L_I through the updated, frozen D and Q.
    requires_grad(model.D, False)
    h = model.D.trunk(x_g)
    g_adv = losses.generator_adv_loss(model.D.logit(h))
    g_mi_s, g_mi_c = info_loss(model, h, s, c)
    opt["G"].zero_grad(set_to_none=True)
    (g_adv + cfg.mi_weight_s * g_mi_s + cfg.mi_weight_c * g_mi_c).backward()
    _step(opt["G"], model.G)
    requires_grad(model.D, True)
    return {"d": d_loss.item(), "g_adv": g_adv.item(), "mi_s": mi_s.item(), "mi_c": mi_c.item()}


# -- ALI / BiGAN (Dumoulin et al. 2017; Donahue et al. 2017) ----------------------------------
def ali_optimizers(model, tc: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    return {"D": adam(model.D.parameters(), tc.lr_d, tc), "G": adam(model.G.parameters(), tc.lr_g, tc),
            "E": adam(model.E.parameters(), tc.lr_e, tc)}


def straight_through(logits: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """An exact one-hot sample of Cat(softmax(logits)) whose gradient is the Gumbel-softmax's.

    D's fake pair carries exact one-hot s, so E's s must be one-hot too (a relaxed sample is
    told apart by its softness alone); the relaxed sample's gradient lets E learn from D.
    """
    soft = codes.gumbel_softmax(logits, tau, generator)
    hard = F.one_hot(soft.argmax(dim=1), logits.shape[1]).to(soft.dtype)
    return hard - soft.detach() + soft


def ali_step(model, opt: dict, x: torch.Tensor, gen: torch.Generator, y: torch.Tensor | None = None
             ) -> dict[str, float]:
    """ALI's Alg. 1: D on (x, E(x)) vs (G(z, s, c), s, c); then E and G together against D.

    E and G minimise the label-swapped (non-saturating) losses of Alg. 1:
    -log(1 - D(x, E(x))) - log D(G(z, s, c), s, c). E's codes are sampled with gradient
    (straight-through s, reparameterised c), so E is trained by D alone.
    """
    cfg = model.config
    z, s, c = model.sample_prior(x.shape[0], gen)
    x_g = model.generate(z, s, c)
    mu, sigma, logits = model.encode(x)
    s_r = straight_through(logits, cfg.tau, gen)
    c_r = codes.reparameterize(mu, sigma, gen)

    requires_grad(model.D, True)
    d_loss = losses.discriminator_loss(model.discriminate(x, s_r.detach(), c_r.detach()),
                                       model.discriminate(x_g.detach(), s, c))
    opt["D"].zero_grad(set_to_none=True)
    d_loss.backward()
    _step(opt["D"], model.D)

    requires_grad(model.D, False)
    real = model.discriminate(x, s_r, c_r)
    e_adv = F.binary_cross_entropy_with_logits(real, torch.zeros_like(real))
    g_adv = losses.generator_adv_loss(model.discriminate(x_g, s, c))
    opt["G"].zero_grad(set_to_none=True)
    opt["E"].zero_grad(set_to_none=True)
    (e_adv + g_adv).backward()
    _step(opt["G"], model.G)
    _step(opt["E"], model.E)
    requires_grad(model.D, True)
    return {"d": d_loss.item(), "g_adv": g_adv.item(), "e_adv": e_adv.item()}


# -- beta-VAE (Higgins et al. 2017; Burgess et al. 2018) and JointVAE (Dupont 2018) -----------
def vae_optimizers(model, tc: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    return {"E": adam(model.E.parameters(), tc.lr_e, tc), "G": adam(model.G.parameters(), tc.lr_g, tc)}


def vae_terms(model, x: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Batch means of -log p(x | s, c), KL_c and KL_s (0 without a discrete code).

    -log p(x | s, c) is a Bernoulli likelihood (BCE summed over pixels), as in all three
    papers' code; it is computed from G's logits, before its sigmoid, to stay finite.
    """
    cfg = model.config
    mu, sigma, logits = model.encode(x)
    c = codes.reparameterize(mu, sigma, gen)
    # JointVAE: s is a Gumbel-softmax sample (as Dupont). beta-VAE: s is the constant code,
    # unused by the decoder.
    s = codes.gumbel_softmax(logits, cfg.tau, gen) if model.discrete else torch.ones_like(logits)
    rec = losses.bernoulli_nll(model.decode_logits(s, c), x)
    kl_c = codes.kl_gaussian(mu, sigma, cfg.c_prior)
    kl_s = codes.kl_categorical_uniform(F.softmax(logits, dim=1)) if model.discrete else torch.zeros_like(kl_c)
    return {"rec": rec, "kl_c": kl_c.mean(), "kl_s": kl_s.mean()}


def vae_loss(model, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float, float]:
    """(loss, C_c, C_s) at the model's current step.

    beta-VAE: rec + beta KL (Higgins et al. Eq. 4), or with ``capacity`` Burgess et al.'s
    rec + gamma |KL - C|. JointVAE (Dupont's objective): rec + gamma |KL_c - C_c| + gamma |KL_s - C_s|.
    """
    cfg = model.config
    cap_c, cap_s = model.capacities()
    if model.discrete:
        loss = t["rec"] + cfg.gamma * ((t["kl_c"] - cap_c).abs() + (t["kl_s"] - cap_s).abs())
    elif cfg.capacity:
        loss = t["rec"] + cfg.gamma * (t["kl_c"] - cap_c).abs()
    else:
        loss = t["rec"] + cfg.beta * t["kl_c"]
    return loss, cap_c, cap_s


def vae_step(model, opt: dict, x: torch.Tensor, gen: torch.Generator, y: torch.Tensor | None = None
             ) -> dict[str, float]:
    """One gradient step on the VAE objective; advances the capacity schedule by one step."""
    t = vae_terms(model, x, gen)
    loss, cap_c, cap_s = vae_loss(model, t)
    for o in opt.values():
        o.zero_grad(set_to_none=True)
    loss.backward()
    _step(opt["E"], model.E)
    _step(opt["G"], model.G)
    model.steps += 1
    out = {"loss": loss.item(), "rec": t["rec"].item(), "kl_c": t["kl_c"].item(), "cap_c": cap_c}
    if model.discrete:
        out.update(kl_s=t["kl_s"].item(), cap_s=cap_s)
    return out
