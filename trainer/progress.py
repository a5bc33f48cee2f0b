"""Rich progress bars on stderr (stdout stays for results)."""

from __future__ import annotations

from typing import Iterator, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

T = TypeVar("T")
console = Console(stderr=True)


def make_progress(enabled: bool = True) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=console, disable=not enabled, transient=False)


def track(items: list[T], description: str, enabled: bool = True) -> Iterator[T]:
    with make_progress(enabled) as progress:
        task = progress.add_task(description, total=len(items), info="")
        for item in items:
            yield item
            progress.advance(task)
