"""The evaluation plumbing: pseudo-label CNN, model representations, FID pipeline, the command."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import require_data, shapes_dataset

from infoedit import hub
from infoedit.images import save_png
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig
from trainer.evaluate import fid as fid_mod
from trainer.evaluate.clustering import cluster_accuracy
from trainer.evaluate.command import evaluate, report
from trainer.evaluate.factorvae import FactorVAEProtocol, factorvae_score, model_representation
from trainer.evaluate.pseudo_label import PseudoLabelConfig, pseudo_label_accuracy

TINY_VOTES = FactorVAEProtocol(n_train_votes=32, n_eval_votes=32, n_variance_samples=256)


class ShapeOracle(torch.nn.Module):
    """Stands in for InfoVAEGAN: q(s|x) names the toy shape (by its pixel count), permuted.

    Images of shape ``unsure`` get a flat q(s|x) (confidence ~0.58), so they fall below 0.9.
    """

    def __init__(self, perm=(2, 0, 1), unsure: int | None = None):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the stub a device
        self.perm, self.unsure = torch.tensor(perm), unsure
        self.config = InfoVAEGANConfig(n_classes=3, c_dim=2, z_dim=8)

    @property
    def device(self):
        return self.anchor.device

    def encode(self, x):
        area = (x > 0.5).flatten(1).sum(1)  # square 121 px, disc 113 px, bar 45 px
        label = torch.where(area == 121, 0, torch.where(area == 45, 2, 1))
        logits = 10 * torch.nn.functional.one_hot(self.perm[label], 3).float()
        if self.unsure is not None:
            logits[label == self.unsure] /= 10
        return torch.zeros(len(x), 2), torch.ones(len(x), 2), logits


def test_pseudo_label_cnn_learns_confident_clusters():
    train, test = shapes_dataset(256, seed=0), shapes_dataset(64, seed=1)
    cfg = PseudoLabelConfig(epochs=4, batch_size=32, seed=0)
    result = pseudo_label_accuracy(ShapeOracle(), train.images, test.test_images, test.test_labels, cfg)
    assert result["n_selected"] == 256 and result["fraction_selected"] == 1.0
    # never saw a true label, only the permuted clusters; chance is about 0.4 here
    assert result["accuracy"] > 0.6
    assert result["config"]["threshold"] == 0.9 and result["steps"] == 4 * 8


def test_pseudo_label_cnn_trains_only_on_confident_images():
    train, test = shapes_dataset(256, seed=0), shapes_dataset(64, seed=1)
    cfg = PseudoLabelConfig(max_steps=2, batch_size=32)
    result = pseudo_label_accuracy(ShapeOracle(unsure=1), train.images, test.test_images, test.test_labels, cfg)
    discs = int(((train.images > 127).flatten(1).sum(1) == 113).sum())
    assert 0 < discs < 256 and result["n_selected"] == 256 - discs
    assert result["selected_per_cluster"][0] == 0 and result["steps"] == 2  # discs are cluster s=0
    none = pseudo_label_accuracy(ShapeOracle(), train.images, test.test_images, test.test_labels,
                                 PseudoLabelConfig(threshold=1.0, max_steps=1))
    assert none["accuracy"] is None and none["n_selected"] == 0 and "confidence > 1.0" in none["skipped"]


def test_pseudo_label_cnn_plain_recipe_and_unknown_schedule():
    train, test = shapes_dataset(256, seed=0), shapes_dataset(64, seed=1)
    plain = PseudoLabelConfig(epochs=4, batch_size=32, augment=False, label_smoothing=0.0, schedule="constant")
    result = pseudo_label_accuracy(ShapeOracle(), train.images, test.test_images, test.test_labels, plain)
    assert result["accuracy"] > 0.6 and result["config"]["schedule"] == "constant"
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        pseudo_label_accuracy(ShapeOracle(), train.images, test.test_images, test.test_labels,
                              PseudoLabelConfig(max_steps=1, schedule="cosine"))


def test_model_representation_and_score_on_a_real_model(tiny_model_dir):
    model = hub.from_pretrained(str(tiny_model_dir))
    ds = shapes_dataset(64)
    assert model_representation(model, "mu", 255.0)(ds.images).shape == (64, 2)
    assert model_representation(model, "mu+softmax", 255.0)(ds.images).shape == (64, 5)
    with pytest.raises(ValueError, match="representation"):
        model_representation(model, "z")

    # factors (shape, row) -> a toy image; the plumbing must give a score in [0, 1]
    def observe(factors):
        imgs = torch.zeros(len(factors), 1, 28, 28, dtype=torch.uint8)
        for i, (shape, row) in enumerate(factors):
            imgs[i, 0, 4 + 5 * row: 8 + 5 * row, 4: 8 + 6 * shape] = 255
        return imgs

    result = factorvae_score((3, 4), observe, model_representation(model, "mu", 255.0), TINY_VOTES)
    assert 0.0 <= result["eval_accuracy"] <= 1.0 and result["code_dim"] == 2


# -- FID plumbing with a stand-in feature extractor --------------------------------------------
class PoolFeatures:
    """A tiny deterministic extractor: 4x4 average-pooled grey levels (16 features)."""

    key = "test-avgpool4"

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        return torch.nn.functional.adaptive_avg_pool2d(images.float().mean(1, keepdim=True), 4).flatten(1).numpy()


def image_folder(path, n=40, seed=0):
    path.mkdir(parents=True)
    ds = shapes_dataset(n, seed=seed)
    for i in range(n):
        save_png(ds.images[i].float() / 255, path / f"{i:03d}.png")
    return path


def test_fid_of_a_folder_with_itself_and_the_cache(tmp_path):
    a = image_folder(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    ext, cache = PoolFeatures(), tmp_path / "cache"
    mu_a, sigma_a, info_a = fid_mod.reference_statistics(str(a), ext, image_size=28, channels=1, cache=cache)
    mu_b, sigma_b, _ = fid_mod.reference_statistics(str(b), ext, image_size=28, channels=1, cache=cache)
    assert fid_mod.frechet_distance(mu_a, sigma_a, mu_b, sigma_b) == pytest.approx(0.0, abs=1e-6)
    assert info_a["n"] == 40 and not info_a["cached"]

    calls = ext.calls
    mu_again, _, info = fid_mod.reference_statistics(str(a), ext, image_size=28, channels=1, cache=cache)
    assert info["cached"] and ext.calls == calls and np.array_equal(mu_again, mu_a)
    # a changed file is a different reference set: recomputed, not served stale
    save_png(torch.ones(1, 28, 28), a / "000.png")
    _, _, info = fid_mod.reference_statistics(str(a), ext, image_size=28, channels=1, cache=cache)
    assert not info["cached"] and ext.calls > calls


def test_fid_of_model_samples(tiny_model_dir, tmp_path):
    folder = image_folder(tmp_path / "ref", n=48)
    model = hub.from_pretrained(str(tiny_model_dir))
    ext = PoolFeatures()
    result = fid_mod.fid(model, str(folder), ext, n_samples=32, cache=tmp_path / "c")
    assert np.isfinite(result["fid"]) and result["fid"] > 0
    assert result["reference"]["files"] == 32 and result["n_generated"] == 32
    again = fid_mod.fid(model, str(folder), ext, n_samples=32, cache=tmp_path / "c")
    assert again["fid"] == pytest.approx(result["fid"]) and again["reference"]["cached"]


def test_inception_weights_missing_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match="Inception weights not found.*--inception-weights") as exc:
        fid_mod.InceptionExtractor(tmp_path / "pt_inception.pth")
    assert "\n" not in str(exc.value)


def test_inception_extractor_loads_a_local_file(tmp_path):
    pytest.importorskip("pytorch_fid")
    import torchvision

    # torchvision's Inception3 has the same parameter names and shapes as the FID variant
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    ext = fid_mod.InceptionExtractor(tmp_path / "w.pth")
    ext.net.resize_input = False  # 80 px instead of the usual 299 keeps the test fast
    assert ext(torch.rand(1, 1, 80, 80)).shape == (1, 2048)
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not the FID Inception weights"):
        fid_mod.InceptionExtractor(tmp_path / "bad.pth")


# -- the command ------------------------------------------------------------------------------
@pytest.fixture
def shapes_as_mnist(monkeypatch):
    """`evaluate --dataset mnist` served by the toy shapes (no download, labels known)."""
    from trainer import data

    ds = shapes_dataset(256)
    monkeypatch.setattr(data, "load", lambda name, root=None, limit=None, progress=True, **format: ds)
    return ds


def test_evaluate_command_clustering_and_pseudo_label(tiny_model_dir, shapes_as_mnist, tmp_path):
    from trainer.evaluate.clustering import predict_clusters

    out = tmp_path / "eval"
    result = evaluate(str(tiny_model_dir), dataset="mnist", out=out, device="cpu", pseudo_label_cnn=True,
                      pseudo_label=PseudoLabelConfig(threshold=0.0, max_steps=3))
    model = hub.from_pretrained(str(tiny_model_dir))
    pred, _ = predict_clusters(model, shapes_as_mnist.test_images)
    acc, mapping = cluster_accuracy(pred.numpy(), shapes_as_mnist.test_labels.numpy())
    assert result["accuracy"] == pytest.approx(acc) and result["n"] == 64
    assert result["cluster_to_label"] == {str(k): v for k, v in mapping.items()}
    assert 0 <= result["nmi"] <= 1 and -1 <= result["ari"] <= 1
    assert np.trace(np.array(result["confusion"])) == round(acc * 64)
    assert (out / "confusion.png").is_file() and result["confusion_png"] == str(out / "confusion.png")
    assert json.loads((out / "evaluation.json").read_text()) == json.loads(json.dumps(result))
    assert result["pseudo_label_cnn"]["steps"] == 3 and "Hungarian" in result["protocol"]["clustering"]
    text = report(result)
    assert "accuracy" in text and "pseudo-label CNN" in text
    assert json.loads(report(result, as_json=True))["n"] == 64


def test_evaluate_turns_the_images_to_the_background_the_model_learned(tiny_model_dir, shapes_as_mnist, tmp_path):
    from trainer.evaluate.clustering import predict_clusters

    folder = tmp_path / "light"
    shutil.copytree(tiny_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "background": "light"}))  # as if of ink on paper
    result = evaluate(str(folder), dataset="mnist", device="cpu")
    pred, _ = predict_clusters(hub.from_pretrained(str(folder)), 255 - shapes_as_mnist.test_images)
    assert result["accuracy"] == pytest.approx(cluster_accuracy(pred.numpy(), shapes_as_mnist.test_labels.numpy())[0])
    assert result["inverted_to"] == "light background"
    assert "(inverted to the model's light background)" in report(result).splitlines()[0]
    assert "inverted_to" not in evaluate(str(tiny_model_dir), dataset="mnist", device="cpu")


def test_evaluate_command_fid_with_a_stand_in(tiny_model_dir, shapes_as_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = image_folder(tmp_path / "ref", n=40)
    result = evaluate(str(tiny_model_dir), dataset="mnist", fid_against=str(folder), fid_samples=40,
                      extractor=PoolFeatures(), device="cpu")
    assert result["fid"]["fid"] > 0 and result["fid"]["reference"]["files"] == 40
    assert list((tmp_path / "xdg" / "infoedit" / "fid").glob("*.npz"))


def test_evaluate_command_factorvae_on_dsprites(tmp_path):
    torch.manual_seed(0)
    model = InfoVAEGAN(InfoVAEGANConfig(image_size=64, n_classes=3, c_dim=4, z_dim=8, width=0.125,
                                        dataset="dsprites"))
    hub.save_pretrained(model, tmp_path / "m")
    result = evaluate(str(tmp_path / "m"), factorvae=True, representation="mu+softmax", limit=256,
                      factorvae_protocol=TINY_VOTES, device="cpu")
    fv = result["factorvae"]
    assert fv["code_dim"] == 7 and 0.0 <= fv["eval_accuracy"] <= 1.0
    assert fv["protocol"]["representation"] == "mu+softmax" and fv["protocol"]["n_train_votes"] == 32
    assert fv["protocol"]["factor_sizes"] == [3, 6, 40, 32, 32] and "procedural" in fv["protocol"]["data"]
    assert result["n"] == 256  # clustering on the shape factor


@pytest.mark.parametrize("kwargs, message", [
    (dict(split="val"), "--split"),
    (dict(representation="z"), "--representation"),
    (dict(fid_against="somewhere"), "--inception-weights"),
    (dict(factorvae=True), "64px"),
    (dict(dataset="celeba", pseudo_label_cnn=True), "--pseudo-label-cnn"),
    (dict(dataset="nope"), "unknown dataset"),
])
def test_evaluate_command_bad_input(tiny_model_dir, kwargs, message):
    with pytest.raises(ValueError, match=message) as exc:
        evaluate(str(tiny_model_dir), **{"dataset": "mnist", "device": "cpu", **kwargs})
    assert "\n" not in str(exc.value)


def test_evaluate_command_missing_model(tmp_path):
    with pytest.raises(ValueError, match="no model folder"):
        evaluate(str(tmp_path / "missing"), dataset="mnist")


def test_evaluate_on_real_mnist_train_split(tiny_model_dir):
    root = require_data("mnist")
    result = evaluate(str(tiny_model_dir), dataset="mnist", data=str(root), split="train", limit=500,
                      device="cpu")
    assert result["n"] == 500 and result["evaluated_on"] == "mnist train split"
    assert sum(map(sum, result["confusion"])) == 500


def test_cli_evaluate_keeps_earlier_results_without_force(tiny_model_dir, shapes_as_mnist, tmp_path):
    from typer.testing import CliRunner

    from infoedit.cli import app

    out = tmp_path / "eval"
    args = ["evaluate", str(tiny_model_dir), "--dataset", "mnist", "--device", "cpu", "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    before = (out / "evaluation.json").read_bytes()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already exists (use --force" in again.output
    assert (out / "evaluation.json").read_bytes() == before
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0
