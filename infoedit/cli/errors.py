"""Errors as the command line reports them: one line on stderr and an exit code."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import typer


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit (under train --nproc, rank 0 alone says it)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"infoedit: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def finish(failed: list[tuple[Path, str]], done: int) -> None:
    """The rule of every command over many inputs (README): each input that failed is named on
    stderr in one line, after the good ones' results are written; exit 1 when some failed, 2 when
    none was done."""
    for path, reason in dict(failed).items():  # a B image of many pairs: named once
        print(f"infoedit: error: {reason if str(path) in reason else f'{path}: {reason}'}", file=sys.stderr)
    if failed:
        raise typer.Exit(1 if done else 2)


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
        from infoedit.images import one_line

        fail(one_line(exc))
