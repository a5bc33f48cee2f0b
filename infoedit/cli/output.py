"""The commands' outputs: files checked before any work and written, messages on stderr."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from infoedit.cli.errors import fail


def in_photo(image, crop):
    """An edited face [C, H, W] blended back into its photo (``crop``, a FaceCrop), as a PIL image."""
    import numpy as np
    from PIL import Image

    from infoedit.images import to_pil

    return Image.fromarray(crop.paste(np.asarray(to_pil(image)).transpose(2, 0, 1)))


def save_edit(image, path: Path, crop) -> None:
    """One edited image as a PNG: as it is, or (``crop``, a FaceCrop) blended back into its photo."""
    from infoedit.images import save_image, save_png

    if crop is None:
        return save_png(image, path)
    save_image(in_photo(image, crop), path)


def check_new(path: Path, force: bool, png: bool = True) -> None:
    """Refuse to overwrite unless --force; make the parent folder so the write cannot fail late."""
    if path.is_dir():
        fail(f"{path}: is a folder, expected a file name")
    if png and path.suffix.lower() != ".png":
        fail(f"{path}: output images are PNG, name the file *.png")
    if path.exists() and not force:
        fail(f"{path}: already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)


def chatty(quiet: bool) -> bool:
    """Progress and messages only for a person watching: stderr is a terminal and no --quiet."""
    return not quiet and sys.stderr.isatty()


def say(message: str, quiet: bool) -> None:
    if chatty(quiet):
        print(message, file=sys.stderr)


def output_targets(images: list[Path], out: Optional[Path], one_png: bool, force: bool, default_png: Path,
                   default_folder: Path, or_else: str = "", names: Optional[list[str]] = None) -> list[Path]:
    """The file(s) an editing command writes, checked before any work: one PNG, or FOLDER/<stem>.png
    per input image (or FOLDER/<name> for each of ``names``). ``or_else``: the command's other way
    to one PNG, for the message. In a folder, files there from an earlier run are kept (see
    still_to_write), so the same command run again after a stop finishes the job."""
    if one_png:
        out = out or default_png
        check_new(out, force)
        return [out]
    folder = out or default_folder
    if folder.suffix.lower() == ".png" and not folder.is_dir():
        fail(f"{folder}: {len(images)} images give {len(images)} PNGs: -o must name a folder{or_else}")
    if folder.exists() and not folder.is_dir():
        fail(f"{folder}: exists and is not a folder")
    files, seen = [folder / name for name in names] if names else [folder / f"{p.stem}.png" for p in images], {}
    for src, path in zip(images, files):
        if path in seen:
            fail(f"{src} and {seen[path]} would both be written to {path}; edit them separately")
        seen[path] = src
        if path.is_dir():
            fail(f"{path}: is a folder, expected a file name")
    folder.mkdir(parents=True, exist_ok=True)
    return files


def still_to_write(files: list[Path], force: bool, quiet: bool) -> list[int]:
    """The indices of ``files`` to write: all with --force, else those not there yet (an earlier
    run of the same command wrote the others, each whole: PNGs are written atomically)."""
    todo = [i for i, path in enumerate(files) if force or not path.exists()]
    if len(todo) < len(files) and not quiet:  # said in a log too: the run did less than asked
        print(f"infoedit: kept {len(files) - len(todo)} output(s) already in {files[0].parent} "
              "(an earlier run's; --force writes them again)", file=sys.stderr)
    return todo
