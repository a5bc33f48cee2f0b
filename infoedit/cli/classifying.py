"""`infoedit classify`: a folder of images clustered by discrete code, streamed as CSV or JSON
lines, optionally copied or moved into one folder per cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from infoedit import results
from infoedit.cli.errors import fail, user_errors
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
                  "Unreadable files are skipped, then counted and listed on stderr (unless --quiet). "
                  "--copy-to and --move-to keep file names (characters Windows forbids become _) and never "
                  "overwrite: a clash gets a -1, -2, ... suffix.")
def classify(
    folder: Annotated[Path, typer.Argument(help="Folder of images, searched recursively.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Write the CSV (or JSON lines) here, not stdout.")] = None,
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
        if next(iter_images(folder, skip=dest), None) is None:
            fail(f"{folder}: no image files found (png, jpg, bmp, gif, webp, tiff, pgm, ppm)")
        if out:
            check_new(out, force, png=False)
        net = load_model(model, revision, device)
        labels = results.parse_names(names, net.config.n_classes, net.class_names)
        done, failed = _classify_stream(net, folder, out, json_out, dest, bool(move_to), labels,
                                        image_loader(net, invert, frame, pixels=True), batch_size, quiet)
        if failed and not quiet:  # a warning, so shown even when stderr is not a terminal
            print(f"infoedit: {len(failed)} file(s) skipped:", file=sys.stderr)
            for path, reason in failed:
                print(f"  {reason}" if str(path) in reason else f"  {path}: {reason}", file=sys.stderr)
        if not done:
            fail(f"{folder}: none of the {len(failed)} image files could be read")
        say(f"classified {done} image(s)" + (f" into {dest}" if dest else ""), quiet)


def _classify_stream(net, folder: Path, out: Optional[Path], json_out: bool, dest: Optional[Path],
                     move: bool, labels: list[str], load, batch_size: int, quiet: bool):
    """Write one row per image as each batch finishes; return (images done, failed files)."""
    import csv

    from rich.console import Console
    from rich.progress import Progress

    from infoedit import engine
    from infoedit.images import iter_images

    show, k = chatty(quiet), len(labels)
    total = sum(1 for _ in iter_images(folder, skip=dest)) if show else None  # a cheap walk, no decoding
    done, failed = 0, []
    with results.result_stream(out) as stream, Progress(console=Console(stderr=True), disable=not show) as bar:
        task = bar.add_task("classifying", total=total)
        writer = csv.writer(stream, lineterminator="\n")
        # with --copy-to / --move-to, where each file went (a clash renames it): the last column
        placed = ("moved_to" if move else "copied_to") if dest else None
        if not json_out:
            writer.writerow(["path", "cluster", "name", "confidence"] + [f"p{i}" for i in range(k)]
                            + ([placed] if placed else []))
        for batch in engine.classify_files(net, iter_images(folder, skip=dest), load, batch_size):
            failed += batch.failed
            probs = engine.rounded(batch.codes.probs) if batch.codes is not None else []
            for path, p in zip(batch.paths, probs):
                row = results.code_row(path, p, labels)
                if placed:
                    try:
                        row[placed] = str(results.place(path, dest / row["name"], move))
                    except OSError as exc:
                        row[placed] = ""
                        failed.append((path, f"cannot {'move' if move else 'copy'} ({exc.strerror or exc})"))
                if json_out:
                    stream.write(json.dumps(row) + "\n")
                else:
                    writer.writerow([row[f] for f in ("path", "cluster", "name", "confidence")] + row["probabilities"]
                                    + ([row[placed]] if placed else []))
            done += len(batch.paths)
            stream.flush()
            bar.advance(task, len(batch.paths) + len(batch.failed))
    return done, failed
