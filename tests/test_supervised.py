"""Supervised models (Sec. 3, Fig. 1), rotated datasets (Sec. 5.1), their metrics, and InfoVAEGAN2
reconstructions (Sec. 4.4)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import require_data
from infoedit import engine, hub
from infoedit.cli import app
from infoedit.images import load_image, save_png
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGAN2, InfoVAEGANConfig
from infoedit.models.supervised import SupervisedConfig, SupervisedVAE
from trainer import data
from trainer import supervised as sup
from trainer.evaluate.supervised import ProbeConfig, probe_accuracy, reconstruction_mse
from trainer.config import TrainConfig

runner = CliRunner()
TINY = dict(width=0.05, dataset="rotated-mnist", source_class=3)  # 25 hidden units


def source_images(n: int = 20, seed: int = 0) -> torch.Tensor:
    """uint8 [n, 1, 28, 28]: bars of random length and thickness, horizontal, so rotation shows."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    for i in range(n):
        half, thick = torch.randint(6, 11, (1,), generator=g).item(), torch.randint(1, 3, (1,), generator=g).item()
        imgs[i, 0, 14 - thick:14 + thick, 14 - half:14 + half] = 255
        imgs[i, 0, 14 - thick - 4:14 - thick, 14 + half - 3:14 + half] = 255  # a hook: 0 and 180 deg differ
    return imgs


def rotated(n: int = 20, seed: int = 0) -> data.Dataset:
    return data.rotated_dataset("rotated-mnist", source_images(n, seed))


def tiny(model: str = "supervised-single", **kw) -> SupervisedVAE:
    torch.manual_seed(0)
    return SupervisedVAE(SupervisedConfig(model=model, **{**TINY, **kw}))


# -- the rotated datasets ------------------------------------------------------------------------
def test_rotated_dataset_shapes_labels_and_split():
    src = source_images(20)
    ds = data.rotated_dataset("rotated-mnist", src)
    assert data.ROTATION_ANGLES[0] == 0 and data.ROTATION_ANGLES[-1] == 80 and len(data.ROTATION_ANGLES) == 10
    assert ds.images.shape == (180, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.test_images.shape == (20, 1, 28, 28) and len(ds) == 180 and int(ds.labels.max()) + 1 == 10
    labels = torch.cat([ds.labels, ds.test_labels])
    assert torch.equal(labels.bincount(), torch.full((10,), 20))  # every source image at every angle
    # angle 0 is the original image; angle 80 turns the horizontal bar nearly vertical
    zero = ds.images[ds.labels == 0]
    assert all(any(torch.equal(z, s) for s in src) for z in zero)
    tall = ds.images[ds.labels == 9].float()
    assert tall.sum(dim=3).gt(0).sum(dim=2).float().mean() > 2 * tall.sum(dim=2).gt(0).sum(dim=2).float().mean()


def test_rotated_split_is_seeded():
    a, b = rotated(), rotated()
    assert torch.equal(a.images, b.images) and torch.equal(a.test_labels, b.test_labels)
    other = data.rotated_dataset("rotated-mnist", source_images(20), split_seed=1)
    assert not torch.equal(a.test_images, other.test_images)


def _write_idx(raw: Path, prefix: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    def idx(path, arr):
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        path.write_bytes(header + arr.astype("uint8").tobytes())

    idx(raw / f"{prefix}-images-idx3-ubyte", images.numpy())
    idx(raw / f"{prefix}-labels-idx1-ubyte", labels.numpy())


def test_load_rotated_picks_the_class(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = torch.arange(40) % 4
    images = (labels * 60).view(-1, 1, 1).expand(40, 28, 28).to(torch.uint8)  # the label is in the pixels
    _write_idx(raw, "train", images, labels)
    _write_idx(raw, "t10k", images[:5], labels[:5])
    ds = data.load("rotated-mnist", tmp_path, source_class=2)
    assert len(ds) + len(ds.test_images) == 10 * 10  # ten images of class 2, ten angles
    assert ds.images[ds.labels == 0].unique().tolist() == [120]
    assert data.load("rotated-mnist", tmp_path).images[ds.labels == 0].max() == 180  # default digit 3
    with pytest.raises(data.DataError, match="rotated"):
        data.load("mnist", tmp_path, source_class=2)
    assert len(data.load("mnist", tmp_path, source_class=-1)) == 40  # a config's -1: no class, no error


# -- the loss terms: sign, and which network each one trains -------------------------------------
def _grads(module) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for p in module.parameters()]


def _has_grad(module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def _batch(n: int = 32):
    ds = rotated()
    idx = torch.arange(n)
    return ds.batch(idx), ds.labels[idx]


@pytest.mark.parametrize("structure", ["supervised-single", "supervised-dual"])
def test_interface_shapes(structure):
    model = tiny(structure)
    x, _ = _batch(4)
    mu, sigma, logits = model.encode(x)
    assert mu.shape == sigma.shape == (4, 10) and logits.shape == (4, 10) and (sigma > 0).all()
    z, s, c = model.sample_prior(4, torch.Generator().manual_seed(0))
    assert z.shape == (4, 0) and s.shape == (4, 10) and c.shape == (4, 10)
    img = model.generate(z, s, c)
    assert img.shape == (4, 1, 28, 28) and 0 <= img.min() and img.max() <= 1
    if structure == "supervised-dual":  # Fig. 1b: q(s|x) comes from its own network
        assert torch.equal(model.E.S(x), logits)


def test_adversary_loss_trains_only_the_classifier():
    model = tiny()
    x, y = _batch()
    t = sup.elbo_terms(model, x, torch.Generator().manual_seed(0))
    sup.adversary_loss(model, t["c"], y).backward()
    assert _has_grad(model.A) and not _has_grad(model.E) and not _has_grad(model.dec)


def test_entropy_loss_trains_only_the_encoder_and_is_minus_entropy():
    model = tiny()
    x, _ = _batch()
    t = sup.elbo_terms(model, x, torch.Generator().manual_seed(0))
    l_mi = sup.entropy_loss(model, t["c"])
    l_mi.backward()
    assert _has_grad(model.E) and not _has_grad(model.A) and not _has_grad(model.dec)
    assert all(p.requires_grad for p in model.A.parameters())  # unfrozen again afterwards
    assert -math.log(10) - 1e-5 <= l_mi.item() <= 0
    torch.nn.init.zeros_(model.A[-1].weight), torch.nn.init.zeros_(model.A[-1].bias)  # uniform q(y|c)
    assert sup.entropy_loss(model, t["c"].detach()).item() == pytest.approx(-math.log(10), abs=1e-5)


def test_minimising_entropy_loss_raises_the_classifiers_entropy():
    model = tiny()
    x, y = _batch()
    opt_a = torch.optim.Adam(model.A.parameters(), 1e-2)
    for _ in range(30):  # a classifier that has learnt something, so there is entropy to gain
        opt_a.zero_grad()
        sup.adversary_loss(model, model.encode(x)[0], y).backward()
        opt_a.step()
    opt_e = torch.optim.SGD(model.E.parameters(), 0.5)
    before = -sup.entropy_loss(model, model.encode(x)[0]).item()
    for _ in range(10):
        opt_e.zero_grad()
        sup.entropy_loss(model, model.encode(x)[0]).backward()
        opt_e.step()
    assert -sup.entropy_loss(model, model.encode(x)[0]).item() > before


def test_label_loss_trains_the_discrete_head_not_decoder_or_classifier():
    model = tiny()
    x, y = _batch()
    sup.label_loss(model.encode(x)[2], y).backward()
    assert _has_grad(model.E) and not _has_grad(model.dec) and not _has_grad(model.A)
    assert sup.label_loss(torch.nn.functional.one_hot(y, 10) * 50.0, y).item() < 1e-6


def _step(model, x, y, **cfg):
    for k, v in cfg.items():
        setattr(model.config, k, v)
    opt = sup.make_optimizers(model, TrainConfig())
    return sup.train_step(model, opt, x, torch.Generator().manual_seed(1), y)


def test_train_step_routes_each_term():
    x, y = _batch()
    base = tiny()
    on, off, none = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    values = _step(on, x, y, rho1=10.0, rho2=10.0)
    _step(off, x, y, rho1=10.0, rho2=0.0)
    _step(none, x, y, rho1=0.0, rho2=0.0)
    for key in ("rec", "kl_c", "kl_s", "label_ce", "adv_ce", "entropy"):
        assert math.isfinite(values[key])
    # the classifier takes only its own CE: the same gradient whatever rho1 and rho2 are
    for a, b in zip(_grads(on.A), _grads(none.A)):
        assert torch.allclose(a, b)
    # the entropy term reaches the encoder (not the decoder) ...
    assert any(not torch.allclose(a, b) for a, b in zip(_grads(on.E), _grads(off.E)))
    for a, b in zip(_grads(on.dec), _grads(off.dec)):
        assert torch.allclose(a, b)
    # ... and with rho1 = rho2 = 0 the encoder's gradient is the ELBO's alone (no classifier CE)
    ref = copy.deepcopy(base)
    ref.config.rho1 = ref.config.rho2 = 0.0
    t = sup.elbo_terms(ref, x, torch.Generator().manual_seed(1))
    (t["rec"] + t["kl_c"] + ref.config.kl_s_weight * t["kl_s"]).backward()
    for a, b in zip(_grads(none.E), _grads(ref.E)):
        assert torch.allclose(a, b, atol=1e-6)


def test_train_step_needs_labels():
    x, _ = _batch()
    with pytest.raises(ValueError, match="labels"):
        _step(tiny(), x, None)


@pytest.mark.parametrize("structure", ["supervised-single", "supervised-dual"])
def test_training_lowers_label_ce(structure):
    ds = rotated(30)
    model = tiny(structure)
    opt, gen = sup.make_optimizers(model, TrainConfig()), torch.Generator().manual_seed(0)
    ce = []
    for _ in range(80):
        idx = torch.randint(len(ds), (32,), generator=gen)
        ce.append(sup.train_step(model, opt, ds.batch(idx), gen, ds.labels[idx])["label_ce"])
    assert sum(ce[-10:]) / 10 < 0.8 * sum(ce[:10]) / 10


# -- the leakage probe and reconstruction MSE ----------------------------------------------------
def test_probe_finds_the_label_in_codes_that_carry_it_and_not_in_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(10, (1500,), generator=g)
    informative = torch.nn.functional.one_hot(y, 10).float() * 0.01 + 0.001 * torch.randn(1500, 10, generator=g)
    noise = torch.randn(1500, 10, generator=g)
    cfg = ProbeConfig(epochs=8)
    assert probe_accuracy(informative[:1000], y[:1000], informative[1000:], y[1000:], 10, cfg) > 0.97
    assert probe_accuracy(noise[:1000], y[:1000], noise[1000:], y[1000:], 10, cfg) < 0.2


def test_reconstruction_mse_uses_g2_or_g_with_zero_noise():
    images = (torch.rand(6, 1, 28, 28) * 255).to(torch.uint8)
    x = images.float() / 255
    for cls in (InfoVAEGAN, InfoVAEGAN2):
        torch.manual_seed(0)
        model = cls(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=4, width=0.125, model=cls.__name__.lower())).eval()
        with torch.no_grad():
            mu, _, logits = model.encode(x)
            s = torch.nn.functional.one_hot(logits.argmax(1), 3).float()
            x_rec = model.generate2(s, mu) if cls is InfoVAEGAN2 else model.generate(torch.zeros(6, 4), s, mu)
        assert reconstruction_mse(model, images) == pytest.approx(((x - x_rec) ** 2).mean().item(), rel=1e-5)


# -- model folders and the editing commands ------------------------------------------------------
@pytest.fixture(scope="module")
def sup_dir(tmp_path_factory) -> Path:
    """A tiny supervised-single model trained for a few dozen steps on synthetic rotated bars."""
    ds = rotated(30)
    model = tiny()
    opt, gen = sup.make_optimizers(model, TrainConfig()), torch.Generator().manual_seed(0)
    for _ in range(40):
        idx = torch.randint(len(ds), (32,), generator=gen)
        sup.train_step(model, opt, ds.batch(idx), gen, ds.labels[idx])
    return hub.save_pretrained(model.eval(), tmp_path_factory.mktemp("sup"))


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("bars")
    ds = rotated(3)
    paths = []
    for i in range(3):
        paths.append(folder / f"b{i}.png")
        save_png(ds.images[i].float() / 255, paths[-1])
    return paths


def run(*args, model: Path):
    return runner.invoke(app, [str(a) for a in args] + ["--model", str(model)])


def test_model_folder_round_trip(sup_dir):
    model = hub.from_pretrained(str(sup_dir))
    assert isinstance(model, SupervisedVAE) and model.config.source_class == 3 and model.config.z_dim == 0
    config = json.loads((sup_dir / "config.json").read_text())
    assert config["model"] == "supervised-single" and config["rho2"] == 10.0


def test_swap_and_traverse_on_a_supervised_model(sup_dir, pngs, tmp_path):
    res = run("swap", pngs[0], pngs[1], "-o", tmp_path / "swap.png", model=sup_dir)
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "swap.png").size == (28, 28)
    res = run("traverse", pngs[0], "--discrete", "-o", tmp_path / "angles.png", model=sup_dir)
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "angles.png").size == (10 * 30 + 2, 30 + 2)  # one row, the 10 angles
    res = run("traverse", pngs[0], "--code", "0", "--code", "3", "--steps", "5", "-o", tmp_path / "style.png",
              model=sup_dir)
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "style.png").size == (5 * 30 + 2, 2 * 30 + 2)


def test_reconstruct_command_outputs(sup_dir, pngs, tmp_path):
    res = run("reconstruct", pngs[0], "-o", tmp_path / "one.png", model=sup_dir)
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "one.png").size == (28, 28)
    res = run("reconstruct", *pngs, "--strip", "-o", tmp_path / "strip.png", model=sup_dir)
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "strip.png").size == (3 * 30 + 2, 2 * 30 + 2)  # inputs over reconstructions
    res = run("reconstruct", *pngs, "-o", tmp_path / "recs", model=sup_dir)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "recs").iterdir()) == ["b0.png", "b1.png", "b2.png"]


@pytest.mark.parametrize("args, message", [
    (["{a}", "-o", "{tmp}/one.png"], "already exists"),
    (["{a}", "{b}", "-o", "{tmp}/many.png"], "--strip"),
    (["{a}", "{a}", "-o", "{tmp}/dup"], "both be written"),
])
def test_reconstruct_refuses_with_one_line(sup_dir, pngs, tmp_path, args, message):
    (tmp_path / "one.png").write_bytes(b"keep")
    argv = [a.format(a=pngs[0], b=pngs[1], tmp=tmp_path) for a in args]
    res = run("reconstruct", *argv, model=sup_dir)
    assert res.exit_code == 2 and message in res.output and len(res.output.strip().splitlines()) == 1
    assert (tmp_path / "one.png").read_bytes() == b"keep"


def test_reconstruct_uses_g2_on_infovaegan2(pngs, tmp_path):
    torch.manual_seed(0)
    model = InfoVAEGAN2(InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=8, width=0.125, model="infovaegan2")).eval()
    folder = hub.save_pretrained(model, tmp_path / "m2")
    res = run("reconstruct", pngs[0], "-o", tmp_path / "r.png", model=folder)
    assert res.exit_code == 0, res.output
    x = load_image(pngs[0], 28, 1).unsqueeze(0)
    with torch.no_grad():
        mu, _, logits = model.encode(x)
        s = torch.nn.functional.one_hot(logits.argmax(1), 3).float()
        expected, with_g = model.generate2(s, mu), model.generate(engine.fixed_noise(model, 1), s, mu)
    got = load_image(tmp_path / "r.png", 28, 1).unsqueeze(0)
    assert (got - expected).abs().max() <= 1 / 255 + 1e-6
    assert (got - with_g).abs().max() > 2 / 255  # not G's output


# -- training and evaluation on the real rotated digits -------------------------------------------
def test_cli_train_and_evaluate_rotated_mnist(tmp_path):
    root = require_data("mnist")
    out = tmp_path / "m"
    res = runner.invoke(app, ["train", "rotated-mnist", "--data", str(root.parent), "--model", "supervised-dual",
                              "--digit", "5", "--out", str(out), "--max-steps", "3", "--limit", "256",
                              "--batch-size", "32", "--width", "0.05", "--rho2", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())
    assert config["source_class"] == 5 and config["rho2"] == 0 and config["model"] == "supervised-dual"
    from trainer.evaluate.command import evaluate, report

    result = evaluate(str(out), data=str(root.parent), limit=300, device="cpu")
    s = result["supervised"]
    assert 0 <= s["label_accuracy"] <= 1 and 0 <= s["leakage"] <= 1 and s["adversary"] is False
    assert 0 < result["reconstruction_mse"] < 1 and "leakage" in report(result)
    with pytest.raises(ValueError, match="predicts rotation angles"):  # angles scored against digits
        evaluate(str(out), dataset="mnist", data=str(root.parent), limit=300, device="cpu")


@pytest.mark.parametrize("args, message", [
    (["mnist", "--digit", "3"], "--digit applies to rotated-mnist"),
    (["rotated-mnist", "--item", "3"], "--item applies to rotated-fashion"),
    (["rotated-mnist", "--model", "supervised-single", "--mi-weight-s", "2"], "--mi-weight-s does not apply"),
    (["rotated-mnist", "--model", "supervised-single", "--z-dim", "5"], "z_dim must be 0"),
    (["mnist", "--model", "supervised-single"], "learns the rotation angles of rotated-mnist"),
])
def test_cli_train_bad_options_are_one_line(tmp_path, args, message):
    res = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "m"), "--data", str(tmp_path)])
    assert res.exit_code == 2 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
