"""Ruled and squared paper, and a form's box or line, taken out of a photo of writing
(erase_ruling): long, thin, nearly level lines of ink with paper on both sides, found on rows
sheared by the best of a few small angles. infoedit.framing calls it; arrays in, arrays out."""

from __future__ import annotations

import numpy as np


def runs(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of True in a 1-D boolean array, ends exclusive. (ndimage.label
    and find_objects give the same runs, as a list of slices to turn into arrays one by one.)"""
    on = np.concatenate([[False], flags, [False]])
    return np.flatnonzero(on[1:] & ~on[:-1]), np.flatnonzero(~on[1:] & on[:-1])


# Ruled or squared paper: a line crosses at least this share of the picture, at most this thick
# (of the picture's height), tilted at most RULING_TILT degrees (a page photographed at a slant),
# with paper on both sides; two or more must be found, or one apart from the writing
# (_apart_from_writing), so a digit's long stroke in a tight crop is not taken for the ruling.
RULING_SPAN, RULING_THICKNESS, RULING_TILT = 0.6, 0.03, 12.0
BINCOUNT_BATCH = 1 << 20  # sheared ink pixels counted at once: the angles' batch stays a few MB


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


def _shears(w: int) -> np.ndarray:
    """The shears [A, w] of the angles up to RULING_TILT, 0.25 degrees apart, from -RULING_TILT
    up: sheared row = y - s[x] + s.max(). In a narrow picture neighbouring angles round to one
    shear (each column's shift moves monotonically with the angle, so equal shears are
    neighbours): each is kept once."""
    angles = np.radians(np.linspace(-RULING_TILT, RULING_TILT, round(8 * RULING_TILT) + 1))
    shears = np.round((np.arange(w) - w / 2) * np.tan(angles)[:, None]).astype(np.int32)
    return shears[np.r_[True, (shears[1:] != shears[:-1]).any(1)]]


def _may_cross(ink: np.ndarray, shears: np.ndarray) -> bool:
    """Whether a sheared row (of any of ``shears``, _shears) of the ink mask [H, W] may hold more
    than RULING_SPAN of the width, a line across (what _erase_ruling_rows looks for): a sheared
    row stays within its shear's span of rows, reach + 1 at most, so it holds no more ink than
    the columns with ink in some such band."""
    if ink.sum() < 2 * RULING_SPAN * ink.shape[1]:  # two lines across, or one and writing beside it
        return False
    reach = int((shears.max(1) - shears.min(1)).max())
    rows = np.concatenate([np.zeros((1, ink.shape[1]), np.int32), np.cumsum(ink, axis=0, dtype=np.int32)])
    rows = np.concatenate([rows, np.repeat(rows[-1:], reach, axis=0)])  # bands reaching past the foot
    columns = (rows[reach + 1:] - rows[:-reach - 1] > 0).sum(1)  # band from each row down
    return bool(columns.max() > RULING_SPAN * ink.shape[1])


def _best_shear(ys: np.ndarray, xs: np.ndarray, shears: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """(ink pixels per sheared row, the shear) for the shear of ``shears`` (_shears) whose fullest
    sheared row holds the most ink, the first such. ``ys``, ``xs``: the ink pixels. The shears
    are counted a batch at a time, each in its own stretch of one bincount's rows."""
    tops, lengths = shears.max(1), h + shears.max(1) - shears.min(1)
    stretch = int(lengths.max())
    fullest = np.empty(len(shears), np.int64)  # each shear's fullest sheared row
    step = max(1, BINCOUNT_BATCH // max(len(ys), 1))
    for i in range(0, len(shears), step):
        batch = shears[i:i + step]
        rows = ys - batch[:, xs] + (tops[i:i + step] + stretch * np.arange(len(batch)))[:, None]
        fullest[i:i + step] = np.bincount(rows.ravel(), minlength=stretch * len(batch)).reshape(len(batch), -1).max(1)
    best = int(np.argmax(fullest))
    s = shears[best]
    return np.bincount(ys - s[xs] + s.max(), minlength=int(lengths[best])), s.astype(np.int64)


def _line_bands(count: np.ndarray, shift: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(share, starts, ends): each sheared row's ink over its columns inside the picture (a line
    leaving it at the top or bottom is as much a line where it shows), and the bands of rows
    over RULING_SPAN, those a few rows apart (a notebook's double margin line) as one band: each
    would find the other where the paper beside it should be."""
    shown = np.zeros(len(count) + 1, int)
    np.add.at(shown, shift.max() - shift, 1)
    np.add.at(shown, shift.max() - shift + h, -1)
    share = count / np.maximum(np.cumsum(shown)[:-1], 1)
    starts, ends = runs(share > RULING_SPAN)
    if len(starts) == 0:
        return share, starts, ends
    apart = starts[1:] - ends[:-1] > 3
    return share, starts[np.r_[True, apart]], ends[np.r_[apart, True]]


def _wipe_lines(v: np.ndarray, starts: np.ndarray, ends: np.ndarray, shift: np.ndarray, peak: float) -> np.ndarray:
    """``v`` with the sheared bands [starts, ends) taken out: on a band a pixel stays when it is
    darker ink than the band (the midpoint of its level and ``peak``), else it takes the lower of
    the pixels just above and below the band."""
    h, w = v.shape
    out, cols = v.copy(), np.arange(w)
    for start, end in zip(starts, ends):
        rows = np.arange(start - 1, end + 1)[:, None] + shift[None, :] - shift.max()  # the band, 1 px wider
        above = np.clip(rows[0] - 1, 0, h - 1)
        below = np.clip(rows[-1] + 1, 0, h - 1)
        inside = (rows >= 0) & (rows < h)
        r, c = rows[inside], np.broadcast_to(cols, rows.shape)[inside]
        level = float(np.median(v[r, c]))
        fill = np.minimum(v[above, cols], v[below, cols])
        out[r, c] = np.where(v[r, c] > (level + peak) / 2, v[r, c], np.maximum(fill[c], 0))
    return out


def _box_lines(lines: np.ndarray, starts: np.ndarray, ends: np.ndarray, rows: int, shift: np.ndarray,
               ink: tuple[np.ndarray, np.ndarray], under: bool) -> np.ndarray | None:
    """Of the thin ``lines`` across a box's crop (``rows`` sheared rows; ``ink``: the ink pixels'
    rows and columns), those along its first and last rows, when both are there, or the one
    alone along its last rows reaching past the writing (``under``: _past_the_writing); else None."""
    reach = shift.max() - shift.min() + 3
    first, last = lines & (starts <= reach), lines & (ends >= rows - reach)
    below = np.flatnonzero(last)
    ys, xs = ink
    stands_on = under and not first.any() and len(below) == 1 and _past_the_writing(
        ys - shift[xs] + shift.max(), xs, starts[below[0]], ends[below[0]])
    return first | last if first.any() and last.any() or stands_on else None


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
    if box is not None and h <= 8 * box:  # a box's lines are more than 8 times their thickness apart
        return v
    ink = v > faint
    shears = _shears(w)
    if not _may_cross(ink, shears):
        return v
    ys, xs = np.nonzero(ink)
    count, shift = _best_shear(ys, xs, shears, h)
    share, starts, ends = _line_bands(count, shift, h)
    if len(starts) == 0:
        return v
    # a line is thin, and stands out from the rows on both sides of it (paper, maybe unevenly lit)
    beside = np.concatenate([starts - 3, ends + 2])
    outside = (beside < 0) | (beside >= len(share))  # past the picture's edge: no ink there
    side = np.where(outside, 0, share[np.clip(beside, 0, len(share) - 1)]).reshape(2, -1).max(0)
    peak_share = np.array([share[a:b].max() for a, b in zip(starts, ends)])
    thickest = max(2, RULING_THICKNESS * h) if box is None else box
    thin = ((ends - starts) <= thickest) & (side < peak_share - RULING_SPAN / 2)
    across = np.array([count[a:b].max() > RULING_SPAN * w for a, b in zip(starts, ends)], bool)
    if box is not None:  # the box's edges: within a few rows of the crop's first and last rows
        edges = _box_lines(thin & across, starts, ends, len(share), shift, (ys, xs), under)
        if edges is None:
            return v
        thin = edges
    lines = np.flatnonzero(thin & across)
    if len(lines) == 0 or len(lines) == 1 and box is None and not _apart_from_writing(
            count, starts[lines[0]], ends[lines[0]], w):
        return v
    return _wipe_lines(v, starts[thin], ends[thin], shift, peak)


def erase_ruling(v: np.ndarray, faint: float, peak: float, box: float | None = None) -> np.ndarray:
    """``v`` with the lines of ruled (horizontal) or squared (both ways) paper taken out, or with
    ``box``, those of a box around the writing (as _erase_ruling_rows)."""
    out = _erase_ruling_rows(v, faint, peak, box, under=box is not None)
    columns = out.T
    across = _erase_ruling_rows(columns, faint, peak, box)
    return out if across is columns else np.ascontiguousarray(across.T)
