"""Edits that keep the image: the style code (InfoVAEGANConfig.style_dim), the edit loss, and the
detail an edit keeps (engine.edit), on a tiny InfoVAEGAN2 trained here and on exact stubs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shapes_dataset
from PIL import Image
from safetensors.torch import load_file
from test_engine import StubModel, StubModel2, _codes
from typer.testing import CliRunner

from infoedit import engine, hub
from infoedit.cli import app
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGAN2, InfoVAEGANConfig


def style_config(**kw) -> InfoVAEGANConfig:
    settings = dict(model="infovaegan2", n_classes=3, c_dim=2, z_dim=8, width=0.125, style_dim=4,
                    edit_weight=1.0, likelihood="bernoulli", dataset="shapes", g2_schedule="joint")
    return InfoVAEGANConfig(**{**settings, **kw})


@pytest.fixture(scope="module")
def style_model_dir(tmp_path_factory) -> Path:
    """A tiny InfoVAEGAN2 with a 4-d style code, trained on toy shapes at random places."""
    from trainer.config import TrainConfig
    from trainer.loop import fit

    out = tmp_path_factory.mktemp("style_model")
    torch.manual_seed(0)
    fit(InfoVAEGAN2(style_config()), shapes_dataset(), TrainConfig(epochs=12, batch_size=32, seed=0, device="cpu"),
        out, progress=False)
    return out


def test_style_code_needs_g2_and_old_folders_load_without_it():
    with pytest.raises(ValueError, match="need G2"):
        InfoVAEGAN(style_config(model="infovaegan"))
    with pytest.raises(ValueError, match="style_dim"):
        style_config(style_dim=-1).validate()
    old = {k: v for k, v in style_config(style_dim=0, edit_weight=0.0).to_dict().items()
           if k not in ("style_dim", "style_kl_weight", "edit_weight")}
    cfg = InfoVAEGANConfig.from_dict(old)  # a folder written before the style code
    assert (cfg.style_dim, cfg.edit_weight) == (0, 0.0)


def test_edit_terms_train_g2_alone_and_d_sees_the_edits():
    from trainer.infovaegan import draw_edits, edit_information_loss, make_optimizers, train_step
    from trainer.config import TrainConfig

    torch.manual_seed(0)
    model = InfoVAEGAN2(style_config())
    edited = draw_edits(model, 8, (torch.randn(8, 4), torch.ones(8, 4)), torch.Generator().manual_seed(0))
    edit_information_loss(model, *edited).backward()
    assert all(p.grad is None for p in model.E.parameters())  # E is only the reader here
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.G2.parameters())
    assert all(p.requires_grad for p in model.E.parameters())  # unfrozen afterwards
    values = train_step(model, make_optimizers(model, TrainConfig()), torch.rand(8, 1, 28, 28),
                        torch.Generator().manual_seed(0))
    assert {"edit", "edit_adv", "kl_w"} <= set(values)
    off = InfoVAEGAN2(style_config(edit_weight=0.0))
    assert "edit" not in train_step(off, make_optimizers(off, TrainConfig()), torch.rand(8, 1, 28, 28),
                                    torch.Generator().manual_seed(0))


@pytest.mark.parametrize("critic", ["D", "own"])
def test_reconstruction_adversary_judges_the_reconstructions_and_changes_only_when_on(critic, tmp_path):
    """recon_adv_weight: G2's reconstructions are judged as fakes and G2 gets a term that pushes
    them to fool the judge; off (0), neither. recon_critic "D": D judges them beside G's samples.
    "own": a second discriminator D2 does, and D's step is exactly the one it takes without them."""
    from trainer.config import TrainConfig
    from trainer.infovaegan import make_optimizers, train_step

    def step(weight: float):
        torch.manual_seed(0)
        model = InfoVAEGAN2(style_config(recon_adv_weight=weight, recon_critic=critic, edit_weight=0.0))
        calls = {"D": [], "D2": []}
        for name in calls:
            if hasattr(model, name):
                getattr(model, name).register_forward_hook(lambda mod, args, out, name=name: calls[name].append(1))
        x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        values = train_step(model, make_optimizers(model, TrainConfig()), x, torch.Generator().manual_seed(0))
        return model, values, calls, [p.grad.clone() for p in model.G2.parameters()]

    _, off, off_calls, off_grads = step(0.0)
    model, on, on_calls, on_grads = step(5.0)
    assert "recon_adv" not in off and on["recon_adv"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(on_grads, off_grads))
    if critic == "D":  # D's step and G2's term
        assert len(on_calls["D"]) == len(off_calls["D"]) + 2 and on["d"] != off["d"] and "d2" not in on
    else:  # D2: real, reconstructions, G2's term; D as if the lever were off
        assert len(on_calls["D"]) == len(off_calls["D"]) and on["d"] == off["d"]
        assert len(on_calls["D2"]) == 3 and on["d2"] > 0
        folder = hub.save_pretrained(model, tmp_path / "m")  # D2 is training-only, as D is
        hub.from_pretrained(str(folder))  # and loads without it
        saved = set(load_file(str(folder / "model.safetensors")))
        assert not any(k.startswith(("D.", "D2.")) for k in saved) and any(k.startswith("G2.") for k in saved)
    with pytest.raises(ValueError, match="recon_adv_weight"):
        style_config(recon_adv_weight=-1.0).validate()
    with pytest.raises(ValueError, match="recon_critic"):
        style_config(recon_critic="E").validate()


def test_structural_dissimilarity_is_one_minus_ssim_summed_over_the_window_positions():
    """losses.structural_dissimilarity: scikit-image's Gaussian SSIM (sigma 1.5, each channel),
    as 1 - SSIM summed over the pixels where the 11x11 window fits; 0 for the same image, and
    the gradient reaches the drawing only."""
    from skimage.metrics import structural_similarity
    from trainer.losses import structural_dissimilarity

    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 24, 24, generator=gen)
    x = (target + 0.2 * torch.randn(2, 3, 24, 24, generator=gen)).clamp(0, 1).requires_grad_(True)
    reference = np.mean([structural_similarity(x[i, c].detach().numpy(), target[i, c].numpy(), data_range=1.0,
                                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                         for i in range(2) for c in range(3)])
    loss = structural_dissimilarity(x, target.requires_grad_(True))
    assert loss.item() == pytest.approx((1 - reference) * 3 * 14 * 14, rel=1e-4)
    loss.backward()
    assert x.grad.abs().sum() > 0 and target.grad is None
    assert structural_dissimilarity(target, target).item() == pytest.approx(0.0, abs=1e-4)


def test_structural_term_joins_eq32_only_when_on():
    """recon_ssim_weight: Eq. 32's loss gains weight x structural_dissimilarity of G2's
    reconstruction, so E's and G2's gradients change; 0 leaves the step as it was."""
    from trainer.config import TrainConfig
    from trainer.infovaegan import make_optimizers, train_step

    def step(weight: float):
        torch.manual_seed(0)
        model = InfoVAEGAN2(style_config(recon_ssim_weight=weight, edit_weight=0.0))
        x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        values = train_step(model, make_optimizers(model, TrainConfig()), x, torch.Generator().manual_seed(0))
        return values, [p.grad.clone() for p in [*model.E.parameters(), *model.G2.parameters()]]

    off, off_grads = step(0.0)
    on, on_grads = step(0.5)
    assert "recon_dssim" not in off and on["recon_dssim"] > 0
    assert on["vae"] == pytest.approx(off["vae"] + 0.5 * on["recon_dssim"], rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(on_grads, off_grads))
    with pytest.raises(ValueError, match="recon_ssim_weight"):
        style_config(recon_ssim_weight=-1.0).validate()


def test_inferred_style_redraws_the_image_better_than_the_prior_mean(style_model_dir):
    model = hub.from_pretrained(str(style_model_dir))
    x = shapes_dataset(n=128, seed=1).images.float() / 255  # shapes the model never saw
    found = engine.encode(model, x)
    with_style = engine.render(model, found.onehot(), found.mu, style=found.style)
    without = engine.render(model, found.onehot(), found.mu)
    assert ((with_style - x) ** 2).mean() < 0.8 * ((without - x) ** 2).mean()
    assert torch.equal(engine.reconstruct(model, x), with_style)  # reconstruct draws with it


def test_an_edit_to_its_own_codes_returns_the_image(style_model_dir):
    model = hub.from_pretrained(str(style_model_dir))
    x = shapes_dataset(n=16, seed=2).images.float() / 255
    assert (engine.reconstruct(model, x, keep_detail=True) - x).abs().max() < 1e-5
    mu = engine.encode(model, x[:1]).mu[0]
    for code in range(2):  # a one-step traversal at the image's own value of the code
        cell = engine.traverse(model, x[0], [code], float(mu[code]), float(mu[code]), steps=1)
        assert (cell[0] - x[0]).abs().max() < 1e-5


def test_changing_one_code_changes_the_output_and_keeps_the_rest(style_model_dir):
    model = hub.from_pretrained(str(style_model_dir))
    x = shapes_dataset(n=4, seed=3).images.float()[0] / 255
    grid = engine.traverse(model, x, [0, 1], steps=5)
    for row in grid.view(2, 5, *x.shape):
        assert (row[-1] - row[0]).abs().max() > 0.01  # the code moves the picture
    found = engine.encode(model, x.unsqueeze(0))
    c = found.mu.repeat(5, 1)
    c[:, 0] = torch.linspace(-1, 1, 5)
    drawn = engine.render(model, found.onehot().expand(5, -1), c, style=found.style.expand(5, -1))
    own = engine.render(model, found.onehot(), found.mu, style=found.style)
    # each cell is the input plus what changing code 0 alone changes in the decoder's drawing
    assert torch.allclose(grid[:5], (drawn + x - own).clamp(0, 1), atol=1e-5)


def test_refine_fits_the_codes_to_the_image_and_keeps_its_category(style_model_dir):
    model = hub.from_pretrained(str(style_model_dir))
    x = shapes_dataset(n=32, seed=6).images.float() / 255
    found = engine.encode(model, x)
    refined = engine.refine(model, x, found, steps=30)
    assert torch.equal(refined.cluster, found.cluster) and torch.equal(refined.probs, found.probs)
    plain = engine.reconstruct(model, x)
    fitted = engine.reconstruct(model, x, refine_steps=30)
    assert torch.equal(fitted, engine.render(model, found.onehot(), refined.mu, style=refined.style))
    assert ((fitted - x) ** 2).mean() < 0.95 * ((plain - x) ** 2).mean()
    # images do not interact: one refined alone is refined as in the batch
    alone = engine.refine(model, x[3:4], engine.encode(model, x[3:4]), steps=30)
    assert torch.allclose(alone.mu, refined.mu[3:4], atol=1e-4)
    assert torch.allclose(alone.style, refined.style[3:4], atol=1e-4)
    # an edit starts from the refined codes: its own codes with detail kept still return x
    assert (engine.reconstruct(model, x, keep_detail=True, refine_steps=5) - x).abs().max() < 1e-5
    assert engine.refine(model, x, found, steps=0) is found


def test_cli_refines_by_the_models_own_default_and_refine_overrides_it(style_model_dir, tmp_path):
    """A model folder's refine_steps is what --refine means when it is not given."""
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(style_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["refine_steps"] == 0  # what training writes
    (folder / "config.json").write_text(json.dumps({**config, "refine_steps": 4}))
    src = tmp_path / "shape.png"
    Image.fromarray(shapes_dataset(n=1, seed=5).images[0, 0].numpy()).save(src)
    runner = CliRunner()

    def reconstruct(*refine: str) -> np.ndarray:
        out = tmp_path / f"rec{''.join(refine)}.png"
        result = runner.invoke(app, ["reconstruct", str(src), "-o", str(out), "--model", str(folder), "--frame",
                                     "no", "--invert", "no", "--quiet", *refine])
        assert result.exit_code == 0, result.output
        return np.asarray(Image.open(out).convert("L"), np.int16)

    default, four, none = reconstruct(), reconstruct("--refine", "4"), reconstruct("--refine", "0")
    assert np.array_equal(default, four) and not np.array_equal(default, none)
    with pytest.raises(ValueError, match="refine_steps"):
        style_config(refine_steps=-1).validate()


def test_refine_leaves_models_without_g2_as_they_are():
    m = StubModel()
    x = StubModel.image(1, [0.1, 0.2]).unsqueeze(0)
    found = engine.encode(m, x)
    assert engine.refine(m, x, found, steps=10) is found


def test_a_new_category_is_drawn_without_the_old_detail():
    m = StubModel2()
    a = StubModel.image(1, [0.1, 0.2]).unsqueeze(0)
    b = StubModel.image(2, [0.3, 0.4]).unsqueeze(0)
    a_marked = a.clone()
    a_marked[0, 0, 3, 3] = 0.5  # detail the stub's codes do not hold
    result = engine.swap(m, a_marked, b)  # b's category: the decoder's drawing alone
    assert _codes(m, result)[0] == [2] and result[0, 0, 3, 3] == 0
    same = engine.swap(m, a_marked, a)  # the same category: a itself, detail included
    assert torch.allclose(same, a_marked)
    assert engine.swap(m, a_marked, a, keep_detail=False)[0, 0, 3, 3] == 0


def test_a_new_category_is_drawn_with_the_continuous_code_inside_its_prior():
    m = StubModel2()
    x = StubModel.image(1, [0.0, 0.0]).unsqueeze(0).expand(2, -1, -1, -1)
    found = engine.encode(m, x)
    found = engine.Codes(found.probs, torch.tensor([[1.8, -0.4]] * 2), found.sigma, None)  # E's code past U(-1, 1)
    s = torch.eye(3)[[1, 2]]  # row 0: the image's own category; row 1: a new one

    def drawn():
        return engine.edit(m, x, found, s, found.mu, keep_detail=False)[:, 0, 1, :2] * 2 - 1

    assert torch.allclose(drawn(), torch.tensor([[1.8, -0.4], [1.0, -0.4]]))
    m.config.c_prior = "normal"  # no bounded support: the code as found
    assert torch.allclose(drawn(), torch.tensor([[1.8, -0.4], [1.8, -0.4]]))


def test_cli_keep_detail_writes_the_image_back_and_the_default_draws_it(style_model_dir, tmp_path):
    img = (shapes_dataset(n=1, seed=4).images[0, 0]).numpy()
    src = tmp_path / "shape.png"
    Image.fromarray(img).save(src)
    runner = CliRunner()
    common = ["--model", str(style_model_dir), "--frame", "no", "--invert", "no", "--quiet"]
    kept = runner.invoke(app, ["reconstruct", str(src), "-o", str(tmp_path / "kept.png"), "--keep-detail", *common])
    drawn = runner.invoke(app, ["reconstruct", str(src), "-o", str(tmp_path / "drawn.png"), *common])
    assert kept.exit_code == 0 and drawn.exit_code == 0, kept.output + drawn.output
    kept_px = np.asarray(Image.open(tmp_path / "kept.png").convert("L"), np.int16)
    drawn_px = np.asarray(Image.open(tmp_path / "drawn.png").convert("L"), np.int16)
    assert np.abs(kept_px - img).max() <= 1
    assert np.abs(drawn_px - img).max() > 1
    swapped = runner.invoke(app, ["swap", str(src), str(src), "-o", str(tmp_path / "swap.png"), *common])
    assert swapped.exit_code == 0, swapped.output
    assert np.abs(np.asarray(Image.open(tmp_path / "swap.png").convert("L"), np.int16) - img).max() <= 1


def test_swap_of_several_images_writes_one_edit_each(style_model_dir, tmp_path):
    shapes = shapes_dataset(n=3, seed=5).images[:, 0].numpy()
    paths = []
    for i, img in enumerate(shapes):
        paths.append(tmp_path / f"a{i}.png")
        Image.fromarray(img).save(paths[-1])
    common = ["--model", str(style_model_dir), "--frame", "no", "--invert", "no", "--quiet"]
    runner = CliRunner()
    result = runner.invoke(app, ["swap", *map(str, paths), str(paths[0]), "-o", str(tmp_path / "out"), *common])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a0.png", "a1.png", "a2.png"]
    # each is that image's own edit: the same as swapping it alone
    alone = runner.invoke(app, ["swap", str(paths[1]), str(paths[0]), "-o", str(tmp_path / "alone.png"), *common])
    assert alone.exit_code == 0, alone.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a1.png")),
                          np.asarray(Image.open(tmp_path / "alone.png")))
    refused = runner.invoke(app, ["swap", *map(str, paths), str(paths[0]), "-o", str(tmp_path / "x.png"), *common])
    assert refused.exit_code == 2 and "must name a folder" in refused.output


def test_warm_start_keeps_a_models_drawing_and_codes_when_a_style_code_is_added(tmp_path):
    from trainer.train import warm_start

    torch.manual_seed(0)
    old = InfoVAEGAN2(style_config(style_dim=0, edit_weight=0.0)).eval()
    hub.save_pretrained(old, tmp_path / "old")
    new = InfoVAEGAN2(style_config(style_dim=4)).eval()
    fresh = warm_start(new, str(tmp_path / "old"))
    assert {n.split(".")[0] for n in fresh} == {"E", "D"} and all(
        n.startswith(("E.style", "D.")) for n in fresh)  # the style head, and D (not in a model folder)
    x = shapes_dataset(n=8, seed=6).images.float() / 255
    before, after = engine.encode(old, x), engine.encode(new, x)
    assert torch.equal(before.probs, after.probs) and torch.equal(before.mu, after.mu)
    # with the new style columns at zero, G2 draws as it did, whatever the style code
    assert torch.allclose(engine.render(old, before.onehot(), before.mu),
                          engine.render(new, after.onehot(), after.mu, style=torch.randn(8, 4)), atol=1e-6)
    with pytest.raises(ValueError, match="n_classes is 3, this run's 4"):
        warm_start(InfoVAEGAN2(style_config(n_classes=4)), str(tmp_path / "old"))
