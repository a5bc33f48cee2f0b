"""InfoVAEGAN and InfoVAEGAN2 training (Alg. 1): per batch a D step, then one G/E step.

Same contract as trainer/baselines.py: ``make_optimizers(model, tc)`` and
``train_step(model, opt, x, gen, y=None) -> dict[str, float]``, leaving this step's .grad in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from infoedit import codes
from infoedit.models.infovaegan import InfoVAEGAN2, augment_parts
from trainer import augment, dist, losses
from trainer.config import TrainConfig, adam, requires_grad
from trainer.evaluate.clustering import predict_clusters


def make_optimizers(model, tc: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    # One Adam per network. The authors run one Adam per *loss* (G: adv, all: MI, E: VAE);
    # summing the losses per network and using one Adam each is the usual PyTorch reading.
    opt = {"D": adam(model.D.parameters(), tc.lr_d, tc), "G": adam(model.G.parameters(), tc.lr_g, tc),
           "E": adam(model.E.parameters(), tc.lr_e, tc)}
    if isinstance(model, InfoVAEGAN2):
        opt["G2"] = adam(model.G2.parameters(), tc.lr_g, tc)
    return opt


def train_step(model, opt: dict, x: torch.Tensor, gen: torch.Generator, y: torch.Tensor | None = None
               ) -> dict[str, float]:
    """One iteration of Alg. 1 on a real batch x (unsupervised: labels y are ignored); returns
    the loss values.

    Leaves each network's .grad from this step in place (tests read them).
    """
    cfg = model.config
    infovaegan2 = isinstance(model, InfoVAEGAN2)
    real_mi = cfg.real_mi_weight > 0
    z, s, c = model.sample_prior(x.shape[0], gen)
    x_g = model.generate(z, s, c)  # one G forward feeds D, the G loss, MI and the VAE target

    # D step (Eq. 28): real pair (x, sample of E(x)) vs fake pair (G(z,s,c), s, c).
    # The real codes are sampled as the authors do (Gumbel-softmax s, reparameterised c) and
    # detached: the encoder takes no adversarial gradient. InfoVAEGAN2 keeps this E(x) graph
    # for its real-image VAE loss (Eq. 32), and the real-data MI lever for its first view, so
    # E(x) is computed once for all.
    with torch.set_grad_enabled(infovaegan2 or real_mi):
        mu_r, sigma_r, logits_r, aux_r, style_r = model.E.forward_with_aux(x)
        s_r = (codes.sample_onehot(logits_r, gen) if cfg.d_real_s == "onehot"
               else codes.gumbel_softmax(logits_r, cfg.tau, gen))
        c_r = codes.reparameterize(mu_r, sigma_r, gen)
    s_r, c_r = s_r.detach(), c_r.detach()
    # G2's reconstruction (Eq. 32) is drawn here when D also takes it as a fake (recon_adv_weight)
    recon = draw_reconstruction(model, logits_r, mu_r, sigma_r, style_r, gen) if cfg.recon_adv_weight else None
    requires_grad(model.D, True)
    fake = model.discriminate(x_g.detach(), s, c)
    edited = None
    if cfg.edit_weight:  # ours: G2's drawings of random codes in the batch's own styles are fakes too
        w_e = None if style_r is None else codes.reparameterize(*style_r, gen).detach()
        edited = draw_edits(model, x.shape[0], w_e, gen)
        fake = torch.cat([fake, model.discriminate(edited[0].detach(), *edited[1:])])
    if recon is not None:  # ours: the reconstructions of real images are fakes too
        x_rec, s_2, c_2 = recon
        fake = torch.cat([fake, model.discriminate(torch.sigmoid(x_rec).detach(), s_2.detach(), c_2.detach())])
    d_loss = losses.discriminator_loss(model.discriminate(x, s_r, c_r), fake)
    opt["D"].zero_grad(set_to_none=True)
    d_loss.backward()
    dist.average_gradients(model.D)
    opt["D"].step()

    # G/E step: adversarial (Eq. 29, G only), MI (Eq. 30, G and E), VAE (Eq. 31, E only).
    requires_grad(model.D, False)
    g_adv = losses.generator_adv_loss(model.discriminate(x_g, s, c))
    mu, sigma, logits = model.encode(x_g)
    mi_s, mi_c = losses.mutual_information_loss(logits, s, mu, sigma, c, cfg.mi_continuous, generator=gen)
    mi = cfg.mi_weight_s * mi_s + cfg.mi_weight_c * mi_c
    extra = {}
    if real_mi:  # the lever: E alone, views x and a random warp of x (cfg.augment)
        def view() -> torch.Tensor:
            return augment.views(x, cfg.augment, gen, cfg.background)

        _, _, logits_warped, aux_warped, _ = model.E.forward_with_aux(view())
        logits_a, aux_a = logits_r, aux_r
        if "centre" in augment_parts(cfg.augment):
            # A centred, resized view looks unlike any raw image (E could tell the two apart and
            # map them to unrelated categories), so the pair is two such views.
            _, _, logits_a, aux_a, _ = model.E.forward_with_aux(view())
        extra["mi_real"] = losses.paired_information_loss(logits_a, logits_warped, cfg.real_mi_balance)
        mi = mi + cfg.real_mi_weight * extra["mi_real"]
        if aux_a is not None:  # the over-clustering head: same loss, same weight, as IIC trains its heads
            extra["mi_real_aux"] = losses.paired_information_loss(aux_a, aux_warped, cfg.real_mi_balance)
            mi = mi + cfg.real_mi_weight * extra["mi_real_aux"]
    for o in opt.values():
        o.zero_grad(set_to_none=True)
    if infovaegan2:
        # Eq. 32 (replaces Eq. 31): reconstruct the real x from E's codes through G2; trains E and G2.
        x_rec, s_2, c_2 = recon or draw_reconstruction(model, logits_r, mu_r, sigma_r, style_r, gen)
        vae, rec, kl_c = losses.vae_loss(x, x_rec, mu_r, sigma_r, logits_r, cfg.c_prior, cfg.kl_s_weight,
                                         cfg.kl_c_weight, cfg.likelihood)
        vae = vae + tc_penalty(cfg, c_2, mu_r, sigma_r, extra)
        if style_r is not None:  # ours: the style code's KL to its N(0, 1) prior
            extra["kl_w"] = codes.kl_gaussian(*style_r, "normal").mean()
            vae = vae + cfg.style_kl_weight * extra["kl_w"]
        if edited is not None:
            extra["edit"] = edit_information_loss(model, *edited)
            extra["edit_adv"] = losses.generator_adv_loss(model.discriminate(*edited))
            vae = vae + cfg.edit_weight * (extra["edit"] + extra["edit_adv"])
        if recon is not None:
            # the codes detached: E learns from Eq. 32, not from fooling D
            fooled = model.discriminate(torch.sigmoid(x_rec), s_2.detach(), c_2.detach())
            extra["recon_adv"] = losses.generator_adv_loss(fooled)
            vae = vae + cfg.recon_adv_weight * extra["recon_adv"]
        (g_adv + mi + vae).backward()
    else:
        s_p = codes.gumbel_softmax(logits, cfg.tau, gen)
        c_p = codes.reparameterize(mu, sigma, gen)
        requires_grad(model.G, False)  # regeneration G(z, s', c'): gradient flows to E through s', c' only
        x_re = model.generate_logits(z, s_p, c_p)
        requires_grad(model.G, True)
        vae, rec, kl_c = losses.vae_loss(x_g, x_re, mu, sigma, logits, cfg.c_prior, cfg.kl_s_weight,
                                         cfg.kl_c_weight, cfg.likelihood)
        vae = vae + tc_penalty(cfg, c_p, mu, sigma, extra)
        e_params = list(model.E.parameters())
        # The VAE loss also depends on G through E's input x_g; taking its gradient w.r.t. E's
        # parameters alone keeps it an encoder-only loss (the authors' var_list=encoder).
        vae_grads = torch.autograd.grad(vae, e_params, retain_graph=True, allow_unused=True)
        (g_adv + mi).backward()
        for p, g in zip(e_params, vae_grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
    for name, o in opt.items():
        if name != "D":
            dist.average_gradients(getattr(model, name))
            o.step()
    requires_grad(model.D, True)
    return {"d": d_loss.item(), "g_adv": g_adv.item(), "mi_s": mi_s.item(), "mi_c": mi_c.item(),
            "vae": vae.item(), "rec": rec.item(), "kl_c": kl_c.item(), **{k: v.item() for k, v in extra.items()}}


def draw_reconstruction(model, logits: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, style, gen
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 32's drawing of real images from E's codes: (G2's logits, s, c), the codes sampled as
    Eq. 32 samples them (Gumbel-softmax s, reparameterised c and style w)."""
    cfg = model.config
    s = codes.gumbel_softmax(logits, cfg.tau, gen)
    c = codes.reparameterize(mu, sigma, gen)
    w = None if style is None else codes.reparameterize(*style, gen)
    return model.generate2_logits(s, c, w), s, c


def draw_edits(model, n: int, w: torch.Tensor | None, gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ours (InfoVAEGANConfig.edit_weight): (G2(s, c, w), s, c) for random codes (s, c) drawn
    with the style codes w (detached) of real images: what an edit asks of G2."""
    _, s, c = model.sample_prior(n, gen)
    return model.generate2(s, c, w), s, c


def edit_information_loss(model, x_e: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Ours: E must read the codes (s, c) of an edit drawing (draw_edits) back off it: the
    cross-entropy for s plus the squared error of mu_c, as Eq. 30 scores G. Trains G2 alone (E's
    weights are frozen for this term), so an edit of one code changes that code in the picture
    and the style code cannot carry the category. With it D takes the drawings as fakes of the
    pair (image, codes) and G2 gets Eq. 29's adversarial loss on them: an edit must also look like
    an image of its codes, not only fool E."""
    requires_grad(model.E, False)
    mu, _, logits = model.encode(x_e)
    requires_grad(model.E, True)
    return F.cross_entropy(logits, s.argmax(dim=1)) + ((mu - c) ** 2).sum(dim=1).mean()


def tc_penalty(cfg, c: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, extra: dict):
    """The tc_weight lever's term of the VAE loss (0 when off); records the estimate in extra."""
    if not cfg.tc_weight:
        return 0.0
    extra["tc"] = losses.total_correlation(c, mu, sigma)
    return cfg.tc_weight * extra["tc"]


def after_epoch(model, ds, seed: int, epoch: int) -> dict | None:
    """The loop's hook after each epoch: the reseed lever, when the config asks for it."""
    if not getattr(model.config, "reseed", False):
        return None
    reseeded = reseed_categories(model, ds, seed, epoch)
    return {"reseeded": list(reseeded)} if reseeded else None


@torch.no_grad()
def reseed_categories(model, ds, seed: int, epoch: int, n: int = 10_000, batch_size: int = 500
                      ) -> tuple[int, int] | None:
    """Not in the paper (a lever, InfoVAEGANConfig.reseed): if one category holds over 1.5/K of
    ``n`` training images and another under 0.5/K, the signature of a run that merged
    two classes into one category (and split a third or left one nearly unused), give the small
    category a noisy copy of the large one's weights wherever the category enters a network
    (E's logit row, G's, G2's and D's input columns), so the two categories split the large
    one's images, as k-means re-seeds a degenerate cluster. Returns (large, small) or None.
    """
    cfg = model.config
    k = cfg.n_classes
    counts = torch.zeros(k)
    # evenly spaced over the whole set, not its first n: a folder dataset is sorted by class
    sample = torch.linspace(0, len(ds) - 1, min(n, len(ds))).round().long()
    for start in range(0, len(sample), batch_size):  # in slices: a rendered dataset has no image tensor
        clusters, _ = predict_clusters(model, ds.batch(sample[start:start + batch_size]), batch_size, scale=1.0)
        counts += torch.bincount(clusters, minlength=k).float()
    share = counts / counts.sum()
    large, small = int(share.argmax()), int(share.argmin())
    if not (share[large] > 1.5 / k and share[small] < 0.5 / k):
        return None
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)  # the same on every rank
    rows = model.E.logits
    noise = torch.randn(rows.weight.shape[1], generator=gen).to(rows.weight.device) * rows.weight[large].std() * 0.1
    rows.weight[small] = rows.weight[large] + noise
    rows.bias[small] = rows.bias[large]
    inputs = [(model.G.fc[0], cfg.z_dim), (model.D.head[0], model.D.trunk_features)]
    if isinstance(model, InfoVAEGAN2):
        inputs.append((model.G2.fc[0], 0))
    for layer, offset in inputs:  # the one-hot s enters these layers at columns offset .. offset + K - 1
        layer.weight[:, offset + small] = layer.weight[:, offset + large]
    return large, small
