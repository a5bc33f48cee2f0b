"""The `infoedit` Typer app and its root callback; each command module registers on it."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from infoedit import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Learn disentangled image codes with InfoVAEGAN and edit images with them.")


def _print_version(asked: bool) -> None:
    if asked:
        print(f"infoedit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                 help="Print infoedit's version and exit.")] = False) -> None:
    """Learn disentangled image codes with InfoVAEGAN and edit images with them."""
    # A file name that is not valid UTF-8 (a Linux name is bytes) is printed back as its own
    # bytes, not a UnicodeEncodeError that would cost the whole output.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
