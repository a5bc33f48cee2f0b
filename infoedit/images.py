"""Image I/O: opening files, the one preprocessing every command and the trainer share, polarity,
grids and PNG writing. Cutting a photo's object out and framing it (`--frame`) is
infoedit.framing's, which load_pixels calls.

Tensors are float in [0, 1], shape [C, H, W] (or [N, C, H, W] for batches).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

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


def one_line(exc: BaseException) -> str:
    """Why an input failed, as the one line the commands print for it."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def open_image(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Open and fully decode an image, upright (EXIF orientation applied), first frame only.

    ``draft_size`` lets JPEG decode at a reduced scale so huge photos stay cheap in memory.
    """
    path = Path(path)
    # A named pipe or a device would block or never end: only regular files are read.
    if path.exists() and not path.is_dir() and not path.is_file():
        raise ImageError(f"{path}: not a regular file (a pipe or a device)")
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
    """Any PIL mode -> 'L' or 'RGB'. Transparent pixels are composited onto black, or onto
    white when what shows is dark (black ink on a transparent sheet would vanish on black)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        mask = rgba.getchannel("A")
        alpha, shown = np.asarray(mask, np.float64), np.asarray(rgba.convert("L"), np.float64)
        dark = alpha.sum() > 0 and (shown * alpha).sum() / alpha.sum() < 128
        img = Image.new("RGB", rgba.size, (255, 255, 255) if dark else (0, 0, 0))
        img.paste(rgba, mask=mask)
    return img.convert("L" if channels == 1 else "RGB")


def center_square(img: Image.Image, crop: float = 1.0) -> Image.Image:
    """The central square whose side is ``crop`` of the image's shorter side."""
    w, h = img.size
    side = max(1, round(min(w, h) * crop))
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def preprocess(img: Image.Image, size: int, channels: int, crop: float = 1.0) -> np.ndarray:
    """The shared preprocessing: to L/RGB, centre square crop (``crop`` of the shorter side: the
    model config's), resize to size x size; returns the pixels as uint8 [C, H, W] (to_unit makes
    them model input)."""
    img = center_square(_to_mode(img, channels), crop)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.array(img, dtype=np.uint8)  # a writable copy, not a view of PIL's buffer
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def to_unit(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels [..., C, H, W] -> a float tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255)


# Which framing a dataset's images have (digit, fill, face): infoedit.datasets; what framing does
# to a photo: infoedit.framing.
FRAME_MODES = ("auto", "yes", "no")
# A photo is framed at a working size of PHOTO_SIDE times the model's size on its shorter side
# (up to twice that): a photo's object needs no more pixels, and the framing's cost grows with them.
PHOTO_SIDE = 4


def load_pixels(path: str | Path, size: int, channels: int, invert: str = "no", background: str = "dark",
                frame: str = "no", framing: str = "none", face: int | None = None, crop: float = 1.0) -> np.ndarray:
    """Open + preprocess (+ match_polarity) as uint8 [C, H, W]; raises ImageError with one line
    on any bad file. ``frame`` (FRAME_MODES) and ``framing`` (the model's dataset's, see
    infoedit.datasets): whether a 1-channel image's object is cut out and framed as the dataset
    frames its images, instead of the plain centre crop; for a face model, whether the face is
    found and framed (the photo's face number ``face`` when it shows several, infoedit.faces).
    ``crop``: the share of the centre square the model was trained on (its config's)."""
    if frame not in FRAME_MODES:
        raise ValueError(f"frame must be one of {', '.join(FRAME_MODES)}, got {frame!r}")
    may_frame_face = framing == "face" and channels == 3 and frame != "no"
    may_frame = channels == 1 and (frame == "yes" or (frame == "auto" and framing != "none"))
    # A framed object is cut from the full picture: decode JPEGs at more than the model's size
    # (a face is searched for in the whole photo).
    img = open_image(path, draft_size=None if may_frame_face else size * (PHOTO_SIDE if may_frame else 2))
    if min(img.size) < 1:
        raise ImageError(f"{path}: empty image")
    if may_frame_face and (frame == "yes" or img.size != (size, size)):  # a model-sized image is a framed face
        from infoedit.faces import locate

        return locate(path, face, img, crop).pixels(size)
    try:
        if not may_frame:
            framed = img.size == (size, size)  # a model-sized image is a training frame already: no crop
            return match_polarity(preprocess(img, size, channels, 1.0 if framed else crop), invert, background)
        if frame == "auto" and img.size == (size, size):
            # A model-sized image in the model's polarity is taken as framed (a dataset's own
            # image); one of the other polarity (a drawing in black on white) is not.
            plain = preprocess(img, size, channels)
            if has_background(plain, background):
                # its polarity is read: "auto" would read it again only to leave it as it is
                return match_polarity(plain, "no" if invert == "auto" else invert, background)
        return _frame_photo(img, size, invert, background, framing)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot convert image ({exc})") from None


def _frame_photo(img: Image.Image, size: int, invert: str, background: str, framing: str) -> np.ndarray:
    """A picture's object cut out and framed as a dataset of ``framing`` ("none": as "fill")
    frames its images (infoedit.framing), as uint8 [1, size, size] in the model's polarity."""
    # imported here: infoedit.framing imports this module, and scipy.ndimage, which a command
    # that frames nothing need not load
    from infoedit.framing import cut_sheet_from_desk, frame_object

    gray = _to_mode(img, 1)
    factor = min(gray.size) // (size * PHOTO_SIDE)
    gray = gray.reduce(factor) if factor > 1 else gray
    pixels = match_polarity(cut_sheet_from_desk(np.array(gray, dtype=np.uint8))[None], invert, background)
    light = background == "light"  # frame_object wants the object light on dark
    out = frame_object(255 - pixels if light else pixels, size, framing if framing != "none" else "fill")
    return 255 - out if light else out


def load_image(path: str | Path, size: int, channels: int) -> torch.Tensor:
    """Open + preprocess as a float tensor [C, H, W] in [0, 1]."""
    return to_unit(load_pixels(path, size, channels))


INVERT_MODES = ("auto", "yes", "no")


def is_colour_photo(path: str | Path) -> bool:
    """True when the file holds a picture in colour, not shades of grey (the mean spread between
    its channels, on a 64 px thumbnail, is over 4% of the range): what a model of grey digits
    or clothes was never shown."""
    img = open_image(path, draft_size=64)
    if img.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return False
    img.thumbnail((64, 64))
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean()) > 0.04 * 255


def whole_percentiles(values: np.ndarray, qs: list[float]) -> list[float]:
    """np.percentile(values, qs), its default (linear) method, bit for bit, for an array of whole
    numbers (uint8 pixels, or their differences as float32): the order statistics read off a
    histogram instead of a partition, interpolated with numpy's arithmetic (exact on whole
    numbers in Python's floats too). About 5x faster on a 28 px image, where np.percentile's
    cost is its overhead."""
    flat = values.ravel()
    low = int(flat.min())
    counts = np.cumsum(np.bincount((flat - low).astype(np.intp)))
    last = flat.size - 1
    spots = [(last * (q / 100), math.floor(last * (q / 100))) for q in qs]  # numpy's virtual index
    ranks = [min(i, last) for _, i in spots] + [min(i + 1, last) for _, i in spots]
    ordered = (np.searchsorted(counts, ranks, side="right") + low).tolist()  # the ranks' values, sorted order
    out = []
    for (at, i), a, b in zip(spots, ordered, ordered[len(qs):]):
        t = at - i  # numpy's _lerp: from the nearer end
        out.append(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)
    return out


def border_pixels(a: np.ndarray) -> np.ndarray:
    """The values of a 2-D array's 1-pixel border, each pixel once."""
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]]) if a.shape[0] > 1 else a[0]


def has_light_background(pixels: np.ndarray) -> bool:
    """Whether a 1-channel uint8 image's [1, H, W] background is light: the image reaches
    further below its 1-pixel border's levels than above them (its 0.01th percentile under the
    border's 20th, against its 99.99th over the border's 80th), so ink on a page photographed
    in dim light (a grey border under half-scale) reads as light too, and so does a page half
    in a shadow (the border spans both levels of the paper; the ink lies below both). The
    0.01th: a thin pen's ink may cover under 0.1% of a photo, and a vignetted page's middle
    lies over its border. Each reach counts only as far as it also reaches past the image's
    neighbourhood (_local_reach): a lamp's glare on the page reaches far above the border, but
    not above its surroundings, as a stroke does. A flat image: whether its border is over
    half-scale."""
    g = pixels[0]
    border = border_pixels(g)
    dark, light = whole_percentiles(g, [0.01, 99.99])
    if light - dark < 16:  # no object to tell the background from
        return float(border.mean()) > 127.5
    # 20th / 80th: a stroke or a garment may cross up to a fifth of the border
    low, high = whole_percentiles(border, [20, 80])
    reach_below, reach_above = low - dark, light - high
    if _local_reach_at_least_0(g) and (reach_below <= 0 < reach_above or reach_above < 0 < reach_below):
        # the answer whatever the local reach (both >= 0): a dataset's own image, its border
        # one level, is one of these, and the median filter is most of this function's cost
        return reach_above < 0
    below, above = _local_reach(g)
    # a side with no reach past the border (nothing under a product's black) counts 0, however local
    return min(reach_below, below) > min(reach_above, above)


# Of the picture's shorter side: wider than a stroke of writing photographed whole, narrower than
# a glare or a shadow; reach is measured on a copy about LOCAL_SIDE px across (a fast median).
LOCAL_WINDOW, LOCAL_SIDE = 0.2, 32


def _local_reach(g: np.ndarray) -> tuple[float, float]:
    """How far a uint8 image [H, W] reaches below and above the median of its neighbourhood (a
    square of LOCAL_WINDOW of its shorter side): its 0.05th and 99.95th percentiles of the
    difference. Strokes are a minority in every such square, so they reach far; broad lighting
    (a glare, a shadow) is the median itself and reaches nowhere."""
    img = Image.fromarray(g)
    factor = round(min(img.size) / LOCAL_SIDE)
    small = img.reduce(factor) if factor > 1 else img
    k = max(3, round(LOCAL_WINDOW * min(small.size))) | 1
    # PIL's median: ndimage.median_filter gives the same values, slower
    around = np.asarray(small.filter(ImageFilter.MedianFilter(k)), np.float32)
    below, above = whole_percentiles(np.asarray(small, np.float32) - around, [0.05, 99.95])
    return float(-below), float(above)


def _local_reach_at_least_0(g: np.ndarray) -> bool:
    """Whether _local_reach(g) is >= 0 both ways, known without computing it: when the image is
    filtered as it is (under 1.5 LOCAL_SIDE px), no larger than 2,001 px (its 0.05th / 99.95th
    percentiles then lie between the two lowest / highest differences) and at least the window
    wide. Then the two brightest pixels each lie at or over their window's median, since at most
    (r + 1)^2 of the (2r + 1)^2 values in a window of radius r (the border copied outwards) are
    brighter than the second one, fewer than half; and the two darkest at or under theirs."""
    side = min(g.shape)
    return side < 1.5 * LOCAL_SIDE and g.size <= 2001 and side >= max(3, round(LOCAL_WINDOW * side)) | 1


def has_background(pixels: np.ndarray, background: str) -> bool:
    """Whether a 1-channel uint8 image's border reads as ``background`` ("dark" or "light")."""
    return has_light_background(pixels) == (background == "light")


def match_polarity(pixels: np.ndarray, invert: str = "auto", background: str = "dark") -> np.ndarray:
    """Give 1-channel uint8 pixels [1, H, W] the polarity of the model's training images:
    ``background`` "dark" (light strokes on black, as MNIST) or "light" (dark ink on paper).

    A model trained on white-on-black digits reads a photo of ink on paper as noise. ``auto``
    inverts when the image's border is light (has_light_background) and the model's background
    dark, or the other way round; ``yes`` / ``no`` force it. 3-channel images are left alone.
    """
    if invert not in INVERT_MODES:
        raise ValueError(f"invert must be one of {', '.join(INVERT_MODES)}, got {invert!r}")
    if pixels.shape[0] != 1 or invert == "no":
        return pixels
    if invert == "auto" and has_background(pixels, background):
        return pixels
    return 255 - pixels


def load_for_model(path: str | Path, size: int, channels: int, invert: str = "auto", background: str = "dark",
                   frame: str = "no", framing: str = "none", face: int | None = None, crop: float = 1.0
                   ) -> torch.Tensor:
    """What every editing command feeds the encoder: load_pixels (polarity, framing), in [0, 1]."""
    return to_unit(load_pixels(path, size, channels, invert, background, frame, framing, face, crop))


def iter_images(root: str | Path, skip: Path | None = None) -> Iterator[Path]:
    """Image files under root, lazily (constant memory), in a stable depth-first order.

    Known image suffixes only; symlinked folders are not followed (no loops). ``skip`` prunes
    one folder, e.g. an output folder inside root that files are being sorted into.
    """
    skip = skip.resolve() if skip is not None else None
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if skip is None or (Path(dirpath) / d).resolve() != skip)
        base = Path(dirpath)
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:  # (a Path per name would cost more)
                yield base / name


def list_images(root: str | Path) -> list[Path]:
    """Every image file under root (recursive, symlink loops safe), sorted for a stable order."""
    return sorted(iter_images(root))


def _grid_size(count: int, nrow: int, h: int, w: int, pad: int) -> tuple[int, int]:
    """(height, width) of make_grid's image for ``count`` images of h x w, ``nrow`` a row."""
    rows = (count + nrow - 1) // nrow
    return rows * (h + pad) + pad, nrow * (w + pad) + pad


def check_grid(path: str | Path, count: int, nrow: int, size: int, pad: int = 2) -> None:
    """Refuse, before any image is drawn, a grid PNG of ``count`` images of ``size`` px over the
    pixels an input may have (Image.MAX_IMAGE_PIXELS): no viewer, nor this tool, would open it."""
    height, width = _grid_size(count, nrow, size, size, pad)
    if height * width > Image.MAX_IMAGE_PIXELS:
        raise ValueError(f"{path}: a grid of {count} images would be {width}x{height} pixels, over "
                         f"{Image.MAX_IMAGE_PIXELS:,}; ask for fewer rows or steps")


def make_grid(images: torch.Tensor, nrow: int, pad: int = 2) -> torch.Tensor:
    """[N, C, H, W] -> one [C, H', W'] image with ``nrow`` images per row and a white gap."""
    n, c, h, w = images.shape
    grid = torch.ones(c, *_grid_size(n, nrow, h, w, pad))
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
    save_image(to_pil(image), path)


def save_image(img: Image.Image, path: str | Path) -> None:
    """Save a PIL image as PNG atomically (temp file + rename)."""
    from infoedit.hub import atomic_write_bytes

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())
