"""`infoedit classify`: a folder of images clustered by discrete code, streamed as CSV or JSON
lines, optionally copied or moved into one folder per cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from infoedit import results
from infoedit.cli.errors import fail, finish, user_errors
from infoedit.cli.loading import image_loader, load_model
from infoedit.cli.options import (BATCH, DebugOpt, Device, DeviceOpt, ForceOpt, FrameOpt, InvertOpt, JsonOpt, Mode,
                                  ModelOpt, QuietOpt, RevisionOpt)
from infoedit.cli.output import chatty, check_new, say
from infoedit.cli.root import app


@app.command(short_help="Cluster a folder of images by discrete code; CSV/JSON, optionally sort files.",
             help="Cluster every image under FOLDER (recursively) by its discrete code. One row per "
                  "image: path, cluster, name, confidence, p0..pK-1, and with --copy-to / --move-to where "
                  "the file went (CSV with a header, or JSON lines with --json). Files stream in "
                  "batches, so memory stays flat however many there are. "
                  "An unreadable file is named on stderr and the run goes on (exit 1 at the end). "
                  "--copy-to and --move-to keep file names (characters Windows forbids become _) and never "
                  "overwrite: a clash gets a -1, -2, ... suffix; a file already copied there is not copied "
                  "again. With -o, the listing is written as each file is placed, and the same command run "
                  "again after a stop goes on from it.")
def classify(
    folder: Annotated[Path, typer.Argument(help="Folder of images, searched recursively.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Write the CSV (or JSON lines) here, not stdout. With --copy-to / --move-to, the "
                            "listing of where each file went, written as it goes; a rerun goes on with it.")] = None,
    json_out: JsonOpt = False,
    copy_to: Annotated[Optional[Path], typer.Option(
        help="Copy each image into DIR/<name>/: the cluster's name (--names, else the model's, else its number).")
    ] = None,
    move_to: Annotated[Optional[Path], typer.Option(help="Move each image into DIR/<name>/, as --copy-to.")] = None,
    names: Annotated[Optional[str], typer.Option(
        help="Cluster names, '0=zero,1=one,...' (or 'zero,one,...').")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.")] = BATCH,
    model: ModelOpt = "mnist", revision: RevisionOpt = None, device: DeviceOpt = Device.auto,
    invert: InvertOpt = Mode.auto, frame: FrameOpt = Mode.auto,
    force: ForceOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    with user_errors(debug):
        from infoedit.images import iter_images

        if copy_to and move_to:
            fail("give --copy-to or --move-to, not both")
        if not folder.is_dir():
            fail(f"{folder}: not a folder")
        dest = copy_to or move_to
        placed = ("moved_to" if move_to else "copied_to") if dest else None
        if out and not (placed and out.is_file()):  # a placing run's listing is gone on with, not refused
            check_new(out, force, png=False)
        net = load_model(model, revision, device)
        labels = results.parse_names(names, net.config.n_classes, net.class_names)
        header = ["path", "cluster", "name", "confidence"] + [f"p{i}" for i in range(len(labels))]
        header += ["ood_score", "ood"] + ([placed] if placed else [])
        listing = results.Listing(out, header, placed, json_out, force) if placed and out else None
        if next(iter_images(folder, skip=dest), None) is None:
            if listing and listing.where:  # a finished --move-to run, run again
                say(f"nothing left to do: {out} lists {len(listing.where)} file(s) placed in {dest}", quiet)
                return
            fail(f"{folder}: no image files found (png, jpg, bmp, gif, webp, tiff, pgm, ppm)")
        with listing.file if listing else results.result_stream(out) as stream:
            done, skipped, failed, odd = _classify_stream(net, folder, stream, json_out, labels, header, dest,
                                                          listing, image_loader(net, invert, frame, pixels=True),
                                                          batch_size, quiet)
        say(f"classified {done} image(s)" + (f" into {dest}" if dest else "")
            + (f"; {skipped} placed before, as {out} lists" if skipped else ""), quiet)
        results.warn_unfamiliar(odd, done, model, quiet)
        finish(failed, done + skipped)


def _classify_stream(net, folder: Path, stream, json_out: bool, labels: list[str], header: list[str],
                     dest: Optional[Path], listing: Optional[results.Listing], load, batch_size: int, quiet: bool):
    """Write one row per image as each batch finishes (with ``dest``, as each file is placed,
    signals held between the two); return (images done, images the listing had placed, failed
    files, files that look unlike the model's training images)."""
    import contextlib
    import csv

    from rich.console import Console
    from rich.progress import Progress

    from infoedit import engine
    from infoedit.images import iter_images

    show, placed = chatty(quiet), header[-1] if dest else None
    total = sum(1 for _ in iter_images(folder, skip=dest)) if show else None  # a cheap walk, no decoding
    done, skipped, failed, odd = 0, 0, [], []
    with Progress(console=Console(stderr=True), disable=not show) as bar:
        task = bar.add_task("classifying", total=total)

        def todo():
            nonlocal skipped
            for path in iter_images(folder, skip=dest):
                if listing and listing.placed_before(path):
                    skipped += 1
                    bar.advance(task)
                else:
                    yield path

        writer = csv.writer(stream, lineterminator="\n")
        if not json_out and listing is None:
            writer.writerow(header)
        for batch in engine.classify_files(net, todo(), load, batch_size):
            failed += batch.failed
            probs = engine.rounded(batch.codes.probs) if batch.codes is not None else []
            for i, (path, p) in enumerate(zip(batch.paths, probs)):
                row = results.code_row(path, p, labels) | results.ood_fields(batch.ood, i)
                if row["ood"]:
                    odd.append(path)
                with results.signals_held() if placed else contextlib.nullcontext():
                    if placed:
                        try:
                            row[placed] = str(results.place(path, dest / row["name"], placed == "moved_to"))
                        except OSError as exc:
                            how = "move" if placed == "moved_to" else "copy"
                            failed.append((path, f"cannot {how} ({exc.strerror or exc})"))
                            continue
                    if json_out:
                        stream.write(json.dumps(row) + "\n")
                    else:
                        writer.writerow([row[f] for f in header[:4]] + row["probabilities"]
                                        + [_cell(row["ood_score"]), _cell(row["ood"])]
                                        + ([row[placed]] if placed else []))
                    if placed:
                        stream.flush()
                done += 1
            stream.flush()
            bar.advance(task, len(batch.paths) + len(batch.failed))
    return done, skipped, failed, odd


def _cell(value) -> str:
    """A CSV cell: a flag as 1 or 0, nothing for no value."""
    return "" if value is None else str(int(value)) if isinstance(value, bool) else str(value)
