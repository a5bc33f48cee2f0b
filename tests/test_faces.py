"""Faces in a user's photo (infoedit.faces and the commands' --face / --paste-back): found, framed
as CelebA's training faces, edited, blended back. The photo is scikit-image's astronaut (a NASA
portrait in the public domain); no CelebA image is used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from infoedit.cli import app

pytest.importorskip("cv2", reason="face framing needs OpenCV (pip install 'infoedit[faces]')")
skimage_data = pytest.importorskip("skimage.data", reason="the test photo comes from scikit-image")

from infoedit import faces, hub  # noqa: E402
from infoedit.images import ImageError  # noqa: E402


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def face_model_dir(tmp_path_factory) -> Path:
    """An untrained 64 px RGB InfoVAEGAN2 that says it was trained on CelebA: the plumbing's model."""
    from infoedit.models.infovaegan import InfoVAEGAN2, InfoVAEGANConfig

    torch.manual_seed(0)
    cfg = InfoVAEGANConfig(model="infovaegan2", dataset="celeba", image_size=64, channels=3, z_dim=8, n_classes=3,
                           c_dim=2, width=0.125, style_dim=4, g2_schedule="joint", nets="dcgan")  # cpu-fast's
    return hub.save_pretrained(InfoVAEGAN2(cfg).eval(), tmp_path_factory.mktemp("face_model"))


def test_the_face_is_framed_as_celeba_frames_its_faces(photo):
    crop = faces.locate(photo)
    pixels = crop.pixels(64)
    assert pixels.shape == (3, 64, 64) and pixels.dtype == np.uint8
    # found again in the 64 px frame, the face sits where it sits in CelebA's training frames
    (cx, cy, width), = faces.find_faces(np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    assert abs(cx / 64 - faces.FACE_CENTRE_X) < 0.06 and abs(cy / 64 - faces.FACE_CENTRE_Y) < 0.06
    assert abs(width / 64 - faces.FACE_WIDTH) < 0.1


def test_no_face_and_several_faces_are_one_line_each(photo, tmp_path):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 300, 3), 180, np.uint8)).save(blank)
    with pytest.raises(ImageError, match="wall.png: no face found"):
        faces.locate(blank)
    pair = tmp_path / "pair.png"
    one = skimage_data.astronaut()
    Image.fromarray(np.concatenate([one, one[:, ::-1]], axis=1)).save(pair)
    with pytest.raises(ImageError, match=r"2 faces found; choose one with --face N \(1-2, left to right\)"):
        faces.locate(pair)
    left, right = faces.locate(pair, 1), faces.locate(pair, 2)
    assert left.left < 512 <= right.left
    with pytest.raises(ImageError, match="--face 3, but 2 face"):
        faces.locate(pair, 3)


def test_paste_back_changes_the_face_and_keeps_the_rest(photo):
    crop = faces.locate(photo)
    edited = 255 - crop.pixels(64)
    out = crop.paste(edited)
    assert out.shape == crop.photo.shape
    far = np.abs(out[400:, :100].astype(int) - crop.photo[400:, :100]).max()  # the flag, well away from the face
    assert far == 0
    cx, cy = int(crop.left + faces.FACE_CENTRE_X * crop.side), int(crop.top + faces.FACE_CENTRE_Y * crop.side)
    assert np.abs(out[cy, cx].astype(int) - crop.photo[cy, cx]).max() > 100  # the face is the edit's


def test_commands_frame_the_face_and_paste_it_back(photo, face_model_dir, tmp_path):
    runner = CliRunner()
    model = ["--model", str(face_model_dir), "--quiet"]
    res = runner.invoke(app, ["reconstruct", str(photo), "-o", str(tmp_path / "whole.png"), "--paste-back", *model])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "whole.png").size == (512, 512)
    res = runner.invoke(app, ["swap", str(photo), str(photo), "-o", str(tmp_path / "face.png"), *model])
    assert res.exit_code == 0 and Image.open(tmp_path / "face.png").size == (64, 64)
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 300, 3), 180, np.uint8)).save(wall)
    res = runner.invoke(app, ["traverse", str(wall), "-o", str(tmp_path / "t.png"), *model])
    assert res.exit_code == 2 and "wall.png: no face found" in res.output
    res = runner.invoke(app, ["reconstruct", str(photo), "-o", str(tmp_path / "r.png"), "--paste-back",
                              "--model", "mnist"])
    assert res.exit_code == 2 and "--paste-back needs a face model" in res.output


def test_a_colour_photo_given_to_a_model_of_grey_digits_gets_a_note(photo, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["traverse", str(photo), "-o", str(tmp_path / "t.png")])
    assert result.exit_code == 0 and "is a colour photo" in result.output and "--model" in result.output
    grey = tmp_path / "camera.png"
    Image.fromarray(skimage_data.camera()).save(grey)
    result = runner.invoke(app, ["traverse", str(grey), "-o", str(tmp_path / "g.png")])
    assert result.exit_code == 0 and "colour photo" not in result.output
    quiet = runner.invoke(app, ["traverse", str(photo), "-o", str(tmp_path / "q.png"), "--quiet"])
    assert quiet.exit_code == 0 and "colour photo" not in quiet.output


def test_traverse_paste_back_shows_each_edit_in_the_whole_photo(photo, face_model_dir, tmp_path):
    from infoedit.cli import PHOTO_CELL

    runner = CliRunner()
    out = tmp_path / "grid.png"
    res = runner.invoke(app, ["traverse", str(photo), "--code", "0", "--code", "1", "--steps", "3", "-o", str(out),
                              "--paste-back", "--model", str(face_model_dir), "--quiet"])
    assert res.exit_code == 0, res.output
    grid = np.asarray(Image.open(out).convert("RGB"), np.int16)
    assert grid.shape == (2 * PHOTO_CELL + 3 * 2, 3 * PHOTO_CELL + 4 * 2, 3)  # 512 px photo -> 256 px cells
    first, last = grid[2:2 + PHOTO_CELL, 2:2 + PHOTO_CELL], grid[2:2 + PHOTO_CELL, -2 - PHOTO_CELL:-2]
    photo_small = Image.open(photo).convert("RGB")
    photo_small.thumbnail((PHOTO_CELL, PHOTO_CELL))
    corner = np.s_[:20, -20:]  # top right: background, far from the face
    assert np.abs(first[corner] - np.asarray(photo_small, np.int16)[corner]).max() <= 2
    assert np.abs(first - last).max() > 0  # the code's sweep changes the face


def test_a_model_trained_on_a_tighter_crop_gets_the_same_face_tighter(photo, tmp_path):
    """crop (the authors' CelebA frame, 128 of 178): a user's face is framed as the model's
    training faces were, the same centre with the face filling more of it; training folders and
    `--frame no` cut the same central share."""
    from infoedit.images import center_square, load_pixels, preprocess
    from trainer.data import load_folder

    whole, tight = faces.locate(photo), faces.locate(photo, crop=0.72)
    assert tight.side == pytest.approx(0.72 * whole.side)
    assert tight.left + tight.side / 2 == pytest.approx(whole.left + whole.side / 2)  # the same centre
    assert tight.top + tight.side / 2 == pytest.approx(whole.top + whole.side / 2)
    (_, _, width), = faces.find_faces(np.ascontiguousarray(tight.pixels(64).transpose(1, 2, 0)))
    assert abs(width / 64 - faces.FACE_WIDTH / 0.72) < 0.12  # the face fills more of the frame
    assert np.abs(tight.paste(tight.pixels(64)).astype(int) - tight.photo).mean() < 2  # pastes back in place

    aligned = Image.fromarray(np.random.default_rng(0).integers(0, 255, (109, 89, 3), dtype=np.uint8))
    assert center_square(aligned, 0.72).size == (64, 64) and center_square(aligned).size == (89, 89)
    folder = tmp_path / "faces"
    folder.mkdir()
    aligned.save(folder / "000001.png")
    ds = load_folder(folder, "faces", 64, 3, crop=0.72, progress=False)
    want = preprocess(aligned, 64, 3, 0.72)
    assert np.array_equal(ds.images[0].numpy(), want)
    assert np.array_equal(load_pixels(folder / "000001.png", 64, 3, frame="no", crop=0.72), want)
    assert not np.array_equal(want, preprocess(aligned, 64, 3))
    Image.fromarray(want.transpose(1, 2, 0)).save(tmp_path / "frame.png")  # a training frame is not cut again
    assert np.array_equal(load_pixels(tmp_path / "frame.png", 64, 3, frame="no", crop=0.72), want)
