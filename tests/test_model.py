"""Model shapes, eval-mode determinism and the model folder round trip."""

import json
from pathlib import Path

import pytest
import torch

from infoedit import hub
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig


@pytest.mark.parametrize("size,channels,nets", [(28, 1, "authors"), (64, 3, "authors"), (64, 3, "dcgan")])
def test_shapes(size, channels, nets):
    cfg = InfoVAEGANConfig(image_size=size, channels=channels, n_classes=4, c_dim=3, z_dim=5, width=0.125, nets=nets)
    model = InfoVAEGAN(cfg).eval()
    z, s, c = model.sample_prior(6, torch.Generator().manual_seed(0))
    assert z.shape == (6, 5) and s.shape == (6, 4) and c.shape == (6, 3)
    assert torch.equal(s.sum(1), torch.ones(6))
    x = model.generate(z, s, c)
    assert x.shape == (6, channels, size, size) and x.min() >= 0 and x.max() <= 1
    mu, sigma, logits = model.encode(x)
    assert mu.shape == (6, 3) and sigma.shape == (6, 3) and logits.shape == (6, 4) and (sigma > 0).all()
    assert model.discriminate(x, s, c).shape == (6,)


def test_the_authors_64px_networks_and_dcgans():
    """nets "authors" builds their InfoVAE_Celeba.py layout: G upsamples 8 -> 64 by 3x3 transposed
    convolutions of stride 2, each followed by one of stride 1; E and D read the image through 3x3
    stride-2 convolutions, and E's FC layer has no BatchNorm. "dcgan" is 4x4 stride 2 throughout.
    At 28 px both are the same networks, with the same weights' names and shapes."""
    def layers(nets: str, size: int = 64):
        model = InfoVAEGAN(InfoVAEGANConfig(image_size=size, channels=3, width=0.125, nets=nets))
        convs = [(m.kernel_size[0], m.stride[0]) for m in model.G.deconv if isinstance(m, torch.nn.ConvTranspose2d)]
        trunk = [(m.kernel_size[0], m.stride[0]) for m in model.E.trunk if isinstance(m, torch.nn.Conv2d)]
        e_norms = [m for m in model.E.fc if isinstance(m, torch.nn.BatchNorm1d)]
        return model, convs, trunk, e_norms

    _, convs, trunk, e_norms = layers("authors")
    assert convs == [(3, 2), (3, 1), (3, 2), (3, 1), (3, 2), (3, 1)] and trunk == [(3, 2)] * 4 and not e_norms
    _, convs, trunk, e_norms = layers("dcgan")
    assert convs == [(4, 2)] * 3 and trunk == [(4, 2)] * 4 and len(e_norms) == 1
    small = [{k: v.shape for k, v in layers(nets, 28)[0].state_dict().items()} for nets in ("authors", "dcgan")]
    assert small[0] == small[1]
    assert InfoVAEGANConfig().nets == "authors"  # the paper preset's
    old = {k: v for k, v in InfoVAEGANConfig(image_size=64, channels=3).to_dict().items() if k != "nets"}
    assert InfoVAEGANConfig.from_dict(old).nets == "dcgan"  # folders from before the field
    with pytest.raises(ValueError, match="nets"):
        InfoVAEGANConfig(nets="vgg").validate()


def test_uniform_prior_range_and_normal_prior():
    g = torch.Generator().manual_seed(0)
    model = InfoVAEGAN(InfoVAEGANConfig(width=0.125))
    _, _, c = model.sample_prior(2000, g)
    assert c.min() >= -1 and c.max() <= 1 and abs(c.var().item() - 1 / 3) < 0.03
    model = InfoVAEGAN(InfoVAEGANConfig(width=0.125, c_prior="normal"))
    _, _, c = model.sample_prior(2000, g)
    assert abs(c.var().item() - 1) < 0.1


def test_eval_mode_is_batch_independent(tiny_model_dir):
    model = hub.from_pretrained(str(tiny_model_dir))
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        one = model.encode(x[:1])[2]
        many = model.encode(x)[2][:1]
    assert torch.allclose(one, many, atol=1e-5)  # BatchNorm uses running stats at inference


def test_save_load_round_trip(tiny_model_dir, tmp_path):
    model = hub.from_pretrained(str(tiny_model_dir))
    hub.save_pretrained(model, tmp_path / "copy", card="# card\n")
    again = hub.from_pretrained(str(tmp_path / "copy"))
    assert again.config == model.config
    x = torch.rand(3, 1, 28, 28)
    z, s, c = model.sample_prior(3, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.generate(z, s, c), again.generate(z, s, c))
        for a, b in zip(model.encode(x), again.encode(x)):
            assert torch.equal(a, b)
    assert (tmp_path / "copy" / "README.md").read_text() == "# card\n"
    assert not list((tmp_path / "copy").glob("*.tmp"))  # atomic writes leave no temp files


def test_model_card_written_by_training(tiny_model_dir):
    card = (tiny_model_dir / "README.md").read_text()
    assert "infovaegan" in card and "seed: 0" in card
    assert "--frame" not in card  # toy shapes: no dataset framing to point photos at
    from trainer.config import TrainConfig
    from trainer.card import model_card

    digits = InfoVAEGAN(InfoVAEGANConfig(width=0.125, dataset="mnist"))
    assert "`--frame auto`" in model_card(digits, TrainConfig(), {})


def _copy(src, dst):
    dst.mkdir()
    for name in ("config.json", "model.safetensors"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


@pytest.mark.parametrize("change,message", [
    (lambda c: c.update(format_version=99), "format_version"),
    (lambda c: c.pop("z_dim"), "missing config field"),
    (lambda c: c.update(colour="red"), "unknown config field"),
    (lambda c: c.update(z_dim=9), "shape"),
    (lambda c: c.update(model="nope"), "unknown model family"),
])
def test_bad_config_is_one_line(tiny_model_dir, tmp_path, change, message):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(hub.ModelLoadError, match=message) as err:
        hub.from_pretrained(str(folder))
    assert "\n" not in str(err.value)


def test_truncated_weights_and_missing_folder(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(hub.ModelLoadError, match="model.safetensors"):
        hub.from_pretrained(str(folder))
    with pytest.raises(hub.ModelLoadError, match="no model folder"):
        hub.from_pretrained(str(tmp_path / "does-not-exist"))


def test_shared_trunk_is_one_module_saved_once(tmp_path):
    model = InfoVAEGAN(InfoVAEGANConfig(width=0.125, shared_trunk=True))
    assert model.E.trunk is model.D.trunk
    e_params = {id(p) for p in model.E.parameters()}
    assert not e_params & {id(p) for p in model.D.trunk.parameters()}  # owned and optimised by D
    assert not any(k.startswith("E.trunk") for k in model.state_dict())
    hub.save_pretrained(model, tmp_path)
    again = hub.from_pretrained(str(tmp_path))
    assert again.E.trunk is again.D.trunk
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval().encode(x)[2], again.encode(x)[2])


def test_model_folder_leaves_out_the_discriminator(tmp_path):
    from safetensors.torch import load_file

    model = InfoVAEGAN(InfoVAEGANConfig(width=0.125)).eval()
    hub.save_pretrained(model, tmp_path / "m")
    saved = load_file(str(tmp_path / "m" / hub.WEIGHTS_NAME))
    assert saved and not any(k.startswith("D.") for k in saved)
    assert any(k.startswith("G.") for k in saved) and any(k.startswith("E.") for k in saved)
    again = hub.from_pretrained(str(tmp_path / "m"))
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.encode(x)[2], again.encode(x)[2])
    # a folder that does carry D (a full state dict) still loads
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m" / hub.WEIGHTS_NAME))
    assert torch.equal(hub.from_pretrained(str(tmp_path / "m")).D.head[0].weight, model.D.head[0].weight)
    # but not one that misses an inference weight
    del saved["E.logits.weight"]
    save_file(saved, str(tmp_path / "m" / hub.WEIGHTS_NAME))
    with pytest.raises(hub.ModelLoadError, match="missing E.logits.weight"):
        hub.from_pretrained(str(tmp_path / "m"))


def test_bundled_names_resolve_and_a_data_folder_does_not_hide_them(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "pretrained" / "mnist")
    monkeypatch.setattr(hub, "PRETRAINED", tmp_path / "pretrained")
    assert hub.pretrained_names() == ["mnist"]
    monkeypatch.chdir(tmp_path)
    assert hub.resolve("mnist") == tmp_path / "pretrained" / "mnist"
    (tmp_path / "work" / "mnist").mkdir(parents=True)  # raw data in a folder of the same name
    monkeypatch.chdir(tmp_path / "work")
    assert hub.resolve("mnist") == tmp_path / "pretrained" / "mnist"
    shutil.copytree(tiny_model_dir, tmp_path / "work" / "mnist", dirs_exist_ok=True)  # a model folder wins
    assert hub.resolve("mnist") == Path("mnist")
    with pytest.raises(hub.ModelLoadError, match="bundled models: mnist"):
        hub.resolve("./nothing-here")


def test_release_bundles_a_half_precision_copy_that_loads_by_name(tiny_model_dir, tmp_path, monkeypatch):
    from trainer import release

    monkeypatch.setattr(hub, "PRETRAINED", tmp_path / "pretrained")
    dest = release.release(tiny_model_dir, "tiny")
    assert (dest / hub.WEIGHTS_NAME).stat().st_size < (tiny_model_dir / hub.WEIGHTS_NAME).stat().st_size * 0.6
    full, half = hub.from_pretrained(str(tiny_model_dir)), hub.from_pretrained("tiny")
    assert all(p.dtype == torch.float32 for p in half.parameters())
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(full.encode(x)[2], half.encode(x)[2], atol=1e-2)
    assert "float16" in (dest / hub.CARD_NAME).read_text()
    monkeypatch.setattr(release, "MAX_BYTES", 1000)
    with pytest.raises(SystemExit, match="over the"):
        release.release(tiny_model_dir, "too-big")


def test_a_folder_written_before_the_levers_loads_as_it_was_trained(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    for name in ("d_real_s", "shared_trunk", "real_mi_weight", "z_scale", "augment", "kl_c_weight", "tc_weight",
                 "batchnorm", "likelihood"):
        del cfg[name]
    (folder / "config.json").write_text(json.dumps(cfg))
    old = hub.from_pretrained(str(folder)).config
    assert (old.d_real_s, old.shared_trunk, old.real_mi_weight, old.z_scale, old.augment, old.kl_c_weight,
            old.tc_weight, old.batchnorm, old.likelihood) == ("gumbel", False, 0.0, 1.0, "affine", 1.0, 0.0, True,
                                                              "gaussian")


def test_written_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    hub.atomic_write_bytes(tmp_path / "f.bin", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_release_names_the_categories_after_the_matched_labels(tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from infoedit.cli import app
    from trainer import release

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "dataset": "fashion-mnist"}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "test_acc": 0.5,
                                                   "cluster_to_label": {"0": 8, "1": 0, "2": 5}}) + "\n")
    monkeypatch.setattr(hub, "PRETRAINED", tmp_path / "pretrained")
    dest = release.release(run, "tiny")
    assert json.loads((dest / hub.CLASS_NAMES_NAME).read_text()) == ["bag", "t-shirt", "sandal"]
    assert hub.from_pretrained("tiny").class_names == ["bag", "t-shirt", "sandal"]
    png = tmp_path / "x.png"
    from infoedit.images import save_png

    save_png(torch.rand(1, 28, 28), png)
    out = CliRunner().invoke(app, ["encode", str(png), "--model", "tiny", "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["name"] in ("bag", "t-shirt", "sandal")
    (dest / hub.CLASS_NAMES_NAME).write_text('["bag", "bag", "x"]')
    out = CliRunner().invoke(app, ["encode", str(png), "--model", "tiny"])
    assert out.exit_code == 2 and "class_names.json: expected a list of 3 distinct" in out.output


@pytest.mark.parametrize("model_name", ["infovaegan2", "beta-vae", "infogan"])
def test_batchnorm_false_leaves_out_every_batchnorm_and_nothing_else(tmp_path, model_name):
    from infoedit.models import FAMILIES, build
    from trainer.config import TrainConfig
    from trainer.families import trainer_for

    config_class = FAMILIES[model_name][0]
    with_bn, without = (build(config_class(image_size=28, channels=1, width=0.125, model=model_name,
                                           batchnorm=b)) for b in (True, False))
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    assert any(isinstance(m, norms) for m in with_bn.modules())
    assert not any(isinstance(m, norms) for m in without.modules())
    keys = {k for k in with_bn.state_dict() if k in without.state_dict()}
    assert keys == set(without.state_dict())  # the other layers keep the paper's names and shapes
    assert all(with_bn.state_dict()[k].shape == v.shape for k, v in without.state_dict().items())
    family = trainer_for(model_name)
    x = torch.rand(16, 1, 28, 28)
    values = family.step(without, family.make_optimizers(without, TrainConfig()), x, torch.Generator().manual_seed(0))
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values())
    hub.save_pretrained(without, tmp_path / "m")
    loaded = hub.from_pretrained(str(tmp_path / "m"))
    assert loaded.config.batchnorm is False
    without.eval()
    assert torch.equal(loaded.encode(x)[0], without.encode(x)[0])
