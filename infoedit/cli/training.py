"""`infoedit train`: the options, checked, become a TrainConfig and model config overrides for
the trainer (trainer.train), or with --nproc a torchrun relaunch of this same command."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from infoedit import datasets, results
from infoedit.cli.errors import fail, user_errors
from infoedit.cli.options import DATA_HELP, DEBUG_HELP, DEVICE_HELP, Device, Precision
from infoedit.cli.output import chatty
from infoedit.cli.root import app


# the model settings train takes as options (each a model config field of the same name; --classes is n_classes)
ClassesOpt = Annotated[Optional[int], typer.Option(
    "--classes", "-k", min=1, help="K, categories of the discrete code.")]
CDimOpt = Annotated[Optional[int], typer.Option(min=0, help="Continuous code dimensions.")]
ZDimOpt = Annotated[Optional[int], typer.Option(min=1, help="Noise dimensions.")]
CPriorOpt = Annotated[Optional[str], typer.Option(help="Continuous prior: uniform or normal.")]
TauOpt = Annotated[Optional[float], typer.Option(help="Gumbel-softmax temperature of the VAE loss.")]
WidthOpt = Annotated[Optional[float], typer.Option(help="Network width multiplier (1.0 = the paper's).")]
MiWeightSOpt = Annotated[Optional[float], typer.Option(help="Weight of the discrete MI term (Eq. 30).")]
MiWeightCOpt = Annotated[Optional[float], typer.Option(help="Weight of the continuous MI term (Eq. 30).")]
MiContinuousOpt = Annotated[Optional[str], typer.Option(
    help="Continuous MI term: mse (authors' code) or nll.")]
DigitOpt = Annotated[Optional[int], typer.Option(
    min=0, max=9, help="rotated-mnist: the digit to rotate (default 3).")]
ItemOpt = Annotated[Optional[int], typer.Option(
    min=0, max=9, help="rotated-fashion: the clothing item (default 0).")]
Rho1Opt = Annotated[Optional[float], typer.Option(
    min=0, help="Supervised: weight of the label cross-entropy (Eq. 13).")]
Rho2Opt = Annotated[Optional[float], typer.Option(
    min=0, help="Supervised: weight of the adversarial entropy term (Eq. 13); 0 switches it off.")]


@app.command()
def train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help=datasets.NAMES_HELP)],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Model folder to write (default: runs/DATASET).")] = None,
    data: Annotated[Optional[str], typer.Option(help=DATA_HELP)] = None,
    family: Annotated[Optional[str], typer.Option(
        help="Model family (default: the preset's): infovaegan, infovaegan2, supervised-single/-dual, "
             "infogan, ali, beta-vae, jointvae.")] = None,
    preset: Annotated[str, typer.Option(
        help="paper (the paper's InfoVAEGAN) or cpu-fast (our tuned InfoVAEGAN2; docs/cli.md).")] = "paper",
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs (default: per dataset).")] = None,
    batch_size: Annotated[int, typer.Option(
        min=2, help="Images per step (2 or more: BatchNorm needs two).")] = 64,
    lr_d: Annotated[float, typer.Option(help="Discriminator learning rate.")] = 2e-4,
    lr_g: Annotated[float, typer.Option(help="Generator learning rate.")] = 1e-3,
    lr_e: Annotated[float, typer.Option(help="Encoder learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(
        help="Seed of the weights, the data order and the noise (--restarts: the first seed).")] = 0,
    restarts: Annotated[int, typer.Option(
        min=1, help="Probe this many seeds for 2 epochs each and continue the most informative "
                    "(needs real_mi_weight > 0, e.g. --preset cpu-fast).")] = 1,
    device: Annotated[Device, typer.Option(help=DEVICE_HELP)] = Device.auto,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N training images.")] = None,
    max_steps: Annotated[Optional[int], typer.Option(
        min=1, help="Stop after N steps (still writes the model folder).")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(
        min=0, help="Stop after this much training time (still writes); without --epochs, train "
                    "until the time is up.")] = None,
    eval_every: Annotated[Optional[int], typer.Option(
        min=1, help="Log held-out accuracy every N steps (labelled data).")] = None,
    checkpoint_every: Annotated[int, typer.Option(
        min=1, help="Also write the resumable checkpoint (OUT/checkpoint) every N steps.")] = 500,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue the run saved in this folder, with its own settings (writes there unless --out).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", "-f", help="Train into --out even if it already holds a model.")] = False,
    init_from: Annotated[Optional[str], typer.Option(
        help="Start from this model's weights (folder, bundled name or Hub id) wherever they fit.")] = None,
    classes: ClassesOpt = None, c_dim: CDimOpt = None, z_dim: ZDimOpt = None, c_prior: CPriorOpt = None,
    tau: TauOpt = None, width: WidthOpt = None, mi_weight_s: MiWeightSOpt = None, mi_weight_c: MiWeightCOpt = None,
    mi_continuous: MiContinuousOpt = None, digit: DigitOpt = None, item: ItemOpt = None, rho1: Rho1Opt = None,
    rho2: Rho2Opt = None,
    precision: Annotated[Precision, typer.Option(
        help="bf16: autocast, for GPUs (far slower on most CPUs).")] = Precision.fp32,
    compile_nets: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the networks (needs a C++ compiler; ~45 s; docs/cli.md).")] = False,
    nproc: Annotated[int, typer.Option(
        min=1, help="Processes for distributed data-parallel training (torchrun).")] = 1,
    set_fields: Annotated[Optional[list[str]], typer.Option(
        "--set", help="FIELD=VALUE for any model config field, e.g. --set beta=8 (repeatable).")] = None,
    push_to_hub: Annotated[Optional[str], typer.Option(help="Upload the model folder to this Hub repo id.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    debug: Annotated[bool, typer.Option(help=DEBUG_HELP)] = False,
    model: Annotated[Optional[str], typer.Option(
        "--model", hidden=True, help="The old name of --family (model cards and scripts record it).")] = None,
) -> None:
    """Train a model on a dataset and write its model folder (config.json + model.safetensors)."""
    with user_errors(debug):
        family = _family(family, model)
        _check_train_flags(dataset, digit, item, resume, restarts, init_from)
        if nproc > 1:
            _relaunch_distributed(nproc)
        out = _train_out(dataset, out, resume, force)
        tc = _train_config(epochs=epochs, batch_size=batch_size, lr_d=lr_d, lr_g=lr_g, lr_e=lr_e, seed=seed,
                           device=device, precision=precision, compile_nets=compile_nets, limit=limit,
                           max_steps=max_steps, max_minutes=max_minutes, eval_every=eval_every,
                           checkpoint_every=checkpoint_every, resume=resume, init_from=init_from, quiet=quiet)
        overrides = _overrides(set_fields, n_classes=classes, c_dim=c_dim, z_dim=z_dim, c_prior=c_prior, tau=tau,
                               width=width, mi_weight_s=mi_weight_s, mi_weight_c=mi_weight_c,
                               mi_continuous=mi_continuous, rho1=rho1, rho2=rho2)
        record = _run_training(ctx, dataset, out, family, data, overrides, tc, chatty(quiet), preset,
                               item if digit is None else digit, restarts)
        _report(record, out, push_to_hub)


def _family(family: Optional[str], model: Optional[str]) -> Optional[str]:
    """--family, or --model, its old name, which recorded commands still use."""
    if family is not None and model is not None and family != model:
        fail(f"--model {model}: --model is the old name of --family (given as {family}); give one of them")
    return family or model


def _check_train_flags(dataset: str, digit: Optional[int], item: Optional[int], resume: Optional[Path],
                       restarts: int, init_from: Optional[str]) -> None:
    """Combinations of flags that cannot mean anything, refused before any data is read. (The
    trainer's own check of --restarts with --resume is not reached: --resume goes to
    trainer.train.resume_training, which has no --restarts to see.)"""
    if digit is not None and dataset != "rotated-mnist":
        fail(f"--digit applies to rotated-mnist, not {dataset}")
    if item is not None and dataset != "rotated-fashion":
        fail(f"--item applies to rotated-fashion, not {dataset}")
    if resume is not None and restarts > 1:
        fail("--restarts starts new runs; it cannot be combined with --resume")
    if init_from is not None and (resume is not None or restarts > 1):
        fail("--init-from starts one new run from a model's weights: not with --resume or --restarts")


def _train_out(dataset: str, out: Optional[Path], resume: Optional[Path], force: bool) -> Path:
    """The folder train writes: -o, else the resumed run's, else runs/DATASET; never a model's
    folder without --force (unless it is the run being resumed)."""
    default_out = Path("runs") / results.safe_name(dataset.replace("folder:", "").strip("/").replace("/", "_"))
    out = out or resume or default_out
    if out.exists() and not out.is_dir():
        fail(f"{out}: exists and is not a folder")
    if not force and (resume is None or out.resolve() != resume.resolve()) and \
            any((out / name).exists() for name in ("config.json", "checkpoint")):
        fail(f"{out}: already holds a model (--force replaces it, --resume {out} continues it)")
    return out


def _train_config(*, device: Device, precision: Precision, compile_nets: bool, max_minutes: Optional[float],
                  quiet: bool, **settings):
    """The trainer's TrainConfig: the options of the same name as they are, the choices as their
    values, --max-minutes in seconds, a line per epoch when stderr is not a terminal (a log) and
    no --quiet, and the command as the user typed it."""
    from trainer.loop import TrainConfig

    return TrainConfig(**settings, device=device.value, precision=precision.value, compile=compile_nets,
                       max_seconds=None if max_minutes is None else 60 * max_minutes,
                       epoch_lines=not quiet and not sys.stderr.isatty(), command=_typed_command())


def _overrides(set_fields: Optional[list[str]], **flags) -> dict:
    """Model config fields: the flags typed, then each --set FIELD=VALUE (a field given once)."""
    overrides = dict(flags)
    for key, value in parse_sets(set_fields).items():
        if key in ("model", "dataset", "format_version"):  # what the run is, not a setting of it
            fail(f"--set {key}: not a setting (the family is --family, the data the DATASET argument, "
                 "the format_version this infoedit's)")
        if overrides.get(key) is not None:
            fail(f"--set {key}: also given as --{key.replace('_', '-')}; give it once")
        overrides[key] = value
    return overrides


def _run_training(ctx: typer.Context, dataset: str, out: Path, family: Optional[str], data: Optional[str],
                  overrides: dict, tc, progress: bool, preset: str, source_class: Optional[int],
                  restarts: int) -> dict:
    """Train, or with --resume continue, the run; the record of its last step. A stop (Ctrl-C,
    SIGTERM, a loss gone NaN) is one line and its own exit code."""
    from trainer.stopping import TrainingStopped
    from trainer.train import resume_training, train as run_train

    try:
        if tc.resume is None:
            return run_train(dataset, out, family, data, overrides, tc, progress=progress, preset=preset,
                             source_class=source_class, restarts=restarts)
        # the run's own model and run settings; flags typed anyway must agree with them
        given = {name for name in ctx.params
                 if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}
        return resume_training(dataset, out, family, data, overrides, tc, progress,
                               preset if "preset" in given else None, given)
    except TrainingStopped as stop:
        fail(str(stop), stop.exit_code)


def _report(record: dict, out: Path, push_to_hub: Optional[str]) -> None:
    """The folder written (and the held-out accuracy when there is one) on stderr, then the
    --push-to-hub upload; under torchrun only rank 0 reports and pushes."""
    if os.environ.get("RANK", "0") != "0":
        return
    summary = f"wrote {out}"
    if record.get("test_acc") is not None:
        summary += f" (held-out accuracy {100 * record['test_acc']:.2f}%)"
    print(summary, file=sys.stderr)
    if push_to_hub:
        from infoedit.hub import push_to_hub as push

        print(f"pushed to {push(out, push_to_hub)}", file=sys.stderr)


def parse_sets(items: Optional[list[str]]) -> dict:
    """--set FIELD=VALUE pairs; VALUE is read as JSON (numbers, true/false) or else as text."""
    fields = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            fail(f"--set {item}: expected FIELD=VALUE")
        try:
            fields[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            fields[key.strip()] = raw
    return fields


COMMAND_ENV = "INFOEDIT_COMMAND"


def _relaunch_distributed(nproc: int) -> None:
    """This same train command under torchrun (trainer.dist.relaunch) with nproc processes, each
    running `python -m infoedit.cli train ...`; exit with its code."""
    from trainer.dist import relaunch

    args, skip = [], False
    for arg in sys.argv[1:]:  # "train" and its arguments, less the --nproc option itself
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    # the ranks see `python -m infoedit.cli ARGS`: the model card records the command the user typed
    raise typer.Exit(relaunch(nproc, ["-m", "infoedit.cli", *args], {COMMAND_ENV: _typed_command()}))


def _typed_command() -> str:
    """The command line as the user typed it (set for torchrun's ranks by _relaunch_distributed)."""
    return os.environ.get(COMMAND_ENV) or " ".join(["infoedit"] + [shlex.quote(a) for a in sys.argv[1:]])
