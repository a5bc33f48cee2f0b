"""What the table scripts share: provenance (commit, machine), the time budget, mean +- std, output."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))


def data_root() -> str:
    """$INFOEDIT_DATA, else ../shared/data beside the checkout (as tests/conftest.py)."""
    return os.environ.get("INFOEDIT_DATA") or str(REPO.parent / "shared" / "data")


def commit() -> str:
    """Short HEAD, with "+dirty" when tracked files differ from it (read-only git commands)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
    return head + ("+dirty" if git("diff-index", "--quiet", "HEAD", "--").returncode == 1 else "")


# The code a bench runs is the code at its start: long runs must not record a later commit.
STARTED_AT = commit()


def machine() -> dict:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (ddof=1; 0 for a single seed), plus the values."""
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) == 0:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "n": len(arr), "values": [float(v) for v in arr]}


def pct(stat: dict) -> str:
    """A mean_std of fractions as "97.12 ± 0.40" (percent)."""
    return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"


def seconds_per_step(dataset: str, width: float, device: str, batch_size: int = 64, steps: int = 6) -> float:
    """Time ``train_step`` itself on random images of the dataset's shape, after a warm-up."""
    from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig
    from trainer.infovaegan import make_optimizers, train_step
    from trainer.config import TrainConfig
    from trainer.loop import resolve_device
    from trainer.train import defaults_for

    settings = defaults_for(dataset)
    settings.pop("epochs")
    dev = resolve_device(device)
    model = InfoVAEGAN(InfoVAEGANConfig(width=width, dataset=dataset, **settings)).to(dev).train()
    opt, gen = make_optimizers(model, TrainConfig()), torch.Generator().manual_seed(0)
    size, channels = settings["image_size"], settings["channels"]
    x = torch.rand(batch_size, channels, size, size, device=dev)
    for _ in range(2):
        train_step(model, opt, x, gen)
    start = time.time()
    for _ in range(steps):
        train_step(model, opt, x, gen)
    return (time.time() - start) / steps


def calibrate(train_fn, dataset: str, width: float, device: str) -> tuple[float, float]:
    """(seconds per training step, fixed seconds per run: data loading, evaluation, checkpoint).

    The step is timed on its own; the fixed part is a one-step run minus that step. On a shared
    machine both drift, which is why the scripts report the wall time they actually took.
    """
    per_step = seconds_per_step(dataset, width, device)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        train_fn(Path(tmp), 1)
        fixed = max(0.0, time.time() - start - per_step)
    return per_step, fixed


def run_dir(root: Path | None, name: str) -> Path:
    if root is None:
        return Path(tempfile.mkdtemp(prefix=f"infoedit-bench-{name}-"))
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def cleanup(path: Path, keep: bool) -> None:
    if not keep:
        shutil.rmtree(path, ignore_errors=True)


def write(name: str, payload: dict, markdown: str, out: Path | None = None) -> tuple[Path, Path]:
    out = Path(out) if out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{name}.md", out / f"{name}.json"
    md.write_text(markdown.rstrip() + "\n")
    js.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return md, js


def provenance(args, started: float) -> dict:
    return {"commit": STARTED_AT, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "wall_seconds": round(time.time() - started, 1)}
