"""What the commands share in their signatures: the choices (str Enums, which --help lists and
typer checks), the option types several commands take, and their help texts."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Optional

import typer

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


# -- options the commands share (docs/cli.md explains the longer ones) --------------------------
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
RefineOpt = Annotated[Optional[int], typer.Option(
    "--refine", min=0, metavar="STEPS", show_default=False,
    help="Fit the image's codes to it by STEPS gradient steps before editing (G2 models; 0: the encoder's "
         "codes as they are). Default: the model's own, 0 for mnist, 2 for fashion-mnist (docs/cli.md).")]
NOISE_NOTE = ("Noise z: one vector drawn from the prior with --seed (default 0), the same for every "
              "output image; a model with an InfoVAEGAN2 generator G2(s, c) uses it instead, with no noise.")
