"""Training datasets, held in memory as uint8 tensors so a batch is one indexing op.

Which datasets there are, and their sizes and defaults, is ``infoedit.datasets``; here is how
each kind of them is read. Roots come from ``--data DIR``, else the ``INFOEDIT_DATA``
environment variable, else a per-user cache folder.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from infoedit.datasets import DATASETS, DatasetSpec, rotated_names, spec_for
from infoedit.images import ImageError, has_light_background, list_images, open_image, preprocess


class DataError(ValueError):
    """Data that is missing or unusable; the message is one line naming the path."""


@dataclass
class Dataset:
    name: str
    image_size: int
    channels: int
    length: int
    images: torch.Tensor | None = None           # uint8 [N, C, H, W], or None when rendered
    render: Callable[[torch.Tensor], torch.Tensor] | None = None  # indices -> uint8 batch
    labels: torch.Tensor | None = None           # training labels, when the dataset has them
    test_images: torch.Tensor | None = None      # held-out labelled split, when there is one
    test_labels: torch.Tensor | None = None
    scale: float = 255.0                         # uint8 value of white (dSprites stores {0, 1})
    subset: torch.Tensor | None = None           # rendered data under --limit: which indices
    held_out: tuple | None = None                # (held out, of) a folder's images: trainer.data.hold_out
    names: list[str] | None = None               # a folder's images: each one's file name

    def __len__(self) -> int:
        return self.length

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] for the given indices."""
        if self.images is not None:
            raw = self.images[idx]
        else:
            raw = self.render(self.subset[idx] if self.subset is not None else idx)
        return raw.float().div_(self.scale)


def default_root() -> Path:
    env = os.environ.get("INFOEDIT_DATA")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "infoedit" / "data"


# -- MNIST / Fashion-MNIST: read the official IDX files, download with torchvision if absent --


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file")
    return data.reshape(dims)


def _find_raw(root: Path, folder: str, sub: str) -> Path | None:
    """The ``<folder>/raw`` directory under root, root/<sub>, or the root itself."""
    for base in (root, root / sub):
        raw = base / folder / "raw"
        if (raw / "train-images-idx3-ubyte.gz").exists() or (raw / "train-images-idx3-ubyte").exists():
            return raw
    return None


def _idx_file(raw: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (raw / name).exists():
            return raw / name
    raise DataError(f"{raw / stem}: missing (need the 4 official IDX files)")


def load_mnist_like(name: str, root: Path) -> Dataset:
    raw = _find_raw(root, DATASETS[name].idx_folder, name)
    if raw is None:
        raw = _download(name, root)
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        try:
            imgs = _read_idx(_idx_file(raw, f"{prefix}-images-idx3-ubyte"))
            labels = _read_idx(_idx_file(raw, f"{prefix}-labels-idx1-ubyte"))
        except (OSError, EOFError, IndexError) as exc:
            raise DataError(f"{raw}: unreadable {name} files ({exc})") from None
        arrays[split] = (torch.from_numpy(imgs.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))
    train, test = arrays["train"], arrays["test"]
    return Dataset(name, 28, 1, len(train[0]), images=train[0], labels=train[1],
                   test_images=test[0], test_labels=test[1])


def _download(name: str, root: Path) -> Path:
    """torchvision's normal download into root (never a read-only shared folder)."""
    folder = DATASETS[name].idx_folder
    target = root / name
    existed = {target, *target.rglob("*")} if target.exists() else set()
    try:
        from torchvision import datasets

        target.mkdir(parents=True, exist_ok=True)
        cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
        for train in (True, False):
            cls(str(target), train=train, download=True)
    except Exception:
        # what this attempt made goes (empty MNIST/raw folders, a half-downloaded file): a later
        # run then downloads again instead of finding a folder that looks like data
        made = {target, *target.rglob("*")} - existed if target.exists() else set()
        for path in sorted(made, key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)
        raise DataError(f"{name}: no data under {root} and the download failed; pass --data DIR (or set "
                        f"INFOEDIT_DATA) to a folder holding {folder}/raw/*-ubyte.gz") from None
    return target / folder / "raw"


# -- rotated MNIST / Fashion-MNIST (Sec. 5.1): one class, the rotation angle is the label -----
# "rotate these images nine times, with angle values at equal intervals between 0 and 80
# degrees ... resulting in 10 classes": we read it as the original (0 deg) plus nine rotated
# copies, 10 angles evenly spaced over [0, 80] with both ends included (0, 8.9, ..., 80 deg).
ROTATION_ANGLES = tuple(float(a) for a in torch.linspace(0, 80, 10))
ROTATED_PER_CLASS = 5000
ROTATED_SPLIT_SEED = 0  # fixed, not the training seed: every run is scored on the same test split


def rotated_dataset(name: str, source: torch.Tensor, angles: tuple[float, ...] = ROTATION_ANGLES,
                    split_seed: int = ROTATED_SPLIT_SEED, test_fraction: float = 0.1) -> Dataset:
    """Every uint8 image of ``source`` [N, C, H, W] at every angle; label = angle index.

    The paper counts 45,000 images (5,000 x nine rotations) yet 10 classes; with the original
    kept as class 0 there are 5,000 x 10 = 50,000. Like the paper ("90 [percent] from among both
    original and rotated images for training") the split is random over all of them, so one
    source image can appear in train at one angle and in test at another.
    """
    from torchvision.transforms.functional import InterpolationMode, rotate

    x = source.float()
    images = torch.cat([rotate(x, a, InterpolationMode.BILINEAR).round_().clamp_(0, 255).to(torch.uint8)
                        for a in angles])
    labels = torch.arange(len(angles)).repeat_interleave(len(source))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(split_seed))
    n_test = int(round(test_fraction * len(images)))
    train, test = order[n_test:], order[:n_test]
    size = source.shape[-1]
    return Dataset(name, size, source.shape[1], len(train), images=images[train],
                   labels=labels[train], test_images=images[test], test_labels=labels[test])


def load_rotated(spec: DatasetSpec, root: Path, source_class: int | None = None) -> Dataset:
    """The first 5,000 training images of one class of MNIST / Fashion-MNIST, rotated."""
    name = spec.name
    source_class = spec.source_class if source_class is None else source_class
    if not 0 <= source_class <= 9:
        raise DataError(f"{name}: class {source_class} is out of range 0..9")
    full = load_mnist_like(spec.source, root)
    picked = full.images[full.labels == source_class][:ROTATED_PER_CLASS]
    return rotated_dataset(name, picked)


# -- folders of images: CelebA, 3D Chairs and folder:PATH ------------------------------------
def crop_white_margin(img, threshold: int = 250):
    """3D Chairs renders sit on a wide white margin: crop to the non-white bounding box."""
    gray = img.convert("L").point(lambda v: 255 if v < threshold else 0)
    box = gray.getbbox()
    return img.crop(box) if box else img


def load_folder(root: Path, name: str, size: int = 64, channels: int = 3,
                prepare: Callable | None = None, limit: int | None = None,
                progress: bool = True, crop: float = 1.0) -> Dataset:
    """Decode every image under root once into memory (each one's centre square, ``crop`` of its
    shorter side, at size x size); unreadable files are skipped and counted."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    paths = list_images(root)[:limit] if limit else list_images(root)
    if not paths:
        raise DataError(f"{root}: no images found (looked for png/jpg/bmp/gif/webp/tiff, recursively)")
    out = torch.empty(len(paths), channels, size, size, dtype=torch.uint8)
    kept, skipped, names = 0, [], []
    from trainer.progress import track

    for path in track(paths, f"loading {name}", enabled=progress):
        try:
            img = open_image(path, draft_size=size * 2)
            img = prepare(img) if prepare else img
            out[kept] = torch.from_numpy(preprocess(img, size, channels, crop))
            kept += 1
            names.append(path.name)
        except (ImageError, OSError, ValueError):
            skipped.append(path)
    if kept == 0:
        raise DataError(f"{root}: none of the {len(paths)} image files could be decoded")
    if skipped:  # said, not silent: the user may want to mend or remove them
        print(f"{root}: skipped {len(skipped)} of {len(paths)} image files that could not be decoded "
              f"(the first: {skipped[0]})", file=sys.stderr)
    return Dataset(name, size, channels, kept, images=out[:kept].clone(), names=names)


HOLD_OUT_EVERY = 10  # one image in ten: the paper holds out 10% of CelebA (Sec. 5)


def held_out_name(name: str) -> bool:
    """Whether the file called ``name`` is in a folder dataset's held-out split: chosen by a hash
    of the name alone, so a face is held out or not whatever --limit takes and wherever the
    folder lives (--limit 9000 holds out the same faces among the first 9,000 as the full set)."""
    return zlib.crc32(name.encode()) % HOLD_OUT_EVERY == 0


def hold_out(ds: Dataset) -> Dataset:
    """A folder dataset with the images whose file name ``held_out_name`` picks (about 10%) set
    apart as ``test_images``; the rest keep their sorted order."""
    names = ds.names
    test = torch.tensor([held_out_name(n) for n in names], dtype=torch.bool)
    if not test.any() or test.all():
        return ds
    return replace(ds, images=ds.images[~test], test_images=ds.images[test], length=int((~test).sum()),
                   held_out=(int(test.sum()), len(names)), names=[n for n, t in zip(names, test) if not t])


def _find_dir(root: Path, patterns: tuple[str, ...]) -> Path | None:
    """The first folder matching a pattern in root or one level down; among several matches
    (e.g. img_align_celeba at two resolutions) the one holding the most entries."""
    if not root.is_dir():
        return None
    for base in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        for pattern in patterns:
            hits = [p for p in base.glob(pattern) if p.is_dir()]
            if hits:
                return max(sorted(hits), key=lambda p: sum(1 for _ in p.iterdir()))
    return None


def load_dsprites() -> Dataset:
    from trainer.dsprites import N_IMAGES, ProceduralDSprites

    sprites = ProceduralDSprites()
    return Dataset("dsprites", 64, 1, N_IMAGES, render=sprites.images, scale=1.0)


def background(ds: Dataset, n: int = 1000) -> str:
    """"light" when most of up to ``n`` images spread over ds have a light border (dark ink on
    paper), else "dark" (MNIST's light strokes on black): the polarity a 1-channel model learns."""
    idx = torch.linspace(0, len(ds) - 1, min(n, len(ds))).round().long()
    pixels = (ds.batch(idx) * 255).round().to(torch.uint8).numpy()
    light = sum(has_light_background(p[:1]) for p in pixels)
    return "light" if 2 * light > len(pixels) else "dark"


def spec_of(name: str) -> DatasetSpec:
    """The registry entry of a dataset name (infoedit.datasets); DataError, one line, if none."""
    try:
        return spec_for(name)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _load_image_folder(spec: DatasetSpec, name: str, root: Path, limit: int | None, progress: bool,
                       image_size: int | None, channels: int | None, crop: float) -> Dataset:
    """A folder dataset: ``folder:PATH`` itself, or the folder that ``spec.folders`` finds under
    root; with a tenth held out where the spec says so (``hold_out``)."""
    decode = {"size": image_size or spec.image_size, "channels": channels or spec.channels,
              "prepare": crop_white_margin if spec.crop_white else None, "limit": limit, "progress": progress,
              "crop": crop}
    if name.startswith("folder:"):
        if not name[len("folder:"):].strip():
            raise DataError(f"{name}: name the folder after the colon, e.g. folder:photos")
        return load_folder(Path(name[len("folder:"):]).expanduser(), name, **decode)
    found = _find_dir(root, spec.folders)
    if found is None:
        raise DataError(f"{root}: no {spec.folders[0]} folder; download {name} and pass --data DIR")
    if progress:  # of several candidates (the CelebA subset holds two sizes), say which one is read
        print(f"{name}: reading {found}", file=sys.stderr, flush=True)
    ds = load_folder(found, name, **decode)
    return hold_out(ds) if spec.hold_out else ds


def load(name: str, data: str | Path | None = None, limit: int | None = None, progress: bool = True,
         source_class: int | None = None, image_size: int | None = None, channels: int | None = None,
         crop: float = 1.0) -> Dataset:
    """The dataset called ``name``; DataError with one line when it cannot be had.

    ``image_size`` / ``channels``: what the model takes. Folders of images (celeba, chairs,
    folder:PATH) are decoded to them (default 64 px, 3 channels); a dataset with a fixed
    format (MNIST's 28 px, dSprites' 64 px, 1 channel) raises DataError if they differ.
    ``crop``: a folder's images are cut to the centre square's central ``crop`` first (the
    model config's: the authors' CelebA 128 of 178); other datasets refuse one below 1.

    ``source_class``: the digit / item of a rotated dataset; None or -1 (a supervised config's
    "none") mean its default (``DatasetSpec.source_class``).
    """
    spec = spec_of(name)
    root = Path(data).expanduser() if data else default_root()
    source_class = None if source_class is not None and source_class < 0 else source_class
    if crop != 1.0 and spec.loader in ("idx", "rotated", "dsprites"):
        raise DataError(f"{name}: its images come framed; crop applies to folders of images (celeba, chairs, "
                        f"folder:PATH), not {crop}")
    if source_class is not None and spec.loader != "rotated":
        raise DataError(f"{name}: a source class (--digit/--item) applies only to {', '.join(rotated_names())}")
    if spec.loader == "idx":
        ds = load_mnist_like(name, root)
    elif spec.loader == "rotated":
        ds = load_rotated(spec, root, source_class)
    elif spec.loader == "dsprites":
        ds = load_dsprites()
    else:
        ds = _load_image_folder(spec, name, root, limit, progress, image_size, channels, crop)
    for asked, has, what in ((image_size, ds.image_size, "px images"), (channels, ds.channels, "channel(s)")):
        if asked is not None and asked != has:
            raise DataError(f"{name}: has {has} {what}, not the {asked} the model is set to take")
    if limit and ds.images is not None:
        ds.images, ds.length = ds.images[:limit], min(limit, ds.length)
        ds.labels = ds.labels[:limit] if ds.labels is not None else None
    elif limit and limit < ds.length:
        # The first N images of a factor grid all share the slow factors (one shape, one
        # scale), so a limited rendered dataset is a fixed random subset instead.
        ds.subset = torch.randperm(ds.length, generator=torch.Generator().manual_seed(0))[:limit]
        ds.length = limit
    return ds
