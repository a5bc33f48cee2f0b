"""trainer.dsprites: index maths, the procedural renderer's conventions, and the real-file loader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer import dsprites as D

REPO = Path(__file__).resolve().parents[1]
# bench/dsprites_iou.py measured 0.9994 mean IoU on all 64,834 real images (worst image 0.84);
# 0.98 leaves room for an unlucky 200-image sample without hiding a broken convention (~0.14-0.69).
REAL_IOU_MIN = 0.98


def dsprites_dir() -> Path:
    path = Path(os.environ.get("INFOEDIT_DATA", REPO.parent / "shared" / "data")) / "dsprites"
    if not (path / "dsprites_subset.npz").is_file():
        pytest.skip(f"dSprites data not found at {path}; set INFOEDIT_DATA")
    return path


def one(shape=0, scale=5, orientation=0, x=16, y=16) -> np.ndarray:
    """A single sprite as a bool [64, 64] array."""
    return D.render(np.array([[shape, scale, orientation, x, y]]))[0, 0].numpy().astype(bool)


def centroid(img: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(img)
    return rows.mean(), cols.mean()


def mean_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool().flatten(1), b.bool().flatten(1)
    return ((a & b).sum(1).double() / (a | b).sum(1).clamp(min=1).double()).mean().item()


def test_constants():
    assert D.FACTOR_NAMES == ("shape", "scale", "orientation", "posX", "posY")
    assert D.FACTOR_SIZES == (3, 6, 40, 32, 32)
    assert D.N_IMAGES == int(np.prod(D.FACTOR_SIZES)) == 737280


def test_index_factor_round_trip():
    assert D.index_to_factors(0).tolist() == [0, 0, 0, 0, 0]
    assert D.index_to_factors(D.N_IMAGES - 1).tolist() == [2, 5, 39, 31, 31]
    assert D.factors_to_index(np.array([2, 5, 39, 31, 31])) == D.N_IMAGES - 1
    # Official strides, posY fastest.
    eye = np.eye(5, dtype=np.int64)
    assert D.factors_to_index(eye).tolist() == [245760, 40960, 1024, 32, 1]
    idx = np.random.default_rng(0).integers(0, D.N_IMAGES, 1000)
    idx = np.concatenate([idx, [0, D.N_IMAGES - 1]])
    factors = D.index_to_factors(idx)
    assert factors.shape == (len(idx), 5)
    assert (factors < np.array(D.FACTOR_SIZES)).all() and (factors >= 0).all()
    assert (D.factors_to_index(factors) == idx).all()
    assert np.array_equal(np.ravel_multi_index(tuple(factors.T), D.FACTOR_SIZES), idx)


def test_render_output_format():
    classes = D.index_to_factors(np.random.default_rng(1).integers(0, D.N_IMAGES, 64))
    out = D.render(classes)
    assert out.dtype == torch.uint8 and out.shape == (64, 1, 64, 64)
    assert set(out.unique().tolist()) <= {0, 1}
    assert (out.flatten(1).sum(1) > 0).all()           # every sprite is visible
    assert torch.equal(D.render(torch.from_numpy(classes)), out)   # tensors work too
    assert D.render(np.zeros((0, 5), dtype=np.int64)).shape == (0, 1, 64, 64)
    with pytest.raises(ValueError):
        D.render(np.array([[3, 0, 0, 0, 0]]))


def test_square_area_at_scale_one():
    # Side 19.2 px sampled at pixel centres: 20x20 at pos 0 (as in the real file), 19 or 20 px per
    # side elsewhere.
    assert one(0, 5, 0, 0, 0).sum() == 400
    for x, y in [(16, 16), (5, 27), (31, 31)]:
        assert 361 <= one(0, 5, 0, x, y).sum() <= 400
    assert one(0, 0, 0, 0, 0).sum() == 100             # scale 0.5: half the side


def test_position_directions():
    r0, c0 = centroid(one(1, 3, 0, 10, 10))
    r1, c1 = centroid(one(1, 3, 0, 20, 10))
    assert c1 - c0 == pytest.approx(320 / 31, abs=0.6) and r1 == pytest.approx(r0, abs=0.6)
    # Measured on the real files: posY grows -> the sprite moves down (row index grows).
    r2, c2 = centroid(one(1, 3, 0, 10, 20))
    assert r2 - r0 == pytest.approx(320 / 31, abs=0.6) and c2 == pytest.approx(c0, abs=0.6)


def test_orientation_is_counter_clockwise():
    # The heart's centroid sits above its centre at orientation 0; a quarter turn counter-clockwise
    # (as displayed, the measured convention) carries it to the left.
    r0, c0 = centroid(one(2, 5, 0))
    centre = 16 + 32 * 16 / 31 - 0.5                  # in pixel-index units, like centroid()
    assert r0 < centre - 1 and abs(c0 - centre) < 0.3
    r1, c1 = centroid(one(2, 5, 10))                  # 10/39 of a turn, ~92 degrees
    assert c1 < centre - 1 and abs(r1 - centre) < 0.5
    assert np.array_equal(one(2, 5, 0), one(2, 5, 39))  # 0 and 2*pi
    assert np.array_equal(one(0, 5, 0), one(0, 5, 0).T)  # a square is symmetric


def test_procedural_dataset():
    ds = D.ProceduralDSprites()
    assert len(ds) == D.N_IMAGES
    idx = torch.tensor([0, 12345, D.N_IMAGES - 1])
    f = ds.factors(idx)
    assert f.dtype == torch.int64 and f.shape == (3, 5)
    assert f[2].tolist() == [2, 5, 39, 31, 31]
    imgs = ds.images(idx)
    assert imgs.dtype == torch.uint8 and imgs.shape == (3, 1, 64, 64)
    assert torch.equal(imgs, D.render(f.numpy()))
    assert torch.equal(ds.images(idx.numpy()), imgs)
    with pytest.raises(IndexError):
        ds.images(torch.tensor([D.N_IMAGES]))


def test_matches_real_frames():
    root = dsprites_dir()
    images, classes = D.load_npz(root / "dsprites_subset.npz")
    assert images.dtype == torch.uint8 and images.shape == (20000, 1, 64, 64)
    assert classes.dtype == torch.int64 and classes.shape == (20000, 5)
    pick = torch.from_numpy(np.random.default_rng(0).choice(len(images), 200, replace=False))
    assert mean_iou(D.render(classes[pick]), images[pick]) >= REAL_IOU_MIN


def test_load_downsampled_gives_official_classes():
    root = dsprites_dir()
    images, classes = D.load_npz(root / "dsprites_downsampled.npz")
    assert images.shape == (46080, 1, 64, 64)
    # The file's own latents_classes index a 10x16x16 sub-grid; ours are official (every 4th / 2nd).
    assert (classes[:, 2] % 4 == 0).all() and (classes[:, 3:] % 2 == 0).all()
    assert classes[:, 2].max() == 36 and classes[:, 3].max() == 30
    pick = torch.arange(0, len(images), 230)
    assert mean_iou(D.render(classes[pick]), images[pick]) >= REAL_IOU_MIN


def test_load_official_layout(tmp_path):
    # The official file has a constant colour column first; shape values are 1, 2, 3.
    classes = D.index_to_factors(np.array([0, 5000, 300000, D.N_IMAGES - 1]))
    imgs = D.render(classes)[:, 0].numpy()
    values = np.column_stack([np.ones(4), classes[:, 0] + 1.0, D.SCALES[classes[:, 1]],
                              D.ORIENTATIONS[classes[:, 2]], D.POSITIONS[classes[:, 3]], D.POSITIONS[classes[:, 4]]])
    with_colour = np.column_stack([np.zeros(4, dtype=np.int64), classes])
    np.savez(tmp_path / "official.npz", imgs=imgs, latents_classes=with_colour, latents_values=values)
    np.savez(tmp_path / "classes_only.npz", imgs=imgs, latents_classes=with_colour)
    for name in ("official.npz", "classes_only.npz"):
        got_imgs, got_classes = D.load_npz(tmp_path / name)
        assert got_imgs.shape == (4, 1, 64, 64) and got_imgs.dtype == torch.uint8
        assert got_classes.tolist() == classes.tolist()


def test_load_missing_and_corrupt_files(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(ValueError, match="nope.npz"):
        D.load_npz(missing)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    with pytest.raises(ValueError, match="corrupt.npz") as err:
        D.load_npz(corrupt)
    assert "\n" not in str(err.value)
    no_imgs = tmp_path / "no_imgs.npz"
    np.savez(no_imgs, latents_classes=np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="no_imgs.npz.*imgs"):
        D.load_npz(no_imgs)
    bad_shape = tmp_path / "bad_shape.npz"
    np.savez(bad_shape, imgs=np.zeros((2, 32, 32), np.uint8), latents_classes=np.zeros((2, 5), np.int64))
    with pytest.raises(ValueError, match="bad_shape.npz"):
        D.load_npz(bad_shape)
