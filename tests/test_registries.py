"""The registries: datasets (infoedit.datasets) and model families (infoedit.models, trainer.families)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from infoedit import datasets
from infoedit.datasets import DatasetSpec
from trainer import data
from trainer.config import TrainConfig
from trainer.train import defaults_for, train


def test_an_unknown_name_gets_one_line_listing_every_registered_dataset():
    with pytest.raises(data.DataError) as err:
        data.load("nope")
    message = str(err.value)
    assert "\n" not in message and message.startswith("nope: unknown dataset")
    for name in datasets.DATASETS:
        assert (name if name != "folder" else "folder:PATH") in message


def test_every_entry_reads_consistently():
    for name, spec in datasets.DATASETS.items():
        assert spec.name == name
        assert spec.loader in ("idx", "rotated", "dsprites", "folder")
        assert not spec.class_names or len(spec.class_names) == spec.n_classes
        assert spec.loader != "rotated" or spec.source in datasets.DATASETS
        assert spec.loader != "idx" or spec.idx_folder
        assert spec.framing in ("none", "digit", "fill", "face")
    assert datasets.framing("a model of a dataset this version does not know") == "none"


def test_a_new_folder_dataset_is_one_registry_entry(tmp_path, monkeypatch):
    """Registered once, a dataset loads from --data, holds its tenth out if asked, gives its
    defaults (size, K, codes, epochs) to train, and the model card records it."""
    spec = DatasetSpec("pets", "folder", 28, 1, 4, 3, 7, z_dim=8, folders=("pet_photos*",), hold_out=True)
    monkeypatch.setitem(datasets.DATASETS, "pets", spec)
    photos = tmp_path / "pet_photos_v1"
    photos.mkdir()
    for i in range(40):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (50, 40), dtype=np.uint8)).save(
            photos / f"{i:03d}.png")
    ds = data.load("pets", tmp_path, progress=False)
    assert ds.images.shape[1:] == (1, 28, 28)
    assert ds.held_out is not None and len(ds) + ds.held_out[0] == 40
    assert defaults_for("pets") == dict(image_size=28, channels=1, n_classes=4, c_dim=3, epochs=7, z_dim=8)

    out = tmp_path / "run"
    train("pets", out, "infovaegan", str(tmp_path), {"width": 0.125}, TrainConfig(max_steps=2, batch_size=4),
          progress=False)
    config = json.loads((out / "config.json").read_text())
    assert (config["dataset"], config["image_size"], config["n_classes"], config["c_dim"]) == ("pets", 28, 4, 3)


def test_every_model_family_has_a_trainer_and_every_trainer_a_family():
    from infoedit.models import FAMILIES
    from trainer.families import TRAINERS

    assert set(FAMILIES) == set(TRAINERS)
