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


def center_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def preprocess(img: Image.Image, size: int, channels: int) -> np.ndarray:
    """The shared preprocessing: to L/RGB, centre square crop, resize to size x size; returns
    the pixels as uint8 [C, H, W] (to_unit makes them model input)."""
    img = center_square(_to_mode(img, channels))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.array(img, dtype=np.uint8)  # a writable copy, not a view of PIL's buffer
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def to_unit(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels [..., C, H, W] -> a float tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255)


# Which framing a dataset's images have (digit, fill, face): infoedit.datasets.
FRAME_MODES = ("auto", "yes", "no")
INK_THRESHOLD = 0.25  # of the object's peak over the background: below it is paper, lighting or noise
PRODUCT_THRESHOLD = 0.08  # the same for "fill": a light garment's body may be far fainter than its trim
# Stroke width over the longer side of the digit's box, as 2 * area / boundary pixels: MNIST's
# test digits have a median of 0.127, and 95% are above 0.085 (measured at 80 px on 2,000 of them).
MNIST_STROKE, THIN_STROKE = 0.127, 0.085


def stroke_width(mask: np.ndarray) -> float:
    """Mean width in pixels of the strokes of a boolean mask: 2 * area / boundary pixels (a stroke
    of width w and length L has about w * L pixels, 2 * L of them on its boundary)."""
    inner = np.zeros_like(mask)
    inner[1:-1, 1:-1] = (mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1]
                         & mask[1:-1, :-2] & mask[1:-1, 2:])
    return 2 * float(mask.sum()) / max(int((mask & ~inner).sum()), 1)


def _runs(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of True in a 1-D boolean array, ends exclusive."""
    on = np.concatenate([[False], flags, [False]])
    return np.flatnonzero(on[1:] & ~on[:-1]), np.flatnonzero(~on[1:] & on[:-1])


def _run_lengths(mask: np.ndarray) -> np.ndarray:
    """For each pixel of a boolean mask [H, W], the length of the run of True along its row that
    holds it (0 off the mask)."""
    h, w = mask.shape
    flat = np.concatenate([mask, np.zeros((h, 1), bool)], axis=1).ravel()  # rows kept apart
    starts, ends = _runs(flat)
    first = np.zeros(len(flat), int)
    first[starts] = 1
    run = np.maximum(np.cumsum(first) - 1, 0)  # the run each pixel would belong to
    lengths = np.where(flat, (ends - starts)[run], 0) if len(starts) else np.zeros(flat.shape, int)
    return lengths.reshape(h, w + 1)[:, :w]


def writing_stroke(mask: np.ndarray) -> float:
    """The width of a mask's thicker strokes: the 90th percentile over its pixels of the shorter
    of the row and column runs through each. Thin lines (a form's, the paper's) sit at the low
    end of that spread whatever share of the pixels they hold, a digit's strokes at the high end."""
    if not mask.any():
        return 0.0
    thickness = np.minimum(_run_lengths(mask), _run_lengths(mask.T).T)[mask]
    return float(np.percentile(thickness, 90))


def _thicken_strokes(crop: np.ndarray, work: int) -> np.ndarray:
    """A digit written with a pen far thinner than MNIST's (a photo of a biro on paper), redrawn
    to MNIST's median stroke: resized to ``work`` px on its longer side and dilated there. Strokes
    within MNIST's range are left as they are. Returns the crop, resized when it was thickened."""
    long = max(crop.shape)
    width = stroke_width(crop > 0.5) / long
    if width >= THIN_STROKE:
        return crop
    scale = work / long
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray(crop, "F").resize((w, h), Image.Resampling.BOX))
    radius = max(1, round((MNIST_STROKE - width) * work / 2))
    grown = np.asarray(Image.fromarray(small, "F").filter(ImageFilter.MaxFilter(2 * radius + 1)))
    return np.clip(grown / max(float(grown.max()), 1e-6), 0, 1)


def page_level(g: np.ndarray, ring: float = 0.05, rounds: int = 3, fit_on: np.ndarray | None = None
               ) -> np.ndarray:
    """The background's level at every pixel of a float image [H, W]: a quadratic in x and y
    fitted to the outer ``ring`` of the image (or to the pixels of the mask ``fit_on``), so a
    photo's lighting gradient or vignette is taken off with the paper. Each round drops the
    fitted pixels farthest above the fit (30%: an object that reaches the edge), so the fit
    follows the paper."""
    h, w = g.shape
    if fit_on is None:
        k = max(1, round(ring * min(h, w)))
        fit_on = np.ones((h, w), bool)
        fit_on[k:h - k, k:w - k] = False
    ys, xs = np.nonzero(fit_on)
    step = max(1, len(ys) // 20_000)  # a sample of the ring is plenty for six coefficients
    ys, xs = ys[::step], xs[::step]

    def unit(i: np.ndarray, n: int) -> np.ndarray:  # pixel index -> [-0.5, 0.5]
        return i.astype(np.float64) / max(n - 1, 1) - 0.5

    def terms(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)

    a, values = terms(unit(ys, h), unit(xs, w)), g[ys, xs].astype(np.float64)
    keep = np.ones(len(values), bool)
    for _ in range(rounds):
        coef = np.linalg.lstsq(a[keep], values[keep], rcond=None)[0]
        residual = values - a @ coef
        keep = residual <= np.percentile(residual, 70)
    # the quadratic over the whole grid as sums of a column and a row (no [H, W, 6] stack)
    y, x = unit(np.arange(h), h), unit(np.arange(w), w)
    c0, cx, cy, cxx, cxy, cyy = coef
    level = (c0 + cy * y + cyy * y * y)[:, None] + (cx * x + cxx * x * x)[None, :] + cxy * y[:, None] * x[None, :]
    return level.astype(np.float32)


def _border(a: np.ndarray) -> np.ndarray:
    """The values of a 2-D array's 1-pixel border, each pixel once."""
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]]) if a.shape[0] > 1 else a[0]


def _grow(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """A boolean mask dilated by ``radius`` pixels (a square neighbourhood)."""
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.filter(ImageFilter.MaxFilter(2 * radius + 1))) > 0


def otsu_threshold(values: np.ndarray) -> float:
    """The grey level (uint8 values) that best splits ``values`` in two classes (Otsu's method)."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    weight = np.cumsum(hist)
    mass = np.cumsum(hist * np.arange(256))
    below, above = weight[:-1], weight[-1] - weight[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mass[:-1] * weight[-1] - mass[-1] * below) ** 2 / (below * above)
    return float(np.nanargmax(np.where((below > 0) & (above > 0), between, np.nan))) + 0.5


DESK_WORK = 160  # px on the longer side: where the desk is found (the sheet's outline needs no more)


def cut_sheet_from_desk(g: np.ndarray) -> np.ndarray:
    """A uint8 photo [H, W] of a light sheet lying on a darker surface (a desk) -> the sheet
    alone: cut to the sheet's box, with the desk left in it (a turned sheet's corners) painted
    with the sheet's lighting. The desk is the dark part (Otsu's split) connected to the
    picture's edge: broad, running along 10% of the edge or more, covering 2-80% of the
    picture, 32 grey levels or more below the sheet and set off from it by a sharp edge (a
    vignette's darker corners fade in: they are no desk). Any other picture is returned as it is."""
    h, w = g.shape
    if min(h, w) < 32 or g.max() - g.min() < 32:
        return g
    scale = DESK_WORK / max(h, w)
    small = np.asarray(Image.fromarray(g).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                 Image.Resampling.BOX)) if scale < 1 else g
    dark = small <= otsu_threshold(small)
    desk = np.zeros_like(dark)
    desk[0], desk[-1], desk[:, 0], desk[:, -1] = dark[0], dark[-1], dark[:, 0], dark[:, -1]
    while True:  # flood the dark pixels from the edge (ink inside the sheet is not reached)
        grown = _grow(desk) & dark
        if (grown == desk).all():
            break
        desk = grown
    # The checks read the desk opened (a desk is broad; a ruling's lines connected to the edge
    # vanish); the whole flooded part is painted over (a sliver of desk along the edge too).
    broad = desk & _grow(~_grow(~desk, 2), 2)
    if not 0.02 < broad.mean() < 0.8 or _border(broad).mean() < 0.1:  # a stroke may touch the edge; a desk runs along it
        return g
    sheet = ~broad
    sheet_grey, desk_grey = float(np.median(small[sheet])), float(np.median(small[broad]))
    edge_sheet, edge_desk = _grow(broad, 2) & sheet, _grow(sheet, 2) & broad
    step = float(np.median(small[edge_sheet])) - float(np.median(small[edge_desk]))
    if sheet_grey - desk_grey < 32 or step < 0.3 * (sheet_grey - desk_grey):
        return g

    def full_size(mask: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)) > 0

    # Writing in the dark part (strokes far darker than it, inside it or touching it) makes it
    # the page in a shadow, not a desk: cutting it away would cut the writing away. Looked for
    # at full size, where thin strokes keep their darkness.
    if (g[full_size(desk)] < desk_grey - max(48.0, 0.5 * (sheet_grey - desk_grey))).mean() > 0.001:
        return g

    # 3 px more: the sheet's own edge, blurred into the desk and shaded, and the coarse grid's blocks
    cover = full_size(_grow(desk, 3))
    # the sheet's own edge, where its lighting is read (5% of the picture)
    edge = full_size(_grow(desk, 3 + max(2, round(0.05 * min(small.shape))))) & ~cover
    rows, cols = np.flatnonzero((~cover).any(axis=1)), np.flatnonzero((~cover).any(axis=0))
    if not len(rows) or edge.sum() < 16:
        return g
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    sheet, hole = g[box], cover[box]
    # painted with the sheet's lighting: page_level fitted to the sheet's edge (in the negative,
    # where ink is what lies above the paper)
    level = 255 - page_level(255 - sheet.astype(np.float32), fit_on=edge[box])
    return np.where(hole, np.clip(np.round(level), 0, 255).astype(np.uint8), sheet)


def _running_extreme(a: np.ndarray, k: int, fn, axis: int) -> np.ndarray:
    """The minimum (fn=np.minimum) or maximum (np.maximum) of ``a`` over a centred window of
    ``k`` (odd) pixels along ``axis``, the window cut at the array's ends. Van Herk / Gil-Werman:
    running extremes within blocks of k, forwards and backwards, so the cost does not grow with k."""
    a = np.moveaxis(a, axis, -1)
    n, r = a.shape[-1], k // 2
    padded = np.full(a.shape[:-1] + (-(-(n + 2 * r) // k) * k,), np.inf if fn is np.minimum else -np.inf,
                     np.float32)
    padded[..., r:r + n] = a
    blocks = padded.reshape(a.shape[:-1] + (-1, k))
    forwards = fn.accumulate(blocks, axis=-1).reshape(padded.shape)
    backwards = fn.accumulate(blocks[..., ::-1], axis=-1)[..., ::-1].reshape(padded.shape)
    return np.moveaxis(fn(backwards[..., :n], forwards[..., k - 1:k - 1 + n]), -1, axis)


def opening(a: np.ndarray, k: int) -> np.ndarray:
    """Grey-level opening of a 2-D float32 array by a k x k square (k odd): a minimum, then a
    maximum, over the square. Light structures narrower than k go; broad ones, and steps of
    any sharpness, stay as they were. The array is continued past its edges by its edge
    values, so a broad level that the edge cuts thin (a shadow's corner) stays too."""
    out = np.pad(a, k, mode="edge")
    for fn in (np.minimum, np.maximum):
        out = _running_extreme(_running_extreme(out, k, fn, 0), k, fn, 1)
    return out[k:-k, k:-k]


# Of the object's mass: less, apart from it, is a speck (noise), and less at the picture's edge
# is not the object either (a sliver of a shadow's or a sheet's edge): the object's box leaves
# them out.
SPECK_MASS, EDGE_SPECK_MASS = 0.03, 0.25


def _main_span(profile: np.ndarray) -> tuple[int, int]:
    """[start, end) of the object along one axis, from its mass per row (or column): the runs of
    rows with mass, separated by empty rows, less the runs at either end holding under
    SPECK_MASS of the whole (EDGE_SPECK_MASS for a run at the picture's edge). No mass: the
    whole axis."""
    starts, ends = _runs(profile > 0)
    if not len(starts):
        return 0, len(profile)
    mass = np.array([profile[a:b].sum() for a, b in zip(starts, ends)])
    limit = np.where((starts == 0) | (ends == len(profile)), EDGE_SPECK_MASS, SPECK_MASS)
    first, last = 0, len(starts) - 1
    while first < last:
        total = mass[first:last + 1].sum()
        drop_first, drop_last = mass[first] < limit[first] * total, mass[last] < limit[last] * total
        if drop_first and (not drop_last or mass[first] <= mass[last]):
            first += 1
        elif drop_last:
            last -= 1
        else:
            break
    return int(starts[first]), int(ends[last])


def _object_box(smooth: np.ndarray, floor: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), ends exclusive: the box of the object in a levelled image whose
    peak is its object's (over ``floor`` of the peak), without specks apart from it (_main_span)."""
    ink = np.where(smooth > floor * smooth.max(), smooth, 0)
    top, bottom = _main_span(ink.sum(axis=1))
    left, right = _main_span(ink[top:bottom].sum(axis=0))
    top, bottom = _main_span(ink[:, left:right].sum(axis=1))  # rows again, without the specks' columns
    return top, bottom, left, right


PAGE_WINDOW = 0.15  # of the picture's shorter side: wider than any stroke of a digit photographed whole


def level_around_writing(g: np.ndarray) -> np.ndarray | None:
    """A photo of writing, light on dark (float [H, W]), levelled by its page's level read
    around the strokes: the opening of its 3x3 median by a square wider than the strokes
    (PAGE_WINDOW), which follows any lighting broader than the square, a shadow's sharp edge
    across the page too (page_level's quadratic follows smooth lighting only). None when the
    writing is too large for the square: strokes are about MNIST_STROKE of the writing's box,
    and in a digit filling the picture (a tight crop) they are as wide as the square, so its
    bold parts would be taken for the page."""
    h, w = g.shape
    k = max(3, round(PAGE_WINDOW * min(h, w))) | 1
    smooth = np.asarray(Image.fromarray(g, "F").filter(ImageFilter.MedianFilter(3)))
    page = opening(smooth, k)
    top, bottom, left, right = _object_box(smooth - page, INK_THRESHOLD)
    if max(bottom - top, right - left) * MNIST_STROKE > k / 2:
        return None
    # Light multiplies: in a photo of ink on paper (seen here in negative, the paper at 255 - its
    # brightness) a stroke in a shadow stands out from the paper by the shadow's share of its
    # contrast in the light. Dividing by the paper's brightness gives the stroke one level in
    # both; on a dark page (255 - page near 255) this is all but a plain subtraction.
    return (g - page) * 255 / np.maximum(255 - page, 16)


# Ruled or squared paper: a line crosses at least this share of the picture, at most this thick
# (of the picture's height), tilted at most RULING_TILT degrees (a page photographed at a slant),
# with paper on both sides; two or more must be found, or one apart from the writing
# (_apart_from_writing), so a digit's long stroke in a tight crop is not taken for the ruling.
RULING_SPAN, RULING_THICKNESS, RULING_TILT = 0.6, 0.03, 12.0


def _clear_of(start: int, end: int) -> int:
    """How many rows past a line's band [start, end) its blur and the strokes that touch it reach
    at most: twice its thickness and then some."""
    return 2 * (end - start) + 6


def _apart_from_writing(count: np.ndarray, start: int, end: int, width: int) -> bool:
    """Whether a lone line (rows [start, end) of the sheared rows' ink ``count``) is a line of the
    paper, such as a notebook's margin, not a stroke: there is writing elsewhere (rows holding a
    tenth of the line's ink), and none near it (the rows beside it, past its blurred edges, out to
    twice its thickness and then some, hold no more ink than most rows). A stroke in a tight
    crop has the rest of its digit touching it, or nothing else."""
    gap = _clear_of(start, end)
    sides = [count[max(start - gap, 0):max(start - 3, 0)], count[end + 2:end + gap]]
    elsewhere = count[:max(start - gap, 0)].sum() + count[end + gap:].sum()
    # what most rows hold (noise, other lines' remnants), and its spread as for a count of chance pixels
    typical = float(np.median(count))
    quiet = typical + np.sqrt(typical) + 2 + 0.002 * width
    near = max((side.mean() for side in sides if len(side)), default=0.0)  # writing comes from one side
    return near <= quiet and elsewhere >= 0.1 * count[start:end].sum()


def _past_the_writing(rows: np.ndarray, xs: np.ndarray, start: int, end: int) -> bool:
    """Whether a line (sheared rows [start, end); ``rows``, ``xs``: each ink pixel's sheared row
    and column) reaches past the rest of the writing (beyond twice its thickness and then some
    from it, a tenth of its ink at least) at both ends by 15% of its length: a form's line written
    on. The rest of a digit reaches as far as the digit's own bar at one end at least."""
    gap = _clear_of(start, end)
    on_line, rest = xs[(rows >= start) & (rows < end)], xs[(rows < start - gap) | (rows >= end + gap)]
    if len(on_line) == 0 or len(rest) < 0.1 * len(on_line):  # a '1' is all line: no writing beside it
        return False
    low, high = np.percentile(rest, [0.5, 99.5])  # not a stray pixel
    past = 0.15 * (on_line.max() - on_line.min())
    return on_line.min() < low - past and on_line.max() > high + past


def _erase_ruling_rows(v: np.ndarray, faint: float, peak: float, box: float | None = None,
                       under: bool = False) -> np.ndarray:
    """``v`` (levelled, light object on 0) with its horizontal ruling lines taken out. Lines are
    runs of rows, after shearing by the best of a few small angles, with more than RULING_SPAN of
    the width above ``faint`` (of the part inside the picture, for the lines leaving it; two
    must cross it whole). On a line a pixel stays when it is darker ink than the line itself
    (the midpoint of the line's level and ``peak``), else it takes the lower of the pixels just
    above and below the line: a stroke crossing the line stays whole, the line goes. ``box``: ``v``
    is the crop of a box drawn around the writing, whose lines are at most ``box`` px thick and
    more than 8 times that apart: only a line along each of its two edges counts, and both must
    be there; ``under``: or one alone along its last rows, reaching past the rest of the writing
    at both ends (a form's line the digit stands on)."""
    h, w = v.shape
    ys, xs = np.nonzero(v > faint)
    if len(ys) < 2 * RULING_SPAN * w:
        return v
    best_count, shift, tried = None, None, set()
    for angle in np.radians(np.linspace(-RULING_TILT, RULING_TILT, round(8 * RULING_TILT) + 1)):  # 0.25 deg apart
        s = np.round((np.arange(w) - w / 2) * np.tan(angle)).astype(int)  # sheared row = y - s[x] + s.max()
        if s.tobytes() in tried:  # in a narrow picture neighbouring angles round to one shear: its count
            continue  # is the same, and the first such count stays the best
        tried.add(s.tobytes())
        count = np.bincount(ys - s[xs] + s.max(), minlength=h + s.max() - s.min())
        if best_count is None or count.max() > best_count.max():
            best_count, shift = count, s
    # the columns each sheared row has inside the picture: a line leaving it at the top or bottom
    # is as much a line where it shows
    shown = np.zeros(len(best_count) + 1, int)
    np.add.at(shown, shift.max() - shift, 1)
    np.add.at(shown, shift.max() - shift + h, -1)
    share = best_count / np.maximum(np.cumsum(shown)[:-1], 1)
    starts, ends = _runs(share > RULING_SPAN)
    if len(starts) == 0:
        return v
    # lines a few rows apart (a notebook's double margin line) are one band: each would find the
    # other where the paper beside it should be
    apart = starts[1:] - ends[:-1] > 3
    starts, ends = starts[np.r_[True, apart]], ends[np.r_[apart, True]]
    # a line is thin, and stands out from the rows on both sides of it (paper, maybe unevenly lit)
    beside = np.concatenate([starts - 3, ends + 2])
    outside = (beside < 0) | (beside >= len(share))  # past the picture's edge: no ink there
    side = np.where(outside, 0, share[np.clip(beside, 0, len(share) - 1)]).reshape(2, -1).max(0)
    peak_share = np.array([share[a:b].max() for a, b in zip(starts, ends)])
    thickest = max(2, RULING_THICKNESS * h) if box is None else box
    thin = ((ends - starts) <= thickest) & (side < peak_share - RULING_SPAN / 2)
    across = np.array([best_count[a:b].max() > RULING_SPAN * w for a, b in zip(starts, ends)], bool)
    if box is not None:  # the box's edges: within a few rows of the crop's first and last rows
        reach = shift.max() - shift.min() + 3
        first, last = thin & across & (starts <= reach), thin & across & (ends >= len(share) - reach)
        rows, below = ys - shift[xs] + shift.max(), np.flatnonzero(last)
        stands_on = under and not first.any() and len(below) == 1 and _past_the_writing(
            rows, xs, starts[below[0]], ends[below[0]])
        if h <= 8 * box or not (first.any() and last.any() or stands_on):
            return v
        thin = first | last
    lines = np.flatnonzero(thin & across)
    if len(lines) == 0 or len(lines) == 1 and box is None and not _apart_from_writing(
            best_count, starts[lines[0]], ends[lines[0]], w):
        return v
    out, cols = v.copy(), np.arange(w)
    for start, end in zip(starts[thin], ends[thin]):
        rows = np.arange(start - 1, end + 1)[:, None] + shift[None, :] - shift.max()  # the band, 1 px wider
        above = np.clip(rows[0] - 1, 0, h - 1)
        below = np.clip(rows[-1] + 1, 0, h - 1)
        inside = (rows >= 0) & (rows < h)
        r, c = rows[inside], np.broadcast_to(cols, rows.shape)[inside]
        level = float(np.median(v[r, c]))
        fill = np.minimum(v[above, cols], v[below, cols])
        out[r, c] = np.where(v[r, c] > (level + peak) / 2, v[r, c], np.maximum(fill[c], 0))
    return out


def erase_ruling(v: np.ndarray, faint: float, peak: float, box: float | None = None) -> np.ndarray:
    """``v`` with the lines of ruled (horizontal) or squared (both ways) paper taken out, or with
    ``box``, those of a box around the writing (as _erase_ruling_rows)."""
    out = _erase_ruling_rows(v, faint, peak, box, under=box is not None)
    columns = out.T
    across = _erase_ruling_rows(columns, faint, peak, box)
    return out if across is columns else np.ascontiguousarray(across.T)


def frame_object(pixels: np.ndarray, size: int, framing: str) -> np.ndarray:
    """A light-on-dark 1-channel uint8 image [1, H, W] of any size -> [1, size, size]: the
    background level taken off (level_around_writing for writing small enough for it, which
    follows shadows; else page_level), the intensities stretched so the object's peak is
    white, faint pixels (INK_ / PRODUCT_THRESHOLD) cleared, the object's box (_object_box: no
    specks) cut out and resized: "digit" to a 20/28 box centred by mass, "fill" to the whole
    frame, centred. The lines of ruled or squared paper and a notebook's margin are taken out
    first, then around a digit a form's box or the line it stands on (erase_ruling). A picture
    with no object (flat) gets the plain centre crop."""
    g = pixels[0].astype(np.float32)
    # digits only: a product may be as broad as a shadow, and would be taken for the page
    levelled = level_around_writing(g) if framing == "digit" else None
    v = g - page_level(g) if levelled is None else levelled

    def median_peak(v: np.ndarray) -> tuple[np.ndarray, float]:
        # the peak of a 3x3 median: one hot pixel (noise, a JPEG artefact) is not the object
        smooth = np.asarray(Image.fromarray(v, "F").filter(ImageFilter.MedianFilter(3)))
        return smooth, float(smooth.max())

    smooth, peak = median_peak(v)
    # Ink is dark or absent; a product keeps its shading (Fashion-MNIST thresholds nothing).
    floor = INK_THRESHOLD if framing == "digit" else PRODUCT_THRESHOLD
    if peak >= 16:
        cleaned = erase_ruling(v, floor * peak / 2, peak)
        if cleaned is not v:
            v = cleaned
            smooth, peak = median_peak(v)
    if peak >= 16 and framing == "digit":
        # a form's box around the digit: its lines cross the writing's box, not the picture; as
        # thin as the paper's lines are in the whole picture and under half the writing's strokes
        top, bottom, left, right = _object_box(smooth, floor)
        crop = v[top:bottom, left:right]
        thickness = min(max(2, RULING_THICKNESS * min(v.shape)), writing_stroke(crop > peak / 2) / 2)
        cleaned = erase_ruling(crop, floor * peak / 2, peak, box=thickness)
        if cleaned is not crop:
            v = v.copy()
            v[top:bottom, left:right] = cleaned
            smooth, peak = median_peak(v)
    if peak < 16:
        return preprocess(Image.fromarray(pixels[0]), size, 1)
    v = np.clip((v / peak - floor) / (1 - floor), 0, 1)
    top, bottom, left, right = _object_box(smooth, floor)
    crop = v[top:bottom, left:right]
    box = round(size * 20 / 28) if framing == "digit" else size
    if framing == "digit":
        crop = _thicken_strokes(crop, 4 * box)
    scale = box / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    obj = np.clip(np.asarray(Image.fromarray(crop, "F").resize((w, h), Image.Resampling.BOX)), 0, 1)
    if framing == "digit":
        mass = obj.sum()
        cy = (obj.sum(1) @ np.arange(h)) / mass if mass > 0 else (h - 1) / 2
        cx = (obj.sum(0) @ np.arange(w)) / mass if mass > 0 else (w - 1) / 2
        top, left = round((size - 1) / 2 - cy), round((size - 1) / 2 - cx)
    else:
        top, left = (size - h) // 2, (size - w) // 2
    top, left = min(max(top, 0), size - h), min(max(left, 0), size - w)
    out = np.zeros((size, size), np.float32)
    out[top:top + h, left:left + w] = obj
    return np.round(out * 255).astype(np.uint8)[None]


def load_pixels(path: str | Path, size: int, channels: int, invert: str = "no", background: str = "dark",
                frame: str = "no", framing: str = "none", face: int | None = None) -> np.ndarray:
    """Open + preprocess (+ match_polarity) as uint8 [C, H, W]; raises ImageError with one line
    on any bad file. ``frame`` (FRAME_MODES) and ``framing`` (the model's dataset's, see
    infoedit.datasets): whether a 1-channel image's object is cut out and framed as the dataset
    frames its images, instead of the plain centre crop; for a face model, whether the face is
    found and framed (the photo's face number ``face`` when it shows several, infoedit.faces)."""
    if frame not in FRAME_MODES:
        raise ValueError(f"frame must be one of {', '.join(FRAME_MODES)}, got {frame!r}")
    may_frame_face = framing == "face" and channels == 3 and frame != "no"
    may_frame = channels == 1 and (frame == "yes" or (frame == "auto" and framing != "none"))
    # A framed object is cut from the full picture: decode JPEGs at more than the model's size
    # (a face is searched for in the whole photo).
    img = open_image(path, draft_size=None if may_frame_face else size * (8 if may_frame else 2))
    if min(img.size) < 1:
        raise ImageError(f"{path}: empty image")
    if may_frame_face and (frame == "yes" or img.size != (size, size)):  # a model-sized image is a framed face
        from infoedit.faces import locate

        return locate(path, face, img).pixels(size)
    try:
        if not may_frame:
            return match_polarity(preprocess(img, size, channels), invert, background)
        if frame == "auto" and img.size == (size, size):
            # A model-sized image in the model's polarity is taken as framed (a dataset's own
            # image); one of the other polarity (a drawing in black on white) is not.
            plain = preprocess(img, size, channels)
            if has_background(plain, background):
                return match_polarity(plain, invert, background)
        gray = _to_mode(img, 1)
        factor = min(gray.size) // (size * 16)  # a photo's object needs no more pixels than this
        gray = gray.reduce(factor) if factor > 1 else gray
        pixels = match_polarity(cut_sheet_from_desk(np.array(gray, dtype=np.uint8))[None], invert, background)
        light = background == "light"  # frame_object wants the object light on dark
        out = frame_object(255 - pixels if light else pixels, size, framing if framing != "none" else "fill")
        return 255 - out if light else out
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot convert image ({exc})") from None


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
    border = _border(g)
    dark, light = np.percentile(g, [0.01, 99.99])
    if light - dark < 16:  # no object to tell the background from
        return float(border.mean()) > 127.5
    # 20th / 80th: a stroke or a garment may cross up to a fifth of the border
    low, high = np.percentile(border, [20, 80])
    below, above = _local_reach(g)
    # a side with no reach past the border (nothing under a product's black) counts 0, however local
    return min(low - dark, below) > min(light - high, above)


# Of the picture's shorter side: wider than a stroke of writing photographed whole, narrower than
# a glare or a shadow; reach is measured on a copy about LOCAL_SIDE px across (a fast median).
LOCAL_WINDOW, LOCAL_SIDE = 0.2, 64


def _local_reach(g: np.ndarray) -> tuple[float, float]:
    """How far a uint8 image [H, W] reaches below and above the median of its neighbourhood (a
    square of LOCAL_WINDOW of its shorter side): its 0.05th and 99.95th percentiles of the
    difference. Strokes are a minority in every such square, so they reach far; broad lighting
    (a glare, a shadow) is the median itself and reaches nowhere."""
    img = Image.fromarray(g)
    factor = min(img.size) // LOCAL_SIDE
    small = img.reduce(factor) if factor > 1 else img
    k = max(3, round(LOCAL_WINDOW * min(small.size))) | 1
    around = np.asarray(small.filter(ImageFilter.MedianFilter(k)), np.float32)
    below, above = np.percentile(np.asarray(small, np.float32) - around, [0.05, 99.95])
    return float(-below), float(above)


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
                   frame: str = "no", framing: str = "none", face: int | None = None) -> torch.Tensor:
    """What every editing command feeds the encoder: load_pixels (polarity, framing), in [0, 1]."""
    return to_unit(load_pixels(path, size, channels, invert, background, frame, framing, face))


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
