"""Each loss term: value on a hand-checked case, and which networks it trains."""

import math

import pytest
import torch
import torch.nn.functional as F

from infoedit import codes
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGAN2, InfoVAEGANConfig, augment_parts
from trainer import losses
from trainer.infovaegan import make_optimizers, train_step
from trainer.config import TrainConfig


def tiny(**kw) -> InfoVAEGAN:
    torch.manual_seed(0)
    return InfoVAEGAN(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=4, width=0.125, **kw))


def test_discriminator_loss_hand_checked():
    # D(real)=sigmoid(0)=0.5, D(fake)=sigmoid(0)=0.5: -log .5 - log .5 = 2 log 2
    zero = torch.zeros(4)
    assert losses.discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    # a confident, correct D has a small loss; a confident, wrong D a large one
    big = torch.full((4,), 10.0)
    assert losses.discriminator_loss(big, -big).item() < 1e-3
    assert losses.discriminator_loss(-big, big).item() > 19


def test_generator_loss_is_non_saturating():
    # -log D(G): large when D rejects the fake, ~0 when D accepts it
    assert losses.generator_adv_loss(torch.full((3,), -10.0)).item() == pytest.approx(10.0, abs=1e-3)
    assert losses.generator_adv_loss(torch.full((3,), 10.0)).item() < 1e-3


def test_mi_loss_hand_checked():
    s = F.one_hot(torch.tensor([0, 2]), 3).float()
    logits = torch.zeros(2, 3)  # uniform q(s|x): cross-entropy log 3
    c = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    mu, sigma = c.clone(), torch.full_like(c, 1e-6)
    loss_s, loss_c = losses.mutual_information_loss(logits, s, mu, sigma, c, "mse")
    assert loss_s.item() == pytest.approx(math.log(3), rel=1e-5)
    assert loss_c.item() == pytest.approx(0.0, abs=1e-8)  # exact, confident posterior
    # NLL with sigma=1, mu off by 1 in each of 2 dims: 2 * 0.5 = 1
    loss_s, loss_c = losses.mutual_information_loss(logits, s, c + 1, torch.ones_like(c), c, "nll")
    assert loss_c.item() == pytest.approx(1.0)


def test_vae_loss_hand_checked():
    x_g, x_re = torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)  # logits 0: 0.5, 4 px * 0.25 = 1 per image
    p = codes.prior_std("normal")
    mu, sigma = torch.zeros(2, 3), torch.full((2, 3), p)  # posterior = prior: KL 0
    logits = torch.zeros(2, 4)  # uniform q(s|x): KL 0
    total, rec, kl_c = losses.vae_loss(x_g, x_re, mu, sigma, logits, "normal", 1e-3)
    assert rec.item() == pytest.approx(1.0)
    assert kl_c.item() == pytest.approx(0.0, abs=1e-6)
    assert total.item() == pytest.approx(1.0, abs=1e-6)
    # a one-hot q(s|x) costs log K, weighted by w_s
    total, _, _ = losses.vae_loss(x_g, x_re, mu, sigma, torch.tensor([[50.0, 0, 0, 0]] * 2), "normal", 0.5)
    assert total.item() == pytest.approx(1.0 + 0.5 * math.log(4), rel=1e-4)
    # beta (kl_c_weight) scales only the continuous KL: mu = 1 in 3 dims at sigma = p is 1.5 / p^2 nats
    total, rec, kl_c = losses.vae_loss(x_g, x_re, mu + 1, sigma, logits, "normal", 1e-3, kl_c_weight=4.0)
    assert kl_c.item() == pytest.approx(1.5 / p ** 2, rel=1e-5)
    assert total.item() == pytest.approx(rec.item() + 4.0 * kl_c.item(), rel=1e-5)
    # Bernoulli: cross-entropy of p = 0.5 is log 2 per pixel, whatever the target
    _, rec, _ = losses.vae_loss(x_g + 1, x_re, mu, sigma, logits, "normal", 1e-3, likelihood="bernoulli")
    assert rec.item() == pytest.approx(4 * math.log(2), rel=1e-6)
    sure = torch.full_like(x_re, 30.0)  # p ~ 1 on a target of 1: no loss, where the squared error is finite too
    _, rec, _ = losses.vae_loss(x_g + 1, sure, mu, sigma, logits, "normal", 1e-3, likelihood="bernoulli")
    assert rec.item() == pytest.approx(0.0, abs=1e-9)


def test_total_correlation_is_near_zero_for_independent_dims_and_large_for_tied_ones():
    g = torch.Generator().manual_seed(0)
    sigma = torch.full((512, 3), 0.1)
    independent = torch.rand(512, 3, generator=g) * 2 - 1
    tied = independent[:, :1].repeat(1, 3)  # three copies of one factor
    tc = {}
    for name, mu in (("independent", independent), ("tied", tied)):
        c = codes.reparameterize(mu, sigma, g)
        tc[name] = losses.total_correlation(c, mu, sigma).item()
    assert abs(tc["independent"]) < 0.3
    # three copies of one uniform factor at noise 0.1: about 2 * log(2 / (0.1 * sqrt(2 pi e))) = 3.2 nats
    assert 2.0 < tc["tied"] < 4.0
    assert losses.total_correlation(c[:, :1], mu[:, :1], sigma[:, :1]).item() == 0.0  # one dim: nothing to tie


def test_tc_lever_trains_e_and_unties_its_code_on_a_fixed_batch():
    from infoedit.models.infovaegan import InfoVAEGAN2

    def model(tc_weight):
        torch.manual_seed(0)
        return InfoVAEGAN2(InfoVAEGANConfig(n_classes=3, c_dim=3, z_dim=4, width=0.125, model="infovaegan2",
                                            tc_weight=tc_weight, g2_schedule="joint"))

    x = torch.rand(64, 1, 28, 28)
    frozen = TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=0.0)
    off, on = model(0.0), model(5.0)
    assert "tc" not in train_step(off, make_optimizers(off, frozen), x, torch.Generator().manual_seed(1))
    assert "tc" in train_step(on, make_optimizers(on, frozen), x, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(_grads(off.G2), _grads(on.G2)))  # G2 gets no TC gradient
    assert any(not torch.allclose(a, b) for a, b in zip(_grads(off.E), _grads(on.E)))
    # minimising it (alone: every other weight 0) on a fixed batch lowers the code's total correlation
    net = InfoVAEGAN2(InfoVAEGANConfig(n_classes=3, c_dim=3, z_dim=4, width=0.125, model="infovaegan2",
                                       tc_weight=50.0, kl_c_weight=0.0, mi_weight_s=0.0, mi_weight_c=0.0,
                                       g2_schedule="joint"))
    opt = make_optimizers(net, TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=3e-3))
    x = torch.rand(8, 1, 1, 1) * torch.ones(8, 1, 28, 28)  # one factor: brightness
    seen = [train_step(net, opt, x.repeat(8, 1, 1, 1), torch.Generator().manual_seed(i))["tc"] for i in range(40)]
    early, late = sum(seen[:5]) / 5, sum(seen[-5:]) / 5
    assert early > 0.05 and late < 0.3 * early


@pytest.mark.parametrize("model_name, schedule", [("infovaegan", "authors"), ("infovaegan2", "joint"),
                                                   ("infovaegan2", "authors")])
def test_bernoulli_likelihood_trains_the_reconstruction_on_a_fixed_batch(model_name, schedule):
    from infoedit.models import build

    cfg = InfoVAEGANConfig(n_classes=3, c_dim=3, z_dim=4, width=0.125, model=model_name, likelihood="bernoulli",
                           mi_weight_s=0.0, mi_weight_c=0.0, g2_schedule=schedule)
    torch.manual_seed(0)
    net = build(cfg)
    x = (torch.rand(16, 1, 28, 28) > 0.7).float()  # binary images, as dSprites
    opt = make_optimizers(net, TrainConfig(lr_d=0.0, lr_g=3e-3 if model_name == "infovaegan2" else 0.0, lr_e=3e-3))
    key = "rec_g2" if (model_name, schedule) == ("infovaegan2", "authors") else "rec"  # Eq. 32's reconstruction
    seen = [train_step(net, opt, x, torch.Generator().manual_seed(i))[key] for i in range(30)]
    if schedule == "authors" and model_name == "infovaegan2":  # G2 alone learns, from codes E keeps to itself
        assert seen[0] == pytest.approx(784 * math.log(2), rel=0.2) and sum(seen[-5:]) / 5 < 0.9 * seen[0]
    elif model_name == "infovaegan2":  # cross-entropy of the real images: ln 2 per pixel at p = 0.5, then down
        assert seen[0] == pytest.approx(784 * math.log(2), rel=0.2) and sum(seen[-5:]) / 5 < 0.8 * seen[0]
    else:  # Eq. 31's target is G's own sample; G is frozen, so E alone lowers it
        assert sum(seen[-5:]) / 5 < sum(seen[:5]) / 5
    with pytest.raises(ValueError, match="likelihood"):
        InfoVAEGANConfig(likelihood="poisson").validate()


def test_kl_matches_prior():
    # KL(N(mu, s^2) || N(0, 1)) closed form for mu=1, s=1: 0.5
    assert codes.kl_gaussian(torch.ones(1, 1), torch.ones(1, 1), "normal").item() == pytest.approx(0.5)
    # uniform prior: zero at the moment-matched N(0, 1/3), positive elsewhere
    sd = 1 / math.sqrt(3)
    assert codes.kl_gaussian(torch.zeros(1, 2), torch.full((1, 2), sd), "uniform").item() == pytest.approx(0, abs=1e-6)
    assert codes.kl_gaussian(torch.zeros(1, 2), torch.ones(1, 2), "uniform").item() > 0.1


def test_gumbel_softmax_limits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 5, generator=g)
    y = codes.gumbel_softmax(logits, 1e-3, g)
    assert torch.allclose(y.sum(1), torch.ones(500))
    assert (y.max(1).values > 0.999).float().mean() > 0.99  # tau -> 0: one-hot
    # samples follow softmax(logits): with a dominant logit, it wins ~ its probability
    probs = torch.tensor([[math.log(0.7), math.log(0.2), math.log(0.1)]]).repeat(20000, 1)
    freq = codes.gumbel_softmax(probs, 1e-3, g).argmax(1).bincount(minlength=3).float() / 20000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.02)
    # large tau: close to uniform
    assert codes.gumbel_softmax(logits, 1e3, g).max().item() < 0.25


def _grads(module):
    return [None if p.grad is None else p.grad.clone() for p in module.parameters()]


def test_step_routes_gradients():
    """One Adam per network (ours): E takes no adversarial gradient; the VAE loss trains only E;
    MI trains G and E."""
    x = torch.rand(8, 1, 28, 28)
    tc = TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=0.0)  # lr 0: .grad is kept, weights do not move

    # 1. With the MI weights at 0, G's gradient is exactly the adversarial gradient alone:
    #    the VAE loss contributes nothing to G.
    model = tiny(mi_weight_s=0.0, mi_weight_c=0.0, optimisers="per-network")
    train_step(model, make_optimizers(model, tc), x, torch.Generator().manual_seed(1))
    g_step = _grads(model.G)
    gen = torch.Generator().manual_seed(1)
    z, s, c = model.sample_prior(8, gen)
    adv = losses.generator_adv_loss(model.discriminate(model.generate(z, s, c), s, c))
    g_adv = torch.autograd.grad(adv, list(model.G.parameters()))
    for a, b in zip(g_step, g_adv):
        assert torch.allclose(a, b, atol=1e-6)

    # 2. The adversarial loss has no path to E's parameters.
    e_path = torch.autograd.grad(adv, list(model.E.parameters()), allow_unused=True)
    assert all(g is None for g in e_path)

    # 3. E's gradient is non-zero: the VAE loss trains E (equal to it: test_e_gradient_is_the_vae_gradient_alone)
    e_step = _grads(model.E)
    assert any(g is not None and g.abs().sum() > 0 for g in e_step)

    # 4. With MI on, G's gradient changes (MI reaches G) ...
    model2 = tiny(optimisers="per-network")
    train_step(model2, make_optimizers(model2, tc), x, torch.Generator().manual_seed(1))
    assert any(not torch.allclose(a, b) for a, b in zip(_grads(model2.G), g_step))


@pytest.mark.parametrize("model_name", ["infovaegan", "infovaegan2"])
def test_per_loss_optimisers_each_step_their_own_loss_once(model_name):
    """The authors' optimisation (optimisers "per-loss", the default): after D's, one Adam per
    loss, in turn, each over the networks its loss trains (adversarial: G; MI: G and E; VAE: E,
    and G2 for Eq. 32), each stepping its own loss's gradient alone."""
    cls = InfoVAEGAN2 if model_name == "infovaegan2" else InfoVAEGAN
    torch.manual_seed(0)
    model = cls(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=4, width=0.125, model=model_name,
                                 mi_weight_s=0.0, mi_weight_c=0.0))  # MI off: its step must be all zeros
    opt = make_optimizers(model, TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=0.0))  # weights stay put
    nets = {"adv": [model.G], "mi": [model.G, model.E],
            "vae": [model.E] + ([model.G2] if model_name == "infovaegan2" else [])}
    assert set(opt) == {"D", *nets}
    params = {name: [p for g in opt[name].param_groups for p in g["params"]] for name in nets}
    for name, wanted in nets.items():
        assert params[name] == [p for net in wanted for p in net.parameters()]
    stepped = {}
    for name in nets:  # the gradient each optimiser steps on, as it steps
        def record(real=opt[name].step, name=name):
            stepped[name] = [p.grad.clone() if p.grad is not None else None for p in params[name]]
            return real()
        opt[name].step = record
    x = torch.rand(8, 1, 28, 28)
    train_step(model, opt, x, torch.Generator().manual_seed(1))
    assert list(stepped) == ["adv", "mi", "vae"]
    z, s, c = model.sample_prior(8, torch.Generator().manual_seed(1))  # the step's first draw
    adv = losses.generator_adv_loss(model.discriminate(model.generate(z, s, c), s, c))
    for got, want in zip(stepped["adv"], torch.autograd.grad(adv, params["adv"])):
        assert torch.allclose(got, want, atol=1e-6)  # Eq. 29's gradient alone
    assert all(g is None or not g.any() for g in stepped["mi"])  # nothing but MI reaches its step
    assert any(g is not None and g.abs().sum() > 0 for g in stepped["vae"])


def test_step_updates_every_network():
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_step(model, make_optimizers(model, TrainConfig()), torch.rand(8, 1, 28, 28), torch.Generator())
    for net in ("G.", "E.", "D."):
        assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith(net))


def test_infovaegan2_trains_g2_and_e_on_real_images():
    """Eq. 32: the real-image reconstruction through G2 trains G2 and E; G2 is a model part."""
    from infoedit.models.infovaegan import InfoVAEGAN2

    torch.manual_seed(0)
    model = InfoVAEGAN2(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=4, width=0.125, model="infovaegan2",
                                         mi_weight_s=0.0, mi_weight_c=0.0))
    tc = TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=0.0)
    values = train_step(model, make_optimizers(model, tc), torch.rand(8, 1, 28, 28), torch.Generator())
    assert values["rec"] > 0
    assert all(p.grad is not None for p in model.G2.parameters())
    # with MI off, E learns only from the real-image VAE loss, and it does learn
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.E.parameters())
    s = F.one_hot(torch.tensor([0, 2]), 3).float()
    assert model.generate2(s, torch.zeros(2, 2)).shape == (2, 1, 28, 28)


def test_gumbel_samplers_share_one_noise_draw():
    # the relaxed and the exact sample add the same Gumbel noise: same seed, same winner
    logits = torch.randn(200, 4, generator=torch.Generator().manual_seed(1))
    soft = codes.gumbel_softmax(logits, 0.5, torch.Generator().manual_seed(2))
    hard = codes.sample_onehot(logits, torch.Generator().manual_seed(2))
    assert torch.equal(hard, F.one_hot(soft.argmax(1), 4).float())
    g = codes.gumbel_noise(torch.zeros(20000, 1), torch.Generator().manual_seed(3))
    assert g.mean().item() == pytest.approx(0.5772, abs=0.03)  # Gumbel(0, 1): mean is Euler's gamma


def test_shared_likelihoods_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    c, mu = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    sigma = torch.rand(6, 3, generator=g) + 0.2
    log_p = torch.distributions.Normal(mu, sigma).log_prob(c).sum(1).mean()
    assert losses.gaussian_nll(c, mu, sigma).item() == pytest.approx(-log_p.item() - 1.5 * math.log(2 * math.pi),
                                                                     rel=1e-5)
    x_logits, x = torch.randn(6, 1, 3, 3, generator=g), torch.rand(6, 1, 3, 3, generator=g).round()
    log_p = torch.distributions.Bernoulli(logits=x_logits).log_prob(x).flatten(1).sum(1).mean()
    assert losses.bernoulli_nll(x_logits, x).item() == pytest.approx(-log_p.item(), rel=1e-5)


def test_onehot_sample_is_exact_and_follows_q():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[math.log(0.6), math.log(0.3), math.log(0.1)]]).repeat(20000, 1)
    y = codes.sample_onehot(logits, g)
    assert set(y.unique().tolist()) == {0.0, 1.0} and torch.equal(y.sum(1), torch.ones(20000))
    assert torch.allclose(y.mean(0), torch.tensor([0.6, 0.3, 0.1]), atol=0.02)


def test_paired_information_hand_checked():
    k = 4
    confident = torch.eye(k).repeat(8, 1) * 30  # 32 images, each class 8 times, certain
    # the same certain, balanced code for both views: I = H(s) = log K
    assert losses.paired_information_loss(confident, confident).item() == pytest.approx(-math.log(k), abs=1e-4)
    # balance 2 counts each view's entropy twice: I = (2 * 2 - 1) log K for the certain, even code
    assert losses.paired_information_loss(confident, confident, balance=2.0).item() == \
        pytest.approx(-3 * math.log(k), abs=1e-4)
    # uninformative codes carry no information
    assert losses.paired_information_loss(torch.zeros(32, k), torch.zeros(32, k)).item() == pytest.approx(0, abs=1e-6)
    # one cluster for everything: certain but unused codes also carry none
    one = torch.zeros(32, k)
    one[:, 0] = 30
    assert losses.paired_information_loss(one, one).item() == pytest.approx(0, abs=1e-4)
    # views that disagree lose information
    shuffled = confident[torch.randperm(32, generator=torch.Generator().manual_seed(0))]
    assert losses.paired_information_loss(confident, shuffled) > losses.paired_information_loss(confident, confident)


def test_random_affine_keeps_shape_and_identity_is_exact():
    from trainer.augment import random_affine

    x = torch.rand(5, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(random_affine(x, g, degrees=0, scale=(1, 1), translate=0), x, atol=1e-5)
    warped = random_affine(x, g)
    assert warped.shape == x.shape and not torch.allclose(warped, x)
    dot = torch.zeros(1, 1, 28, 28)
    dot[0, 0, 10, 3] = 1
    mirrored = {tuple((random_affine(dot, g, degrees=0, scale=(1, 1), translate=0, flip=True)[0, 0] > 0.5)
                      .nonzero()[0].tolist()) for _ in range(20)}
    assert mirrored == {(10, 3), (10, 24)}  # left-right only, both ways seen
    again = random_affine(x, torch.Generator().manual_seed(0))
    assert torch.equal(again, random_affine(x, torch.Generator().manual_seed(0)))  # seeded


def test_real_mi_lever_trains_only_e_and_raises_the_information():
    x = torch.rand(64, 1, 28, 28)
    tc = TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=0.0)
    off, on = tiny(), tiny(real_mi_weight=1.0)
    train_step(off, make_optimizers(off, tc), x, torch.Generator().manual_seed(1))
    values = train_step(on, make_optimizers(on, tc), x, torch.Generator().manual_seed(1))
    assert "mi_real" in values and -math.log(3) <= values["mi_real"] <= 0
    # the same draws: G takes the same gradient, E a different one
    assert all(torch.equal(a, b) for a, b in zip(_grads(off.G), _grads(on.G)))
    assert any(not torch.allclose(a, b) for a, b in zip(_grads(off.E), _grads(on.E)))
    # and minimising it on a fixed batch raises the information E's codes carry
    # (three kinds of image: a bright top, middle or bottom band)
    bands = torch.zeros(3, 1, 28, 28)
    for i in range(3):
        bands[i, :, 9 * i:9 * i + 9] = 1
    x = bands.repeat(22, 1, 1, 1) * (0.7 + 0.3 * torch.rand(66, 1, 1, 1))
    model = tiny(real_mi_weight=1.0, mi_weight_s=0.0, mi_weight_c=0.0)
    opt = make_optimizers(model, TrainConfig(lr_e=1e-2))
    seen = [train_step(model, opt, x, torch.Generator().manual_seed(i))["mi_real"] for i in range(30)]
    assert sum(seen[-5:]) / 5 < sum(seen[:5]) / 5 - 0.3


def test_real_mi_pairs_two_views_when_they_are_centred(monkeypatch):
    from trainer import augment, infovaegan

    seen = []  # the batches E is paired on: each views() call's input
    real_views = augment.views
    monkeypatch.setattr(infovaegan.augment, "views", lambda x, *a: seen.append(x) or real_views(x, *a))
    x = torch.rand(16, 1, 28, 28)
    tc = TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=0.0)
    for parts, calls in (("affine", 1), ("affine+centre", 2), ("affine+centre+spin", 2)):
        seen.clear()
        model = tiny(real_mi_weight=1.0, augment=parts)
        values = train_step(model, make_optimizers(model, tc), x, torch.Generator().manual_seed(1))
        assert len(seen) == calls and all(v is x for v in seen)  # centred: both sides of the pair are views
        assert -math.log(3) <= values["mi_real"] <= 0


def test_overcluster_head_trains_e_only_and_stays_out_of_the_model_folder(tmp_path):
    from infoedit import hub

    with pytest.raises(ValueError, match="overcluster"):
        InfoVAEGANConfig(n_classes=3, overcluster=3, real_mi_weight=1.0).validate()  # not finer than s
    with pytest.raises(ValueError, match="real_mi_weight"):
        InfoVAEGANConfig(n_classes=3, overcluster=9).validate()  # nothing would train it
    x = torch.rand(64, 1, 28, 28)
    tc = TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=0.0)
    plain, aux = (tiny(real_mi_weight=1.0, optimisers="per-network"),
                  tiny(real_mi_weight=1.0, overcluster=9, optimisers="per-network"))
    train_step(plain, make_optimizers(plain, tc), x, torch.Generator().manual_seed(1))
    values = train_step(aux, make_optimizers(aux, tc), x, torch.Generator().manual_seed(1))
    assert -math.log(9) <= values["mi_real_aux"] <= 0
    assert aux.E.aux.weight.grad is not None and aux.E.aux.weight.grad.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(_grads(plain.G), _grads(aux.G)))  # G: untouched
    hub.save_pretrained(aux, tmp_path / "m")
    loaded = hub.from_pretrained(str(tmp_path / "m"))
    assert loaded.config.overcluster == 9 and torch.equal(loaded.E.logits.weight, aux.E.logits.weight)
    from safetensors import safe_open

    with safe_open(tmp_path / "m" / hub.WEIGHTS_NAME, "pt") as f:
        assert "E.logits.weight" in f.keys() and not any(k.startswith("E.aux.") for k in f.keys())


def test_augment_parts_shear_and_stroke():
    from trainer.augment import random_affine, random_stroke, views

    assert augment_parts("affine+shear+stroke") == {"affine", "shear", "stroke"}
    for bad in ("shear", "affine+blur", "affine+flip+flip", ""):
        with pytest.raises(ValueError, match="augment"):
            InfoVAEGANConfig(augment=bad).validate()
    # a vertical bar leans under shear alone: its top and bottom rows move opposite ways
    bar = torch.zeros(1, 1, 28, 28)
    bar[0, 0, 4:24, 13:15] = 1
    g = torch.Generator().manual_seed(0)
    leaned = [random_affine(bar, g, degrees=0, scale=(1, 1), translate=0, shear=0.3) for _ in range(8)]
    shifts = [(r[0, 0, 5].argmax() - r[0, 0, 22].argmax()).item() for r in leaned]
    assert max(abs(s) for s in shifts) >= 3
    # stroke: thicker or thinner, never moved (a blend of the image, its dilation and erosion)
    thick = random_stroke(bar.repeat(64, 1, 1, 1), torch.Generator().manual_seed(0))
    mass = thick.sum(dim=(1, 2, 3))
    assert mass.max() > bar.sum() * 1.5 and mass.min() < bar.sum()
    assert torch.all(thick[:, :, :2] == 0)  # nothing appears far from the stroke
    x = torch.rand(5, 1, 28, 28)
    a = views(x, "affine+shear+stroke", torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, views(x, "affine+shear+stroke", torch.Generator().manual_seed(3)))


def test_augment_contrast_changes_shade_not_shape():
    from trainer.augment import random_contrast, views

    assert augment_parts("affine+flip+contrast") == {"affine", "flip", "contrast"}
    x = torch.zeros(200, 1, 28, 28)
    x[:, :, 8:20, 10:18] = torch.linspace(0.1, 1.0, 8)  # a shaded block on black
    y = random_contrast(x, torch.Generator().manual_seed(0))
    assert torch.equal(y == 0, x == 0)  # black stays black, every stroke pixel stays lit
    assert torch.all(y <= 1) and torch.all(y[:, :, 8:20, 17] >= 0.7 - 1e-6)  # the brightest: only the gain
    mid = y[:, 0, 10, 14]  # x = 0.614 there
    assert mid.min() < 0.614 * 0.7 and mid.max() > 0.7  # darker and lighter mid-tones, image by image
    for i in range(len(y)):  # per image, a monotone map: the shading's order is kept
        assert torch.all(y[i, 0, 10, 11:18] >= y[i, 0, 10, 10:17])
    v = views(x, "affine+contrast", torch.Generator().manual_seed(1))
    assert v.shape == x.shape and torch.equal(v, views(x, "affine+contrast", torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="contrast"):
        augment_parts("affine+contrast+contrast")


def test_augment_centre_and_spin_remove_position_size_and_orientation():
    from trainer.augment import CENTRED_RADIUS, mass_frame, random_affine, views

    assert augment_parts("affine+centre+spin") == {"affine", "centre", "spin"}
    # a 4x4 block at rows/cols 4-7 of 32: centre of mass at pixel 6, i.e. (2 * 6) / 32 - 1 = -0.625
    small, large = torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)
    small[0, 0, 4:8, 4:8] = 1
    large[0, 0, 12:28, 10:26] = 1
    middle, radius = mass_frame(torch.cat([small, large, torch.zeros(1, 1, 32, 32)]))
    assert torch.allclose(middle[0], torch.tensor([-0.625, -0.625])) and torch.equal(middle[2], torch.zeros(2))
    # an n x n block of pixel centres has a variance of (n^2 - 1) / 12 per axis
    assert radius[1] / radius[0] == pytest.approx(math.sqrt(255 / 15), rel=1e-4)
    assert radius[2] == pytest.approx(CENTRED_RADIUS)
    # centred without other warps: both blocks land in the middle at the same size, whatever their place and size
    fixed = random_affine(torch.cat([small, large]), None, degrees=0, scale=(1, 1), translate=0, centre=True)
    middle, radius = mass_frame(fixed)
    # (bilinear resampling blurs the 2.5x enlarged small block a little: a slightly larger radius)
    assert middle.abs().max() < 0.02 and torch.allclose(radius, torch.full((2,), CENTRED_RADIUS), rtol=0.1)
    # spin: a horizontal bar ends up at every angle, not only within +-15 degrees
    bar = torch.zeros(64, 1, 32, 32)
    bar[:, :, 15:17, 6:26] = 1
    spun = views(bar, "affine+spin", torch.Generator().manual_seed(0))
    upright = (spun[:, 0, :, 14:18].sum((1, 2)) > 2 * spun[:, 0, 14:18, :].sum((1, 2))).sum()
    assert upright >= 5  # about a quarter of the angles turn it nearer vertical than horizontal


def test_reseed_splits_an_overfull_category_only():
    from infoedit.models.infovaegan import InfoVAEGAN2
    from trainer.infovaegan import reseed_categories

    torch.manual_seed(0)
    model = InfoVAEGAN2(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=4, width=0.125, reseed=True))
    # each image names the category E gives it in its first pixel (E's real weights are edited below)
    model.encode = lambda x: (x.new_zeros(len(x), 2), x.new_ones(len(x), 2),
                              F.one_hot((x[:, 0, 0, 0] * 10).round().long(), 3).float() * 10)

    def data(per_category: list[int]):
        images = torch.zeros(sum(per_category), 1, 28, 28)
        images[:, 0, 0, 0] = torch.cat([torch.full((n,), k / 10) for k, n in enumerate(per_category)])
        return type("DS", (), {"batch": staticmethod(lambda idx: images[idx]), "__len__": lambda self: len(images)})()

    assert reseed_categories(model, data([30, 30, 30]), seed=0, epoch=1) is None
    assert reseed_categories(model, data([30, 30, 30]), seed=0, epoch=1, n=30) is None  # sorted data: a spread sample
    assert reseed_categories(model, data([45, 30, 15]), seed=0, epoch=1) is None  # 1/2 and 1/6: at the limits
    g_before, e_before = model.G.fc[0].weight.detach().clone(), model.E.logits.weight.detach().clone()
    assert reseed_categories(model, data([60, 27, 3]), seed=0, epoch=1) == (0, 2)
    e = model.E.logits
    assert torch.equal(e.bias[2], e.bias[0]) and torch.equal(e.weight[1], e_before[1])
    assert 0 < (e.weight[2] - e.weight[0]).abs().max() < e.weight[0].std()  # a close, not equal, copy
    z = model.config.z_dim
    assert torch.equal(model.G.fc[0].weight[:, z + 2], g_before[:, z + 0])  # G draws category 2 as 0
    assert torch.equal(model.G.fc[0].weight[:, z + 1], g_before[:, z + 1])
    assert torch.equal(model.G2.fc[0].weight[:, 2], model.G2.fc[0].weight[:, 0])
    feat = model.D.trunk_features
    assert torch.equal(model.D.head[0].weight[:, feat + 2], model.D.head[0].weight[:, feat + 0])
    assert model.training  # left in training mode


def test_views_of_light_background_images_keep_their_paper_white():
    from trainer.augment import views

    ink = torch.ones(32, 1, 28, 28)
    ink[:, :, 10:18, 12:16] = 0.0  # a dark bar on white paper
    parts = "affine+stroke+contrast+centre"
    light = views(ink, parts, torch.Generator().manual_seed(0), background="light")
    assert torch.all(light[:, :, 0, :] > 0.99) and torch.all(light[:, :, :, 0] > 0.99)  # borders: paper
    assert torch.all(light.amin(dim=(1, 2, 3)) < 0.5)  # the bar is still there, still dark
    dark = views(ink, parts, torch.Generator().manual_seed(0))  # read as a dark background: black fill
    assert dark[:, :, 0, :].min() < 0.5


def _capture(monkeypatch, module, name: str, seen: dict, after=None):
    """Wrap module.name to record its arguments and result in ``seen[name]`` (``after`` runs on
    (args, result) at once, while the graph and weights are as they were then)."""
    real = getattr(module, name)

    def wrapper(*args, **kw):
        result = real(*args, **kw)
        seen[name] = (args, result, after(args, result) if after else None)
        return result
    monkeypatch.setattr(module, name, wrapper)


def test_d_step_moves_only_d_and_its_real_pair_carries_e_of_x(monkeypatch):
    """Eq. 28: D's step trains D alone, on the real pair (x, E(x)'s sampled codes)."""
    from trainer import infovaegan

    model = tiny()
    opt = make_optimizers(model, TrainConfig())
    x = torch.rand(8, 1, 28, 28)
    state = lambda: {k: v.clone() for k, v in model.state_dict().items()}  # noqa: E731
    seen = {}
    _capture(monkeypatch, infovaegan, "encode_real", seen)
    real_step = infovaegan.discriminator_step

    def d_step(*args):
        seen["before"] = state()
        result = real_step(*args)
        seen["after"], seen["args"] = state(), args
        seen["grads"] = [p.grad for net in (model.G, model.E) for p in net.parameters()]
        return result
    monkeypatch.setattr(infovaegan, "discriminator_step", d_step)
    train_step(model, opt, x, torch.Generator().manual_seed(1))
    (_, _, _, (real_image, real_s, real_c), _, _, stepped) = seen["args"]
    before, after_d = seen["before"], seen["after"]
    assert stepped  # d_every 1: every iteration
    real = seen["encode_real"][1]
    assert real_image is x and real_s is real.s and real_c is real.c
    assert not real.s.requires_grad and not real.c.requires_grad  # E takes no adversarial gradient
    assert torch.equal(real.s.sum(1), torch.ones(8)) and set(real.s.unique().tolist()) <= {0.0, 1.0}
    assert ((real.c - real.mu).abs() < 6 * real.sigma).all()  # a draw of q(c|x)
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after_d[k])}
    assert moved == {"D"}
    assert all(g is None for g in seen["grads"])  # its loss reached neither G nor E


@pytest.mark.parametrize("optimisers", ["per-loss", "per-network"])
def test_e_gradient_is_the_vae_gradient_alone(monkeypatch, optimisers):
    """With the MI weights at 0, E's gradient after a step is exactly Eq. 31's gradient on E."""
    from trainer import infovaegan

    model = tiny(mi_weight_s=0.0, mi_weight_c=0.0, optimisers=optimisers)
    opt = make_optimizers(model, TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=0.0))
    seen = {}
    _capture(monkeypatch, infovaegan.losses, "vae_loss", seen, after=lambda args, result: torch.autograd.grad(
        result[0], list(model.E.parameters()), retain_graph=True, allow_unused=True))
    train_step(model, opt, torch.rand(8, 1, 28, 28), torch.Generator().manual_seed(1))
    want = seen["vae_loss"][2]
    got = [p.grad for p in model.E.parameters()]
    assert any(w is not None and w.abs().sum() > 0 for w in want)
    for g, w in zip(got, want):
        assert (g is None and w is None) or torch.allclose(g, w, atol=1e-6)


@pytest.mark.parametrize("schedule", ["joint", "authors"])
def test_eq32_by_hand(monkeypatch, schedule):
    """InfoVAEGAN2's VAE loss (Eq. 32) computed by hand: G2 redraws the real x from codes drawn
    from E(x); the squared error summed over pixels, KL(q(c|x) || N(0, I)) and the weighted
    KL(q(s|x) || Cat(1/K)), averaged over the batch. (The authors' schedule reports it as rec_g2
    beside Eq. 31's rec.)"""
    from trainer import infovaegan

    torch.manual_seed(0)
    model = InfoVAEGAN2(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=4, width=0.125, model="infovaegan2",
                                         c_prior="normal", likelihood="gaussian", kl_s_weight=0.25,
                                         g2_schedule=schedule))
    opt = make_optimizers(model, TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=0.0))
    seen = {}
    _capture(monkeypatch, infovaegan, "encode_real", seen)
    _capture(monkeypatch, infovaegan, "draw_reconstruction", seen)
    x = torch.rand(8, 1, 28, 28)
    values = train_step(model, opt, x, torch.Generator().manual_seed(1))
    real = seen["encode_real"][1]
    x_logits, s_2, c_2 = seen["draw_reconstruction"][1]
    assert torch.equal(x_logits, model.generate2_logits(s_2, c_2))  # G2 of E(x)'s sampled codes
    mu, sigma, probs = real.mu.detach(), real.sigma.detach(), real.logits.detach().softmax(1)
    rec = sum(float(((x[i] - torch.sigmoid(x_logits[i].detach())) ** 2).sum()) for i in range(8)) / 8
    kl_c = sum(0.5 * float(sigma[i, d] ** 2 + mu[i, d] ** 2 - 1 - math.log(sigma[i, d] ** 2))
               for i in range(8) for d in range(2)) / 8
    kl_s = sum(float(probs[i, k] * math.log(probs[i, k] * 3)) for i in range(8) for k in range(3)) / 8
    if schedule == "authors":
        assert values["rec_g2"] == pytest.approx(rec, rel=1e-4)
        return
    assert values["rec"] == pytest.approx(rec, rel=1e-4)
    assert values["kl_c"] == pytest.approx(kl_c, rel=1e-4)
    assert values["vae"] == pytest.approx(rec + kl_c + 0.25 * kl_s, rel=1e-4)


@pytest.mark.parametrize("optimisers", ["per-loss", "per-network"])
def test_authors_schedule_eq31_trains_e_and_eq32_trains_g2_alone(monkeypatch, optimisers):
    """InfoVAEGAN2 as the authors' code runs it (g2_schedule "authors", --preset paper): E's
    gradient is Eq. 31's (on G's images), G2's is Eq. 32's (the real images), and Eq. 32 has no
    path to E (its codes are held fixed)."""
    from trainer import infovaegan

    torch.manual_seed(0)
    model = InfoVAEGAN2(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=4, width=0.125, model="infovaegan2",
                                         mi_weight_s=0.0, mi_weight_c=0.0, optimisers=optimisers))
    assert model.config.g2_schedule == "authors"  # the config's default, so --preset paper's
    opt = make_optimizers(model, TrainConfig(lr_d=0.0, lr_g=0.0, lr_e=0.0))
    calls = []

    def grads(args, result):
        return {net: torch.autograd.grad(result[0], list(getattr(model, net).parameters()), retain_graph=True,
                                         allow_unused=True) for net in ("E", "G2")}
    real_vae = infovaegan.losses.vae_loss

    def vae_loss(*args, **kw):
        result = real_vae(*args, **kw)
        calls.append(grads(args, result))
        return result
    monkeypatch.setattr(infovaegan.losses, "vae_loss", vae_loss)
    train_step(model, opt, torch.rand(8, 1, 28, 28), torch.Generator().manual_seed(1))
    eq31, eq32 = calls  # in this order
    assert all(g is None for g in eq31["G2"]) and all(g is None for g in eq32["E"])
    for net, want in (("E", eq31["E"]), ("G2", eq32["G2"])):
        got = [p.grad for p in getattr(model, net).parameters()]
        assert any(w is not None and w.abs().sum() > 0 for w in want)
        for g, w in zip(got, want):
            assert (g is None and w is None) or torch.allclose(g, w, atol=1e-6), net
    with pytest.raises(ValueError, match="style_dim needs g2_schedule 'joint'"):
        InfoVAEGANConfig(model="infovaegan2", style_dim=4).validate()


def test_d_every_steps_the_discriminator_on_one_iteration_in_k():
    """d_every 3 (the authors' InfoVAEGAN2 steps D one iteration in 16): D's weights move on
    iterations 2 and 5 of 0-5 only, G's on every one, and every iteration logs D's loss."""
    torch.manual_seed(0)
    model = InfoVAEGAN2(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=4, width=0.125, model="infovaegan2", d_every=3))
    opt, gen = make_optimizers(model, TrainConfig()), torch.Generator().manual_seed(0)
    moved = []
    for i in range(6):
        before = {net: [p.detach().clone() for p in getattr(model, net).parameters()] for net in ("D", "G")}
        values = train_step(model, opt, torch.rand(8, 1, 28, 28, generator=gen), gen, iteration=i)
        assert math.isfinite(values["d"])
        moved.append({net: any(not torch.equal(a, b) for a, b in zip(before[net], getattr(model, net).parameters()))
                      for net in before})
    assert [m["D"] for m in moved] == [False, False, True, False, False, True]
    assert all(m["G"] for m in moved)
    with pytest.raises(ValueError, match="d_every must be >= 1"):
        InfoVAEGANConfig(model="infovaegan2", d_every=0).validate()


def test_g_average_is_the_moving_average_of_g_and_the_folder_draws_with_it(tmp_path):
    """g_average: after each step G_average moves to G by 1 - min(decay, (1 + t) / (10 + t)); G
    trains exactly as without it; the model folder's G is the average, and it loads so."""
    from infoedit import hub

    def run(g_average: float):
        model = tiny(g_average=g_average)
        opt, gen = make_optimizers(model, TrainConfig()), torch.Generator().manual_seed(0)
        snapshots = []
        for _ in range(3):
            train_step(model, opt, torch.rand(8, 1, 28, 28, generator=gen), gen)
            snapshots.append([p.detach().clone() for p in model.G.parameters()])
        return model, snapshots

    plain, _ = run(0.0)
    model, snapshots = run(0.5)
    assert not hasattr(plain, "G_average")
    for a, b in zip(plain.G.parameters(), model.G.parameters()):
        assert torch.equal(a, b)  # the average does not touch G's training
    want = [p.detach().clone() for p in tiny().G.parameters()]  # G at initialisation
    for t, now in enumerate(snapshots):
        decay = min(0.5, (1 + t) / (10 + t))
        want = [decay * w + (1 - decay) * n for w, n in zip(want, now)]
    for w, got in zip(want, model.G_average.parameters()):
        assert torch.allclose(w, got, atol=1e-6)
    assert int(model.G_average.steps) == 3
    loaded = hub.from_pretrained(str(hub.save_pretrained(model, tmp_path / "m")))
    for got, avg in zip(loaded.G.parameters(), model.G_average.parameters()):
        assert torch.equal(got, avg)
    for got, buf in zip(loaded.G.buffers(), model.G.buffers()):  # BatchNorm's statistics: G's own
        assert torch.equal(got, buf)
    again = hub.from_pretrained(str(hub.save_pretrained(loaded, tmp_path / "again")))  # saved again as loaded
    assert all(torch.equal(a, b) for a, b in zip(again.G.parameters(), loaded.G.parameters()))
    with pytest.raises(ValueError, match="g_average"):
        InfoVAEGANConfig(g_average=1.0).validate()


@pytest.mark.parametrize("adam", ["foreach", "loop", "fused"])
@pytest.mark.parametrize("optimisers", ["per-network", "per-loss"])
def test_shared_trunk_learns_from_d_alone_under_every_adam(adam, optimisers, monkeypatch):
    """shared_trunk: E reads D's trunk, which D's step changes in place; E(x)'s graph (real-data
    MI, Eq. 32) must leave the trunk out, or a non-fused Adam fails the backward pass. The trunk
    moves in D's step alone."""
    from trainer import infovaegan

    for model in (tiny(shared_trunk=True, real_mi_weight=1.0, optimisers=optimisers),
                  InfoVAEGAN2(InfoVAEGANConfig(model="infovaegan2", n_classes=3, c_dim=2, z_dim=4, width=0.125,
                                               shared_trunk=True, g2_schedule="joint", optimisers=optimisers))):
        opt = make_optimizers(model, TrainConfig(adam=adam))
        trunk = lambda: [p.detach().clone() for p in model.D.trunk.parameters()]  # noqa: E731
        after_d = {}
        real_step = infovaegan.discriminator_step

        def d_step(*args):
            result = real_step(*args)
            after_d["trunk"] = trunk()
            return result

        monkeypatch.setattr(infovaegan, "discriminator_step", d_step)
        train_step(model, opt, torch.rand(8, 1, 28, 28), torch.Generator().manual_seed(0))
        monkeypatch.undo()
        assert all(torch.equal(a, b) for a, b in zip(after_d["trunk"], trunk()))


def test_critic_augment_warps_what_d_sees_and_nothing_while_off():
    """critic_augment (DiffAugment): the parts shift by whole pixels, cut a square of half the
    size out and move colour, differentiably; off, the images pass untouched and the run's
    random numbers are the same as without the field. In a training step D's inputs, real and
    drawn, are warped copies, and G still gets its gradient through the warp."""
    from trainer import augment

    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    assert augment.for_critic(x, [], gen) is x
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())  # no draw taken
    dot = torch.zeros(6, 1, 16, 16)
    dot[:, :, 8, 8] = 1
    moved = augment.for_critic(dot, ["translation"], gen)
    assert torch.equal(moved.sum((1, 2, 3)), torch.ones(6))  # the dot moves whole, by at most 2 px
    where = moved[:, 0].flatten(1).argmax(1)
    assert ((where // 16 - 8).abs() <= 2).all() and ((where % 16 - 8).abs() <= 2).all()
    holes = (augment.for_critic(torch.ones(200, 1, 16, 16), ["cutout"], gen) == 0).sum((1, 2, 3))
    assert holes.max() == 64 and holes.min() >= 16  # an 8x8 square, partly off the edge at worst
    warped = augment.for_critic(x, ["colour", "translation", "cutout"], gen)
    warped.sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="critic_augment"):
        InfoVAEGANConfig(critic_augment="translation+blur").validate()

    model = tiny(critic_augment="translation+cutout")
    seen = []
    d_forward = model.D.forward
    model.D.forward = lambda images, codes_: (seen.append(images.detach().clone()), d_forward(images, codes_))[1]
    real = torch.rand(8, 1, 28, 28)
    train_step(model, make_optimizers(model, TrainConfig()), real, torch.Generator().manual_seed(1))
    assert len(seen) == 3  # D's step on the drawn and the real batch, then G's adversarial term
    drawn, judged_real = seen[0], seen[1]
    assert (drawn == 0).float().mean() > 0.2  # G's sigmoid never gives 0: the cut-out squares
    assert not torch.equal(judged_real, real) and (judged_real == 0).float().mean() > 0.2
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.G.parameters() if p.dim() > 1)
