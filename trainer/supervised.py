"""Training of the supervised models (Sec. 3, Eqs. 5-14): ELBO + label cross-entropy on q(s|x)
+ an adversarial classifier q(y|c) that the encoder learns to defeat.

Per batch, one backward of the summed losses trains every network at once; which network takes
which term is fixed by detaching c and freezing the classifier, not by separate passes:
- encoder and decoder: -ELBO (Eq. 6) + rho1 * L_C(s) (Eqs. 12-13) + rho2 * L_MI (Eqs. 11, 13);
- classifier q(y|c): its cross-entropy on c.detach() only (the max over phi of Eq. 14).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from infoedit import codes
from trainer import dist, losses
from trainer.config import TrainConfig, adam, requires_grad


def make_optimizers(model, tc: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """One Adam per network: encoder (--lr-e), decoder (--lr-g), adversarial classifier (--lr-d)."""
    return {"E": adam(model.E.parameters(), tc.lr_e, tc), "dec": adam(model.dec.parameters(), tc.lr_g, tc),
            "A": adam(model.A.parameters(), tc.lr_d, tc)}


def elbo_terms(model, x: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The three terms of Eq. 6 (negated, batch means) plus what the other losses reuse."""
    cfg = model.config
    mu, sigma, logits = model.encode(x)
    s = codes.gumbel_softmax(logits, cfg.tau, gen)    # Eq. 8
    c = codes.reparameterize(mu, sigma, gen)          # Eq. 7
    # -log p(x|s,c): Bernoulli likelihood (binary cross-entropy summed over pixels), the usual
    # choice for [0, 1] digit images; the paper does not say which likelihood it uses.
    rec = losses.bernoulli_nll(model.decode_logits(s, c), x)
    kl_c = codes.kl_gaussian(mu, sigma, cfg.c_prior)                    # KL(q(c|x) || N(0, I))
    kl_s = codes.kl_categorical_uniform(F.softmax(logits, dim=1))        # KL(q(s|x) || Cat(1/K))
    return {"rec": rec, "kl_c": kl_c.mean(), "kl_s": kl_s.mean(), "logits": logits, "c": c}


def label_loss(logits_s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_C for q(s|x) (Eqs. 12-13, rho1): cross-entropy of the discrete code against the label."""
    return F.cross_entropy(logits_s, y)


def adversary_loss(model, c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The classifier's loss (Eq. 12, maximised over phi in Eq. 14): CE of q(y|c) against y.

    c is detached, so this trains the classifier and never the encoder.
    """
    return F.cross_entropy(model.classify_c(c.detach()), y)


def entropy_loss(model, c: torch.Tensor) -> torch.Tensor:
    """L_MI = -H(q(y|c)) (Eq. 11), minimised by the encoder only (Eq. 13, rho2).

    Maximising the classifier's entropy, rather than its cross-entropy, pushes q(y|c) towards
    uniform instead of towards a confidently wrong label, which would still leak y. The
    classifier's weights are frozen here: this term must not teach it to be uncertain.
    """
    requires_grad(model.A, False)
    log_q = F.log_softmax(model.classify_c(c), dim=1)
    requires_grad(model.A, True)
    return (log_q.exp() * log_q).sum(dim=1).mean()


def train_step(model, opt: dict, x: torch.Tensor, gen: torch.Generator, y: torch.Tensor | None = None
               ) -> dict[str, float]:
    """One step on a labelled batch; returns the loss values and leaves each network's .grad."""
    if y is None:
        raise ValueError(f"{model.config.model} is supervised: the dataset must have labels (e.g. rotated-mnist)")
    cfg = model.config
    t = elbo_terms(model, x, gen)
    neg_elbo = t["rec"] + t["kl_c"] + cfg.kl_s_weight * t["kl_s"]   # -L_ELBO, Eq. 6
    l_c = label_loss(t["logits"], y)
    l_mi = entropy_loss(model, t["c"])  # computed (and logged) also when rho2 = 0 switches it off
    adv = adversary_loss(model, t["c"], y)
    for o in opt.values():
        o.zero_grad(set_to_none=True)
    (neg_elbo + cfg.rho1 * l_c + cfg.rho2 * l_mi + adv).backward()
    for name, o in opt.items():
        dist.average_gradients(getattr(model, name))
        o.step()
    acc = (t["logits"].argmax(1) == y).float().mean()
    return {"loss": (neg_elbo + cfg.rho1 * l_c + cfg.rho2 * l_mi).item(), "rec": t["rec"].item(),
            "kl_c": t["kl_c"].item(), "kl_s": t["kl_s"].item(), "label_ce": l_c.item(),
            "adv_ce": adv.item(), "entropy": -l_mi.item(), "label_acc": acc.item()}
