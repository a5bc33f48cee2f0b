"""The bundled models: present, small, loadable by name offline, and as accurate as their card says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import REPO, require_data
from infoedit import hub
from infoedit.cli import app

runner = CliRunner()
BUNDLED = {"mnist": "mnist", "fashion-mnist": "fashion"}  # name -> examples/ folder


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_photos_of_the_example_digits_classify_as_the_digits_do(tmp_path):
    """--frame auto: a photo of ink on paper is cut out and framed as MNIST frames its digits."""
    from conftest import photo_of

    from infoedit.images import load_pixels

    digits = sorted((REPO / "examples" / "mnist").glob("[0-9].png"))
    for i, d in enumerate(digits):
        photo_of(load_pixels(d, 28, 1)[0], seed=i).save(tmp_path / f"{d.stem}.jpg", quality=90)
    clusters = {}
    for folder, frame in ((REPO / "examples" / "mnist", "auto"), (tmp_path, "auto"), (tmp_path, "no")):
        out = tmp_path / f"{frame}-{folder.name}.csv"
        result = runner.invoke(app, ["classify", str(folder), "--frame", frame, "-o", str(out)])
        assert result.exit_code == 0, result.output
        rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
        clusters[folder, frame] = {Path(r[0]).stem: r[1] for r in rows if Path(r[0]).stem.isdigit()}
    originals = clusters[REPO / "examples" / "mnist", "auto"]
    assert clusters[tmp_path, "auto"] == originals
    assert sum(clusters[tmp_path, "no"][k] == v for k, v in originals.items()) <= 5  # unframed: the page


def test_a_folder_of_photos_classifies_alike_when_worker_processes_frame_it(tmp_path, monkeypatch):
    """classify decodes a folder of photos (slow to frame) in forked processes once its first
    files show it: the listing is the one threads give, file for file."""
    from conftest import photo_of

    from infoedit import decoding
    from infoedit.images import load_pixels

    for seed in range(3):
        for d in sorted((REPO / "examples" / "mnist").glob("[0-9].png")):
            photo_of(load_pixels(d, 28, 1)[0], seed=seed).save(tmp_path / f"{d.stem}-{seed}.jpg", quality=90)
    started = []
    real_pool = decoding._process_pool
    monkeypatch.setattr(decoding, "_process_pool", lambda load, workers: started.append(1) or real_pool(load, workers))
    listings = {}
    for batch in (decoding.PROBE + 4, 64):  # full first batches (processes), one part-full batch (threads)
        out = tmp_path / f"batch-{batch}.csv"
        result = runner.invoke(app, ["classify", str(tmp_path), "--batch-size", str(batch), "-o", str(out)])
        assert result.exit_code == 0, result.output
        listings[batch] = out.read_text()
    assert started == [1], "the photos were framed in worker processes with the smaller batch only"
    assert listings[decoding.PROBE + 4] == listings[64] and listings[64].count("\n") == 31


def test_the_example_photos_read_as_their_digits():
    """The shipped photos (one half in a shadow, one on notebook paper) are named by what they show."""
    for photo in sorted((REPO / "examples" / "photos").glob("[0-9]-*.jpg")):
        result = runner.invoke(app, ["encode", str(photo), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout.splitlines()[0])["name"] == photo.name[0], photo.name


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_is_small_and_documented(name):
    folder = hub.PRETRAINED / name
    files = [folder / hub.CONFIG_NAME, folder / hub.WEIGHTS_NAME, folder / hub.CARD_NAME]
    assert sum(f.stat().st_size for f in files) <= 5_000_000
    card = (folder / hub.CARD_NAME).read_text()
    assert re.search(r"command: `infoedit train " + name, card) and re.search(r"seed: \d+", card)
    assert re.search(r"held-out accuracy .*: \d+\.\d+%", card)
    assert hub.from_pretrained(name).config.dataset == name


def test_every_command_works_on_the_default_model(tmp_path):
    digits = sorted((REPO / "examples" / "mnist").glob("*.png"))
    out = runner.invoke(app, ["encode", str(digits[3]), "--json"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.stdout.splitlines()[0])["probabilities"]) == 10
    for args in (["swap", str(digits[3]), str(digits[7]), "-o", str(tmp_path / "swap.png")],
                 ["traverse", str(digits[3]), "-o", str(tmp_path / "traverse.png")],
                 ["sample", "-o", str(tmp_path / "sample.png")],
                 ["classify", str(REPO / "examples" / "mnist"), "-o", str(tmp_path / "c.csv")],
                 ["reconstruct", str(digits[3]), "-o", str(tmp_path / "rec.png")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    assert len((tmp_path / "c.csv").read_text().splitlines()) == 1 + len(digits)


@pytest.mark.parametrize("name", BUNDLED)
def test_card_accuracy_is_what_the_model_scores(name):
    """The card's held-out accuracy, recomputed from the float16 weights on the real test set."""
    require_data(name)
    from conftest import data_root
    from trainer.data import load
    from trainer.evaluate.clustering import cluster_accuracy
    from trainer.evaluate.clustering import predict_clusters

    card = (hub.PRETRAINED / name / hub.CARD_NAME).read_text()
    claimed = float(re.search(r"held-out accuracy .*: (\d+\.\d+)%", card).group(1)) / 100
    ds = load(name, str(data_root()), progress=False)
    pred, _ = predict_clusters(hub.from_pretrained(name), ds.test_images, scale=ds.scale)
    acc, _ = cluster_accuracy(pred.numpy(), ds.test_labels.numpy())
    assert acc == pytest.approx(claimed, abs=0.003)  # the card's number is the float32 run's
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shipped = re.search(rf"\| `{name}` \| (\d+\.\d+)% \|", readme).group(1)
    assert shipped == f"{100 * acc:.2f}"  # the README's is what these very weights score
