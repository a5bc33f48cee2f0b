"""The baselines (InfoGAN, ALI, beta-VAE, JointVAE): configs, steps, gradient routing, schedules,
model folders and the editing commands on them."""

from __future__ import annotations

import copy
import csv
import io
import json
import math

import pytest
import torch
from conftest import shapes_dataset
from PIL import Image
from typer.testing import CliRunner

from infoedit import hub
from infoedit.cli import app
from infoedit.images import save_png
from infoedit.models import FAMILIES, build
from trainer import baselines
from trainer.config import TrainConfig
from trainer.families import trainer_for

NAMES = ("infogan", "ali", "beta-vae", "jointvae")
runner = CliRunner()


def tiny(name: str, **kw):
    """A 28px model a few milliseconds per step: width 1/8, K = 3 where there is a K, c = 2."""
    cfg_cls = FAMILIES[name][0]
    fields = {f for f in cfg_cls.__dataclass_fields__}
    base = dict(width=0.125, c_dim=2, dataset="shapes", n_classes=3, z_dim=8)
    torch.manual_seed(0)
    return build(cfg_cls(**{k: v for k, v in {**base, **kw}.items() if k in fields}))


def batch(n: int = 32) -> torch.Tensor:
    return shapes_dataset(n).images.float() / 255


def steps(model, n: int, x: torch.Tensor, tc: TrainConfig | None = None, seed: int = 0) -> list[dict]:
    family = trainer_for(model.config.model)
    opt, gen = family.make_optimizers(model, tc or TrainConfig()), torch.Generator().manual_seed(seed)
    return [family.step(model, opt, x, gen) for _ in range(n)]


# -- configs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip_and_rejects_unknown_or_missing_fields(name):
    cfg = tiny(name).config
    assert FAMILIES[name][0].from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown config field.*bogus"):
        FAMILIES[name][0].from_dict({**cfg.to_dict(), "bogus": 1})
    data = cfg.to_dict()
    del data["width"]
    with pytest.raises(ValueError, match="missing config field.*width"):
        FAMILIES[name][0].from_dict(data)


@pytest.mark.parametrize("name, bad, message", [
    ("infogan", dict(mi_continuous="mse"), "mi_continuous"), ("infogan", dict(mi_weight_c=-1.0), "mi_weight_c"),
    ("ali", dict(tau=0.0), "tau"), ("beta-vae", dict(beta=float("nan")), "beta"),
    ("jointvae", dict(n_classes=1), "n_classes"), ("jointvae", dict(model="ali"), "model"),
])
def test_config_rejects_bad_values(name, bad, message):
    with pytest.raises(ValueError, match=message):
        FAMILIES[name][0](**bad).validate()


def test_vaes_have_no_noise_and_beta_vae_no_discrete_code():
    beta, joint = tiny("beta-vae"), tiny("jointvae")
    assert beta.config.z_dim == joint.config.z_dim == 0 and beta.config.n_classes == 1
    assert "z_dim" not in beta.config.to_dict() and "n_classes" not in beta.config.to_dict()
    z, s, c = beta.sample_prior(4)
    assert z.shape == (4, 0) and torch.equal(s, torch.ones(4, 1))
    # the decoder reads c alone: any s, any z, the same image
    assert torch.equal(beta.eval().generate(torch.rand(4, 5), torch.zeros(4, 1), c), beta.generate(z, s, c))


# -- steps -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_step_runs_and_returns_finite_losses(name):
    model = tiny(name)
    values = steps(model, 2, batch())[-1]
    assert values and all(isinstance(v, float) and math.isfinite(v) for v in values.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name, key", [("infogan", "mi_s"), ("ali", "d"), ("beta-vae", "loss"),
                                       ("jointvae", "loss")])
def test_main_loss_falls_on_a_fixed_batch(name, key):
    history = [v[key] for v in steps(tiny(name), 16, batch())]
    assert sum(history[-3:]) < sum(history[:3]), history


def grads(model) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


def nonzero(g) -> bool:
    return g is not None and bool(g.abs().sum() > 0)


def test_infogan_mi_loss_reaches_g_trunk_and_q_head_but_not_d_head():
    model = tiny("infogan", mi_continuous="nll")
    z, s, c = model.sample_prior(16, torch.Generator().manual_seed(0))
    mi_s, mi_c = baselines.info_loss(model, model.D.trunk(model.generate(z, s, c)), s, c)
    params = dict(model.named_parameters())
    found = dict(zip(params, torch.autograd.grad(mi_s + mi_c, list(params.values()), allow_unused=True)))
    for prefix in ("G.", "D.trunk.", "D.q."):  # weights: a bias just before a BatchNorm gets ~0
        names = [n for n in params if n.startswith(prefix) and n.endswith("weight")]
        assert names and all(nonzero(found[n]) for n in names), prefix
    assert all(found[n] is None for n in params if n.startswith("D.head."))


def test_infogan_step_routes_the_mi_term_as_decided():
    """Same model and draws, lambda = 0 vs 1, learning rates 0 (so the G step meets the same D):
    L_I changes the gradients of G, the trunk and Q's head, and leaves D's head's alone."""
    model = tiny("infogan")
    frozen = TrainConfig(lr_d=0.0, lr_g=0.0)
    off, on = copy.deepcopy(model), copy.deepcopy(model)
    off.config.mi_weight_s = off.config.mi_weight_c = 0.0  # deepcopy gave each its own config
    steps(off, 1, batch(), frozen)
    steps(on, 1, batch(), frozen)
    g_off, g_on = grads(off), grads(on)
    for name in g_on:
        if name.startswith("D.head."):
            assert torch.equal(g_off[name], g_on[name]), name
        elif name.startswith("D.q."):
            assert not nonzero(g_off[name]) and nonzero(g_on[name]), name
    for prefix in ("G.fc.0.weight", "D.trunk.1.weight"):
        assert not torch.allclose(g_off[prefix], g_on[prefix]), prefix
    opt = baselines.infogan_optimizers(model, TrainConfig())
    assert {id(p) for p in opt["D"].param_groups[0]["params"]} == {id(p) for p in model.D.parameters()}
    assert {id(p) for p in opt["G"].param_groups[0]["params"]} == {id(p) for p in model.G.parameters()}


def test_ali_encoder_takes_the_adversarial_gradient():
    model = tiny("ali")
    steps(model, 1, batch())
    for name, p in model.E.named_parameters():
        if not name.endswith(".bias") or name.startswith(("logits", "mu", "sigma")):
            assert nonzero(p.grad), name
    logits = torch.randn(5, 3, requires_grad=True)
    s = baselines.straight_through(logits, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(s.sum(1), torch.ones(5)) and set(s.detach().unique().tolist()) == {0.0, 1.0}
    (s * torch.arange(3.0)).sum().backward()
    assert nonzero(logits.grad)  # exact one-hot forward, relaxed gradient backward


def test_jointvae_capacities_follow_the_schedule():
    model = tiny("jointvae", cap_c=5.0, cap_s=5.0, cap_steps=100)
    log_k = math.log(3)
    assert model.capacities(0) == (0.0, 0.0)
    assert model.capacities(10) == pytest.approx((0.5, 0.5))
    assert model.capacities(50) == pytest.approx((2.5, log_k))  # C_s stops at log K
    assert model.capacities(100) == model.capacities(10_000) == pytest.approx((5.0, log_k))
    history = steps(model, 3, batch())
    assert int(model.steps) == 3
    assert [h["cap_c"] for h in history] == pytest.approx([0.0, 0.05, 0.10])
    assert [h["cap_s"] for h in history] == pytest.approx([0.0, 0.05, 0.10])
    h, g = history[-1], model.config.gamma
    expected = h["rec"] + g * (abs(h["kl_c"] - 0.10) + abs(h["kl_s"] - 0.10))
    assert h["loss"] == pytest.approx(expected, rel=1e-5)


def test_beta_vae_objectives():
    higgins = steps(tiny("beta-vae", beta=4.0), 1, batch())[0]
    assert higgins["loss"] == pytest.approx(higgins["rec"] + 4.0 * higgins["kl_c"], rel=1e-5)
    burgess = tiny("beta-vae", capacity=True, gamma=100.0, cap_c=20.0, cap_steps=10)
    burgess.steps.fill_(5)
    b = steps(burgess, 1, batch())[0]
    assert b["cap_c"] == 10.0 and b["loss"] == pytest.approx(b["rec"] + 100.0 * abs(b["kl_c"] - 10.0), rel=1e-5)


# -- model folders, the editing commands, train and evaluate -----------------------------------
@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shape_files")
    for i, img in enumerate(shapes_dataset(4, seed=1).images):
        save_png(img.float() / 255, folder / f"s{i}.png")
    return sorted(folder.glob("*.png"))


@pytest.mark.parametrize("name", NAMES)
def test_model_folder_round_trip_and_editing_commands(name, tmp_path, shape_files):
    model = tiny(name)
    steps(model, 2, batch())
    hub.save_pretrained(model.eval(), tmp_path / "m")
    again = hub.from_pretrained(str(tmp_path / "m"))
    assert again.config == model.config and type(again) is type(model)
    x = batch(4)
    z, s, c = model.sample_prior(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.generate(z, s, c), again.generate(z, s, c))
        assert all(torch.equal(a, b) for a, b in zip(model.encode(x), again.encode(x)))
    k, m = model.config.n_classes, ["--model", str(tmp_path / "m"), "--device", "cpu"]
    res = runner.invoke(app, ["encode", *map(str, shape_files), "--json", *m])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 4 and all(len(r["probabilities"]) == k and len(r["mu"]) == 2 for r in rows)
    res = runner.invoke(app, ["sample", "--rows", "2", "-o", str(tmp_path / "g.png"), *m])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "g.png").size == (k * 30 + 2, 2 * 30 + 2)
    res = runner.invoke(app, ["classify", str(shape_files[0].parent), *m])
    assert res.exit_code == 0, res.output
    assert len(list(csv.DictReader(io.StringIO(res.stdout)))) == 4
    for cmd in (["swap", str(shape_files[0]), str(shape_files[1])], ["traverse", str(shape_files[0])]):
        res = runner.invoke(app, [*cmd, "-o", str(tmp_path / f"{cmd[0]}.png"), *m])
        assert res.exit_code == 0, res.output


@pytest.mark.parametrize("name", NAMES)
def test_train_builds_each_family_from_the_dataset_defaults(name, tmp_path, monkeypatch):
    from trainer import data, train

    monkeypatch.setattr(data, "load", lambda *a, **kw: shapes_dataset(64))
    tc = TrainConfig(epochs=1, batch_size=32, max_steps=2, device="cpu")
    train.train("mnist", tmp_path / name, name, overrides={"width": 0.125}, tc=tc, progress=False)
    cfg = hub.from_pretrained(str(tmp_path / name)).config
    assert cfg.model == name and cfg.dataset == "mnist" and cfg.c_dim == 2
    assert cfg.z_dim == (62 if name in ("infogan", "ali") else 0)
    assert cfg.n_classes == (1 if name == "beta-vae" else 10)
    if name != "infogan":
        with pytest.raises(ValueError, match="--mi-weight-c does not apply"):
            train.train("mnist", tmp_path / "x", name, overrides={"mi_weight_c": 0.5}, tc=tc, progress=False)


def test_evaluate_beta_vae_reports_clustering_as_not_defined(tmp_path, monkeypatch):
    from trainer import data
    from trainer.evaluate.command import evaluate, report

    monkeypatch.setattr(data, "load", lambda *a, **kw: shapes_dataset(64))
    hub.save_pretrained(tiny("beta-vae").eval(), tmp_path / "m")
    result = evaluate(str(tmp_path / "m"), dataset="mnist", device="cpu")
    assert result["accuracy"] is None and "no discrete code" in result["clustering"]
    assert 0 <= result["reconstruction_mse"] <= 1
    assert "not defined" in report(result)
    with pytest.raises(ValueError, match="needs a discrete code"):
        evaluate(str(tmp_path / "m"), dataset="mnist", device="cpu", pseudo_label_cnn=True)
