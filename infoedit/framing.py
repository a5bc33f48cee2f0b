"""Photo framing (`--frame`): a photo or a scan of ink on paper made to look like a dataset's image.

A photo shows far more page than object, under uneven light, often on ruled paper or a form,
sometimes on a desk. What is taken off, in order (docs/photos.md): the desk around a sheet
(cut_sheet_from_desk), the page's level (level_around_writing, page_level), the paper's lines
and a form's box or line (erase_ruling); then the object's box is cut out without specks
(_object_box) and framed as the dataset frames its images (frame_object). Arrays in, arrays
out: files, modes and polarity are infoedit.images', which calls this module.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from infoedit.images import border_pixels, preprocess
from infoedit.ruling import RULING_THICKNESS, erase_ruling, runs

INK_THRESHOLD = 0.25  # of the object's peak over the background: below it is paper, lighting or noise
PRODUCT_THRESHOLD = 0.08  # the same for "fill": a light garment's body may be far fainter than its trim
# Stroke width over the longer side of the digit's box, as 2 * area / boundary pixels: MNIST's
# test digits have a median of 0.127, and 95% are above 0.085 (measured at 80 px on 2,000 of them).
MNIST_STROKE, THIN_STROKE = 0.127, 0.085
ROW_RUNS, COLUMN_RUNS = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]]), np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]])


def stroke_width(mask: np.ndarray) -> float:
    """Mean width in pixels of the strokes of a boolean mask: 2 * area / boundary pixels (a stroke
    of width w and length L has about w * L pixels, 2 * L of them on its boundary). The boundary:
    pixels with a 4-neighbour off the mask, or on the picture's edge (border_value 0)."""
    boundary = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return 2 * float(mask.sum()) / max(int(boundary.sum()), 1)


def _run_lengths(mask: np.ndarray, along: np.ndarray) -> np.ndarray:
    """For each pixel of a boolean mask [H, W], the length of the run of True that holds it along
    its row (``along`` ROW_RUNS) or its column (COLUMN_RUNS); 0 off the mask."""
    runs, _ = ndimage.label(mask, along)
    lengths = np.bincount(runs.ravel())
    lengths[0] = 0
    return lengths[runs]


def writing_stroke(mask: np.ndarray) -> float:
    """The width of a mask's thicker strokes: the 90th percentile over its pixels of the shorter
    of the row and column runs through each. Thin lines (a form's, the paper's) sit at the low
    end of that spread whatever share of the pixels they hold, a digit's strokes at the high end."""
    if not mask.any():
        return 0.0
    thickness = np.minimum(_run_lengths(mask, ROW_RUNS), _run_lengths(mask, COLUMN_RUNS))[mask]
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
    grown = ndimage.maximum_filter(small, size=2 * radius + 1, mode="nearest")
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
        coef = _least_squares(a[keep], values[keep])
        residual = values - np.einsum("ni,i->n", a, coef)
        keep = residual <= np.percentile(residual, 70)
    # the quadratic over the whole grid as sums of a column and a row (no [H, W, 6] stack)
    y, x = unit(np.arange(h), h), unit(np.arange(w), w)
    c0, cx, cy, cxx, cxy, cyy = coef
    level = (c0 + cy * y + cyy * y * y)[:, None] + (cx * x + cxx * x * x)[None, :] + cxy * y[:, None] * x[None, :]
    return level.astype(np.float32)


def _least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x minimising |a x - b| for a tall a [N, 6], by the normal equations summed with einsum:
    numpy's lstsq and matmul hand a tall matrix to a multithreaded BLAS, whose threads spin on
    every core for these microseconds of work (1.5 cores busy for one photo's framing). A ring
    too small or too regular to fix six coefficients gets lstsq's minimum-norm answer."""
    ata = np.einsum("ni,nj->ij", a, a)
    if np.linalg.cond(ata) < 1e8:  # error ~ cond * float64's 1e-16
        return np.linalg.solve(ata, np.einsum("ni,n->i", a, b))
    return np.linalg.lstsq(a, b, rcond=None)[0]


def _median3(a: np.ndarray) -> np.ndarray:
    """The 3x3 median of a float32 array [H, W], the edge continued (PIL's MedianFilter(3) and
    ndimage.median_filter give the same values, over 10x slower: they sort each window). Each
    column of three is sorted once for the three windows that share it; the median of nine is
    then the median of the columns' largest low, middle middle and smallest high."""
    p = np.pad(np.asarray(a, np.float32), 1, mode="edge")
    top, mid, bottom = p[:-2], p[1:-1], p[2:]
    low, high = np.minimum(top, mid), np.maximum(top, mid)
    middle, high = np.minimum(high, np.maximum(low, bottom)), np.maximum(high, bottom)
    low = np.minimum(low, bottom)

    def columns(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return b[:, :-2], b[:, 1:-1], b[:, 2:]

    return _median_of_3(np.maximum.reduce(columns(low)), _median_of_3(*columns(middle)),
                        np.minimum.reduce(columns(high)))


def _median_of_3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def _grow(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """A boolean mask dilated by ``radius`` pixels (a square neighbourhood)."""
    return ndimage.maximum_filter(mask, size=2 * radius + 1, mode="nearest")


def otsu_threshold(values: np.ndarray) -> float:
    """The grey level (uint8 values) that best splits ``values`` in two classes (Otsu's method).
    Hand-written: scikit-image's threshold_otsu is no dependency of the package (tests' only)."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    weight = np.cumsum(hist)
    mass = np.cumsum(hist * np.arange(256))
    below, above = weight[:-1], weight[-1] - weight[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mass[:-1] * weight[-1] - mass[-1] * below) ** 2 / (below * above)
    return float(np.nanargmax(np.where((below > 0) & (above > 0), between, np.nan))) + 0.5


DESK_WORK = 160  # px on the longer side: where the desk is found (the sheet's outline needs no more)


def _find_desk(small: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """(the desk, the sheet's grey, the desk's grey) in a uint8 photo shrunk to DESK_WORK, or None
    when there is no desk: the checks of cut_sheet_from_desk."""
    dark = small <= otsu_threshold(small)
    if not border_pixels(dark).any():  # nothing dark reaches the edge: no desk (the rest would find none)
        return None
    # the dark pixels connected to the edge, 8-connected (ink inside the sheet is not reached)
    parts, _ = ndimage.label(dark, np.ones((3, 3), int))
    at_edge = np.unique(border_pixels(parts))
    desk = np.isin(parts, at_edge[at_edge > 0])
    # The checks read the desk opened (a desk is broad; a ruling's lines connected to the edge
    # vanish); the whole flooded part is painted over (a sliver of desk along the edge too).
    broad = desk & _grow(~_grow(~desk, 2), 2)
    # a stroke may touch the edge; a desk runs along it
    if not 0.02 < broad.mean() < 0.8 or border_pixels(broad).mean() < 0.1:
        return None
    sheet = ~broad
    sheet_grey, desk_grey = float(np.median(small[sheet])), float(np.median(small[broad]))
    edge_sheet, edge_desk = _grow(broad, 2) & sheet, _grow(sheet, 2) & broad
    step = float(np.median(small[edge_sheet])) - float(np.median(small[edge_desk]))
    if sheet_grey - desk_grey < 32 or step < 0.3 * (sheet_grey - desk_grey):
        return None
    return desk, sheet_grey, desk_grey


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
    found = _find_desk(small)
    if found is None:
        return g
    desk, sheet_grey, desk_grey = found

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


def opening(a: np.ndarray, k: int) -> np.ndarray:
    """Grey-level opening of a 2-D float32 array by a k x k square (k odd): a minimum, then a
    maximum, over the square. Light structures narrower than k go; broad ones, and steps of
    any sharpness, stay as they were. The array is continued past its edges by its edge
    values, so a broad level that the edge cuts thin (a shadow's corner) stays too."""
    r = k // 2
    # padded first: grey_opening's mode "nearest" alone would continue the minimum's edge values
    # into the maximum, not the array's, and lower the opening along the edges
    opened = ndimage.grey_opening(np.pad(a, r, mode="edge"), size=(k, k), mode="nearest")
    return opened[r:r + a.shape[0], r:r + a.shape[1]]


# Of the object's mass: less, apart from it, is a speck (noise), and less at the picture's edge
# is not the object either (a sliver of a shadow's or a sheet's edge): the object's box leaves
# them out.
SPECK_MASS, EDGE_SPECK_MASS = 0.03, 0.25


def _main_span(profile: np.ndarray) -> tuple[int, int]:
    """[start, end) of the object along one axis, from its mass per row (or column): the runs of
    rows with mass, separated by empty rows, less the runs at either end holding under
    SPECK_MASS of the whole (EDGE_SPECK_MASS for a run at the picture's edge). No mass: the
    whole axis."""
    starts, ends = runs(profile > 0)
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
    smooth = _median3(g)
    page = opening(smooth, k)
    top, bottom, left, right = _object_box(smooth - page, INK_THRESHOLD)
    if max(bottom - top, right - left) * MNIST_STROKE > k / 2:
        return None
    # Light multiplies: in a photo of ink on paper (seen here in negative, the paper at 255 - its
    # brightness) a stroke in a shadow stands out from the paper by the shadow's share of its
    # contrast in the light. Dividing by the paper's brightness gives the stroke one level in
    # both; on a dark page (255 - page near 255) this is all but a plain subtraction.
    return (g - page) * 255 / np.maximum(255 - page, 16)


def _median_peak(v: np.ndarray) -> tuple[np.ndarray, float]:
    """(v's 3x3 median, its peak): one hot pixel (noise, a JPEG artefact) is not the object."""
    smooth = _median3(v)
    return smooth, float(smooth.max())


def _take_lines_out(v: np.ndarray, floor: float, framing: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(v, its 3x3 median, its peak) with the lines of ruled or squared paper and a notebook's
    margin taken out, then around a digit a form's box or the line it stands on (erase_ruling)."""
    smooth, peak = _median_peak(v)
    if peak >= 16:
        cleaned = erase_ruling(v, floor * peak / 2, peak)
        if cleaned is not v:
            v = cleaned
            smooth, peak = _median_peak(v)
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
            smooth, peak = _median_peak(v)
    return v, smooth, peak


def _place(crop: np.ndarray, size: int, framing: str) -> np.ndarray:
    """The object's crop (float, 0..1) as a uint8 frame [1, size, size]: "digit" resized to a
    20/28 box (its strokes thickened when thin) and centred by mass, "fill" to the whole frame,
    centred."""
    box = round(size * 20 / 28) if framing == "digit" else size
    if framing == "digit":
        crop = _thicken_strokes(crop, 4 * box)
    scale = box / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    obj = np.clip(np.asarray(Image.fromarray(crop, "F").resize((w, h), Image.Resampling.BOX)), 0, 1)
    if framing == "digit":
        cy, cx = ndimage.center_of_mass(obj) if obj.sum() > 0 else ((h - 1) / 2, (w - 1) / 2)
        top, left = round((size - 1) / 2 - cy), round((size - 1) / 2 - cx)
    else:
        top, left = (size - h) // 2, (size - w) // 2
    top, left = min(max(top, 0), size - h), min(max(left, 0), size - w)
    out = np.zeros((size, size), np.float32)
    out[top:top + h, left:left + w] = obj
    return np.round(out * 255).astype(np.uint8)[None]


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
    # Ink is dark or absent; a product keeps its shading (Fashion-MNIST thresholds nothing).
    floor = INK_THRESHOLD if framing == "digit" else PRODUCT_THRESHOLD
    v, smooth, peak = _take_lines_out(v, floor, framing)
    if peak < 16:
        return preprocess(Image.fromarray(pixels[0]), size, 1)
    v = np.clip((v / peak - floor) / (1 - floor), 0, 1)
    top, bottom, left, right = _object_box(smooth, floor)
    return _place(v[top:bottom, left:right], size, framing)
