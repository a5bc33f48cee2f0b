"""Image I/O: the one preprocessing function every command and the trainer share, and grids.

Tensors are float in [0, 1], shape [C, H, W] (or [N, C, H, W] for batches).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

# A decompression bomb (a tiny file that decodes to gigapixels) is refused, not decoded.
Image.MAX_IMAGE_PIXELS = 64_000_000
# Between that limit and twice it PIL only warns (two stray lines on stderr) and decodes;
# open_image refuses those itself, once a JPEG draft has had its chance to shrink the decode.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# PIL also warns about damaged metadata (EXIF, TIFF tags) in files that decode fine: noise on
# stderr that the user can do nothing about, so the image is simply used.
warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


class ImageError(ValueError):
    """An input image that cannot be used; the message is one line naming the file."""


def open_image(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Open and fully decode an image, upright (EXIF orientation applied), first frame only.

    ``draft_size`` lets JPEG decode at a reduced scale so huge photos stay cheap in memory.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if draft_size and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            if img.width * img.height > Image.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError("over MAX_IMAGE_PIXELS")
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.copy()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: image too large (over {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: cannot decode image ({exc})") from None


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode -> 'L' or 'RGB'. Transparent pixels are composited onto black."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size)
        img.paste(rgba, mask=rgba.getchannel("A"))
    return img.convert("L" if channels == 1 else "RGB")


def center_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def preprocess(img: Image.Image, size: int, channels: int) -> torch.Tensor:
    """The shared preprocessing: to L/RGB, centre square crop, resize to size x size, [0, 1]."""
    img = center_square(_to_mode(img, channels))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(img, dtype=np.uint8)
    t = torch.from_numpy(arr.copy())
    t = t.unsqueeze(0) if channels == 1 else t.permute(2, 0, 1)
    return t.float().div_(255)


def load_image(path: str | Path, size: int, channels: int) -> torch.Tensor:
    """Open + preprocess; raises ImageError with one line on any bad file."""
    img = open_image(path, draft_size=size * 2)
    if min(img.size) < 1:
        raise ImageError(f"{path}: empty image")
    try:
        return preprocess(img, size, channels)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot convert image ({exc})") from None


INVERT_MODES = ("auto", "yes", "no")


def match_polarity(image: torch.Tensor, invert: str = "auto") -> torch.Tensor:
    """Make a 1-channel image light-on-dark, like the MNIST-style data such models learn.

    Photos of ink on paper are dark-on-light, and a model trained on white-on-black digits
    reads them as noise. ``auto`` inverts when the mean of the image's 1-pixel border is
    > 0.5 (a light background); ``yes`` / ``no`` force it. 3-channel images are left alone.
    """
    if invert not in INVERT_MODES:
        raise ValueError(f"invert must be one of {', '.join(INVERT_MODES)}, got {invert!r}")
    if image.shape[0] != 1 or invert == "no":
        return image
    if invert == "auto":
        g = image[0]
        border = torch.cat([g[0], g[-1], g[1:-1, 0], g[1:-1, -1]])
        if border.mean() <= 0.5:
            return image
    return 1 - image


def load_for_model(path: str | Path, size: int, channels: int, invert: str = "auto") -> torch.Tensor:
    """What every editing command feeds the encoder: load_image, then match_polarity."""
    return match_polarity(load_image(path, size, channels), invert)


def iter_images(root: str | Path, skip: Path | None = None) -> Iterator[Path]:
    """Image files under root, lazily (constant memory), in a stable depth-first order.

    Known image suffixes only; symlinked folders are not followed (no loops). ``skip`` prunes
    one folder, e.g. an output folder inside root that files are being sorted into.
    """
    skip = skip.resolve() if skip is not None else None
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if skip is None or (Path(dirpath) / d).resolve() != skip)
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(dirpath) / name


def list_images(root: str | Path) -> list[Path]:
    """Every image file under root (recursive, symlink loops safe), sorted for a stable order."""
    return sorted(iter_images(root))


def make_grid(images: torch.Tensor, nrow: int, pad: int = 2) -> torch.Tensor:
    """[N, C, H, W] -> one [C, H', W'] image with ``nrow`` images per row and a white gap."""
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid


def to_pil(image: torch.Tensor) -> Image.Image:
    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0].numpy(), "L")
    return Image.fromarray(arr.permute(1, 2, 0).numpy(), "RGB")


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """Save a [C, H, W] tensor as PNG atomically (temp file + rename)."""
    from infoedit.hub import atomic_write_bytes

    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
