"""The editing commands: swap (one image's code for another's), traverse (a grid sweeping one
image's codes) and reconstruct (images regenerated from their own codes)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from infoedit.cli.errors import fail, user_errors
from infoedit.cli.loading import batches, face_crops, image_loader, load_batch, load_model, note_colour_photo
from infoedit.cli.options import (NOISE_NOTE, PHOTO_CELL, DebugOpt, Device, DeviceOpt, FaceOpt, ForceOpt,
                                  FrameOpt, InvertOpt, KeepDetailOpt, Mode, ModelOpt, PasteBackOpt, QuietOpt,
                                  RefineOpt, RevisionOpt, SeedOpt, Source)
from infoedit.cli.output import check_new, in_photo, output_targets, save_edit, say
from infoedit.cli.root import app


@app.command(short_help="Image A's continuous code with image B's discrete code (or the reverse).",
             help="Generate the image with one image's continuous code and the other's discrete "
                  "code (paper Fig. 3/6): by default A's continuous code (style) and B's discrete "
                  "code (e.g. rotation or class). Codes come from the encoder: the argmax category "
                  "and the mean of the continuous code, so the result is repeatable. Several A images "
                  "(A... B) are each swapped with B, into -o FOLDER/<name>.png (default swaps). "
                  + NOISE_NOTE)
def swap(
    a: Annotated[list[Path], typer.Argument(help="Image A, or several (each is swapped with B).")],
    b: Annotated[Path, typer.Argument(help="Image B.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output PNG (default swap.png), or a folder for several A images.")] = None,
    discrete_from: Annotated[Source, typer.Option(help="Image whose discrete code is used.")] = Source.b,
    continuous_from: Annotated[Source, typer.Option(help="Image whose continuous code is used.")] = Source.a,
    strip: Annotated[bool, typer.Option(
        help="Write A | B | result side by side instead of the result alone.")] = False,
    keep_detail: KeepDetailOpt = True, refine: RefineOpt = 0, seed: SeedOpt = 0, model: ModelOpt = "mnist",
    revision: RevisionOpt = None, device: DeviceOpt = Device.auto, invert: InvertOpt = Mode.auto,
    frame: FrameOpt = Mode.auto, face: FaceOpt = None, paste_back: PasteBackOpt = False, force: ForceOpt = False,
    quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    with user_errors(debug):
        one_png = len(a) == 1
        if strip and not one_png:
            fail(f"--strip writes one A | B | result strip: give one image A, not {len(a)}")
        if paste_back and (strip or continuous_from == Source.b):
            fail("--paste-back edits image A in place: it does not go with --strip or --continuous-from b")
        files = output_targets(a, out, one_png, force, Path("swap.png"), Path("swaps"))
        import torch

        from infoedit import engine
        from infoedit.images import make_grid, save_png

        net = load_model(model, revision, device)
        load = image_loader(net, invert, frame, face=face)
        crops = face_crops(net, frame, face, paste_back)
        xb = load(b).unsqueeze(0)
        for part in batches(len(a)):
            xa, found = load_batch(net, a[part], load, crops)
            result = engine.swap(net, xa, xb, discrete_from.value, continuous_from.value, seed, keep_detail,
                                 refine).cpu()
            if strip:
                save_png(make_grid(torch.cat([xa, xb, result]), nrow=3), files[0])
                continue
            for path, img, crop in zip(files[part], result, found):
                save_edit(img, path, crop)
        note_colour_photo(net, model, [a[0], b], quiet)
        say(f"wrote {files[0]}" if one_png else f"wrote {len(files)} images to {files[0].parent}", quiet)


@app.command(short_help="Grid PNG varying one image's continuous codes, or its category.",
             help="Vary codes of one image and write a grid PNG (paper Fig. 9/13/17/19). Each "
                  "--code N (0-based) gives one row sweeping continuous code N over --range in "
                  "--steps; --discrete gives one row with each of the K categories. Without either, "
                  "one row per continuous code. The other codes stay as the encoder infers them. "
                  + NOISE_NOTE)
def traverse(
    image: Annotated[Path, typer.Argument(help="Image file.")],
    code: Annotated[Optional[list[int]], typer.Option(
        "--code", help="Continuous code index; repeat for more rows.")] = None,
    discrete: Annotated[bool, typer.Option(
        "--discrete", help="Sweep the K categories of the discrete code.")] = False,
    value_range: Annotated[tuple[float, float], typer.Option("--range", help="Low and high value.")] = (-1.0, 1.0),
    steps: Annotated[int, typer.Option(min=1, help="Images per row.")] = 10,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output grid PNG.")] = Path("traverse.png"),
    keep_detail: KeepDetailOpt = True, refine: RefineOpt = 0, seed: SeedOpt = 0, model: ModelOpt = "mnist",
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
        check_new(out, force)
        from infoedit import engine
        from infoedit.images import check_grid, make_grid, save_png

        net = load_model(model, revision, device)
        indices = code or list(range(net.config.c_dim))
        if not discrete and not indices:
            fail(f"{model}: this model has no continuous codes; use --discrete")
        x, (crop,) = load_batch(net, [image], image_loader(net, invert, frame, face=face),
                                 face_crops(net, frame, face, paste_back))
        x = x[0]
        per_row = net.config.n_classes if discrete else steps
        check_grid(out, per_row if discrete else len(indices) * steps, per_row,
                   net.config.image_size if crop is None else PHOTO_CELL)
        if discrete:
            grid = engine.traverse_discrete(net, x, seed, keep_detail, refine).cpu()
        else:
            grid = engine.traverse(net, x, indices, *value_range, steps=steps, seed=seed, keep_detail=keep_detail,
                                   refine_steps=refine).cpu()
        if crop is not None:
            grid = _photo_cells(grid, crop)
        save_png(make_grid(grid, nrow=per_row), out)
        note_colour_photo(net, model, [image], quiet)
        say(f"wrote {out}", quiet)


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
                  "Several: --strip writes one PNG (inputs above their reconstructions, 10 per row), "
                  "otherwise -o is a folder (default reconstructions) receiving FOLDER/<name>.png per input. "
                  + NOISE_NOTE)
def reconstruct(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output PNG, or a folder for several images.")] = None,
    strip: Annotated[bool, typer.Option(help="Write inputs above their reconstructions in one PNG.")] = False,
    keep_detail: Annotated[bool, typer.Option(
        "--keep-detail/--no-keep-detail",
        help="Add back what the model's drawing leaves out of each image (the result is then the input "
             "itself). Off: the model's own drawing.")] = False,
    refine: RefineOpt = 0, seed: SeedOpt = 0, model: ModelOpt = "mnist", revision: RevisionOpt = None,
    device: DeviceOpt = Device.auto, invert: InvertOpt = Mode.auto, frame: FrameOpt = Mode.auto,
    face: FaceOpt = None, paste_back: PasteBackOpt = False, force: ForceOpt = False, quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    with user_errors(debug):
        if paste_back and strip:
            fail("--paste-back writes each photo with its face redrawn: it does not go with --strip")
        one_png = strip or len(images) == 1
        files = output_targets(images, out, one_png, force, Path("reconstruct.png"), Path("reconstructions"),
                                " (or pass --strip for one PNG)")
        import torch

        from infoedit import engine
        from infoedit.images import make_grid, save_png

        net = load_model(model, revision, device)
        load = image_loader(net, invert, frame, face=face)
        crops = face_crops(net, frame, face, paste_back)
        pairs = []
        for part in batches(len(images)):
            x, found = load_batch(net, images[part], load, crops)
            result = engine.reconstruct(net, x, seed, keep_detail, refine).cpu()
            if strip:
                pairs.append((x, result))
                continue
            for path, img, crop in zip(files[part], result, found):
                save_edit(img, path, crop)
        if strip:  # rows of up to 10 inputs, each row followed by their reconstructions
            x, result = (torch.cat(t) for t in zip(*pairs))
            rows = [t[i:i + 10] for i in range(0, len(x), 10) for t in (x, result)]
            save_png(make_grid(torch.cat(rows), nrow=min(10, len(x))), files[0])
        note_colour_photo(net, model, images, quiet)
        say(f"wrote {files[0]}" if one_png else f"wrote {len(files)} images to {files[0].parent}", quiet)
