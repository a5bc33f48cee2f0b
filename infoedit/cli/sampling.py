"""`infoedit sample`: images generated from the priors, as the class grid or N single files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from infoedit.cli.errors import fail, user_errors
from infoedit.cli.loading import batches, load_model
from infoedit.cli.options import DebugOpt, Device, DeviceOpt, ForceOpt, ModelOpt, QuietOpt, RevisionOpt, SeedOpt
from infoedit.cli.output import check_new, output_targets, say, still_to_write
from infoedit.cli.root import app


@app.command(short_help="The class grid, or N single samples from the priors.",
             help="Generate from the priors: the class grid (columns = the K categories, rows = the "
                  "first continuous code from -1 to 1, paper Fig. 12/15), or with --n N single images "
                  "DIR/sample-0000.png, ... Repeatable for a given --seed.")
def sample(
    rows: Annotated[Optional[int], typer.Option(min=1, help="Rows of the class grid (default 10).")] = None,
    n: Annotated[Optional[int], typer.Option(
        "--n", min=1, help="Write N single samples into a folder instead.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Grid PNG (default sample.png); with --n a folder (default samples).")] = None,
    seed: SeedOpt = 0, model: ModelOpt = "mnist", revision: RevisionOpt = None, device: DeviceOpt = Device.auto,
    force: ForceOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    with user_errors(debug):
        from infoedit import engine
        from infoedit.images import check_grid, make_grid, save_png

        if n is None:
            out = out or Path("sample.png")
            check_new(out, force)
            net = load_model(model, revision, device)
            rows = rows or 10
            check_grid(out, rows * net.config.n_classes, net.config.n_classes, net.config.image_size)
            save_png(make_grid(engine.class_grid(net, rows, seed).cpu(), nrow=net.config.n_classes), out)
            say(f"wrote {out}", quiet)
            return
        if rows is not None:
            fail("--rows is for the class grid; --n writes single samples: give one of them")
        out = out or Path("samples")
        if out.suffix.lower() == ".png":
            fail(f"{out}: --n writes N files into a folder; name a folder, not a *.png")
        files = [f"sample-{i:0{max(4, len(str(n - 1)))}d}.png" for i in range(n)]
        files = output_targets(files, out, False, force, out, out, names=files)
        todo = set(still_to_write(files, force, quiet))  # a rerun after a stop writes the rest
        net = load_model(model, revision, device)
        import torch

        gen = torch.Generator().manual_seed(seed)
        for part in batches(n):  # one generator across batches: N samples in bounded memory
            batch = engine.sample(net, len(files[part]), gen).cpu()  # drawn all the same: the sequence
            for i, img in zip(range(n)[part], batch):
                if i in todo:
                    save_png(img, files[i])
        if force:  # an earlier, larger --n left more samples: the folder holds this run's alone
            for stale in set(out.glob("sample-*.png")) - set(files):
                if stale.stem[len("sample-"):].isdigit():
                    stale.unlink()
        say(f"wrote {n} samples to {out}", quiet)
