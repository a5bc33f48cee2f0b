"""What encode and classify write: one row per image, cluster names, and files sorted into
cluster folders. No torch here, so the CLI can import it at start-up."""

from __future__ import annotations

import csv
import filecmp
import json
import os
import shutil
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from infoedit.hub import atomic_open


def code_row(path: Path, probs: list[float], labels: Optional[list[str]] = None) -> dict:
    """The discrete-code fields of one result row, shared by encode and classify; ``probs`` as
    engine.rounded gives them (6 decimals)."""
    cluster = max(range(len(probs)), key=probs.__getitem__)
    name = {"name": labels[cluster]} if labels else {}
    return {"path": str(path), "cluster": cluster, **name, "confidence": probs[cluster], "probabilities": probs}


def ood_fields(odd: Optional[tuple[list, list]], i: int) -> dict:
    """Row fields of how far image i is from the model's training images (infoedit.ood):
    ood_score and ood (flagged), both None for a model without that reference."""
    if odd is None:
        return {"ood_score": None, "ood": None}
    return {"ood_score": odd[0][i], "ood": odd[1][i]}


def warn_unfamiliar(flagged: list, total: int, model: str, quiet: bool) -> None:
    """One line on stderr (a warning: said in a log too) when images look unlike the model's own."""
    if not flagged or quiet:
        return
    which = str(flagged[0]) if len(flagged) == 1 else f"{len(flagged)} of {total} images"
    print(f"infoedit: warning: {which} look{'s' if len(flagged) == 1 else ''} unlike {model}'s training "
          "images (column ood; ood_score above 1): its category means little there", file=sys.stderr)


@contextmanager
def result_stream(path: Optional[Path]):
    """stdout, or a temp file beside ``path`` renamed over it only once every row is written."""
    if path is None:
        yield sys.stdout
        return
    with atomic_open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        yield f


def safe_name(name: str) -> str:
    """A single path component: no separators, control or Windows-reserved characters, no '..'."""
    cleaned = "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in name).strip()
    return "_" if cleaned in ("", ".", "..") else cleaned


def parse_names(spec: Optional[str], k: int, default: Optional[list[str]] = None) -> list[str]:
    """--names '0=zero,1=one' (or 'zero,one,...' in order) -> one folder-safe label per cluster,
    over the model's own names (else the cluster numbers)."""
    labels = [safe_name(n) for n in default] if default else [str(i) for i in range(k)]
    for pos, item in enumerate(filter(None, (spec or "").split(","))):
        index, sep, name = item.partition("=")
        if not sep:
            if pos >= k:
                raise ValueError(f"--names {spec}: more names than the model's {k} clusters")
            index, name = str(pos), item
        if not index.strip().isdigit() or not 0 <= int(index) < k:
            raise ValueError(f"--names {item}: cluster index must be 0..{k - 1}")
        labels[int(index)] = safe_name(name)
    if len(set(labels)) < k:
        raise ValueError(f"--names {spec}: two clusters would share one name")
    return labels


def place(src: Path, folder: Path, move: bool) -> Path:
    """Copy or move src into folder under its own (sanitised) name, adding -1, -2, ... on a clash."""
    if folder.is_symlink():  # a link planted in the output folder must not lead files out of it
        raise OSError(f"{folder} is a symbolic link, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(safe_name(src.name)).stem, src.suffix
    target, i = folder / f"{stem}{suffix}", 1
    while target.exists() or target.is_symlink():
        # a copy is not made twice: a rerun, or a run stopped between a copy and its row, finds it here
        if not move and target.is_file() and not target.is_symlink() and filecmp.cmp(src, target, shallow=False):
            return target
        target, i = folder / f"{stem}-{i}{suffix}", i + 1
    if move:
        shutil.move(src, target)
        return target
    tmp = folder / f".{target.name}.tmp"  # a half-copied file never carries the final name
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class Listing:
    """classify -o FILE with --copy-to / --move-to: where each file went, one row written and
    flushed as each file is placed, so a run stopped at any moment leaves a listing of exactly what
    it placed. The same command run again reads the listing back, skips the files it names that
    sit where it says, and appends the rest: in the end every file is named once."""

    def __init__(self, path: Path, header: list[str], placed: str, json_rows: bool, force: bool):
        self.header, self.placed, self.json_rows = header, placed, json_rows
        self.where: dict[str, str] = {}  # path -> where the listing says it went
        fresh = force or not path.exists()
        if not fresh:
            self.where = self._read(path)
        self.file = open(path, "w" if fresh else "a", newline="", encoding="utf-8", errors="surrogateescape")
        if fresh and not json_rows:
            csv.writer(self.file, lineterminator="\n").writerow(header)
            self.file.flush()

    def _read(self, path: Path) -> dict[str, str]:
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):  # a row cut short (a kill -9 mid-write): it never happened
            data = data[:data.rfind(b"\n") + 1]
            with open(path, "r+b") as f:
                f.truncate(len(data))
        text = data.decode("utf-8", errors="surrogateescape")
        option = "--move-to" if self.placed == "moved_to" else "--copy-to"
        not_ours = ValueError(f"{path}: exists and is not the listing of a classify run with {option} "
                              "(use --force to start it afresh)")
        try:
            if self.json_rows:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                reader = csv.reader(text.splitlines())
                if next(reader, None) != self.header:
                    raise not_ours
                rows = [dict(zip(self.header, r)) for r in reader]
            return {r["path"]: r[self.placed] for r in rows if r.get(self.placed)}
        except (json.JSONDecodeError, KeyError, TypeError):
            raise not_ours from None

    def placed_before(self, path: Path) -> bool:
        """Named in the listing, and its copy is where the listing says, with the same content."""
        target = self.where.get(str(path))
        return bool(target) and Path(target).is_file() and (
            not path.exists() or filecmp.cmp(path, target, shallow=False))


@contextmanager
def signals_held():
    """SIGINT, SIGTERM and SIGHUP wait until the block ends, then act as they would have: a stop
    lands between two files, never between a file placed and its row. (A Python handler runs in
    the main thread whichever thread the signal reaches; SIGKILL cannot be held.)"""
    caught: list[int] = []
    kinds = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    old = {kind: signal.signal(kind, lambda signum, frame: caught.append(signum)) for kind in kinds}
    try:
        yield
    finally:
        for kind, handler in old.items():
            signal.signal(kind, handler)
        if caught:
            signal.raise_signal(caught[0])
