"""The commands' inputs: the model, and image files as model-ready tensors, in batches."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator, Optional

from infoedit import datasets
from infoedit.cli.errors import fail
from infoedit.cli.options import BATCH, Device, Mode


def batches(n: int) -> Iterator[slice]:
    """Slices of BATCH items covering n: any number of files in bounded memory."""
    return (slice(start, start + BATCH) for start in range(0, n, BATCH))


def expand_folders(paths: list[Path]) -> list[Path]:
    """The inputs with each folder among them replaced by the images under it (recursively, in a
    stable order)."""
    from infoedit.images import iter_images

    found = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        inside = list(iter_images(path))
        if not inside:
            fail(f"{path}: no image files found (png, jpg, bmp, gif, webp, tiff, pgm, ppm)")
        found += inside
    return found


def read_pairs(path: Path) -> list[tuple[Path, Path]]:
    """swap --pairs: the (A, B) image pairs of a CSV file, one 'A,B' per line; a first line
    'a,b' is a header."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        fail(f"{path}: not a text CSV file of image pairs")
    if rows and [cell.strip().lower() for cell in rows[0]] == ["a", "b"]:
        rows = rows[1:]
    for number, row in enumerate(rows, 1):
        if len(row) != 2 or not all(cell.strip() for cell in row):
            fail(f"{path}: pair {number} is {','.join(row)!r}, expected two image paths 'A,B'")
    if not rows:
        fail(f"{path}: no pairs in it (one 'A,B' per line)")
    return [(Path(a.strip()), Path(b.strip())) for a, b in rows]


def load_model(model: str, revision: Optional[str], device: Device):
    """The model in eval mode on the chosen device (ModelLoadError -> one line + exit 2)."""
    if not model.strip():
        fail("--model is empty: give a model folder, a bundled name (mnist, fashion-mnist) or a Hub id")
    import torch

    from infoedit import hub
    from trainer.loop import resolve_device

    where = str(resolve_device(device.value))  # --device cuda without a GPU: one line (ValueError)
    # channels_last: the encoder alone runs 2-3x faster on CPU (28px, batch 256: 33k -> 77k img/s here)
    return hub.from_pretrained(model, revision=revision, device=where).to(memory_format=torch.channels_last)


def image_loader(net, invert: Mode, frame: Mode, pixels: bool = False, face: Optional[int] = None):
    """Path -> model-ready tensor (or, with ``pixels``, its uint8 pixels): the shared
    preprocessing, with the shared polarity and framing steps."""
    from infoedit.images import load_for_model, load_pixels

    cfg = net.config
    framing = datasets.framing(cfg.dataset)
    load = load_pixels if pixels else load_for_model
    invert, frame = invert.value, frame.value
    return lambda path: load(path, cfg.image_size, cfg.channels, invert, cfg.background, frame, framing, face,
                             cfg.crop)


def note_colour_photo(net, model: str, paths: list[Path], quiet: bool) -> None:
    """A note on stderr when a colour photo goes to a model of grey images (the default is the
    MNIST digits model): the result is the model's digit, not an edit of the photo. Called once
    the result is written, so a call that fails still says one line, its error."""
    if net.config.channels != 1:
        return
    from infoedit.images import is_colour_photo

    for path in paths[:2]:  # the first images stand for the call: no second decode of every file
        try:
            colour = is_colour_photo(path)
        except (ValueError, OSError):  # the loader names the file and its problem
            return
        if colour and not quiet:  # a warning, so also in a log (not only on a terminal)
            print(f"note: {path} is a colour photo, but {model} is a model of grey {net.config.dataset or ''} "
                  "images: the result is one of those, not an edit of the photo. For faces, train a face "
                  "model (infoedit train celeba) and pass it with --model", file=sys.stderr)
            return


def face_crops(net, frame: Mode, face: Optional[int], paste_back: bool):
    """Path -> infoedit.faces.FaceCrop when --paste-back is given (else None): the face found in
    the photo, which the edit is then blended back into."""
    if not paste_back:
        return None
    if datasets.framing(net.config.dataset) != "face" or frame == "no":
        fail("--paste-back needs a face model (trained on celeba) and --frame auto or yes")
    from infoedit.faces import locate

    return lambda path: locate(path, face, crop=net.config.crop)


def load_batch(net, paths: list[Path], load, crops, failed: list):
    """(model inputs [N, C, H, W] of the files that loaded, or None when none did; their indices
    in ``paths``; each one's FaceCrop or None). A file that cannot be used goes into ``failed`` as
    (path, reason) and the others go on (errors.finish). With --paste-back the face is found once
    per photo and gives both the input and the place to paste the edit back."""
    import torch

    from infoedit.images import one_line, to_unit

    rows, kept, found = [], [], []
    for i, path in enumerate(paths):
        try:
            crop = None if crops is None else crops(path)
            rows.append(load(path) if crop is None else to_unit(crop.pixels(net.config.image_size)))
        except (ValueError, OSError) as exc:
            failed.append((path, one_line(exc)))
            continue
        kept.append(i)
        found.append(crop)
    return (torch.stack(rows) if rows else None), kept, found
