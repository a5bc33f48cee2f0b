"""The `infoedit` Typer app and its root callback; each command module registers on it."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learn disentangled image codes with InfoVAEGAN and edit images with them.")


@app.callback()
def _root() -> None:
    """Learn disentangled image codes with InfoVAEGAN and edit images with them."""
    # A file name that is not valid UTF-8 (a Linux name is bytes) is printed back as its own
    # bytes, not a UnicodeEncodeError that would cost the whole output.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
