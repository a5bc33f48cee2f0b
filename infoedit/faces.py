"""Faces in a user's photo: find them (OpenCV's bundled Haar cascade), cut one out framed as a
CelebA model's training faces are framed, and paste an edit of it back into the photo.

OpenCV is an optional extra (`pip install 'infoedit[faces]'`): its 4.x wheels carry the cascade
files, the 5.x ones no longer do.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from infoedit.images import ImageError, _to_mode, open_image

# Where the cascade's face box sits in a CelebA model's training frame (the aligned face's centre
# square at 64 px): its centre at (0.505, 0.586) of the frame and its width 0.59 of it. Measured
# with this detector on 1,000 aligned CelebA faces (spread of the centre: 0.035 of the frame).
FACE_CENTRE_X, FACE_CENTRE_Y, FACE_WIDTH = 0.505, 0.586, 0.59
# Photos are searched at most this many pixels on the longer side (a face smaller than 1/20 of it
# is too small to edit at 64 px anyway).
SEARCH_SIDE = 1024


@lru_cache(maxsize=1)
def _cascade():
    try:
        import cv2
    except ImportError:
        raise ImageError("face framing needs OpenCV: pip install 'infoedit[faces]'") from None
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    if not path.is_file():
        raise ImageError(f"{path}: OpenCV's face cascade is missing (the 5.x wheels leave it out; "
                         "pip install 'opencv-python-headless<5')")
    return cv2.CascadeClassifier(str(path))


def find_faces(rgb: np.ndarray) -> list[tuple[float, float, float]]:
    """Frontal faces in an RGB photo [H, W, 3] uint8, as (centre x, centre y, width) in its
    pixels, left to right."""
    import cv2

    cascade = _cascade()
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, SEARCH_SIDE / max(grey.shape))
    if scale < 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    elif max(grey.shape) < 256:  # a small crop: the cascade needs the face 24 px or more across
        scale = 256 / max(grey.shape)
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    smallest = max(24, min(grey.shape) // 20)
    boxes = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest))
    faces = [((x + w / 2) / scale, (y + h / 2) / scale, w / scale) for x, y, w, h in boxes]
    return sorted(faces, key=lambda f: f[0])


@dataclass
class FaceCrop:
    """One face of a photo: the photo (upright RGB) and the square cut from it, in its pixels."""

    photo: np.ndarray  # [H, W, 3] uint8
    left: float
    top: float
    side: float
    crop: float = 1.0  # the model's share of the centre square (its config's): the face fills more of it

    def pixels(self, size: int) -> np.ndarray:
        """The square at size x size as uint8 [3, H, W]; parts outside the photo repeat its edge."""
        import cv2

        k = size / self.side
        warp = np.array([[k, 0, -self.left * k], [0, k, -self.top * k]], np.float64)
        out = cv2.warpAffine(self.photo, warp, (size, size), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        return out.transpose(2, 0, 1).copy()

    def paste(self, edited: np.ndarray) -> np.ndarray:
        """The photo with ``edited`` (uint8 [3, h, w], the square's edit) blended back in: an
        ellipse around the face, feathered, so hair and background at the square's edge stay
        the photo's."""
        import cv2

        h, w = self.photo.shape[:2]
        side = edited.shape[-1]
        k = self.side / side
        warp = np.array([[k, 0, self.left], [0, k, self.top]], np.float64)
        face = cv2.warpAffine(edited.transpose(1, 2, 0), warp, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        mask = np.zeros((h, w), np.float32)
        fx, fy = framed_centre(self.crop)
        centre = (int(round(self.left + fx * self.side)), int(round(self.top + fy * self.side)))
        face_side = self.side / self.crop  # the ellipse is sized on the full centre square's frame
        axes = (max(1, int(0.36 * face_side)), max(1, int(0.44 * face_side)))  # the face, with a little hair
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
        feather = max(1.0, 0.06 * face_side)
        mask = cv2.GaussianBlur(mask, (0, 0), feather)[..., None]
        return np.clip(self.photo * (1 - mask) + face * mask + 0.5, 0, 255).astype(np.uint8)


def framed_centre(crop: float = 1.0) -> tuple[float, float]:
    """Where the face box's centre sits in a training frame that is ``crop`` of the centre square."""
    return 0.5 + (FACE_CENTRE_X - 0.5) / crop, 0.5 + (FACE_CENTRE_Y - 0.5) / crop


def locate(path: str | Path, face: int | None = None, img: Image.Image | None = None, crop: float = 1.0
           ) -> FaceCrop:
    """The face of the photo at ``path`` framed as CelebA's training faces: the only face, or
    face number ``face`` (1-based, left to right). ImageError with one line when there is none,
    or several and no ``face``. ``img``: the photo when the caller has opened it already.
    ``crop``: the model's share of the aligned face's centre square (its config's)."""
    photo = np.array(_to_mode(open_image(path) if img is None else img, 3), dtype=np.uint8)
    faces = find_faces(photo)
    if not faces:
        raise ImageError(f"{path}: no face found (a frontal face is needed; --frame no takes the centre square)")
    if face is None and len(faces) > 1:
        raise ImageError(f"{path}: {len(faces)} faces found; choose one with --face N (1-{len(faces)}, left to right)")
    if face is not None and not 1 <= face <= len(faces):
        raise ImageError(f"{path}: --face {face}, but {len(faces)} face(s) found (1-{len(faces)}, left to right)")
    cx, cy, width = faces[(face or 1) - 1]
    side = width / FACE_WIDTH * crop
    fx, fy = framed_centre(crop)
    return FaceCrop(photo, cx - fx * side, cy - fy * side, side, crop)

