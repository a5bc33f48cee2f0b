"""The editing commands: swap (one image's code for another's), traverse (a grid sweeping one
image's codes) and reconstruct (images regenerated from their own codes)."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from infoedit.cli.errors import fail, finish, user_errors
from infoedit.cli.loading import (batches, expand_folders, face_crops, image_loader, load_batch, load_model,
                                  note_colour_photo, read_pairs)
from infoedit.cli.options import (NOISE_NOTE, PHOTO_CELL, DebugOpt, Device, DeviceOpt, FaceOpt,
                                  ForceOpt, FrameOpt, InvertOpt, KeepDetailOpt, Mode, ModelOpt, PasteBackOpt,
                                  QuietOpt, RefineOpt, RevisionOpt, SeedOpt, Source)
from infoedit.cli.output import in_photo, output_targets, save_edit, say, still_to_write
from infoedit.cli.root import app


@app.command(short_help="Image A's continuous code with image B's discrete code (or the reverse).",
             help="Generate the image with one image's continuous code and the other's discrete "
                  "code (paper Fig. 3/6): by default A's continuous code (style) and B's discrete "
                  "code (e.g. rotation or class). Codes come from the encoder: the argmax category "
                  "and the mean of the continuous code, so the result is repeatable. Several A images "
                  "or folders (A... B) are each swapped with B, into -o FOLDER/<name>.png (default swaps); "
                  "--pairs FILE swaps each line's A with its B, into FOLDER/<A>-<B>.png. "
                  + NOISE_NOTE)
def swap(
    images: Annotated[Optional[list[Path]], typer.Argument(
        help="A... B: image A (or several, or folders of them), then image B.", show_default=False)] = None,
    pairs: Annotated[Optional[Path], typer.Option(
        "--pairs", help="A CSV file of pairs, one 'A,B' per line (a first line 'a,b' is a header), paths "
                        "as from the current folder; instead of A... B.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output PNG (default swap.png), or a folder for several (default swaps).")] = None,
    discrete_from: Annotated[Source, typer.Option(help="Image whose discrete code is used.")] = Source.b,
    continuous_from: Annotated[Source, typer.Option(help="Image whose continuous code is used.")] = Source.a,
    strip: Annotated[bool, typer.Option(
        help="Write A | B | result side by side instead of the result alone.")] = False,
    keep_detail: KeepDetailOpt = True, refine: RefineOpt = None, seed: SeedOpt = 0,
    model: ModelOpt = "mnist",
    revision: RevisionOpt = None, device: DeviceOpt = Device.auto, invert: InvertOpt = Mode.auto,
    frame: FrameOpt = Mode.auto, face: FaceOpt = None, paste_back: PasteBackOpt = False, force: ForceOpt = False,
    quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    with user_errors(debug):
        if paste_back and (strip or continuous_from == Source.b):
            fail("--paste-back edits image A in place: it does not go with --strip or --continuous-from b")
        todo, one_png = _swap_pairs(images, pairs, strip)
        names = [f"{a.stem}-{b.stem}.png" for a, b in todo] if pairs else None
        files = output_targets([a for a, _ in todo], out, one_png, force, Path("swap.png"), Path("swaps"),
                               names=names)
        import torch

        from infoedit import engine
        from infoedit.images import make_grid, save_png

        net = load_model(model, revision, device)
        load = image_loader(net, invert, frame, face=face)
        crops = face_crops(net, frame, face, paste_back)
        load_b = functools.lru_cache(maxsize=64)(load)  # one B for every A: decoded once
        failed, done = [], 0
        todo = [(a, b, path) for (a, b), path in zip(todo, files)]
        todo = [todo[i] for i in still_to_write(files, force, quiet)]
        for part in batches(len(todo)):
            chunk = todo[part]
            xa, kept_a, found = load_batch(net, [a for a, _, _ in chunk], load, crops, failed)
            xb, kept_b, _ = load_batch(net, [b for _, b, _ in chunk], load_b, None, failed)
            both = sorted(set(kept_a) & set(kept_b))
            if not both:
                continue
            xa, xb = (x[[kept.index(i) for i in both]] for x, kept in ((xa, kept_a), (xb, kept_b)))
            result = engine.swap(net, xa, xb, discrete_from.value, continuous_from.value, seed, keep_detail,
                                 refine).cpu()
            if strip:
                save_png(make_grid(torch.cat([xa, xb, result]), nrow=3), files[0])
            else:
                for i, img in zip(both, result):
                    save_edit(img, chunk[i][2], found[kept_a.index(i)])
            done += len(both)
        note_colour_photo(net, model, [todo[0][0], todo[0][1]] if todo else [], quiet)
        if done:
            say(f"wrote {files[0]}" if one_png else f"wrote {done} images to {files[0].parent}", quiet)
        finish(failed, done + len(files) - len(todo))


def _swap_pairs(images: Optional[list[Path]], pairs: Optional[Path], strip: bool) -> tuple[list, bool]:
    """The (A, B) pairs to swap, from --pairs FILE or from A... B (folders expanded), and whether
    the result is one PNG (one image A and one B)."""
    if pairs and images:
        fail("give --pairs FILE or images A... B, not both")
    if not pairs and len(images or []) < 2:
        fail("give images A... B (at least two), or --pairs FILE")
    if pairs:
        todo, one_png = read_pairs(pairs), False
    else:
        todo = [(a, images[-1]) for a in expand_folders(images[:-1])]
        one_png = len(images) == 2 and not images[0].is_dir()
    if strip and not one_png:
        fail(f"--strip writes one A | B | result strip: give one image A and one B, not {len(todo)} pairs")
    return todo, one_png


@app.command(short_help="Grid PNG varying an image's continuous codes, or its category.",
             help="Vary codes of an image and write a grid PNG (paper Fig. 9/13/17/19). Each "
                  "--code N (0-based) gives one row sweeping continuous code N over --range in "
                  "--steps; --discrete gives one row with each of the K categories. Without either, "
                  "one row per continuous code. The other codes stay as the encoder infers them. "
                  "Several images (or folders): one grid each, into -o FOLDER/<name>.png (default "
                  "traversals), or with --strip all in one PNG. " + NOISE_NOTE)
def traverse(
    images: Annotated[list[Path], typer.Argument(help="Image file, or several, or folders of them.")],
    code: Annotated[Optional[list[int]], typer.Option(
        "--code", help="Continuous code index; repeat for more rows.")] = None,
    discrete: Annotated[bool, typer.Option(
        "--discrete", help="Sweep the K categories of the discrete code.")] = False,
    value_range: Annotated[tuple[float, float], typer.Option("--range", help="Low and high value.")] = (-1.0, 1.0),
    steps: Annotated[int, typer.Option(min=1, help="Images per row.")] = 10,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output grid PNG (default traverse.png), or a folder for several images.")] = None,
    strip: Annotated[bool, typer.Option(help="Several images: their grids one under the other in one PNG.")
                     ] = False,
    keep_detail: KeepDetailOpt = True, refine: RefineOpt = None, seed: SeedOpt = 0,
    model: ModelOpt = "mnist",
    revision: RevisionOpt = None, device: DeviceOpt = Device.auto, invert: InvertOpt = Mode.auto,
    frame: FrameOpt = Mode.auto, face: FaceOpt = None, paste_back: Annotated[bool, typer.Option(
        "--paste-back", help="Face models: each cell is the whole photo with the edited face blended back in, "
                             f"at most {PHOTO_CELL} px on its longer side.")] = False,
    force: ForceOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    with user_errors(debug):
        if code and discrete:
            fail("give --code or --discrete, not both")
        if not all(math.isfinite(v) for v in value_range):
            fail(f"--range {value_range[0]} {value_range[1]}: expected two finite numbers")
        one_png = strip or (len(images) == 1 and not images[0].is_dir())
        images = expand_folders(images)
        files = output_targets(images, out, one_png, force, Path("traverse.png"), Path("traversals"),
                               " (or pass --strip for one PNG)")
        import torch

        from infoedit.images import check_grid, make_grid, save_png

        net = load_model(model, revision, device)
        indices = [] if discrete else _traversed_codes(net, model, code)
        per_row = net.config.n_classes if discrete else steps
        per_image = per_row if discrete else len(indices) * steps
        check_grid(files[0], per_image * (len(images) if strip else 1), per_row,
                   PHOTO_CELL if paste_back else net.config.image_size)
        load, crops = image_loader(net, invert, frame, face=face), face_crops(net, frame, face, paste_back)
        failed, grids = [], []
        todo = list(range(len(images))) if one_png else still_to_write(files, force, quiet)
        for i in todo:
            x, _, found = load_batch(net, [images[i]], load, crops, failed)
            if x is None:
                continue
            grid = _traversal(net, x[0], indices, value_range, steps, seed, keep_detail, refine)
            grid = grid if found[0] is None else _photo_cells(grid, found[0])
            if one_png:
                grids.append(grid)
            else:
                save_png(make_grid(grid, nrow=per_row), files[i])
        if grids:
            save_png(make_grid(torch.cat(grids), nrow=per_row), files[0])
        note_colour_photo(net, model, images, quiet)
        done = len(grids) if one_png else len(todo) - len(failed)
        if done:
            say(f"wrote {files[0]}" if one_png else f"wrote {done} grids to {files[0].parent}", quiet)
        finish(failed, done + (0 if one_png else len(files) - len(todo)))  # kept from a run before count


def _traversal(net, x, indices: list[int], value_range: tuple[float, float], steps: int, seed: int,
               keep_detail: bool, refine: Optional[int]):
    """One image's grid: a row per code in ``indices`` over ``value_range``, or with no indices
    the K categories of the discrete code."""
    from infoedit import engine

    if not indices:
        return engine.traverse_discrete(net, x, seed, keep_detail, refine).cpu()
    return engine.traverse(net, x, indices, *value_range, steps=steps, seed=seed, keep_detail=keep_detail,
                           refine_steps=refine).cpu()


def _traversed_codes(net, model: str, code: Optional[list[int]]) -> list[int]:
    """The continuous codes traverse sweeps, one row each: --code's, else all the model has."""
    from infoedit import engine

    indices = code or list(range(net.config.c_dim))
    if not indices:
        fail(f"{model}: this model has no continuous codes; use --discrete")
    for i in indices:
        engine.check_code(net, i)
    return indices


def _photo_cells(grid, crop):
    """traverse --paste-back: each cell [C, H, W] as the whole photo with the face blended back
    in, at most PHOTO_CELL px on its longer side."""
    import numpy as np
    import torch

    from infoedit.images import to_unit

    photos = [in_photo(cell, crop) for cell in grid]
    for photo in photos:
        photo.thumbnail((PHOTO_CELL, PHOTO_CELL))
    return torch.stack([to_unit(np.asarray(p).transpose(2, 0, 1)) for p in photos])


@app.command(short_help="Regenerate images from their own codes (G2 of InfoVAEGAN2 when present).",
             help="Encode each image and generate it back from its codes (argmax category, mean of the "
                  "continuous code), paper Fig. 11. One image: -o OUT.png (default reconstruct.png). "
                  "Several (or folders): --strip writes one PNG (inputs above their reconstructions, 10 per "
                  "row), otherwise -o is a folder (default reconstructions) receiving FOLDER/<name>.png per "
                  "input. " + NOISE_NOTE)
def reconstruct(
    images: Annotated[list[Path], typer.Argument(help="Image files, or folders of them.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output PNG, or a folder for several images.")] = None,
    strip: Annotated[bool, typer.Option(help="Write inputs above their reconstructions in one PNG.")] = False,
    keep_detail: Annotated[bool, typer.Option(
        "--keep-detail/--no-keep-detail",
        help="Add back what the model's drawing leaves out of each image (the result is then the input "
             "itself). Off: the model's own drawing.")] = False,
    refine: RefineOpt = None, seed: SeedOpt = 0, model: ModelOpt = "mnist",
    revision: RevisionOpt = None,
    device: DeviceOpt = Device.auto, invert: InvertOpt = Mode.auto, frame: FrameOpt = Mode.auto,
    face: FaceOpt = None, paste_back: PasteBackOpt = False, force: ForceOpt = False, quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    with user_errors(debug):
        if paste_back and strip:
            fail("--paste-back writes each photo with its face redrawn: it does not go with --strip")
        one_png = strip or (len(images) == 1 and not images[0].is_dir())
        images = expand_folders(images)
        files = output_targets(images, out, one_png, force, Path("reconstruct.png"), Path("reconstructions"),
                               " (or pass --strip for one PNG)")
        import torch

        from infoedit import engine
        from infoedit.images import make_grid, save_png

        net = load_model(model, revision, device)
        load = image_loader(net, invert, frame, face=face)
        crops = face_crops(net, frame, face, paste_back)
        todo = list(range(len(images))) if one_png else still_to_write(files, force, quiet)
        pairs, failed, done = [], [], 0
        for part in batches(len(todo)):
            chunk = todo[part]
            x, kept, found = load_batch(net, [images[i] for i in chunk], load, crops, failed)
            if x is None:
                continue
            result = engine.reconstruct(net, x, seed, keep_detail, refine).cpu()
            done += len(kept)
            if strip:
                pairs.append((x, result))
                continue
            for k, img, crop in zip(kept, result, found):
                save_edit(img, files[chunk[k]], crop)
        if pairs:  # rows of up to 10 inputs, each row followed by their reconstructions
            x, result = (torch.cat(t) for t in zip(*pairs))
            rows = [t[i:i + 10] for i in range(0, len(x), 10) for t in (x, result)]
            save_png(make_grid(torch.cat(rows), nrow=min(10, len(x))), files[0])
        note_colour_photo(net, model, images, quiet)
        if done:
            say(f"wrote {files[0]}" if one_png else f"wrote {done} images to {files[0].parent}", quiet)
        finish(failed, done + (0 if one_png else len(files) - len(todo)))  # kept from a run before count
