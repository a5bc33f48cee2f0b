"""Out-of-domain inputs are said, not hidden: the ood column of encode and classify (infoedit.ood)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from infoedit import engine, hub, ood

CLI = [sys.executable, "-m", "infoedit.cli"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "mnist"


def test_the_reference_flags_its_quantile_of_the_images_it_was_measured_on(tiny_model_dir):
    from conftest import shapes_dataset

    model = hub.from_pretrained(str(tiny_model_dir))
    x = shapes_dataset(600, seed=5).images.float() / 255
    ref = ood.reference(model, x)
    found = engine.encode(model, x)
    measured = ood.measures(model, x, found)
    scores, flagged = ood.score(ref, x, *measured)
    # each measure is above its threshold for 1 - QUANTILE of them; as many are flagged as
    # either threshold alone would flag (the score of a reference without the combined length)
    either = np.mean(ood.score({k: v for k, v in ref.items() if k != "combined"}, x, *measured)[1])
    assert 1 - ref["quantile"] - 0.005 <= np.mean(flagged) <= 2 * (1 - ref["quantile"]) + 0.005
    # (within 1%: the tiny model draws through G, whose noise z depends on how the images are batched)
    assert abs(np.mean(flagged) - either) <= 0.01
    assert all((s > 1) == f for s, f in zip(scores, flagged))


def test_a_trained_folder_carries_its_reference_and_an_old_one_reads_none(tiny_model_dir, tmp_path):
    assert hub.from_pretrained(str(tiny_model_dir)).ood["images"] > 0  # written by training
    old = tmp_path / "old"
    old.mkdir()
    for f in (hub.CONFIG_NAME, hub.WEIGHTS_NAME):
        (old / f).write_bytes((tiny_model_dir / f).read_bytes())
    assert hub.from_pretrained(str(old)).ood is None
    digit = EXAMPLES / "3.png"
    res = subprocess.run([*CLI, "encode", str(digit), "--json", "--model", str(old)], capture_output=True, text=True)
    row = json.loads(res.stdout)
    assert res.returncode == 0 and row["ood_score"] is None and row["ood"] is None and res.stderr == ""


def test_blank_and_noise_are_flagged_by_the_mnist_model_and_digits_are_not(tmp_path):
    """Through the console command, as a script reads it: a column, one warning line, and the
    output stays parseable."""
    rng = np.random.default_rng(0)
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.new("L", (1, 1), 200).save(odd / "blank-1x1.png")
    Image.new("L", (50, 40), 30).save(odd / "blank.png")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(odd / "noise.png")
    digits = sorted(EXAMPLES.glob("*.png"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([*CLI, "encode", *map(str, digits), *map(str, sorted(odd.iterdir())), "--json"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    rows = {"/".join(Path(r["path"]).parts[-2:]): r for r in map(json.loads, res.stdout.splitlines())}
    assert all(rows[f"odd/{p.name}"]["ood"] for p in odd.iterdir())
    assert sum(rows[f"mnist/{p.name}"]["ood"] for p in digits) <= 1  # the examples are test digits
    assert res.stderr.splitlines() == [line for line in res.stderr.splitlines() if "warning" in line]
    assert len(res.stderr.splitlines()) == 1 and "unlike mnist's training images" in res.stderr

    listed = subprocess.run([*CLI, "classify", str(odd)], capture_output=True, text=True, env=env)
    assert listed.returncode == 0
    table = list(csv.DictReader(listed.stdout.splitlines()))
    assert [r["ood"] for r in table] == ["1"] * 3 and all(float(r["ood_score"]) >= 0 for r in table)
    assert "3 of 3 images look unlike" in listed.stderr


def test_two_measures_near_their_thresholds_flag_together_and_an_old_reference_reads_the_larger():
    """ood_score is the two ratios' length over the reference's combined length: an image near
    both thresholds is flagged, one just over a single threshold may not be; a reference written
    before the combined length scores the larger ratio, as it did."""
    ref = {"code_mean": [0.0], "code_precision": [[1.0]], "drawing_error": 1.0, "code_distance": 1.0,
           "combined": 1.2}
    x = torch.rand(2, 1, 28, 28)
    error, vector = torch.tensor([0.9, 1.1]), torch.tensor([[0.9], [0.0]], dtype=torch.float64)
    scores, flagged = ood.score(ref, x, error, vector)
    assert flagged == [True, False] and scores == [round(float(np.hypot(0.9, 0.9)) / 1.2, 3), round(1.1 / 1.2, 3)]
    old = {k: v for k, v in ref.items() if k != "combined"}
    assert ood.score(old, x, error, vector) == ([0.9, 1.1], [False, True])


def test_reference_of_a_model_without_continuous_codes(tiny_model_dir):
    model = hub.from_pretrained(str(tiny_model_dir))
    model.config.c_dim = 0  # as a model with only a category would be
    found = engine.Codes(torch.tensor([[1.0, 0, 0]]), torch.zeros(1, 0), torch.zeros(1, 0))
    vector = ood._code_vector(found)
    ref = {"code_mean": [], "code_precision": [], "drawing_error": 1.0, "code_distance": 1.0}
    scores, flagged = ood.score(ref, torch.rand(1, 1, 28, 28), torch.tensor([0.5]), vector)
    assert scores == [0.5] and flagged == [False]
