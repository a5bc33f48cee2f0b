"""The `infoedit` command line. Imports no torch at module import, so `--help` is instant.

A thin layer: it parses the options (choices as Enums, which --help lists and typer checks),
calls infoedit.engine and the trainer, and prints. What an option means at length is in
docs/cli.md. Exit codes: 0 success, 2 bad input (one line on stderr naming the file or option
and the problem), 130/143 interrupted, 141 stdout closed early (`| head`). `--debug` shows
the traceback instead. Results go to stdout (or -o FILE); progress and messages to stderr,
only when it is a terminal and no --quiet.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import sys
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from infoedit import datasets, results

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learn disentangled image codes with InfoVAEGAN and edit images with them.")

BATCH = 256  # images per model call in every command (and classify's --batch-size default)
DEBUG_HELP = "Show the full traceback on errors."
DEVICE_HELP = "Where the networks run; auto: the GPU when there is one."
DATA_HELP = "Data root (default: $INFOEDIT_DATA, else ~/.cache/infoedit/data)."


# -- choices: typer lists them in --help and refuses any other value (exit 2, one line) -------
class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Precision(StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"


class Mode(StrEnum):
    """--invert and --frame (infoedit.images.INVERT_MODES, FRAME_MODES)."""
    auto = "auto"
    yes = "yes"
    no = "no"


class Source(StrEnum):
    """swap: the image a code comes from."""
    a = "a"
    b = "b"


class Split(StrEnum):
    train = "train"
    test = "test"


class Representation(StrEnum):
    mu = "mu"
    mu_softmax = "mu+softmax"


@app.callback()
def _root() -> None:
    """Learn disentangled image codes with InfoVAEGAN and edit images with them."""
    # A file name that is not valid UTF-8 (a Linux name is bytes) is printed back as its own
    # bytes, not a UnicodeEncodeError that would cost the whole output.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit."""
    print(f"infoedit: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def user_errors(debug: bool):
    """Turn the library's user-facing errors into one line + exit 2 (traceback with --debug)."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        fail("interrupted", 130)
    except BrokenPipeError:  # `infoedit classify DIR | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit flush
        raise typer.Exit(141) from None
    except Exception as exc:  # noqa: BLE001 - every user error class derives from ValueError/OSError
        if debug or not isinstance(exc, (ValueError, OSError)):
            raise
        if isinstance(exc, OSError) and exc.strerror:  # not "[Errno 28] ...": the file, then the problem
            fail(f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror)
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


# -- train ------------------------------------------------------------------------------------
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
    classes: Annotated[Optional[int], typer.Option(
        "--classes", "-k", min=1, help="K, categories of the discrete code.")] = None,
    c_dim: Annotated[Optional[int], typer.Option(min=0, help="Continuous code dimensions.")] = None,
    z_dim: Annotated[Optional[int], typer.Option(min=1, help="Noise dimensions.")] = None,
    c_prior: Annotated[Optional[str], typer.Option(help="Continuous prior: uniform or normal.")] = None,
    tau: Annotated[Optional[float], typer.Option(help="Gumbel-softmax temperature of the VAE loss.")] = None,
    width: Annotated[Optional[float], typer.Option(help="Network width multiplier (1.0 = the paper's).")] = None,
    mi_weight_s: Annotated[Optional[float], typer.Option(help="Weight of the discrete MI term (Eq. 30).")] = None,
    mi_weight_c: Annotated[Optional[float], typer.Option(help="Weight of the continuous MI term (Eq. 30).")] = None,
    mi_continuous: Annotated[Optional[str], typer.Option(
        help="Continuous MI term: mse (authors' code) or nll.")] = None,
    digit: Annotated[Optional[int], typer.Option(
        min=0, max=9, help="rotated-mnist: the digit to rotate (default 3).")] = None,
    item: Annotated[Optional[int], typer.Option(
        min=0, max=9, help="rotated-fashion: the clothing item (default 0).")] = None,
    rho1: Annotated[Optional[float], typer.Option(
        min=0, help="Supervised: weight of the label cross-entropy (Eq. 13).")] = None,
    rho2: Annotated[Optional[float], typer.Option(
        min=0, help="Supervised: weight of the adversarial entropy term (Eq. 13); 0 switches it off.")] = None,
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
        from trainer.loop import TrainConfig

        out = _train_out(dataset, out, resume, force)
        tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr_d=lr_d, lr_g=lr_g, lr_e=lr_e, seed=seed,
                         device=device.value, precision=precision.value, compile=compile_nets, limit=limit,
                         max_steps=max_steps, max_seconds=None if max_minutes is None else 60 * max_minutes,
                         eval_every=eval_every, checkpoint_every=checkpoint_every, resume=resume,
                         init_from=init_from, epoch_lines=not quiet and not sys.stderr.isatty(),
                         command=_typed_command())
        overrides = _overrides(set_fields, n_classes=classes, c_dim=c_dim, z_dim=z_dim, c_prior=c_prior, tau=tau,
                               width=width, mi_weight_s=mi_weight_s, mi_weight_c=mi_weight_c,
                               mi_continuous=mi_continuous, rho1=rho1, rho2=rho2)
        record = _run_training(ctx, dataset, out, family, data, overrides, tc, _chatty(quiet), preset,
                               item if digit is None else digit, restarts)
        if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports and pushes
            return
        summary = f"wrote {out}"
        if record.get("test_acc") is not None:
            summary += f" (held-out accuracy {100 * record['test_acc']:.2f}%)"
        print(summary, file=sys.stderr)
        if push_to_hub:
            from infoedit.hub import push_to_hub as push

            print(f"pushed to {push(out, push_to_hub)}", file=sys.stderr)


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
    from trainer.loop import TrainingStopped
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


# -- the editing commands: encode, swap, traverse, sample, classify ---------------------------
# Shared options (docs/cli.md explains the longer ones). Each command body imports torch, the
# model and the engine lazily.
ModelOpt = Annotated[str, typer.Option(
    "--model", "-m", envvar="INFOEDIT_MODEL",
    help="Model folder, bundled model (mnist, fashion-mnist; offline) or Hub repo id. Env: INFOEDIT_MODEL.")]
RevisionOpt = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit) of --model.")]
DeviceOpt = Annotated[Device, typer.Option(help=DEVICE_HELP)]
InvertOpt = Annotated[Mode, typer.Option(
    help="1-channel models: invert an image whose background is not the model's (auto: judged by its border).")]
FrameOpt = Annotated[Mode, typer.Option(
    help="Frame a photo's object (1-channel models) or face (face models) as the model's dataset frames "
         "its images; no: centre crop (docs/cli.md).")]
FaceOpt = Annotated[Optional[int], typer.Option(
    "--face", min=1, help="Face models: which face of a photo that shows several (1 = leftmost).")]
PasteBackOpt = Annotated[bool, typer.Option(
    "--paste-back", help="Face models: write the whole photo with the edited face blended back in.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the fixed noise z.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or messages on stderr.")]
DebugOpt = Annotated[bool, typer.Option(help=DEBUG_HELP)]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON, one object per line, instead.")]
KeepDetailOpt = Annotated[bool, typer.Option(
    "--keep-detail/--no-keep-detail",
    help="Add back the image's detail that its codes do not explain, so only the edited code changes "
         "(docs/cli.md).")]
PHOTO_CELL = 256  # traverse --paste-back: the longer side of each cell, the whole photo
RefineOpt = Annotated[int, typer.Option(
    "--refine", min=0, metavar="STEPS",
    help="Fit the image's codes to it by STEPS gradient steps before editing (G2 models; 0: off; "
         "cost: docs/cli.md).")]
NOISE_NOTE = ("Noise z: one vector drawn from the prior with --seed (default 0), the same for every "
              "output image; a model with an InfoVAEGAN2 generator G2(s, c) uses it instead, with no noise.")


def _batches(n: int) -> Iterator[slice]:
    """Slices of BATCH items covering n: any number of files in bounded memory."""
    return (slice(start, start + BATCH) for start in range(0, n, BATCH))


def _load_model(model: str, revision: Optional[str], device: Device):
    """The model in eval mode on the chosen device (ModelLoadError -> one line + exit 2)."""
    if not model.strip():
        fail("--model is empty: give a model folder, a bundled name (mnist, fashion-mnist) or a Hub id")
    import torch

    from infoedit import hub
    from trainer.loop import resolve_device

    where = str(resolve_device(device.value))  # --device cuda without a GPU: one line (ValueError)
    # channels_last: the encoder alone runs 2-3x faster on CPU (28px, batch 256: 33k -> 77k img/s here)
    return hub.from_pretrained(model, revision=revision, device=where).to(memory_format=torch.channels_last)


def _loader(net, invert: Mode, frame: Mode, pixels: bool = False, face: Optional[int] = None):
    """Path -> model-ready tensor (or, with ``pixels``, its uint8 pixels): the shared
    preprocessing, with the shared polarity and framing steps."""
    from infoedit.images import load_for_model, load_pixels

    cfg = net.config
    framing = datasets.framing(cfg.dataset)
    load = load_pixels if pixels else load_for_model
    invert, frame = invert.value, frame.value
    return lambda path: load(path, cfg.image_size, cfg.channels, invert, cfg.background, frame, framing, face)


def _note_colour_photo(net, model: str, paths: list[Path], quiet: bool) -> None:
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


def _face_crops(net, frame: Mode, face: Optional[int], paste_back: bool):
    """Path -> infoedit.faces.FaceCrop when --paste-back is given (else None): the face found in
    the photo, which the edit is then blended back into."""
    if not paste_back:
        return None
    if datasets.framing(net.config.dataset) != "face" or frame == "no":
        fail("--paste-back needs a face model (trained on celeba) and --frame auto or yes")
    from infoedit.faces import locate

    return lambda path: locate(path, face)


def _load_batch(net, paths: list[Path], load, crops):
    """(model inputs [N, C, H, W], each one's FaceCrop or None): with --paste-back the face is
    found once per photo and gives both the input and the place to paste the edit back."""
    import torch

    if crops is None:
        return torch.stack([load(p) for p in paths]), [None] * len(paths)
    from infoedit.images import to_unit

    found = [crops(p) for p in paths]
    return torch.stack([to_unit(c.pixels(net.config.image_size)) for c in found]), found


def _in_photo(image, crop):
    """An edited face [C, H, W] blended back into its photo (``crop``, a FaceCrop), as a PIL image."""
    import numpy as np
    from PIL import Image

    from infoedit.images import to_pil

    return Image.fromarray(crop.paste(np.asarray(to_pil(image)).transpose(2, 0, 1)))


def _save_edit(image, path: Path, crop) -> None:
    """One edited image as a PNG: as it is, or (``crop``, a FaceCrop) blended back into its photo."""
    from infoedit.images import save_image, save_png

    if crop is None:
        return save_png(image, path)
    save_image(_in_photo(image, crop), path)


def _check_new(path: Path, force: bool, png: bool = True) -> None:
    """Refuse to overwrite unless --force; make the parent folder so the write cannot fail late."""
    if path.is_dir():
        fail(f"{path}: is a folder, expected a file name")
    if png and path.suffix.lower() != ".png":
        fail(f"{path}: output images are PNG, name the file *.png")
    if path.exists() and not force:
        fail(f"{path}: already exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)


def _chatty(quiet: bool) -> bool:
    """Progress and messages only for a person watching: stderr is a terminal and no --quiet."""
    return not quiet and sys.stderr.isatty()


def _say(message: str, quiet: bool) -> None:
    if _chatty(quiet):
        print(message, file=sys.stderr)


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


@app.command()
def encode(
    images: Annotated[list[Path], typer.Argument(help="Image files (any size and mode).")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Write the table (or JSON lines) to this file, not stdout.")] = None,
    model: ModelOpt = "mnist", revision: RevisionOpt = None, device: DeviceOpt = Device.auto,
    invert: InvertOpt = Mode.auto, frame: FrameOpt = Mode.auto, face: FaceOpt = None,
    json_out: JsonOpt = False, force: ForceOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False,
) -> None:
    """Print each image's codes: discrete (argmax cluster, probabilities) and continuous (mu, sigma)."""
    with user_errors(debug):
        if out:
            _check_new(out, force, png=False)
        import torch

        from infoedit import engine

        net = _load_model(model, revision, device)
        load = _loader(net, invert, frame, face=face)
        rows = []
        with results.result_stream(out) as stream:  # -o: a temp file, renamed once every row is in
            for part in _batches(len(images)):
                chunk = images[part]
                found = engine.encode(net, torch.stack([load(p) for p in chunk]))
                values = zip(chunk, *(engine.rounded(v) for v in (found.probs, found.mu, found.sigma)))
                for path, probs, mu, sigma in values:
                    row = results.code_row(path, probs, net.class_names) | {"mu": mu, "sigma": sigma}
                    if json_out:
                        stream.write(json.dumps(row) + "\n")
                        stream.flush()
                    else:
                        rows.append(row)
            if not json_out:
                _print_codes_table(rows, stream)
        if out:
            _say(f"wrote {out}", quiet)


def _print_codes_table(rows: list[dict], stream) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("image", "cluster", "confidence", "q(s|x)", "mu", "sigma")
    table.columns[0].overflow = "fold"  # a table may be piped to a file: never cut a path short
    for r in rows:
        cluster = f"{r['cluster']} ({r['name']})" if "name" in r else str(r["cluster"])
        table.add_row(r["path"], cluster, f"{r['confidence']:.3f}",
                      _fmt(r["probabilities"]), _fmt(r["mu"]), _fmt(r["sigma"]))
    # Piped to a file, rich would wrap at 80 columns: let the table be as wide as it needs.
    Console(file=stream, width=None if stream.isatty() else 10_000).print(table)


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
        files = _output_targets(a, out, one_png, force, Path("swap.png"), Path("swaps"))
        import torch

        from infoedit import engine
        from infoedit.images import make_grid, save_png

        net = _load_model(model, revision, device)
        load = _loader(net, invert, frame, face=face)
        crops = _face_crops(net, frame, face, paste_back)
        xb = load(b).unsqueeze(0)
        for part in _batches(len(a)):
            xa, found = _load_batch(net, a[part], load, crops)
            result = engine.swap(net, xa, xb, discrete_from.value, continuous_from.value, seed, keep_detail,
                                 refine).cpu()
            if strip:
                save_png(make_grid(torch.cat([xa, xb, result]), nrow=3), files[0])
                continue
            for path, img, crop in zip(files[part], result, found):
                _save_edit(img, path, crop)
        _note_colour_photo(net, model, [a[0], b], quiet)
        _say(f"wrote {files[0]}" if one_png else f"wrote {len(files)} images to {files[0].parent}", quiet)


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
        _check_new(out, force)
        from infoedit import engine
        from infoedit.images import check_grid, make_grid, save_png

        net = _load_model(model, revision, device)
        indices = code or list(range(net.config.c_dim))
        if not discrete and not indices:
            fail(f"{model}: this model has no continuous codes; use --discrete")
        x, (crop,) = _load_batch(net, [image], _loader(net, invert, frame, face=face),
                                 _face_crops(net, frame, face, paste_back))
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
        _note_colour_photo(net, model, [image], quiet)
        _say(f"wrote {out}", quiet)


def _photo_cells(grid, crop):
    """traverse --paste-back: each cell [C, H, W] as the whole photo with the face blended back
    in, at most PHOTO_CELL px on its longer side."""
    import numpy as np
    import torch

    from infoedit.images import to_unit

    photos = [_in_photo(cell, crop) for cell in grid]
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
        files = _output_targets(images, out, one_png, force, Path("reconstruct.png"), Path("reconstructions"),
                                " (or pass --strip for one PNG)")
        import torch

        from infoedit import engine
        from infoedit.images import make_grid, save_png

        net = _load_model(model, revision, device)
        load = _loader(net, invert, frame, face=face)
        crops = _face_crops(net, frame, face, paste_back)
        pairs = []
        for part in _batches(len(images)):
            x, found = _load_batch(net, images[part], load, crops)
            result = engine.reconstruct(net, x, seed, keep_detail, refine).cpu()
            if strip:
                pairs.append((x, result))
                continue
            for path, img, crop in zip(files[part], result, found):
                _save_edit(img, path, crop)
        if strip:  # rows of up to 10 inputs, each row followed by their reconstructions
            x, result = (torch.cat(t) for t in zip(*pairs))
            rows = [t[i:i + 10] for i in range(0, len(x), 10) for t in (x, result)]
            save_png(make_grid(torch.cat(rows), nrow=min(10, len(x))), files[0])
        _note_colour_photo(net, model, images, quiet)
        _say(f"wrote {files[0]}" if one_png else f"wrote {len(files)} images to {files[0].parent}", quiet)


def _output_targets(images: list[Path], out: Optional[Path], one_png: bool, force: bool, default_png: Path,
                    default_folder: Path, or_else: str = "") -> list[Path]:
    """The file(s) an editing command writes, checked before any work: one PNG, or FOLDER/<stem>.png
    per input image. ``or_else``: the command's other way to one PNG, for the message."""
    if one_png:
        out = out or default_png
        _check_new(out, force)
        return [out]
    folder = out or default_folder
    if folder.suffix.lower() == ".png" and not folder.is_dir():
        fail(f"{folder}: {len(images)} images give {len(images)} PNGs: -o must name a folder{or_else}")
    if folder.exists() and not folder.is_dir():
        fail(f"{folder}: exists and is not a folder")
    files, seen = [folder / f"{p.stem}.png" for p in images], {}
    for src, path in zip(images, files):
        if path in seen:
            fail(f"{src} and {seen[path]} would both be written to {path}; edit them separately")
        seen[path] = src
        _check_new(path, force)
    return files


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
            _check_new(out, force)
            net = _load_model(model, revision, device)
            rows = rows or 10
            check_grid(out, rows * net.config.n_classes, net.config.n_classes, net.config.image_size)
            save_png(make_grid(engine.class_grid(net, rows, seed).cpu(), nrow=net.config.n_classes), out)
            _say(f"wrote {out}", quiet)
            return
        if rows is not None:
            fail("--rows is for the class grid; --n writes single samples: give one of them")
        out = out or Path("samples")
        if out.suffix.lower() == ".png":
            fail(f"{out}: --n writes N files into a folder; name a folder, not a *.png")
        if out.exists() and not out.is_dir():
            fail(f"{out}: exists and is not a folder")
        files = [out / f"sample-{i:0{max(4, len(str(n - 1)))}d}.png" for i in range(n)]
        for path in files:
            _check_new(path, force)
        net = _load_model(model, revision, device)
        import torch

        gen = torch.Generator().manual_seed(seed)
        for part in _batches(n):  # one generator across batches: N samples in bounded memory
            batch = engine.sample(net, len(files[part]), gen).cpu()
            for path, img in zip(files[part], batch):
                save_png(img, path)
        _say(f"wrote {n} samples to {out}", quiet)


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
            _check_new(out, force, png=False)
        net = _load_model(model, revision, device)
        labels = results.parse_names(names, net.config.n_classes, net.class_names)
        done, failed = _classify_stream(net, folder, out, json_out, dest, bool(move_to), labels,
                                        _loader(net, invert, frame, pixels=True), batch_size, quiet)
        if failed and not quiet:  # a warning, so shown even when stderr is not a terminal
            print(f"infoedit: {len(failed)} file(s) skipped:", file=sys.stderr)
            for path, reason in failed:
                print(f"  {reason}" if str(path) in reason else f"  {path}: {reason}", file=sys.stderr)
        if not done:
            fail(f"{folder}: none of the {len(failed)} image files could be read")
        _say(f"classified {done} image(s)" + (f" into {dest}" if dest else ""), quiet)


def _classify_stream(net, folder: Path, out: Optional[Path], json_out: bool, dest: Optional[Path],
                     move: bool, labels: list[str], load, batch_size: int, quiet: bool):
    """Write one row per image as each batch finishes; return (images done, failed files)."""
    import csv

    from rich.console import Console
    from rich.progress import Progress

    from infoedit import engine
    from infoedit.images import iter_images

    show, k = _chatty(quiet), len(labels)
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
            _check_new(out / name, force, png=False)
        from trainer.evaluate.command import evaluate as run_evaluate
        from trainer.evaluate.command import report

        result = run_evaluate(model, dataset=dataset, data=data, split=split.value, out=out,
                              pseudo_label_cnn=pseudo_label_cnn, factorvae=factorvae,
                              representation=representation.value, real_subset=real_subset,
                              fid_against=fid_against, inception_weights=inception_weights,
                              fid_samples=fid_samples, device=device.value, seed=seed, limit=limit,
                              progress=_chatty(quiet))
        print(report(result, as_json=json_out))


def _terminated(signum, frame) -> None:
    """SIGTERM (a `kill`, a job's time limit) unwinds as an exception, so the file being written
    goes as a temp file does on Ctrl-C, not left half-written beside its final name."""
    print("infoedit: error: terminated", file=sys.stderr)
    raise SystemExit(143)


def main() -> None:
    """The console entry point (and torchrun's, on each rank of `train --nproc`): the app, its
    usage errors (a bad option value, a missing argument) as one line, as every other error,
    not a boxed usage message."""
    if sys.stdout is None:  # started with stdout closed (`>&-`): no reader, as with a closed pipe
        sys.stdout = open(os.devnull, "w")
    signal.signal(signal.SIGTERM, _terminated)  # (train's own handler stops at a step and saves)
    try:
        code = app(prog_name="infoedit", standalone_mode=False)
    except typer.Abort:  # Ctrl-C outside a command's own handling
        print("infoedit: error: interrupted", file=sys.stderr)
        code = 130
    except typer.TyperException as exc:  # typer's (vendored click's) usage errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `infoedit`: its help, as always
            exc.show()
        else:
            ctx = getattr(exc, "ctx", None)  # the subcommand's, or the root's (a command unknown)
            where = f"{ctx.info_name}: " if ctx is not None and ctx.parent is not None else ""
            print(f"infoedit: error: {where}{exc.format_message().splitlines()[0]}", file=sys.stderr)
        code = getattr(exc, "exit_code", 2)
    code = code if isinstance(code, int) else 0
    if "trainer.dist" in sys.modules:  # a torchrun rank of train --nproc: leave its process group, exit now
        from trainer.dist import exit_rank

        exit_rank(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
