"""`infoedit evaluate`: the paper's metrics on a model (trainer.evaluate.command), reported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from infoedit.cli.errors import user_errors
from infoedit.cli.options import (DATA_HELP, DebugOpt, Device, DeviceOpt, ForceOpt, QuietOpt, Representation,
                                  Split)
from infoedit.cli.output import chatty, check_new
from infoedit.cli.root import app


@app.command(short_help="Score a model: clustering ACC/NMI/ARI, pseudo-label CNN, FactorVAE, FID.")
def evaluate(
    model: Annotated[str, typer.Argument(help="Model folder or Hub repo id.")],
    dataset: Annotated[Optional[str], typer.Option(help="Dataset to score on (default: the model's own).")] = None,
    data: Annotated[Optional[str], typer.Option(help=DATA_HELP)] = None,
    split: Annotated[Split, typer.Option(help="The dataset split to score.")] = Split.test,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Folder for confusion.png and evaluation.json.")] = None,
    pseudo_label_cnn: Annotated[bool, typer.Option(
        help="Also train Table 1's CNN on confident pseudo-labels.")] = False,
    factorvae: Annotated[bool, typer.Option(help="FactorVAE disentanglement score (dSprites models).")] = False,
    representation: Annotated[Representation, typer.Option(help="FactorVAE input.")] = Representation.mu,
    real_subset: Annotated[bool, typer.Option(
        help="FactorVAE on the real dSprites grid (dsprites_downsampled.npz).")] = False,
    fid_against: Annotated[Optional[str], typer.Option(
        help="FID of generated samples against a folder or dataset.")] = None,
    inception_weights: Annotated[Optional[Path], typer.Option(
        help="pytorch-fid pt_inception-2015-12-05 weights file.")] = None,
    fid_samples: Annotated[int, typer.Option(min=1, help="Generated samples for FID.")] = 10_000,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Score only the first N images.")] = None,
    seed: Annotated[int, typer.Option(
        help="Seed of the draws (FID samples, dSprites factors, FactorVAE) and the pseudo-label CNN.")] = 0,
    device: DeviceOpt = Device.auto,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    quiet: QuietOpt = False,
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Evaluate a trained model with the paper's metrics (Tables 1 and 2, FID)."""
    with user_errors(debug):
        for name in ("confusion.png", "evaluation.json") if out else ():
            check_new(out / name, force, png=False)
        from trainer.evaluate.command import evaluate as run_evaluate
        from trainer.evaluate.command import report

        result = run_evaluate(model, dataset=dataset, data=data, split=split.value, out=out,
                              pseudo_label_cnn=pseudo_label_cnn, factorvae=factorvae,
                              representation=representation.value, real_subset=real_subset,
                              fid_against=fid_against, inception_weights=inception_weights,
                              fid_samples=fid_samples, device=device.value, seed=seed, limit=limit,
                              progress=chatty(quiet))
        print(report(result, as_json=json_out))
