"""`infoedit encode`: each image's codes, as a table or JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from infoedit import results
from infoedit.cli.errors import finish, user_errors
from infoedit.cli.loading import batches, expand_folders, image_loader, load_batch, load_model
from infoedit.cli.options import (DebugOpt, Device, DeviceOpt, FaceOpt, ForceOpt, FrameOpt, InvertOpt, JsonOpt,
                                  Mode, ModelOpt, QuietOpt, RevisionOpt)
from infoedit.cli.output import check_new, say
from infoedit.cli.root import app


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


@app.command()
def encode(
    images: Annotated[list[Path], typer.Argument(help="Image files (any size and mode), or folders of them.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Write the table (or JSON lines) to this file, not stdout.")] = None,
    model: ModelOpt = "mnist", revision: RevisionOpt = None, device: DeviceOpt = Device.auto,
    invert: InvertOpt = Mode.auto, frame: FrameOpt = Mode.auto, face: FaceOpt = None,
    json_out: JsonOpt = False, force: ForceOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Print each image's codes: discrete (argmax cluster, probabilities) and continuous (mu, sigma)."""
    with user_errors(debug):
        if out:
            check_new(out, force, png=False)
        images = expand_folders(images)
        from infoedit import engine

        net = load_model(model, revision, device)
        load = image_loader(net, invert, frame, face=face)
        labels = results.parse_names(None, net.config.n_classes, net.class_names)  # as classify names them
        rows, failed, flagged, done = [], [], [], 0
        with results.result_stream(out) as stream:  # -o: a temp file, renamed once every row is in
            for part in batches(len(images)):
                x, kept, _ = load_batch(net, images[part], load, None, failed)
                if x is None:
                    continue
                found = engine.encode(net, x)
                odd = engine.out_of_domain(net, x, found)
                chunk = [images[part][i] for i in kept]
                values = zip(chunk, *(engine.rounded(v) for v in (found.probs, found.mu, found.sigma)))
                for i, (path, probs, mu, sigma) in enumerate(values):
                    done += 1
                    row = results.code_row(path, probs, labels) | {"mu": mu, "sigma": sigma}
                    row |= results.ood_fields(odd, i)
                    if row["ood"]:
                        flagged.append(path)
                    if json_out:
                        stream.write(json.dumps(row) + "\n")
                        stream.flush()
                    else:
                        rows.append(row)
            if not done:  # exits inside the block: -o leaves no empty file behind
                finish(failed, done)
            if not json_out:
                _print_codes_table(rows, stream)
        if out:
            say(f"wrote {out}", quiet)
        results.warn_unfamiliar(flagged, done, model, quiet)
        finish(failed, done)


def _print_codes_table(rows: list[dict], stream) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("image", "cluster", "confidence", "q(s|x)", "mu", "sigma", "ood")
    table.columns[0].overflow = "fold"  # a table may be piped to a file: never cut a path short
    for r in rows:
        cluster = str(r["cluster"]) if r["name"] == str(r["cluster"]) else f"{r['cluster']} ({r['name']})"
        table.add_row(r["path"], cluster, f"{r['confidence']:.3f}",
                      _fmt(r["probabilities"]), _fmt(r["mu"]), _fmt(r["sigma"]),
                      "" if r["ood"] is None else f"{r['ood_score']:.2f}" + (" (unlike)" if r["ood"] else ""))
    # Piped to a file, rich would wrap at 80 columns: let the table be as wide as it needs.
    Console(file=stream, width=None if stream.isatty() else 10_000).print(table)
