"""InfoVAEGAN and InfoVAEGAN2 training (Alg. 1): per batch a D step, then one G/E step.

Same contract as trainer/baselines.py: ``make_optimizers(model, tc)`` and
``train_step(model, opt, x, gen, y=None) -> dict[str, float]``, leaving this step's .grad in place.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from infoedit import codes
from infoedit.models.infovaegan import InfoVAEGAN2, augment_parts, critic_augment_parts
from trainer import augment, dist, losses
from trainer.config import TrainConfig, adam, requires_grad
from trainer.evaluate.clustering import predict_clusters


def make_optimizers(model, tc: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """D's Adam, then the config's ``optimisers``: "per-loss" (the authors' code) gives the
    adversarial (Eq. 29), MI (Eq. 30) and VAE (Eq. 31 / 32) losses one Adam each over the
    networks that loss trains; "per-network" gives G, E (and G2) one Adam each."""
    opt = {"D": adam(model.D.parameters(), tc.lr_d, tc)}
    if hasattr(model, "D2"):  # the reconstructions' own critic (recon_critic "own"), stepped as D is
        opt["D2"] = adam(model.D2.parameters(), tc.lr_d, tc)
    g2 = [model.G2] if isinstance(model, InfoVAEGAN2) else []
    if model.config.optimisers == "per-network":
        opt.update({"G": adam(model.G.parameters(), tc.lr_g, tc), "E": adam(model.E.parameters(), tc.lr_e, tc)})
        if g2:
            opt["G2"] = adam(model.G2.parameters(), tc.lr_g, tc)
        return opt

    def groups(*nets) -> list[dict]:  # each network at its own learning rate (the authors': 5x D's for all)
        return [{"params": list(net.parameters()), "lr": tc.lr_e if net is model.E else tc.lr_g} for net in nets]

    opt["adv"] = adam(groups(model.G), tc.lr_g, tc)
    opt["mi"] = adam(groups(model.G, model.E), tc.lr_g, tc)
    opt["vae"] = adam(groups(model.E, *g2), tc.lr_e, tc)
    return opt


class RealCodes(NamedTuple):
    """E(x) of the real batch: its outputs, and the codes D's real pair carries (sampled, detached)."""
    mu: torch.Tensor
    sigma: torch.Tensor
    logits: torch.Tensor
    aux: torch.Tensor | None    # the over-clustering head's logits (overcluster lever)
    style: tuple | None         # (mu, sigma) of the style code w (style_dim)
    s: torch.Tensor
    c: torch.Tensor


def train_step(model, opt: dict, x: torch.Tensor, gen: torch.Generator, y: torch.Tensor | None = None,
               iteration: int = 0) -> dict[str, float]:
    """One iteration of Alg. 1 on a real batch x (unsupervised: labels y are ignored; ``iteration``:
    the run's steps before this one); returns the loss values and leaves each network's .grad
    from this step in place (tests read them).

    The paper's terms come in its order, each with its equation. Every lever (not in the paper;
    docs/model.md) is a named term added beside them and is nothing while its config field is 0.
    """
    cfg = model.config
    infovaegan2 = isinstance(model, InfoVAEGAN2)
    z, s, c = model.sample_prior(x.shape[0], gen)
    x_g = model.generate(z, s, c)  # one G forward feeds D, the G loss, MI and the VAE target
    real = encode_real(model, x, gen)
    joint = infovaegan2 and cfg.g2_schedule == "joint"
    g2_real = held(real) if infovaegan2 and not joint else real  # the codes G2 draws from (Eq. 32)
    # ours: G2's drawings that D also judges (recon_adv_weight, edit_weight), drawn before its step
    recon = draw_reconstruction(model, g2_real, gen) if cfg.recon_adv_weight else None
    edited = draw_edits(model, x.shape[0], g2_real.style, gen) if cfg.edit_weight else None

    # D step (Eq. 28): the real pair (x, E(x)'s codes) against the fake pair (G(z, s, c), s, c)
    # and, where the levers are on, G2's drawings of random codes and of the real images
    # (InfoVAEGAN2 as the authors run it steps D on one iteration in d_every)
    d_loss, d2_loss = critic_steps(model, opt, (x, real.s, real.c), [(x_g, s, c)] + ([edited] if edited else []),
                                   recon, gen, step=(iteration + 1) % cfg.d_every == 0)

    # G/E step: adversarial (Eq. 29, G only), MI (Eq. 30, G and E), VAE (Eq. 31, E only)
    critics = [model.D, *([model.D2] if "D2" in opt else [])]
    for critic in critics:
        requires_grad(critic, False)
    g_adv = losses.generator_adv_loss(judge(model, model.D, x_g, s, c, gen))  # Eq. 29
    mu, sigma, logits = model.encode(x_g)
    mi_s, mi_c = losses.mutual_information_loss(logits, s, mu, sigma, c, cfg.mi_continuous, generator=gen)
    mi = cfg.mi_weight_s * mi_s + cfg.mi_weight_c * mi_c  # Eq. 30
    extra = {} if d2_loss is None else {"d2": d2_loss}
    mi = mi + real_data_information(model, x, real, gen, extra)  # lever: real_mi_weight
    eq31 = eq32 = None
    if joint:  # ours: Eq. 32 (replacing Eq. 31): G2 redraws the real x from E(x)'s codes; trains E and G2
        vae, rec, kl_c = real_reconstruction_loss(model, x, real, recon, edited, gen, extra)
        eq32 = vae
    else:  # Eq. 31: E reads G's image, G redraws it from E's codes; trains E only
        s_p = codes.gumbel_softmax(logits, cfg.tau, gen)
        c_p = codes.reparameterize(mu, sigma, gen)
        requires_grad(model.G, False)  # regeneration G(z, s', c'): gradient flows to E through s', c' only
        x_re = model.generate_logits(z, s_p, c_p)
        requires_grad(model.G, True)
        vae, rec, kl_c = losses.vae_loss(x_g, x_re, mu, sigma, logits, cfg.c_prior, cfg.kl_s_weight,
                                         cfg.kl_c_weight, cfg.likelihood)
        vae = eq31 = vae + tc_penalty(cfg, c_p, mu, sigma, extra)  # lever: tc_weight
        if infovaegan2:  # the authors' schedule: Eq. 32 trains G2 alone, from E(x)'s codes held fixed
            eq32, extra["rec_g2"], _ = real_reconstruction_loss(model, x, g2_real, recon, edited, gen, extra)
            vae = vae + eq32  # (their gradients part: Eq. 31 reaches E alone, Eq. 32 G2 alone)
    if cfg.optimisers == "per-loss":
        step_per_loss(opt, {"adv": g_adv, "mi": mi, "vae": vae})
    else:
        step_per_network(model, opt, g_adv + mi, eq31, eq32)
    for critic in critics:
        requires_grad(critic, True)
    model.average_generator()  # lever: g_average
    return {"d": d_loss.item(), "g_adv": g_adv.item(), "mi_s": mi_s.item(), "mi_c": mi_c.item(),
            "vae": vae.item(), "rec": rec.item(), "kl_c": kl_c.item(), **{k: v.item() for k, v in extra.items()}}


def encode_real(model, x: torch.Tensor, gen: torch.Generator) -> RealCodes:
    """E(x), and the codes of D's real pair sampled as the authors do (Gumbel-softmax s, or an
    exact one-hot with d_real_s "onehot"; reparameterised c) and detached: the encoder takes no
    adversarial gradient. InfoVAEGAN2 keeps the E(x) graph for Eq. 32 and the real-data MI lever
    for its first view, so E(x) is computed once for all."""
    cfg = model.config
    # D's trunk, where E reads it (shared_trunk), learns from D's loss alone: E(x)'s graph leaves
    # it out, and so outlives D's step, which changes the trunk in place (discriminator_step
    # turns D's gradients back on)
    requires_grad(model.D, False)
    with torch.set_grad_enabled(isinstance(model, InfoVAEGAN2) or cfg.real_mi_weight > 0):
        mu, sigma, logits, aux, style = model.E.forward_with_aux(x)
        s = (codes.sample_onehot(logits, gen) if cfg.d_real_s == "onehot"
             else codes.gumbel_softmax(logits, cfg.tau, gen))
        c = codes.reparameterize(mu, sigma, gen)
    return RealCodes(mu, sigma, logits, aux, style, s.detach(), c.detach())


def judge(model, critic: torch.nn.Module, x: torch.Tensor, s: torch.Tensor, c: torch.Tensor,
          gen: torch.Generator) -> torch.Tensor:
    """The joint discriminator ``critic``'s logits for images x with codes (s, c), x first warped
    as critic_augment says (ours, DiffAugment; x as it is while off)."""
    x = augment.for_critic(x, critic_augment_parts(model.config.critic_augment), gen)
    return critic(x, torch.cat([s, c], dim=1))


def critic_steps(model, opt: dict, real: tuple, fakes: list[tuple], recon: tuple | None, gen: torch.Generator,
                 step: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """D's step on the fakes, G2's reconstructions (``recon``, logits) among them, or judged in a
    step of their own critic D2 where the config gives one (recon_critic "own"): (D's loss, D2's
    or None). Without ``step`` the losses are only computed."""
    d2_loss = None
    if recon:
        judged = (torch.sigmoid(recon[0]), *recon[1:])
        if "D2" in opt:
            d2_loss = discriminator_step(model, model.D2, opt["D2"], real, [judged], gen, step)
        else:
            fakes = fakes + [judged]
    return discriminator_step(model, model.D, opt["D"], real, fakes, gen, step), d2_loss


def discriminator_step(model, critic: torch.nn.Module, opt: torch.optim.Optimizer, real: tuple, fakes: list[tuple],
                       gen: torch.Generator, step: bool = True) -> torch.Tensor:
    """Eq. 28 on one real (image, s, c) triple and fake ones (each scored in its own call, as
    BatchNorm sees them), all detached: trains the joint discriminator ``critic`` (D) alone,
    or, without ``step``, only computes its loss, for the log (BatchNorm's running statistics
    move, which no training forward reads)."""
    if not step:
        with torch.no_grad():
            fake = torch.cat([judge(model, critic, *triple, gen) for triple in fakes])
            return losses.discriminator_loss(judge(model, critic, *real, gen), fake)
    requires_grad(critic, True)
    fake = torch.cat([judge(model, critic, *(t.detach() for t in triple), gen) for triple in fakes])
    d_loss = losses.discriminator_loss(judge(model, critic, *real, gen), fake)
    opt.zero_grad(set_to_none=True)
    d_loss.backward()
    dist.average_gradients(critic)
    opt.step()
    return d_loss


def step_per_loss(opt: dict, loss_of: dict[str, torch.Tensor]) -> None:
    """The authors' optimisation: each loss's gradient on its own optimiser's parameters, all
    taken before any step, then one Adam step per loss. Eq. 31's gradient is E's alone, as their
    var_list=encoder has it. A network two losses train (G, E) takes two normalised steps."""
    params = {name: [p for group in opt[name].param_groups for p in group["params"]] for name in loss_of}
    grads = {name: torch.autograd.grad(loss, params[name], retain_graph=True, allow_unused=True)
             for name, loss in loss_of.items()}
    for name in loss_of:
        for p, g in zip(params[name], grads[name]):
            p.grad = g
        dist.average_parameter_gradients(params[name])
        opt[name].step()


def step_per_network(model, opt: dict, loss: torch.Tensor, eq31: torch.Tensor | None,
                     eq32: torch.Tensor | None) -> None:
    """Ours: one Adam per network on the sum of its losses. Eq. 31 (``eq31``) adds its gradient
    on E's parameters alone: it also depends on G through E's input x_g, and the authors train
    it with var_list=encoder. Eq. 32 (``eq32``, InfoVAEGAN2) joins the sum."""
    for o in opt.values():
        o.zero_grad(set_to_none=True)
    e_params = list(model.E.parameters())
    eq31_grads = () if eq31 is None else torch.autograd.grad(eq31, e_params, retain_graph=True, allow_unused=True)
    (loss if eq32 is None else loss + eq32).backward()
    for p, g in zip(e_params, eq31_grads):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g
    for name, o in opt.items():
        if name not in ("D", "D2"):
            dist.average_gradients(getattr(model, name))
            o.step()


def real_data_information(model, x: torch.Tensor, real: RealCodes, gen: torch.Generator, extra: dict):
    """Not in the paper (real_mi_weight): E's categories of x and of a random warp of x
    (cfg.augment) must carry information about each other (IIC); E alone. 0 when off."""
    cfg = model.config
    if not cfg.real_mi_weight > 0:
        return 0.0

    def view() -> torch.Tensor:
        return augment.views(x, cfg.augment, gen, cfg.background)

    _, _, logits_warped, aux_warped, _ = model.E.forward_with_aux(view())
    logits_a, aux_a = real.logits, real.aux
    if "centre" in augment_parts(cfg.augment):
        # A centred, resized view looks unlike any raw image (E could tell the two apart and
        # map them to unrelated categories), so the pair is two such views.
        _, _, logits_a, aux_a, _ = model.E.forward_with_aux(view())
    extra["mi_real"] = losses.paired_information_loss(logits_a, logits_warped, cfg.real_mi_balance)
    loss = cfg.real_mi_weight * extra["mi_real"]
    if aux_a is not None:  # the over-clustering head: same loss, same weight, as IIC trains its heads
        extra["mi_real_aux"] = losses.paired_information_loss(aux_a, aux_warped, cfg.real_mi_balance)
        loss = loss + cfg.real_mi_weight * extra["mi_real_aux"]
    return loss


def add_g2_levers(model, loss: torch.Tensor, real: RealCodes, edited: tuple | None, recon: tuple | None,
                  gen: torch.Generator, extra: dict) -> torch.Tensor:
    """Eq. 32's ``loss`` with our terms added (docs/model.md): the style code's KL to its N(0, 1)
    prior (style_kl_weight), the edit terms (edit_weight) and the reconstructions' adversarial
    term (recon_adv_weight); each nothing while off."""
    cfg = model.config
    if real.style is not None:
        extra["kl_w"] = codes.kl_gaussian(*real.style, "normal").mean()
        loss = loss + cfg.style_kl_weight * extra["kl_w"]
    if edited is not None:
        extra["edit"] = edit_information_loss(model, *edited)
        extra["edit_adv"] = losses.generator_adv_loss(judge(model, model.D, *edited, gen))
        loss = loss + cfg.edit_weight * (extra["edit"] + extra["edit_adv"])
    if recon is not None:
        x_rec, s, c = recon  # the codes detached: E learns from Eq. 32, not from fooling D
        judged = judge(model, model.reconstruction_discriminator(), torch.sigmoid(x_rec), s.detach(), c.detach(), gen)
        extra["recon_adv"] = losses.generator_adv_loss(judged)
        loss = loss + cfg.recon_adv_weight * extra["recon_adv"]
    return loss


def real_reconstruction_loss(model, x: torch.Tensor, real: RealCodes, recon: tuple | None, edited: tuple | None,
                             gen: torch.Generator, extra: dict) -> tuple:
    """Eq. 32, with our levers beside it: G2 redraws the real x from codes drawn from E(x)
    (``real``; held fixed under the authors' schedule, where the TC lever is Eq. 31's). Returns
    (loss, reconstruction, kl_c)."""
    cfg = model.config
    x_rec, _, c_2 = recon or draw_reconstruction(model, real, gen)
    vae, rec, kl_c = losses.vae_loss(x, x_rec, real.mu, real.sigma, real.logits, cfg.c_prior, cfg.kl_s_weight,
                                     cfg.kl_c_weight, cfg.likelihood)
    if cfg.recon_ssim_weight:  # lever: scored for structure as well as per pixel
        extra["recon_dssim"] = losses.structural_dissimilarity(torch.sigmoid(x_rec), x)
        vae = vae + cfg.recon_ssim_weight * extra["recon_dssim"]
    if cfg.g2_schedule == "joint":
        vae = vae + tc_penalty(cfg, c_2, real.mu, real.sigma, extra)  # lever: tc_weight
    return add_g2_levers(model, vae, real, edited, recon, gen, extra), rec, kl_c  # ours: style_kl, edit, recon_adv


def held(real: RealCodes) -> RealCodes:
    """E(x)'s codes with no path back to E: what G2 draws from under the authors' schedule."""
    style = None if real.style is None else tuple(t.detach() for t in real.style)
    return real._replace(mu=real.mu.detach(), sigma=real.sigma.detach(), logits=real.logits.detach(), style=style)


def draw_reconstruction(model, real: RealCodes, gen: torch.Generator
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 32's drawing of the real images from E's codes: (G2's logits, s, c), the codes sampled
    as Eq. 32 samples them (Gumbel-softmax s, reparameterised c and style w)."""
    cfg = model.config
    s = codes.gumbel_softmax(real.logits, cfg.tau, gen)
    c = codes.reparameterize(real.mu, real.sigma, gen)
    w = None if real.style is None else codes.reparameterize(*real.style, gen)
    return model.generate2_logits(s, c, w), s, c


def draw_edits(model, n: int, style: tuple | None, gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ours (InfoVAEGANConfig.edit_weight): (G2(s, c, w), s, c) for random codes (s, c) drawn
    with the style codes w of the real images (sampled from ``style``, (mu, sigma), and
    detached): what an edit asks of G2."""
    w = None if style is None else codes.reparameterize(*style, gen).detach()
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
    if hasattr(model, "G_average"):
        inputs.append((model.G_average.fc[0], cfg.z_dim))
    if isinstance(model, InfoVAEGAN2):
        inputs.append((model.G2.fc[0], 0))
    for layer, offset in inputs:  # the one-hot s enters these layers at columns offset .. offset + K - 1
        layer.weight[:, offset + small] = layer.weight[:, offset + large]
    return large, small
