"""InfoVAEGAN losses, one function per equation of the paper (all are minimised).

Each returns a scalar averaged over the batch; per-sample terms are summed over pixels/dims.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from infoedit import codes


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 28: -[log D(x, E(x)) + log(1 - D(G(z,s,c), s, c))], as binary cross-entropy."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def generator_adv_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 29 in its non-saturating form, -log D(G(z,s,c), s, c), as the authors train it.

    Only G takes this gradient: E is not in the fake pair, and the real pair's codes are
    detached, so the encoder gets no adversarial gradient (as in the authors' code).
    """
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def gaussian_nll(c: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """-log N(c; mu, sigma^2) summed over dims, log(2 pi)/2 dropped: Eq. 30's "nll" c term, shared with InfoGAN's L_I."""
    return (torch.log(sigma) + 0.5 * ((c - mu) / sigma) ** 2).sum(dim=1).mean()


def bernoulli_nll(x_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log Bernoulli(target; sigmoid(x_logits)) summed over pixels, from logits to stay finite: every VAE's rec."""
    return F.binary_cross_entropy_with_logits(x_logits, target, reduction="none").flatten(1).sum(dim=1).mean()


def structural_dissimilarity(x: torch.Tensor, target: torch.Tensor, sigma: float = 1.5, size: int = 11
                              ) -> torch.Tensor:
    """Not in the paper (a lever, InfoVAEGANConfig.recon_ssim_weight): 1 - SSIM (Wang et al. 2004;
    11x11 Gaussian window of sigma 1.5, each channel apart, images in [0, 1]) summed over the
    pixels where the window fits, averaged over the batch: a per-pixel sum, as bernoulli_nll's
    is, so its weight reads against the likelihood's. The target carries no gradient."""
    target = target.detach()
    g = torch.exp(-(torch.arange(size, dtype=x.dtype, device=x.device) - size // 2) ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    # the five local means in one pass: the window is separable, a row then a column of g
    maps = torch.cat([x, target, x * x, target * target, x * target], dim=1)
    n = maps.shape[1]
    maps = F.conv2d(maps, g.view(1, 1, 1, size).expand(n, 1, 1, size), groups=n)
    maps = F.conv2d(maps, g.view(1, 1, size, 1).expand(n, 1, size, 1), groups=n)
    mean_x, mean_t, mean_xx, mean_tt, mean_xt = maps.chunk(5, dim=1)
    var_x, var_t, cov = mean_xx - mean_x ** 2, mean_tt - mean_t ** 2, mean_xt - mean_x * mean_t
    c1, c2 = 0.01 ** 2, 0.03 ** 2  # Wang et al.'s K1, K2 (0.01, 0.03), squared, for a dynamic range of 1
    ssim = ((2 * mean_x * mean_t + c1) * (2 * cov + c2)) / ((mean_x ** 2 + mean_t ** 2 + c1) * (var_x + var_t + c2))
    return (1 - ssim).flatten(1).sum(dim=1).mean()


def mutual_information_loss(logits_s: torch.Tensor, s: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
                            c: torch.Tensor, continuous: str = "mse", weight_s: float = 1.0,
                            weight_c: float = 1.0, generator: torch.Generator | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 30, negated: -log q(s | G(z,s,c)) - log q(c | G(z,s,c)), on generated images.

    Returns (loss_s, loss_c) unweighted; the caller sums ``weight_s * loss_s + weight_c * loss_c``
    (returned separately so both can be logged). ``continuous``:
    - "mse": squared error between c and a reparameterised sample of q(c|x), summed over dims
      (the authors' code). Its expectation is ||c - mu||^2 + ||sigma||^2, so it also shrinks sigma.
    - "nll": the Gaussian negative log-likelihood of c under N(mu, sigma^2), Eq. 30 literally
      (constant log(2 pi)/2 dropped).
    """
    loss_s = F.cross_entropy(logits_s, s.argmax(dim=1))
    if c.shape[1] == 0:
        return loss_s, loss_s.new_zeros(())
    if continuous == "mse":
        c_hat = codes.reparameterize(mu, sigma, generator)
        loss_c = ((c - c_hat) ** 2).sum(dim=1).mean()
    elif continuous == "nll":
        loss_c = gaussian_nll(c, mu, sigma)
    else:
        raise ValueError(f"unknown continuous MI loss {continuous!r}")
    return loss_s, loss_c


def vae_loss(target: torch.Tensor, x_logits: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
             logits_s: torch.Tensor, c_prior: str, kl_s_weight: float, kl_c_weight: float = 1.0,
             likelihood: str = "gaussian") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 31/32, negated: -log p(target | s', c') of the decoder's output (given as its logits,
    before the sigmoid) plus the two KL terms. The target carries no gradient.

    ``likelihood`` "gaussian": unit variance, i.e. the squared error of the image summed over
    pixels (the authors' code); "bernoulli": the cross-entropy summed over pixels.
    Returns (total, reconstruction, kl_c) with total = rec + kl_c_weight * kl_c + kl_s_weight * kl_s
    (kl_c_weight 1: the paper's loss).
    """
    target = target.detach()
    if likelihood == "bernoulli":
        rec = bernoulli_nll(x_logits, target)
    else:
        rec = ((target - torch.sigmoid(x_logits)) ** 2).flatten(1).sum(dim=1).mean()
    kl_c = codes.kl_gaussian(mu, sigma, c_prior).mean() if mu.shape[1] else rec.new_zeros(())
    kl_s = codes.kl_categorical_uniform(F.softmax(logits_s, dim=1)).mean()
    return rec + kl_c_weight * kl_c + kl_s_weight * kl_s, rec, kl_c


def total_correlation(c: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Not in the paper (a lever, InfoVAEGANConfig.tc_weight): the total correlation
    KL(q(c) || prod_d q(c_d)) of the continuous code over the batch, the part of the KL of
    Eq. 31/32 that ties the code's dims together (Chen et al. 2018, beta-TCVAE).

    c [M, D] holds one sample of q(c|x_i) per row. q(c) and each q(c_d) are estimated by the
    batch's mixture (1/M) sum_j q(.|x_j) (beta-TCVAE's minibatch estimator with the dataset
    size taken as M: the size only shifts the value by a constant). Near 0 when the dims vary
    independently over the batch; large when they move together.
    """
    if c.shape[1] < 2:
        return c.new_zeros(())
    # log N(c_i,d; mu_j,d, sigma_j,d) for every pair (i, j): [M, M, D]
    log_q = (-0.5 * ((c[:, None] - mu[None]) / sigma[None]) ** 2 - torch.log(sigma[None])
             - 0.5 * math.log(2 * math.pi))
    log_m = math.log(c.shape[0])
    log_joint = torch.logsumexp(log_q.sum(dim=2), dim=1) - log_m
    log_marginals = (torch.logsumexp(log_q, dim=1) - log_m).sum(dim=1)
    return (log_joint - log_marginals).mean()


def paired_information_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, balance: float = 1.0,
                            eps: float = 1e-8) -> torch.Tensor:
    """Not in the paper (the real-data lever, InfoVAEGANConfig.real_mi_weight): minus the mutual
    information I(s_a; s_b) between the discrete codes E infers for two views of the same real
    images (Ji et al. 2019, IIC). It is the paper's information maximisation applied to q(s|x) on
    real data: high when each image's code is confident and the same for both views (low H(s|x))
    and the codes are used evenly (high H(s)). ``balance`` > 1 weights the marginal entropies
    more (IIC's lambda): merging two classes into one code costs more.
    """
    p_a, p_b = F.softmax(logits_a, dim=1), F.softmax(logits_b, dim=1)
    joint = p_a.t() @ p_b / p_a.shape[0]
    joint = ((joint + joint.t()) / 2).clamp_min(eps)  # symmetric: the two views are exchangeable
    marg_a, marg_b = joint.sum(dim=1, keepdim=True), joint.sum(dim=0, keepdim=True)
    return -(joint * (joint.log() - balance * (marg_a.log() + marg_b.log()))).sum()
