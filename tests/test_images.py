"""The shared preprocessing: every PIL mode, EXIF rotation, polarity, bad files, the lazy file walk."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from infoedit.images import (ImageError, iter_images, list_images, load_for_model, load_image, make_grid,
                             match_polarity, save_png)


def _gradient(w: int = 40, h: int = 30) -> np.ndarray:
    return np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))


def _modes() -> dict[str, Image.Image]:
    g = _gradient()
    rgb = Image.fromarray(np.stack([g, g[:, ::-1], np.full_like(g, 128)], axis=2), "RGB")
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(g[::-1].copy(), "L"))
    p = rgb.quantize(16)
    p.info["transparency"] = 0
    return {"L": Image.fromarray(g, "L"), "RGB": rgb, "RGBA": rgba, "P": p, "CMYK": rgb.convert("CMYK"),
            "I;16": Image.fromarray(g.astype(np.uint16) * 200), "LA": rgba.convert("LA")}


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "I;16", "LA"])
@pytest.mark.parametrize("channels", [1, 3])
def test_load_image_any_mode_gives_model_shape_in_unit_range(tmp_path, mode, channels):
    img = _modes()[mode]
    assert img.mode == mode
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    x = load_image(path, 28, channels)
    assert x.shape == (channels, 28, 28) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert x.std() > 0.05, f"{mode}: the gradient was lost in conversion"


def test_exif_rotation_is_applied(tmp_path):
    # Stored 40 wide x 20 high, left half white; orientation 6 displays it rotated 90 degrees
    # clockwise, so upright the white half is on top.
    arr = np.zeros((20, 40), np.uint8)
    arr[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr, "L").convert("RGB").save(path, quality=95, exif=exif)
    x = load_image(path, 20, 1)[0]
    assert x[:8].mean() > 0.9 and x[-8:].mean() < 0.1
    assert abs(x[:, :8].mean() - x[:, -8:].mean()) < 0.05


@pytest.mark.parametrize("content, message", [(b"not an image at all", "not an image"),
                                              (None, "no such file"), ("dir", "is a directory")])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        load_image(path, 28, 1)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_png_is_an_image_error(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_gradient(), "L").save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="cut.png"):
        load_image(path, 28, 1)


def _ink_on_paper() -> np.ndarray:
    x = np.full((1, 8, 8), 255, np.uint8)
    x[0, 2:6, 3:5] = 0
    return x


def test_match_polarity_auto_inverts_only_light_backgrounds():
    paper = _ink_on_paper()
    assert np.array_equal(match_polarity(paper, "auto"), 255 - paper)
    digit = 255 - paper
    assert np.array_equal(match_polarity(digit, "auto"), digit)
    half = np.zeros((1, 4, 4), np.uint8)
    half[0, :2], half[0, 2:] = 127, 128  # border mean 127.5: half-scale is not light
    assert np.array_equal(match_polarity(half, "auto"), half)
    half[0, 0, 0] = 128
    assert np.array_equal(match_polarity(half, "auto"), 255 - half)


def test_match_polarity_auto_turns_inputs_to_a_light_background_model():
    paper = _ink_on_paper()
    assert np.array_equal(match_polarity(paper, "auto", "light"), paper)
    assert np.array_equal(match_polarity(255 - paper, "auto", "light"), paper)
    assert np.array_equal(match_polarity(paper, "yes", "light"), 255 - paper)  # forcing ignores the model


def test_match_polarity_forced_and_rgb_untouched():
    digit = 255 - _ink_on_paper()
    assert np.array_equal(match_polarity(digit, "yes"), 255 - digit)
    assert np.array_equal(match_polarity(_ink_on_paper(), "no"), _ink_on_paper())
    rgb = np.full((3, 8, 8), 255, np.uint8)
    assert np.array_equal(match_polarity(rgb, "yes"), rgb)
    with pytest.raises(ValueError, match="invert"):
        match_polarity(digit, "sometimes")


def test_load_for_model_applies_polarity(tmp_path):
    path = tmp_path / "scan.png"
    save_png(torch.from_numpy(_ink_on_paper()).float() / 255, path)
    x = load_for_model(path, 8, 1, "auto")
    assert torch.allclose(x, 1 - load_image(path, 8, 1))
    assert x[0, 0, 0] == 0 and x[0, 3, 3] == 1


def test_iter_images_walks_lazily_sorted_and_skips(tmp_path):
    for rel in ["b.png", "a.JPG", "notes.txt", "sub/c.png", "sub/deeper/d.webp", "out/e.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_images(tmp_path, skip=tmp_path / "out")]
    assert found == ["a.JPG", "b.png", "sub/c.png", "sub/deeper/d.webp"]
    assert list_images(tmp_path) == sorted(iter_images(tmp_path))
    assert len(list_images(tmp_path)) == 5


def test_make_grid_and_save_png_round_trip(tmp_path):
    images = torch.rand(6, 1, 5, 5)
    grid = make_grid(images, nrow=3, pad=1)
    assert grid.shape == (1, 2 * 6 + 1, 3 * 6 + 1)
    assert torch.equal(grid[:, 1:6, 1:6], images[0])
    save_png(grid, tmp_path / "g.png")
    back = load_image(tmp_path / "g.png", grid.shape[1], 1)  # not square: load crops, so compare a cell
    assert back.shape == (1, 13, 13)
    assert not list(tmp_path.glob(".*.tmp")), "the temp file of the atomic write was left behind"
