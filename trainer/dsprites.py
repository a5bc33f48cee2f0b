"""dSprites: a procedural renderer on the official 3x6x40x32x32 latent grid, and a loader for real .npz files.

The original renderer is not public and the full dataset file is not available here, so images are
generated on demand. The geometry below was measured against the real frames in
``dsprites_downsampled.npz`` and ``dsprites_subset.npz`` (see ``bench/dsprites_iou.py``):

* A pixel is on iff its *centre* lies inside the shape (point sampling, no supersampling). With
  the sizes below this gives a mean IoU of 0.9997 on real squares, against 0.994 for area coverage
  at 8x supersampling binarised at 0.5; it also explains why a square is 20 px wide at some
  positions and 19 px at others.
* Sizes at scale 1, in pixels: square side 19.2 (0.3 * 64); ellipse semi-axes 12.764 x 7.216; heart
  inside a 19.2 x 19.0 box (polygon below). All scale linearly with the scale factor.
* The sprite centre is 16 + 32 * pos on both axes, continuous coordinates (pixel k spans [k, k+1)).
* Measured, not assumed (mean IoU over all 64,834 distinct real images):
  posY grows -> the sprite moves DOWN (row index grows): 0.9994, against 0.136 if it moved up.
  Orientation turns the sprite COUNTER-CLOCKWISE as displayed: 0.9994, against 0.687 clockwise.
"""

from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
N_IMAGES = 737280
IMAGE_SIZE = 64
# Row-major strides with posY fastest, as in the official file: [245760, 40960, 1024, 32, 1].
_STRIDES = np.array([int(np.prod(FACTOR_SIZES[i + 1:])) for i in range(5)], dtype=np.int64)

SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40)  # both ends included, so classes 0 and 39 look alike
POSITIONS = np.linspace(0.0, 1.0, 32)

_SQUARE_HALF = 9.6                  # 0.15 * 64
_ELLIPSE_AXES = (12.764, 7.216)     # grid-searched to 0.002 px on the downsampled grid (see module doc)
# Right half of the heart outline (x, y up, pixels at scale 1, relative to the sprite centre), from
# the tip at the bottom to the notch at the top; mirrored for the left half. Measured on the
# downsampled grid only: every real heart pixel centre was mapped back to the sprite frame, the
# mean occupancy traced radially and simplified (Douglas-Peucker, 0.01 px), then each vertex was
# nudged (coordinate descent, steps down to 0.005 px) to minimise pixel mismatches. Images of the
# random subset that are not in the grid served as a held-out check (mismatches fell there too).
_HEART_RIGHT = (
    (0.0, -9.698), (0.082, -9.375), (0.159, -9.125), (0.446, -8.497), (0.766, -7.959),
    (1.113, -7.439), (1.857, -6.513), (2.266, -6.061), (2.679, -5.637), (2.729, -5.574),
    (2.879, -5.433), (2.99, -5.303), (3.873, -4.456), (5.282, -3.123), (6.19, -2.253),
    (6.775, -1.631), (7.632, -0.668), (7.956, -0.237), (8.214, 0.134), (8.576, 0.675),
    (8.956, 1.395), (8.962, 1.439), (9.093, 1.725), (9.296, 2.252), (9.428, 2.703), (9.544, 3.326),
    (9.593, 3.959), (9.598, 4.263), (9.547, 4.835), (9.452, 5.308), (9.282, 5.904), (9.118, 6.3),
    (8.91, 6.714), (8.759, 6.967), (8.531, 7.295), (8.223, 7.677), (7.889, 8.028), (7.502, 8.343),
    (7.172, 8.571), (6.945, 8.719), (6.497, 8.943), (6.113, 9.092), (5.654, 9.226), (5.493, 9.257),
    (5.286, 9.294), (4.653, 9.332), (4.068, 9.286), (3.621, 9.192), (3.095, 9.018), (2.708, 8.824),
    (2.397, 8.645), (2.012, 8.38), (1.638, 8.049), (1.283, 7.666), (0.954, 7.246), (0.65, 6.751),
    (0.512, 6.487), (0.318, 6.048), (0.145, 5.542), (0.044, 5.12), (0.0, 4.766)
)
_HEART_EXTENT = 10.0   # the template covers [-10, 10]^2 sprite units
_CHUNK = 256
_HEART_RES = 100       # template cells per sprite unit: 0.01 px quantisation, far below pixel noise


def factors_to_index(classes: np.ndarray) -> np.ndarray:
    """Official flat index of factor classes [..., 5] (posY varies fastest)."""
    return np.asarray(classes, dtype=np.int64) @ _STRIDES


def index_to_factors(index: np.ndarray | int) -> np.ndarray:
    """Factor classes [..., 5] of official flat indices."""
    index = np.asarray(index, dtype=np.int64)
    return (index[..., None] // _STRIDES) % np.array(FACTOR_SIZES, dtype=np.int64)


@lru_cache(maxsize=1)
def heart_template() -> torch.Tensor:
    """The heart as a bool mask [K, K] over [-10, 10]^2 sprite units (row 0 = top), built once."""
    k = int(2 * _HEART_EXTENT * _HEART_RES)
    right = list(_HEART_RIGHT)
    outline = right + [(-x, y) for x, y in reversed(right[1:-1])]
    # PIL fills pixels whose centres are inside; map sprite units to template pixel coordinates.
    pts = [((x + _HEART_EXTENT) * _HEART_RES, (_HEART_EXTENT - y) * _HEART_RES) for x, y in outline]
    img = Image.new("1", (k, k), 0)
    ImageDraw.Draw(img).polygon(pts, fill=1)
    return torch.from_numpy(np.array(img, dtype=bool))


def _check_classes(classes: np.ndarray) -> np.ndarray:
    classes = np.asarray(classes, dtype=np.int64)
    if classes.ndim != 2 or classes.shape[1] != 5:
        raise ValueError(f"classes must have shape [N, 5], got {list(classes.shape)}")
    if ((classes < 0) | (classes >= np.array(FACTOR_SIZES))).any():
        raise ValueError(f"classes out of range for factor sizes {FACTOR_SIZES}")
    return classes


def render(classes: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Render factor classes [N, 5] to uint8 images [N, 1, 64, 64] with values {0, 1}."""
    c = _check_classes(classes.cpu().numpy() if isinstance(classes, torch.Tensor) else classes)
    out = torch.zeros(len(c), 1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    # Chunks keep the float64 intermediates in cache: per image, 4096 at once is ~3x slower than 256.
    for start in range(0, len(c), _CHUNK):
        out[start:start + _CHUNK, 0] = _render_mask(c[start:start + _CHUNK])
    return out


def _render_mask(c: np.ndarray) -> torch.Tensor:
    """bool [n, 64, 64] for checked classes [n, 5]."""
    n = len(c)
    # float64 because pixel centres can sit within 1e-3 px of an edge on this grid.
    cx = torch.from_numpy(16 + 32 * POSITIONS[c[:, 3]])[:, None, None]
    cy = torch.from_numpy(16 + 32 * POSITIONS[c[:, 4]])[:, None, None]
    theta = torch.from_numpy(ORIENTATIONS[c[:, 2]])[:, None, None]
    scale = torch.from_numpy(SCALES[c[:, 1]])[:, None, None]
    centres = torch.arange(IMAGE_SIZE, dtype=torch.float64) + 0.5
    dx = centres[None, None, :] - cx            # [N, 1, 64], x right
    dy = cy - centres[None, :, None]            # [N, 64, 1], y up, so a positive angle is CCW on screen
    cos, sin = torch.cos(theta), torch.sin(theta)
    # Rotate each pixel centre by -theta into the sprite's own frame and undo the scale.
    u = (cos * dx + sin * dy) / scale
    v = (cos * dy - sin * dx) / scale
    shape = torch.from_numpy(c[:, 0])
    mask = torch.zeros(n, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.bool)
    sq, el, he = (shape == 0), (shape == 1), (shape == 2)
    if sq.any():
        mask[sq] = (u[sq].abs() <= _SQUARE_HALF) & (v[sq].abs() <= _SQUARE_HALF)
    if el.any():
        a, b = _ELLIPSE_AXES
        mask[el] = (u[el] / a) ** 2 + (v[el] / b) ** 2 <= 1.0
    if he.any():
        tpl = heart_template()
        k = tpl.shape[0]
        col = ((u[he] + _HEART_EXTENT) * _HEART_RES).floor().long()
        row = ((_HEART_EXTENT - v[he]) * _HEART_RES).floor().long()
        inside = (col >= 0) & (col < k) & (row >= 0) & (row < k)
        mask[he] = tpl[row.clamp(0, k - 1), col.clamp(0, k - 1)] & inside
    return mask


class ProceduralDSprites:
    """All 737,280 dSprites images, rendered on demand by official index (nothing is materialised).

    Rendering is analytic per pixel centre, so the only raster is the heart template, built once and
    cached (``heart_template``); a per-(shape, scale, orientation) mask cache is unnecessary because a
    batch of 64 renders in a few milliseconds and a cached raster could not place sub-pixel exactly.
    """

    def __len__(self) -> int:
        return N_IMAGES

    @staticmethod
    def _indices(indices: torch.Tensor | np.ndarray) -> np.ndarray:
        idx = indices.cpu().numpy() if isinstance(indices, torch.Tensor) else np.asarray(indices)
        idx = idx.astype(np.int64).reshape(-1)
        if ((idx < 0) | (idx >= N_IMAGES)).any():
            raise IndexError(f"dSprites indices must lie in [0, {N_IMAGES})")
        return idx

    def images(self, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 images [N, 1, 64, 64] in {0, 1} for official indices."""
        return render(index_to_factors(self._indices(indices)))

    def factors(self, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """int64 factor classes [N, 5] for official indices."""
        return torch.from_numpy(index_to_factors(self._indices(indices)))


def _classes_from_values(values: np.ndarray) -> np.ndarray:
    """Official classes from latent values (5 columns, or 6 with the constant colour first)."""
    if values.shape[1] == 6:
        values = values[:, 1:]
    shape = np.rint(values[:, 0]) - 1  # shape values are 1, 2, 3
    scale = np.rint((values[:, 1] - 0.5) / 0.1)
    orient = np.rint(values[:, 2] / (2 * np.pi / 39))
    pos = np.rint(values[:, 3:5] * 31)
    return np.column_stack([shape, scale, orient, pos]).astype(np.int64)


def load_npz(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Real dSprites images (uint8 [N, 1, 64, 64] in {0, 1}) and *official* classes (int64 [N, 5]).

    Reads the official file (imgs, latents_classes with a colour column, latents_values) or the shared
    subsets (5-column latents plus original_dataset_indices). Classes always refer to the official
    3x6x40x32x32 grid, so ``render(classes)`` redraws the images: the downsampled file stores indices
    into its own 3x6x10x16x16 grid, which is why the official index or the latent values win over
    latents_classes. Any problem raises ValueError naming the file. Object arrays are never unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: dSprites file {'is not a file' if path.exists() else 'not found'}")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if "imgs" not in keys:
                raise ValueError(f"no 'imgs' array (keys: {sorted(keys)})")
            imgs = data["imgs"]
            if "original_dataset_indices" in keys:
                classes = index_to_factors(data["original_dataset_indices"])
            elif "latents_values" in keys:
                classes = _classes_from_values(np.asarray(data["latents_values"], dtype=np.float64))
            elif "latents_classes" in keys:
                classes = np.asarray(data["latents_classes"], dtype=np.int64)
                classes = classes[:, 1:] if classes.ndim == 2 and classes.shape[1] == 6 else classes
            else:
                raise ValueError("no latents_classes, latents_values or original_dataset_indices")
    except ValueError as e:
        raise ValueError(f"{path}: not a valid dSprites npz: {str(e).splitlines()[0]}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{path}: unreadable npz ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if imgs.ndim == 4 and imgs.shape[1] == 1:
        imgs = imgs[:, 0]
    if imgs.ndim != 3 or imgs.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{path}: imgs has shape {list(imgs.shape)}, expected [N, 64, 64]")
    if imgs.size and (imgs.min() < 0 or imgs.max() > 1):
        raise ValueError(f"{path}: imgs values outside {{0, 1}}")
    if classes.ndim != 2 or classes.shape != (len(imgs), 5):
        raise ValueError(f"{path}: latent classes have shape {list(classes.shape)}, expected [{len(imgs)}, 5]")
    if ((classes < 0) | (classes >= np.array(FACTOR_SIZES))).any():
        raise ValueError(f"{path}: latent classes out of range for factor sizes {FACTOR_SIZES}")
    images = torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.uint8)).unsqueeze(1)
    return images, torch.from_numpy(np.ascontiguousarray(classes, dtype=np.int64))
