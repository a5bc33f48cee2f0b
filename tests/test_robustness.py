"""Hostile and unusual input through the CLI: every kind of bad file, odd-but-valid images,
safe model loading, and outputs that stay inside the folder the user chose.

A single-image command (encode) exits 2 with one line naming the file; a folder command
(classify) skips the file, then counts and lists it. What test_images.py and test_cli_edit.py
already cover (not-an-image, missing file, directory, PIL modes at the load_image level,
--force for single outputs) is not repeated here.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from infoedit.cli import app
from infoedit.images import open_image

runner = CliRunner()
ROOT = os.geteuid() == 0


def encode(path, model: Path, *flags: str):
    return runner.invoke(app, ["encode", str(path), "--model", str(model), "--device", "cpu", *flags])


def assert_one_line_exit_2(res, path) -> None:
    assert res.exit_code == 2, res.output
    assert res.stdout == "" and res.stderr.startswith("infoedit: error: ")
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert str(path) in res.stderr


# -- files to feed in ------------------------------------------------------------------------------
def _gradient(w: int = 40, h: int = 30) -> Image.Image:
    g = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    return Image.fromarray(np.stack([g, g[::-1], np.full_like(g, 60)], axis=2), "RGB")


def _png_header(w: int, h: int) -> bytes:
    """A PNG that only claims its size: a few dozen bytes that would decode to w x h pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _unreadable(path: Path) -> None:
    _gradient().save(path)
    path.chmod(0)


BAD = {  # name -> (write the file, what the message says)
    "zero.png": (lambda p: p.write_bytes(b""), "not an image"),
    "truncated.jpg": (lambda p: p.write_bytes(_jpeg_bytes(_gradient())[:400]), "cannot decode"),
    "bomb.png": (lambda p: p.write_bytes(_png_header(100_000, 100_000)), "too large"),
    # 100 MP: PIL itself only warns here (and would decode it); refused all the same
    "bomb-100mp.png": (lambda p: p.write_bytes(_png_header(10_000, 10_000)), "too large"),
    "loop.png": (lambda p: os.symlink(p.name, p), "symbolic links"),
    "unreadable.png": (_unreadable, "permission denied"),
}


BAD_PARAMS = [pytest.param(name, id=name, marks=[pytest.mark.skipif(ROOT, reason="root reads any file")]
                           if name == "unreadable.png" else []) for name in BAD]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest shows what the CLI hides
@pytest.mark.parametrize("name", BAD_PARAMS)
def test_single_image_command_refuses_a_bad_file_with_one_line(tiny_model_dir, tmp_path, name):
    write, message = BAD[name]
    path = tmp_path / name
    write(path)
    res = encode(path, tiny_model_dir)
    assert_one_line_exit_2(res, path)
    assert message in res.stderr


def _exif_rotated(path: Path) -> Path:
    """The upright image stored turned 90 degrees, with EXIF orientation 6 to turn it back."""
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    _gradient().transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    return path


def _animated(path: Path) -> Path:
    frames = [_gradient().convert("L"), Image.new("L", (40, 30), 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return path


def _palette_transparent(path: Path) -> Path:
    p = _gradient().quantize(8)
    p.save(path, transparency=0)
    return path


GOOD = {  # name -> (write the file, the plain image it must encode exactly like, or None)
    "16-bit.png": (lambda p: Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50).save(p), None),
    "cmyk.jpg": (lambda p: p.write_bytes(_jpeg_bytes(_gradient().convert("CMYK"))), None),
    "palette-transparent.png": (_palette_transparent, None),
    "animated.gif": (_animated, lambda p: _gradient().convert("L").save(p)),  # first frame only
    "exif-rotated.png": (_exif_rotated, lambda p: _gradient().save(p)),
    "1x1.png": (lambda p: Image.new("L", (1, 1), 200).save(p), lambda p: Image.new("L", (5, 5), 200).save(p)),
    # EXIF that promises five entries and holds one: PIL warns, the pixels are fine
    "damaged-exif.jpg": (lambda p: p.write_bytes(_jpeg_bytes(_gradient(), exif=b"Exif\0\0II*\0\x08\0\0\0\x05\0"
                                                              b"\x12\x01\x03\0\x01\0\0\0\x06\0")), None),
}


@pytest.mark.filterwarnings("ignore:Corrupt EXIF:UserWarning")
@pytest.mark.parametrize("name", GOOD)
def test_unusual_but_valid_images_encode(tiny_model_dir, tmp_path, name):
    write, same_as = GOOD[name]
    path = tmp_path / name
    write(path)
    res = encode(path, tiny_model_dir, "--json")
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["path"] == str(path) and len(row["probabilities"]) == 3
    if same_as:
        plain = tmp_path / "plain.png"
        same_as(plain)
        expected = json.loads(encode(plain, tiny_model_dir, "--json").stdout)
        assert {k: v for k, v in row.items() if k != "path"} == {k: v for k, v in expected.items() if k != "path"}


@pytest.fixture(scope="module")
def huge_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    Image.linear_gradient("L").resize((6000, 6000)).save(path, quality=80)
    return path


def test_a_36_megapixel_jpeg_is_decoded_small(tiny_model_dir, huge_jpeg):
    # JPEG draft decoding: at 1/8 scale the decode holds 750x750 pixels, not 6000x6000.
    assert open_image(huge_jpeg, draft_size=56).size == (750, 750)
    res = encode(huge_jpeg, tiny_model_dir, "--json")
    assert res.exit_code == 0, res.output


def test_a_file_name_that_is_not_utf8_is_read_and_printed_as_its_bytes(tiny_model_dir, tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9-\xff.png")  # Latin-1 bytes: invalid UTF-8
    _gradient().save(raw)
    path = os.fsdecode(raw)  # str with surrogate escapes, as Python hands such names around
    table = encode(path, tiny_model_dir)
    assert table.exit_code == 0, table.output
    assert b"caf\xe9-\xff.png" in table.stdout_bytes
    rows = encode(path, tiny_model_dir, "--json")
    assert rows.exit_code == 0 and json.loads(rows.stdout)["path"] == path


# -- folders: skip, count, list --------------------------------------------------------------------
def test_folder_command_skips_counts_and_lists_every_bad_kind(tiny_model_dir, tmp_path):
    """In a child process, so stderr is the real one (stray library warnings would show)."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    bad = [name for name in BAD if not (name == "unreadable.png" and ROOT)]
    for name in bad:
        BAD[name][0](root / name)
    (root / "not-an-image.png").write_text("hello")
    bad.append("not-an-image.png")
    for name, (write, _) in GOOD.items():
        write(root / "sub" / name)
    _gradient().save(os.path.join(os.fsencode(root), b"\xff.png"))
    (root / "sub" / "up").symlink_to("..")  # a loop of folders: not followed
    out = tmp_path / "clusters.csv"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "infoedit.cli", "classify", str(root), "-o", str(out),
                          "--model", str(tiny_model_dir), "--device", "cpu"], capture_output=True, env=env)
    stderr = res.stderr.decode()
    assert res.returncode == 1, stderr  # some inputs failed: the others are listed
    lines = [line for line in stderr.splitlines() if not line.startswith("infoedit: warning: ")]  # ood
    assert len(lines) == len(bad) and all(line.startswith("infoedit: error: ") for line in lines), stderr
    for name in bad:
        assert sum(name in line for line in lines) == 1, name
    rows = out.read_bytes().splitlines()[1:]
    assert len(rows) == len(GOOD) + 1  # each good file once: the folder loop was not walked
    assert any(row.startswith(os.fsencode(root) + b"/\xff.png,") for row in rows)


# -- loading models: safetensors and JSON only ------------------------------------------------------
class _Payload:
    """Unpickling this creates a marker file: proof that code from the download ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoint*"))
    return dst


def test_hub_load_passes_revision_and_fetches_no_code(tiny_model_dir, tmp_path, monkeypatch):
    import huggingface_hub

    repo = _copy_model(tiny_model_dir, tmp_path / "snapshot")
    marker = tmp_path / "pwned"
    (repo / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    (repo / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w')\n")
    calls = []

    def fake_download(repo_id, revision=None, allow_patterns=None, **kw):
        calls.append((repo_id, revision, allow_patterns))
        return str(repo)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    img = tmp_path / "x.png"
    _gradient().save(img)
    res = runner.invoke(app, ["encode", str(img), "--model", "someone/infovaegan", "--revision", "v1.0", "--json"])
    assert res.exit_code == 0, res.output
    assert calls[0][:2] == ("someone/infovaegan", "v1.0")
    assert sorted(calls[0][2]) == ["README.md", "class_names.json", "config.json", "model.safetensors"]  # no code
    assert not marker.exists()


@pytest.mark.parametrize("damage, message", [
    (lambda f, m: (f / "model.safetensors").write_bytes(pickle.dumps(_Payload(m))), "unreadable"),
    (lambda f, m: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:-100]), "truncated"),
    (lambda f, m: (f / "config.json").write_text('{"format_version": 2}'), "config.json"),
])
def test_tampered_model_folder_is_one_line_and_runs_nothing(tiny_model_dir, tmp_path, damage, message):
    folder = _copy_model(tiny_model_dir, tmp_path / "m")
    marker = tmp_path / "pwned"
    damage(folder, marker)
    img = tmp_path / "x.png"
    _gradient().save(img)
    res = encode(img, folder)
    assert_one_line_exit_2(res, folder)
    assert message in res.stderr and not marker.exists()


# -- outputs stay inside the chosen folder -----------------------------------------------------------
def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "work" / "photos"
    root.mkdir(parents=True)
    for i in range(4):
        _gradient(40 + i, 30).save(root / f"p{i}.png")
    return root


def test_cluster_names_cannot_climb_out_of_the_output_folder(tiny_model_dir, photos, tmp_path):
    dest = tmp_path / "work" / "sorted"
    before = _files(tmp_path)
    res = runner.invoke(app, ["classify", str(photos), "--copy-to", str(dest), "--names", "../../x,/etc,..",
                              "--model", str(tiny_model_dir), "--json"])
    assert res.exit_code == 0, res.output
    new = _files(tmp_path) - before
    assert len(new) == 4 and all(dest in p.parents and p.parent.parent == dest for p in new)
    assert {p.parent.name for p in new} <= {".._.._x", "_etc", "_"}


def test_a_symlink_planted_in_the_output_folder_leads_nothing_out(tiny_model_dir, photos, tmp_path):
    dest, elsewhere = tmp_path / "work" / "sorted", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    for k in range(3):
        (dest / str(k)).symlink_to(elsewhere, target_is_directory=True)
    res = runner.invoke(app, ["classify", str(photos), "--copy-to", str(dest), "--model", str(tiny_model_dir)])
    assert res.exit_code == 2, res.output  # no file could be placed: nothing done
    assert list(elsewhere.iterdir()) == []
    lines = res.stderr.splitlines()
    assert len(lines) == 4 and all("symbolic link" in line for line in lines)


@pytest.mark.parametrize("dataset, folder", [("folder:..", "_"), ("folder:../../etc", ".._.._etc"),
                                              ("folder:/data/faces/", "data_faces")])
def test_train_default_output_is_one_folder_under_runs(tmp_path, monkeypatch, dataset, folder):
    import trainer.train

    seen = []
    monkeypatch.setattr(trainer.train, "train", lambda ds, out, *a, **k: seen.append(out) or {})
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", dataset, "--quiet"])
    assert res.exit_code == 0, res.output
    assert seen == [Path("runs") / folder]


# -- values that would once run into Python's own errors, or run on for ever ------------------------
@pytest.mark.parametrize("field, value, says", [("n_classes", '"ten"', "n_classes must be an integer"),
                                                ("width", "[1]", "width must be a number"),
                                                ("batchnorm", "1", "batchnorm must be true or false")])
def test_a_config_field_of_the_wrong_type_is_named(tiny_model_dir, tmp_path, field, value, says):
    folder = _copy_model(tiny_model_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config[field] = json.loads(value)
    (folder / "config.json").write_text(json.dumps(config))
    img = tmp_path / "x.png"
    _gradient().save(img)
    res = encode(img, folder)
    assert_one_line_exit_2(res, folder)
    assert says in res.stderr


def test_a_set_value_of_the_wrong_type_is_one_line(tmp_path, photos):
    res = runner.invoke(app, ["train", f"folder:{photos}", "-o", str(tmp_path / "m"), "--set", "n_classes=abc",
                              "--max-steps", "1", "--batch-size", "2", "--quiet"])
    assert res.exit_code == 2 and "n_classes must be an integer, got 'abc'" in res.stderr, res.output
    assert not (tmp_path / "m").exists()
    res = runner.invoke(app, ["train", f"folder:{photos}", "-o", str(tmp_path / "m"), "--set", "model=ali"])
    assert res.exit_code == 2 and "--set model: not a setting" in res.stderr, res.output  # was a TypeError


def test_weights_holding_nan_are_refused(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy_model(tiny_model_dir, tmp_path / "m")
    weights = load_file(str(folder / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = weights[name].clone().fill_(float("nan"))
    save_file(weights, str(folder / "model.safetensors"))
    img = tmp_path / "x.png"
    _gradient().save(img)
    res = encode(img, folder, "--json")
    assert_one_line_exit_2(res, folder)
    assert name in res.stderr and "NaN" in res.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_not_waited_on(tmp_path):
    from infoedit.images import ImageError

    fifo = tmp_path / "p.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        open_image(fifo)  # before the check, this blocked until a writer came


def test_black_ink_on_a_transparent_sheet_shows(tmp_path):
    """Transparency went onto black, so black strokes on a transparent background vanished."""
    from infoedit.images import load_pixels

    stroke = np.zeros((28, 28), np.uint8)
    stroke[6:22, 12:16] = 255
    for mode in ("RGBA", "LA"):
        rgba = np.zeros((28, 28, 4), np.uint8)
        rgba[..., 3] = stroke  # black everywhere, opaque on the stroke only
        img = Image.fromarray(rgba, "RGBA").convert(mode)
        img.save(tmp_path / f"ink-{mode}.png")
        got = load_pixels(tmp_path / f"ink-{mode}.png", 28, 1, invert="auto", background="dark")[0]
        assert np.abs(got.astype(int) - stroke).max() <= 1, mode
    light = np.zeros((28, 28, 4), np.uint8)
    light[..., :3], light[..., 3] = 255, stroke  # white strokes on transparency: onto black, as before
    Image.fromarray(light, "RGBA").save(tmp_path / "light.png")
    assert (load_pixels(tmp_path / "light.png", 28, 1)[0] == stroke).all()


@pytest.mark.parametrize("args", [["sample", "--rows", "100000"], ["traverse", "IMG", "--steps", "3000000"]])
def test_a_grid_too_large_to_open_is_refused_before_drawing(tiny_model_dir, tmp_path, args):
    img = tmp_path / "x.png"
    _gradient().save(img)
    out = tmp_path / "grid.png"
    res = runner.invoke(app, [str(img) if a == "IMG" else a for a in args]
                        + ["-o", str(out), "--model", str(tiny_model_dir)])
    assert_one_line_exit_2(res, out)
    assert "pixels" in res.stderr and not out.exists()


@pytest.mark.parametrize("args, says", [
    (["traverse", "IMG", "--range", "nan", "1"], "--range nan 1.0: expected two finite numbers"),
    (["sample", "--n", "3", "-o", "OUT.png"], "name a folder"),
    (["sample", "--n", "3", "--rows", "4"], "give one of them"),
    (["encode", "IMG", "--model", ""], "--model is empty"),
    (["classify", "DIR", "--names", "a,b,c,d"], "more names than the model's 3 clusters"),
])
def test_options_that_cannot_mean_anything_are_one_line(tiny_model_dir, tmp_path, photos, args, says):
    img = tmp_path / "x.png"
    _gradient().save(img)
    subs = {"IMG": str(img), "DIR": str(photos), "OUT.png": str(tmp_path / "s.png")}
    res = runner.invoke(app, [subs.get(a, a) for a in args]
                        + ([] if "--model" in args else ["--model", str(tiny_model_dir)]))
    assert res.exit_code == 2 and says in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "s.png").exists()


def test_train_refuses_an_empty_folder_name_and_a_file_as_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _gradient().save(tmp_path / "x.png")  # `folder:` meant the current folder, this one
    res = runner.invoke(app, ["train", "folder:", "-o", "m", "--quiet"])
    assert res.exit_code == 2 and "name the folder after the colon" in res.stderr, res.output
    (tmp_path / "taken").write_text("keep")
    res = runner.invoke(app, ["train", "folder:.", "-o", "taken", "--quiet"])
    assert res.exit_code == 2 and "exists and is not a folder" in res.stderr, res.output
    assert (tmp_path / "taken").read_text() == "keep"


def test_a_failed_write_names_the_output_not_its_temp_file(tmp_path, monkeypatch):
    import errno

    from infoedit import hub

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    monkeypatch.setattr(hub.os, "fsync", full_disk)
    with pytest.raises(OSError) as caught:
        hub.atomic_write_bytes(out, b"new")
    assert caught.value.filename == str(out) and caught.value.errno == errno.ENOSPC
    assert out.read_bytes() == b"old" and list(tmp_path.iterdir()) == [out]  # no temp file left


def test_a_usage_error_is_one_line_from_the_console_command(tmp_path):
    """The installed `infoedit` (cli.main), not the app: click's boxed usage message is one line."""
    res = subprocess.run([sys.executable, "-c", "from infoedit.cli import main; main()", "sample", "--rows", "abc"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("infoedit: error: sample: Invalid value for '--rows'")
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_leaves_no_temp_file_behind(tiny_model_dir, tmp_path):
    """A `kill` once ended the process where it stood: a sample's temp file stayed beside the others."""
    import time

    out = tmp_path / "samples"
    proc = subprocess.Popen([sys.executable, "-c", "from infoedit.cli import main; main()", "sample", "--n", "100000",
                             "-o", str(out), "--model", str(tiny_model_dir), "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and len(list(out.iterdir())) > 50):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip() == "infoedit: error: terminated"
    assert not [p for p in out.iterdir() if p.suffix != ".png"]
    assert all(Image.open(p).size for p in out.iterdir())  # every file there is a whole PNG


def test_version_and_a_mistyped_model_folder_through_the_real_command(tmp_path):
    """`--version` prints the version; `--model runs/typo`, where a runs/ folder is, is read as a
    local path (it once went to the Hub and spoke of the Hub cache)."""
    import subprocess
    import sys

    from infoedit import __version__

    cmd = [sys.executable, "-m", "infoedit.cli"]
    res = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"infoedit {__version__}"
    (tmp_path / "runs").mkdir()
    digit = Path(__file__).resolve().parents[1] / "examples" / "mnist" / "3.png"
    res = subprocess.run([*cmd, "encode", str(digit), "--model", "runs/typo"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "runs/typo: no model folder there" in res.stderr
    assert "Hub" not in res.stderr


def test_sample_n_force_over_a_larger_run_leaves_only_this_runs_samples(tmp_path, tiny_model_dir):
    import subprocess
    import sys

    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "infoedit.cli", "sample", "--model", str(tiny_model_dir), "-o", str(out), "-q"]
    assert subprocess.run([*cmd, "--n", "5"], timeout=120).returncode == 0
    (out / "notes.txt").write_text("mine")
    assert subprocess.run([*cmd, "--n", "2", "--force"], timeout=120).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "sample-0000.png", "sample-0001.png"]
