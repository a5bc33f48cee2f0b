"""The `infoedit` command line. Imports no torch at module import, so `--help` is instant.

A thin layer: it parses the options (choices as Enums, which --help lists and typer checks),
calls infoedit.engine and the trainer, and prints. What an option means at length is in
docs/cli.md. Exit codes: 0 success, 2 bad input (one line on stderr naming the file or option
and the problem), 130/143 interrupted, 141 stdout closed early (`| head`). `--debug` shows
the traceback instead. Results go to stdout (or -o FILE); progress and messages to stderr,
only when it is a terminal and no --quiet.

One module per job: root (the Typer app), errors (one line and an exit code), options (choices
and shared option types), loading (the model and image inputs), output (files written, messages),
and one per command: training, encoding, editing (swap, traverse, reconstruct), sampling,
classifying, evaluation. Importing them registers the commands, in --help's order.
"""

from __future__ import annotations

import os
import signal
import sys

import typer

from infoedit.cli.errors import fail, user_errors
from infoedit.cli.options import (BATCH, PHOTO_CELL, Device, Mode, Precision, Representation, Source,
                                  Split)
from infoedit.cli.root import app
# each command module registers its commands on app; --help lists them in this order
from infoedit.cli.training import parse_sets, train
from infoedit.cli.encoding import encode
from infoedit.cli.editing import reconstruct, swap, traverse
from infoedit.cli.sampling import sample
from infoedit.cli.classifying import classify
from infoedit.cli.evaluation import evaluate

__all__ = ["app", "main", "fail", "user_errors", "parse_sets", "BATCH", "PHOTO_CELL", "Device", "Mode",
           "Precision", "Representation", "Source", "Split", "train", "encode", "swap", "traverse",
           "reconstruct", "sample", "classify", "evaluate"]


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
    # the command is done and its files written: a SIGTERM during the interpreter's teardown
    # (a job's time limit landing now) has nothing left to stop, and its handler would only
    # print a traceback from inside an exit hook
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "trainer.dist" in sys.modules:  # a torchrun rank of train --nproc: leave its process group, exit now
        from trainer.dist import exit_rank

        exit_rank(code)
    sys.exit(code)
