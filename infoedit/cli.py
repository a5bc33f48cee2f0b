"""The `infoedit` command line. Imports no torch at module import, so `--help` is instant.

Exit codes: 0 success, 2 bad input (one line on stderr naming the file and the problem),
130/143 interrupted. `--debug` shows the traceback instead.
"""

from __future__ import annotations

import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learn disentangled image codes with InfoVAEGAN and edit images with them.")

DEBUG_HELP = "Show the full traceback on errors."


@app.callback()
def _root() -> None:
    """Learn disentangled image codes with InfoVAEGAN and edit images with them."""
DEVICE_HELP = "auto (GPU when present), cpu or cuda."


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
    except Exception as exc:  # noqa: BLE001 - every user error class derives from ValueError/OSError
        if debug or not isinstance(exc, (ValueError, OSError)):
            raise
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@app.command()
def train(
    dataset: str = typer.Argument(..., help="mnist, fashion-mnist, dsprites, celeba, chairs or folder:PATH"),
    out: Path = typer.Option(None, "--out", "-o", help="Model folder to write (default: runs/DATASET)."),
    data: Optional[str] = typer.Option(None, help="Data root (default: $INFOEDIT_DATA, else ~/.cache/infoedit/data)."),
    model: str = typer.Option("infovaegan", help="Model family."),
    epochs: Optional[int] = typer.Option(None, min=1, help="Epochs (default: per dataset)."),
    batch_size: int = typer.Option(64, min=1),
    lr_d: float = typer.Option(2e-4, help="Discriminator learning rate."),
    lr_g: float = typer.Option(1e-3, help="Generator learning rate."),
    lr_e: float = typer.Option(1e-3, help="Encoder learning rate."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    limit: Optional[int] = typer.Option(None, min=1, help="Use only the first N training images."),
    max_steps: Optional[int] = typer.Option(None, min=1, help="Stop after N steps (still writes the model folder)."),
    classes: Optional[int] = typer.Option(None, "--classes", "-k", min=1, help="K, categories of the discrete code."),
    c_dim: Optional[int] = typer.Option(None, min=0, help="Continuous code dimensions."),
    z_dim: Optional[int] = typer.Option(None, min=1, help="Noise dimensions."),
    c_prior: Optional[str] = typer.Option(None, help="Continuous prior: uniform or normal."),
    tau: Optional[float] = typer.Option(None, help="Gumbel-softmax temperature of the VAE loss."),
    width: Optional[float] = typer.Option(None, help="Network width multiplier (1.0 = the paper's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    debug: bool = typer.Option(False, help=DEBUG_HELP),
) -> None:
    """Train a model on a dataset and write its model folder (config.json + model.safetensors)."""
    with user_errors(debug):
        if device not in ("auto", "cpu", "cuda"):
            fail(f"--device {device}: expected auto, cpu or cuda")
        from trainer.loop import TrainConfig
        from trainer.train import train as run_train

        out = out or Path("runs") / dataset.replace("folder:", "").strip("/").replace("/", "_")
        tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr_d=lr_d, lr_g=lr_g, lr_e=lr_e, seed=seed,
                         device=device, limit=limit, max_steps=max_steps,
                         command=" ".join(["infoedit"] + [shlex.quote(a) for a in sys.argv[1:]]))
        overrides = dict(n_classes=classes, c_dim=c_dim, z_dim=z_dim, c_prior=c_prior, tau=tau, width=width)
        record = run_train(dataset, out, model, data, overrides, tc, progress=not quiet and sys.stderr.isatty())
        summary = f"wrote {out}"
        if record.get("test_acc") is not None:
            summary += f" (held-out accuracy {100 * record['test_acc']:.2f}%)"
        print(summary, file=sys.stderr)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
