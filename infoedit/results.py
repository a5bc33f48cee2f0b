"""What encode and classify write: one row per image, cluster names, and files sorted into
cluster folders. No torch here, so the CLI can import it at start-up."""

from __future__ import annotations

import os
import shutil
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
