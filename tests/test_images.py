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


def _digit() -> np.ndarray:
    """A 28x28 '7'-like stroke figure framed as MNIST frames its digits: a 20 px tall box."""
    x = np.zeros((28, 28), np.uint8)
    x[4:7, 8:20] = 255                                      # the bar
    for r in range(7, 24):                                  # the slanted stem
        c = 19 - (r - 7) * 8 // 17
        x[r, c - 1:c + 2] = 255
    return x


@pytest.mark.parametrize("vignette", [0.0, 0.4])
def test_frame_cuts_the_digit_out_of_a_photo_as_mnist_frames_it(tmp_path, vignette):
    from conftest import photo_of

    from infoedit.framing import frame_object

    digit = _digit()
    path = tmp_path / "photo.jpg"
    photo_of(digit, vignette=vignette).save(path, quality=90)  # 0.4: corners 40% darker, as a cheap lens
    framed = load_for_model(path, 28, 1, "auto", "dark", "auto", "digit")[0].numpy()
    plain = load_for_model(path, 28, 1, "auto", "dark", "no", "digit")[0].numpy()
    assert framed[0].max() == 0 and framed[:, 0].max() == 0   # the paper is black, lighting and noise gone
    rows, cols = np.flatnonzero(framed.max(1) > 0.25), np.flatnonzero(framed.max(0) > 0.25)
    assert rows[-1] - rows[0] + 1 in (19, 20, 21)            # the longer side fills MNIST's 20 px box
    assert cols[-1] - cols[0] + 1 < rows[-1] - rows[0] + 1
    mass = framed.sum()
    assert abs(framed.sum(1) @ np.arange(28) / mass - 13.5) <= 0.75  # centred by its centre of mass
    assert abs(framed.sum(0) @ np.arange(28) / mass - 13.5) <= 0.75
    target = frame_object(digit[None], 28, "digit")[0] / 255.0  # the clean digit, framed the same way
    assert np.corrcoef(framed.ravel(), target.ravel())[0, 1] > 0.9
    assert np.corrcoef(plain.ravel(), target.ravel())[0, 1] < 0.5  # a plain resize keeps the page


@pytest.mark.parametrize("paper", ["ruled", "squared", "notebook", "box", "underline"])
def test_frame_takes_the_lines_of_the_paper_out(tmp_path, paper):
    from conftest import photo_of

    from infoedit.framing import frame_object

    digit = _digit()
    path = tmp_path / "photo.jpg"
    # a grey page in dim light (its border under half-scale) still reads as ink on paper
    photo_of(digit, seed=1, vignette=0.2, paper=paper, level=120).save(path, quality=90)
    framed = load_for_model(path, 28, 1, "auto", "dark", "auto", "digit")[0].numpy()
    assert framed[0].max() == 0 and framed[:, 0].max() == 0 and framed[-1].max() == 0
    target = frame_object(digit[None], 28, "digit")[0] / 255.0
    # a line touching the digit takes the digit's edge with it: the framing may move by a pixel
    moves = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)] if paper == "underline" else [(0, 0)]
    assert max(np.corrcoef(np.roll(framed, move, axis=(0, 1)).ravel(), target.ravel())[0, 1] for move in moves) > 0.9


def test_frame_cuts_a_sheet_lying_on_a_desk_out_of_the_photo(tmp_path):
    from conftest import photo_of

    from infoedit.framing import cut_sheet_from_desk

    digit = _digit()
    sheet = Image.fromarray(np.asarray(photo_of(digit).convert("L"), np.float32), "F")
    turned = np.asarray(sheet.rotate(6, Image.Resampling.BILINEAR, expand=True))
    inside = np.asarray(Image.fromarray(np.ones((480, 640), np.float32), "F").rotate(
        6, Image.Resampling.BILINEAR, expand=True))
    h, w = turned.shape

    def lying_on(surface: float):  # the turned sheet on a surface of this grey, saved as JPEG
        desk = np.full((700, 860), surface, np.float32) + np.random.default_rng(0).normal(0, 6, (700, 860))
        desk[60:60 + h, 80:80 + w] = desk[60:60 + h, 80:80 + w] * (1 - inside) + turned * inside
        path = tmp_path / f"on-{surface:.0f}.jpg"
        Image.fromarray(np.clip(desk, 0, 255).astype(np.uint8)).save(path, quality=90)
        return path

    on_desk = load_for_model(lying_on(70), 28, 1, "auto", "dark", "auto", "digit")[0].numpy()
    on_paper = load_for_model(lying_on(200), 28, 1, "auto", "dark", "auto", "digit")[0].numpy()  # no desk
    assert np.corrcoef(on_desk.ravel(), on_paper.ravel())[0, 1] > 0.95
    rows = np.flatnonzero(on_desk.max(1) > 0.25)
    assert rows[-1] - rows[0] + 1 in (19, 20, 21)  # the digit fills MNIST's box, not the sheet
    cut = cut_sheet_from_desk(np.asarray(Image.open(lying_on(70)).convert("L")))
    assert 0.85 * h < cut.shape[0] <= h and 0.85 * w < cut.shape[1] <= w  # the sheet's box, less its edge
    # no desk, no cut: a vignette's dark corners, squared paper, a stroke running off the edge
    for picture in (photo_of(digit, vignette=0.4), photo_of(digit, paper="squared", level=150)):
        g = np.asarray(picture.convert("L"))
        assert cut_sheet_from_desk(g) is g
    page = np.full((200, 300), 210, np.uint8)
    page[:120, 140:150] = 30
    assert cut_sheet_from_desk(page) is page


def _in_shadow(picture: Image.Image, angle: float, through: tuple[float, float], dark: float = 0.45,
               soft: float = 12.0) -> np.ndarray:
    """A grey photo with a straight-edged shadow (a hand's): ``dark`` darker on one side of a
    line at ``angle`` degrees through the point ``through`` (fractions of width, height)."""
    g = np.asarray(picture.convert("L"), np.float32)
    h, w = g.shape
    y, x = np.mgrid[0:h, 0:w]
    a = np.radians(angle)
    across = (x - through[0] * w) * np.cos(a) + (y - through[1] * h) * np.sin(a)
    return np.clip(g * (1 - dark * np.clip(0.5 + across / soft, 0, 1)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("angle, through", [(20, (0.45, 0.5)), (200, (0.75, 0.5)), (100, (0.5, 0.7))])
def test_frame_takes_a_shadow_across_the_page_off(tmp_path, angle, through):
    from conftest import photo_of

    from infoedit.framing import cut_sheet_from_desk, frame_object
    from infoedit.images import has_light_background

    digit = _digit()
    target = frame_object(digit[None], 28, "digit")[0] / 255.0
    for seed in (0, 1):  # the digit in the light, in the shadow or across its edge
        shaded = _in_shadow(photo_of(digit, seed=seed), angle, through)
        path = tmp_path / f"shadow-{seed}.jpg"
        Image.fromarray(shaded).save(path, quality=90)
        g = np.asarray(Image.open(path).convert("L"))
        assert has_light_background(g[None])  # ink on paper, though the shadow darkens most of the border
        assert cut_sheet_from_desk(g).min() < 100  # the shadowed part may go, the writing stays
        framed = load_for_model(path, 28, 1, "auto", "dark", "auto", "digit")[0].numpy()
        assert framed[0].max() == 0 and framed[:, 0].max() == 0
        assert np.corrcoef(framed.ravel(), target.ravel())[0, 1] > 0.9, (angle, seed)


def test_opening_is_the_min_then_max_over_a_square():
    from numpy.lib.stride_tricks import sliding_window_view

    from infoedit.framing import opening

    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (23, 31)).astype(np.float32)
    for k in (1, 3, 7):
        padded = np.pad(a, 2 * k, mode="edge")  # the edge continued, as opening documents
        eroded = sliding_window_view(padded, (k, k)).min(axis=(2, 3))
        opened = sliding_window_view(np.pad(eroded, k // 2, mode="constant", constant_values=-np.inf),
                                     (k, k)).max(axis=(2, 3))
        inner = 2 * k - k // 2
        assert np.allclose(opening(a, k), opened[inner:inner + 23, inner:inner + 31]), k
    y, x = np.mgrid[0:60, 0:80]
    step = np.clip((x + 0.4 * y - 40) / 6, 0, 1).astype(np.float32) * 100  # a soft, tilted edge
    lined = step.copy()
    lined[:, 10:13] += 50                                                   # and a 3 px stroke
    assert np.allclose(opening(lined, 9), step, atol=1e-4)


def test_the_object_box_leaves_specks_and_slivers_at_the_edge_out():
    from infoedit.framing import frame_object, level_around_writing

    page = np.zeros((1, 400, 500), np.uint8)
    page[0, 120:280, 200:290] = np.asarray(Image.fromarray(_digit()[4:24, 8:20]).resize((90, 160)))
    clean = frame_object(page, 28, "digit")
    specked = page.copy()
    specked[0, 30:34, 420:424] = 255                  # a speck of dust
    specked[0, 300:400, 0:4] = 255                    # a sliver along the picture's edge
    assert np.array_equal(frame_object(specked, 28, "digit"), clean)
    two_parts = page.copy()
    two_parts[0, 300:330, 200:290] = 255              # a detached part with a fair share of the mass
    assert not np.array_equal(frame_object(two_parts, 28, "digit"), clean)
    # a digit filling the picture (a tight crop) has strokes too wide to read the page around
    tight = np.asarray(Image.fromarray(_digit()[4:24, 6:22]).resize((160, 200)), np.float32)
    assert level_around_writing(tight) is None
    assert level_around_writing(page[0].astype(np.float32)) is not None


def test_writing_stroke_is_the_strokes_width_whatever_thin_lines_surround_them():
    from infoedit.framing import stroke_width, writing_stroke

    mask = np.zeros((120, 120), bool)
    mask[30:90, 40:47] = mask[30:37, 40:80] = True     # an 'L'-ish figure of 7 px strokes
    assert 6 <= writing_stroke(mask) <= 8
    mask[0:2, :] = mask[-2:, :] = mask[:, 0:2] = mask[:, -2:] = True  # a form's box of 2 px lines
    assert 6 <= writing_stroke(mask) <= 8
    assert stroke_width(mask) < 4                       # the mean width is the lines'


def test_a_box_around_the_writing_needs_a_line_along_both_edges_or_one_under_it():
    from infoedit.ruling import erase_ruling

    crop = np.zeros((150, 120), np.float32)
    crop[40:110, 50:60] = 255                          # a stroke of the digit inside
    crop[0:2], crop[-2:], crop[:, 0:2], crop[:, -2:] = 60, 60, 60, 60  # the box
    clean = erase_ruling(crop, 30, 255, box=3)
    assert clean[0:2].max() < 30 and clean[-2:].max() < 30 and clean[:, 0:2].max() < 30 and clean[:, -2:].max() < 30
    assert (clean[40:110, 50:60] == 255).all()
    under = np.zeros((150, 120), np.float32)
    under[40:148, 50:60], under[-2:] = 255, 60         # a line the digit stands on, reaching past it
    assert erase_ruling(under, 30, 255, box=3)[-2:, :50].max() < 30
    beside = np.ascontiguousarray(under.T)              # ... not a line beside it
    assert erase_ruling(beside, 30, 255, box=3) is beside
    seven = np.zeros((150, 120), np.float32)
    seven[0:2] = 255                                   # a thin bar along one edge only: the digit's own
    for r in range(2, 150):
        seven[r, 118 - r // 2:120 - r // 2] = 255
    assert erase_ruling(seven, 30, 255, box=3) is seven


def test_ruling_needs_two_thin_lines_across_the_picture_or_one_apart_from_the_writing():
    from infoedit.ruling import erase_ruling

    tight = np.asarray(Image.fromarray(_digit()[4:24, 8:20]).resize((120, 200)), np.float32)
    assert erase_ruling(tight, 30, 255) is tight       # a '7' cropped to its bar: one thick "line"
    page = np.zeros((200, 300), np.float32)
    page[100:102] = 60                                 # one ruled line alone: could be a stroke
    assert erase_ruling(page, 30, 255) is page
    page[20:60, 120:124] = 255                         # writing apart from it: it is the paper's
    assert erase_ruling(page, 30, 255)[100:102].max() == 0
    page[60:100, 120:124] = 255                        # the writing touching it: could be one digit
    assert erase_ruling(page, 30, 255) is page
    double = np.zeros((200, 300), np.float32)
    double[100:102], double[104:106], double[20:60, 120:124] = 60, 60, 255  # a double margin line
    assert erase_ruling(double, 30, 255)[100:106].max() == 0
    page[20:100, 120:124] = 0
    page[150:152], page[40:200, 140:144] = 60, 255     # a second line, and a stroke crossing both
    clean = erase_ruling(page, 30, 255)
    assert clean[100:102, :100].max() == 0 and clean[150:152, 200:].max() == 0
    assert (clean[40:200, 140:144] == 255).all()       # the stroke is whole where it crosses them
    for degrees in (-11, -2.5, -1.3, 0.4, 2.2, 7.5):     # tilted lines, on pages of odd and even widths
        for width in (299, 300):
            y, x = np.mgrid[0:200, 0:width]
            ruled = np.where((y + np.tan(np.radians(degrees)) * x) % 50 < 2, 60.0, 0.0).astype(np.float32)
            assert erase_ruling(ruled, 30, 255).max() < 30, (degrees, width)


def test_light_background_is_told_by_contrast_not_by_half_scale():
    from infoedit.images import has_light_background

    page = np.full((1, 60, 80), 110, np.uint8)         # grey paper in dim light ...
    page[0, 20:40, 30:34] = 25                         # ... with dark ink
    assert has_light_background(page)
    assert not has_light_background(255 - page)
    assert not has_light_background(_digit()[None])
    assert has_light_background(255 - _digit()[None])
    half = page.copy()
    half[0, :, :50] = 55                               # most of the border in a deep shadow
    half[0, 20:40, 30:34] = 15
    assert has_light_background(half)
    y, x = np.mgrid[-1:1:200j, -1:1:300j]
    vignetted = (220 * (1 - 0.3 * (x * x + y * y) / 2))[None].astype(np.uint8)  # the middle over the border
    vignetted[0, 90:130, 150] = 60                     # a thin pen's stroke: 0.07% of the picture
    assert has_light_background(vignetted)
    assert not has_light_background(np.full((1, 9, 9), 90, np.uint8))  # flat: by half-scale
    assert has_light_background(np.full((1, 9, 9), 200, np.uint8))


def test_a_glare_on_the_page_is_no_light_object():
    """A lamp's or a flash's glare lifts the page far over its border's levels, further than the
    ink lies under them; it is broad, so it reaches nowhere past its neighbourhood: ink on paper."""
    from infoedit.images import has_light_background

    y, x = np.mgrid[0:300, 0:400]
    page = 170 * (1 - 0.35 * (((x - 200) / 200) ** 2 + ((y - 150) / 150) ** 2) / 2)  # a dim, vignetted page
    glare = 90 * np.exp(-((x - 120) ** 2 + (y - 200) ** 2) / (2 * 45.0 ** 2))
    photo = np.clip(page + glare, 0, 255)
    photo[100:160, 260:266] = 40                                 # a stroke of ink beside it
    photo = photo.astype(np.uint8)[None]
    assert has_light_background(photo)  # the border rule alone read the glare as the object
    assert not has_light_background(255 - photo)  # and the negative: a light stroke, a dark patch


def test_frame_auto_leaves_model_sized_images_and_frame_no_alone(tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray(np.roll(_digit(), 3, axis=1)).save(path)  # off centre, yet a dataset-sized image
    auto = load_for_model(path, 28, 1, "auto", "dark", "auto", "digit")
    assert torch.equal(auto, load_image(path, 28, 1))
    assert not torch.equal(load_for_model(path, 28, 1, "auto", "dark", "yes", "digit"), auto)
    drawing = tmp_path / "drawing.png"  # model-sized but black on white: no dataset image, framed
    Image.fromarray(255 - np.roll(_digit(), 3, axis=1)).save(drawing)
    framed = load_for_model(drawing, 28, 1, "auto", "dark", "auto", "digit")
    assert torch.equal(framed, load_for_model(drawing, 28, 1, "auto", "dark", "yes", "digit"))
    assert torch.allclose(framed, load_for_model(path, 28, 1, "auto", "dark", "yes", "digit"), atol=1 / 255)
    big = tmp_path / "big.png"
    Image.fromarray(_digit()).resize((56, 56)).save(big)
    assert torch.equal(load_for_model(big, 28, 1, "auto", "dark", "auto", "none"), load_image(big, 28, 1))
    with pytest.raises(ValueError, match="frame"):
        load_for_model(path, 28, 1, "auto", "dark", "always", "digit")


def test_frame_fill_light_background_and_blank_pages(tmp_path):
    from infoedit.framing import frame_object

    wide = np.zeros((1, 100, 200), np.uint8)
    wide[0, 40:60, 50:130] = 255  # an 80 x 20 bar
    filled = frame_object(wide, 28, "fill")[0]
    cols = np.flatnonzero(filled.max(0) > 64)
    assert cols[0] == 0 and cols[-1] == 27            # the longer side fills the frame
    assert filled[:10].max() == 0 and filled[-10:].max() == 0
    paper = tmp_path / "paper.png"
    Image.fromarray(255 - wide[0]).save(paper)         # dark ink on paper, for a light-background model
    light = load_for_model(paper, 28, 1, "auto", "light", "yes", "fill")[0]
    assert light[0, 0] == 1 and light.min() == 0       # framed, and still ink on paper
    garment = np.zeros((1, 100, 200), np.uint8)
    garment[0, 20:80, 40:160] = 40                     # a light shirt (dim once inverted) ...
    garment[0, 45:55, 95:105] = 255                    # ... with a dark logo: the shirt is framed
    shirt = frame_object(garment, 28, "fill")[0]
    assert (shirt > 0).mean() > 0.4 and (shirt > 200).mean() < 0.05  # not the logo blown up
    blank = np.full((1, 50, 60), 90, np.uint8)
    assert frame_object(blank, 28, "digit").shape == (1, 28, 28)  # no object: the plain crop


def test_frame_thickens_a_thin_pen_to_mnist_strokes_and_leaves_mnist_strokes_alone():
    from infoedit.framing import THIN_STROKE, frame_object, stroke_width

    page = np.zeros((1, 300, 300), np.uint8)
    page[0, 50:53, 80:200] = 255                      # a '7' drawn with a 3 px pen, 200 px tall
    for r in range(53, 250):
        c = 199 - (r - 53) * 100 // 197
        page[0, r, c - 1:c + 2] = 255
    assert stroke_width(page[0] > 127) / 200 < 0.02
    framed = frame_object(page, 28, "digit")[0]
    rows, cols = np.flatnonzero(framed.max(1) > 127), np.flatnonzero(framed.max(0) > 127)
    ratio = stroke_width(framed > 127) / max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    assert THIN_STROKE <= ratio <= 0.25
    mnist_like = frame_object(_digit()[None], 28, "digit")[0]  # 3 px strokes in a 20 px box: as drawn
    upscaled = np.asarray(Image.fromarray(_digit()).resize((280, 280), Image.Resampling.NEAREST))[None]
    assert np.corrcoef(frame_object(upscaled, 28, "digit")[0].ravel(), mnist_like.ravel())[0, 1] > 0.95


def test_whole_percentiles_are_numpys_bit_for_bit():
    """has_light_background's percentiles, read off a histogram: np.percentile's numbers exactly,
    for pixels (uint8) and their differences from a median (whole numbers in float32)."""
    from infoedit.images import whole_percentiles

    rng = np.random.default_rng(0)
    for trial in range(600):
        n = int(rng.integers(1, 3000))
        values = [rng.integers(0, 256, n).astype(np.uint8),
                  (rng.integers(0, 256, n) - rng.integers(0, 256, n)).astype(np.float32),
                  np.where(rng.random(n) < 0.95, 0, rng.integers(0, 256, n)).astype(np.uint8)][trial % 3]
        for qs in ([0.01, 99.99], [20, 80], [0.05, 99.95], [0, 100], [50], [33.3]):
            assert np.array_equal(np.array(whole_percentiles(values, qs)), np.percentile(values, qs)), (trial, qs)


def test_light_background_skips_the_local_reach_only_where_it_cannot_change_the_answer():
    """The shortcut past the median filter (a border of one level, as a dataset's own image has)
    gives the answer the full rule gives, on digits, their negatives, noisy copies and random
    small images (where the local reach is known to be >= 0 both ways)."""
    from infoedit import images

    def full_rule(g: np.ndarray) -> bool:
        border = images.border_pixels(g)
        dark, light = np.percentile(g, [0.01, 99.99])
        if light - dark < 16:
            return float(border.mean()) > 127.5
        low, high = np.percentile(border, [20, 80])
        below, above = images._local_reach(g)
        if images._local_reach_at_least_0(g):
            assert below >= 0 and above >= 0
        return min(low - dark, below) > min(light - high, above)

    rng = np.random.default_rng(1)
    digit = _digit()
    pictures = [digit, 255 - digit, np.clip(digit + rng.integers(-40, 40, digit.shape), 0, 255)]
    for trial in range(1500):
        h, w = rng.integers(1, 60, 2)
        g = np.full((h, w), rng.integers(0, 256))
        if trial % 3 == 0:
            g = rng.integers(0, 256, (h, w))
        elif trial % 3 == 1:
            g[rng.integers(0, h, 5), rng.integers(0, w, 5)] = rng.integers(0, 256, 5)
        else:
            g = (rng.random((h, w)) < 0.2) * rng.integers(0, 256) + rng.integers(0, 30)
        pictures.append(g)
    for g in pictures:
        g = g.astype(np.uint8)
        assert images.has_light_background(g[None]) == full_rule(g), g.shape


def test_median3_is_pils_median_filter_bit_for_bit():
    """framing._median3 (sorted columns of three) gives PIL's MedianFilter(3), edges continued."""
    from PIL import ImageFilter

    from infoedit.framing import _median3

    rng = np.random.default_rng(2)
    for trial in range(300):
        shape = tuple(int(n) for n in rng.integers(1, 40, 2))
        a = [rng.normal(size=shape), rng.integers(0, 4, shape), rng.random(shape) * 255][trial % 3].astype(np.float32)
        expected = np.asarray(Image.fromarray(a, "F").filter(ImageFilter.MedianFilter(3)))
        assert np.array_equal(_median3(a), expected), (trial, shape)


def test_least_squares_is_lstsqs_fit():
    """framing._least_squares (normal equations summed without BLAS) fits the paper's level as
    numpy's lstsq does, on the page-level's own design: 1, x, y, x^2, xy, y^2 over [-0.5, 0.5]."""
    from infoedit.framing import _least_squares

    rng = np.random.default_rng(4)
    for n in (3, 6, 50, 20_000):  # 3: too few points for six coefficients (lstsq's minimum norm)
        y, x = rng.uniform(-0.5, 0.5, (2, n))
        a = np.stack([np.ones(n), x, y, x * x, x * y, y * y], axis=-1)
        b = rng.normal(size=6) @ a.T + rng.normal(scale=rng.uniform(0, 30), size=n)
        assert np.allclose(_least_squares(a, b), np.linalg.lstsq(a, b, rcond=None)[0], rtol=1e-7, atol=1e-7)


def test_best_shear_counts_every_angle_as_one_at_a_time(monkeypatch):
    """ruling._best_shear, all angles counted in batches, picks the shear a loop over the angles
    picks (the first with the fullest sheared row) and returns its counts, whatever the batch;
    _may_cross skips the search only where it would find no line across."""
    from infoedit import ruling

    def one_at_a_time(ys, xs, h, w):
        best, shift = None, None
        for angle in np.radians(np.linspace(-ruling.RULING_TILT, ruling.RULING_TILT,
                                            round(8 * ruling.RULING_TILT) + 1)):
            s = np.round((np.arange(w) - w / 2) * np.tan(angle)).astype(int)
            count = np.bincount(ys - s[xs] + s.max(), minlength=h + s.max() - s.min())
            if best is None or count.max() > best.max():
                best, shift = count, s
        return best, shift

    rng, skipped = np.random.default_rng(3), 0
    for trial in range(200):
        h, w = (int(n) for n in rng.integers(2, 120, 2))
        mask = rng.random((h, w)) < rng.uniform(0.0, 0.3 if trial % 2 else 0.02)
        if trial % 2:
            y = int(rng.integers(0, h))
            tilt = np.round(np.arange(w) * np.tan(np.radians(rng.uniform(-12, 12)))).astype(int)
            mask[np.clip(y + tilt, 0, h - 1), np.arange(w)] = True  # a tilted line across
        else:  # a blob (a product, a digit), maybe nearly as wide as a line
            top, left = int(rng.integers(0, h)), int(rng.integers(0, w))
            mask[top:top + int(rng.integers(1, h + 1)), left:left + int(rng.integers(1, w + 1))] = True
        ys, xs = np.nonzero(mask)
        expected = one_at_a_time(ys, xs, h, w)
        for batch in (1 << 20, len(ys) // 3 + 1):
            monkeypatch.setattr(ruling, "BINCOUNT_BATCH", batch)
            count, shift = ruling._best_shear(ys, xs, ruling._shears(w), h)
            assert np.array_equal(count, expected[0]) and np.array_equal(shift, expected[1]), (trial, batch)
        # the shortcut past the search: it answers no only where no sheared row is a line across
        if not ruling._may_cross(mask, ruling._shears(w)):
            assert expected[0].max() <= ruling.RULING_SPAN * w or len(ys) < 2 * ruling.RULING_SPAN * w, trial
            skipped += 1
    assert 20 < skipped < 100
