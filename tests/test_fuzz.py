"""Fuzzing the load/encode path: any bytes, any arguments; one-line errors, never a traceback."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from infoedit.cli import app
from infoedit.images import ImageError, load_image

# PIL warns about the damaged metadata it meets; the CLI silences that (infoedit.images), pytest re-shows it
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL", "ignore::PIL.Image.DecompressionBombWarning")
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seeds() -> list[bytes]:
    """Small valid files in every format the tools read: mutations of these reach the decoders."""
    g = np.tile(np.linspace(0, 255, 12, dtype=np.uint8), (9, 1))
    rgb = Image.fromarray(np.stack([g, g[::-1], g[:, ::-1]], axis=2), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    out = []
    for img, fmt, kw in [(rgb, "PNG", {}), (rgb, "JPEG", {"exif": exif}), (rgb.convert("P"), "GIF", {}),
                         (rgb, "BMP", {}), (rgb.convert("CMYK"), "TIFF", {}), (rgb, "WEBP", {}),
                         (Image.fromarray(g), "PPM", {}), (Image.fromarray(g.astype(np.uint16) * 99), "PNG", {})]:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    return out


SEEDS = _seeds()


@st.composite
def image_bytes(draw) -> bytes:
    """A seed file with some bytes flipped, inserted or cut off; or plain random bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "cut"]))
        if kind == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos:]
    return bytes(data)


def _write(folder: str, data: bytes, suffix: str = ".png") -> Path:
    path = Path(folder) / f"fuzz{suffix}"
    path.write_bytes(data)
    return path


@FUZZ
@given(data=image_bytes(), size=st.sampled_from([28, 64]), channels=st.sampled_from([1, 3]))
def test_load_image_raises_only_image_error(data, size, channels):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, data)
        try:
            x = load_image(path, size, channels)
        except ImageError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            return
        assert x.shape == (channels, size, size) and x.dtype == torch.float32
        assert 0 <= x.min() and x.max() <= 1


ARG = st.one_of(st.sampled_from(["--json", "--invert", "--frame", "--device", "--model", "--revision", "-m",
                                  "--", "-"]),
                st.text(max_size=12))


@FUZZ
@given(data=image_bytes(), invert=st.one_of(st.sampled_from(["auto", "yes", "no"]), st.text(max_size=8)),
       device=st.one_of(st.sampled_from(["auto", "cpu", "cuda"]), st.text(max_size=8)),
       frame=st.one_of(st.sampled_from(["auto", "yes", "no"]), st.text(max_size=8)),
       as_json=st.booleans(), extra=st.lists(ARG, max_size=3))
def test_cli_encode_exits_0_1_or_2(tiny_model_dir, data, invert, frame, device, as_json, extra):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(tmp, data)
        args = ["encode", str(path), "--model", str(tiny_model_dir), "--invert", invert, "--frame", frame,
                "--device", device,
                *(["--json"] if as_json else []), *extra]
        res = CliRunner().invoke(app, args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception  # an uncaught exception: show its traceback
    assert res.exit_code in (0, 1, 2), (args, res.output)  # 1: another argument read as an image failed
    if res.exit_code:
        assert "Traceback" not in res.stderr


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_every_seed_is_a_valid_image(tmp_path, seed):
    """The mutations start from real files of each format (else the fuzz only tests the sniffer)."""
    assert load_image(_write(str(tmp_path), SEEDS[seed]), 28, 3).shape == (3, 28, 28)
