"""Decoding many image files while the model works on the ones before (``classify`` over a folder).

Files are decoded a batch ahead of the model, by ``workers`` threads: a dataset's PNG costs ~0.2
ms, much of it in PIL and numpy calls that let go of the GIL. A photo framed with ``--frame auto``
costs ~6 ms of many small numpy / scipy calls that hold it, so threads would share one core:
when the first files of a folder cost more than SLOW_LOAD_SECONDS each, the rest are decoded by
``workers`` processes instead (forked, as PyTorch's DataLoader starts its workers on Linux).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from infoedit import images

Loaded = list[tuple[Path, "np.ndarray | str"]]  # each file's pixels, or why it failed (one line)
SLOW_LOAD_SECONDS = 1e-3
PROBE = 16  # files timed, at the start of a folder, to tell
_process_load: Callable[[Path], np.ndarray] | None = None  # a worker process's loader


def batches(paths: Iterable[Path], load: Callable[[Path], np.ndarray], batch_size: int = 256,
            workers: int = 2) -> Iterator[Loaded]:
    """Each ``batch_size`` files of ``paths`` decoded by ``load`` (file -> pixels), in order.
    ``paths`` is consumed lazily: the next batch is read and decoded while the caller works on
    this one. A file whose load raises ValueError or OSError (ImageError is one) is kept with the
    one-line reason."""
    model_threads = torch.get_num_threads()
    with ThreadPoolExecutor(max_workers=workers) as threads:
        pool, pending = threads, None
        try:
            for chunk in _chunks(paths, batch_size):
                submitted = []
                if pending is None and len(chunk) == batch_size > PROBE:  # more may follow
                    # timed before any thread or process starts: nothing to overlap with yet,
                    # and with no other thread running (holding a lock) a fork is safe
                    probe = Future()
                    probe.set_result(_load_all(load, chunk[:PROBE]))
                    submitted, chunk = [probe], chunk[PROBE:]
                    if probe.result()[1] / PROBE > SLOW_LOAD_SECONDS:
                        pool = _process_pool(load, workers) or threads
                    if pool is not threads:  # the decoders take every core: torch's idle threads would spin on them
                        torch.set_num_threads(1)
                submitted += _submit(pool, load, chunk, workers)
                if pending is not None:
                    yield _gather(pending)
                pending = submitted
            if pending is not None:
                yield _gather(pending)
        finally:
            if pool is not threads:
                pool.shutdown(cancel_futures=True)
                torch.set_num_threads(model_threads)


def _chunks(items: Iterable[Path], size: int) -> Iterator[list[Path]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _load_all(load: Callable[[Path], np.ndarray], paths: list[Path]) -> tuple[Loaded, float]:
    """Each path's pixels or the reason it failed, and the seconds that took."""
    start, loaded = time.perf_counter(), []
    for path in paths:
        try:
            loaded.append((path, load(path)))
        except (ValueError, OSError) as exc:
            loaded.append((path, images.one_line(exc)))
    return loaded, time.perf_counter() - start


def _submit(pool: Executor, load: Callable[[Path], np.ndarray], chunk: list[Path], workers: int) -> list[Future]:
    """``chunk`` in tasks of several files: a future per file costs more than a small PNG. Threads
    take one slice each; processes take PROBE files a task, so that a run of slow photos (a
    glare costs 3x a plain page) is shared out rather than left to one of them."""
    if isinstance(pool, ProcessPoolExecutor):
        return [pool.submit(_load_all_in_process, chunk[i:i + PROBE]) for i in range(0, len(chunk), PROBE)]
    step = -(-len(chunk) // workers)
    return [pool.submit(_load_all, load, chunk[i:i + step]) for i in range(0, len(chunk), step)]


def _gather(pending: list[Future]) -> Loaded:
    return [item for future in pending for item in future.result()[0]]


def _process_pool(load: Callable[[Path], np.ndarray], workers: int) -> ProcessPoolExecutor | None:
    """``workers`` forked processes that decode with ``load``, or None where that is unsafe or
    gains nothing: fork is Linux's (macOS's is unsafe with system libraries, Windows has none),
    and one core has nothing to share. Forked, the loader (often a closure) need not pickle."""
    if not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_set_process_load, initargs=(load,))


def _set_process_load(load: Callable[[Path], np.ndarray]) -> None:
    """A worker's start: its loader, and deaf to the stop signals that reach the whole process
    group (a terminal's Ctrl-C, a job's SIGTERM): the command, which inherited handlers would
    otherwise run here too, stops and then shuts its workers down."""
    global _process_load
    _process_load = load
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def _load_all_in_process(paths: list[Path]) -> tuple[Loaded, float]:
    return _load_all(_process_load, paths)
