"""Out-of-domain inputs: how many images unlike a model's training images `classify` flags
(its `ood` column), and how many of the model's own test images it flags by mistake.

    python bench/ood.py                      # the bundled models
    python bench/ood.py --models runs/mnist  # model folders (each on its dataset)

Every number is read back from the console command's CSV (`infoedit classify FOLDER`), as a
script would read it. Per model, PNG folders of:
- in-domain: the first --n test images of the model's dataset;
- blank: one grey level each, 1 to 300 px square;
- noise: uniform, Gaussian and sparse salt noise, 16 to 200 px square;
- letters: A-Z and a-z drawn with Pillow's bundled font at 20-60 px, white on black;
- the other dataset: MNIST test images for a Fashion-MNIST model and the reverse;
- faces: CelebA's aligned faces when ../shared/data/celeba-subset is there (numbers only; the
  PNGs live in a temp folder that is deleted).
Target (#26): >= 95% of out-of-domain inputs flagged at <= 5% of in-domain ones. Writes
bench/results/ood.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from infoedit import hub
from trainer import data

OTHER = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mnist", "fashion-mnist"])
    ap.add_argument("--n", type=int, default=2000, help="in-domain test images")
    ap.add_argument("--n-ood", type=int, default=300, help="images per out-of-domain kind")
    ap.add_argument("--name", default="ood")
    ap.add_argument("--out", type=Path, default=None)
    return ap.parse_args()


def write_pngs(folder: Path, arrays) -> Path:
    folder.mkdir(parents=True)
    for i, a in enumerate(arrays):
        Image.fromarray(np.asarray(a, dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def blanks(n: int, rng) -> list:
    return [np.full((s, s), v) for s, v in zip(rng.integers(1, 300, n), rng.integers(0, 256, n))]


def noise(n: int, rng) -> list:
    out = []
    for i in range(n):
        s = int(rng.integers(16, 200))
        kind = i % 3
        out.append(rng.integers(0, 256, (s, s)) if kind == 0 else
                   rng.normal(128, 60, (s, s)).clip(0, 255) if kind == 1 else (rng.random((s, s)) < 0.1) * 255)
    return out


def letters(n: int, rng) -> list:
    out = []
    for i in range(n):
        ch = random.Random(i).choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        size = int(rng.integers(20, 60))
        img = Image.new("L", (size * 2, size * 2), 0)
        ImageDraw.Draw(img).text((size // 2, size // 3), ch, fill=255, font=ImageFont.load_default(size=size))
        out.append(np.asarray(img))
    return out


def test_images(name: str, n: int) -> list:
    ds = data.load(name, common.data_root(), progress=False)
    return [img[0].numpy() for img in ds.test_images[:n]]


def faces(n: int) -> list[Path]:
    folder = Path(common.data_root()) / "celeba-subset" / "img_align_celeba_89x109"
    return sorted(folder.glob("*.jpg"))[-n:] if folder.is_dir() else []


def flagged(model: str, folder: Path) -> tuple[float, int]:
    """(share of the folder's images the console command flags, images read)."""
    res = subprocess.run([sys.executable, "-m", "infoedit.cli", "classify", str(folder), "--model", model,
                          "--quiet"], capture_output=True, text=True)
    if res.returncode not in (0, 1):
        raise SystemExit(f"classify {folder}: exit {res.returncode}: {res.stderr}")
    rows = list(csv.DictReader(res.stdout.splitlines()))
    return float(np.mean([r["ood"] == "1" for r in rows])), len(rows)


def main() -> None:
    args = parse_args()
    started, rng = time.time(), np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="infoedit-bench-ood-"))
    rows = []
    try:
        for model in args.models:
            dataset = hub.from_pretrained(model).config.dataset
            kinds = {"in-domain (test)": test_images(dataset, args.n), "blank": blanks(args.n_ood, rng),
                     "noise": noise(args.n_ood, rng), "letters": letters(args.n_ood, rng)}
            if dataset in OTHER:
                kinds[OTHER[dataset]] = test_images(OTHER[dataset], args.n_ood)
            folders = {kind: write_pngs(work / Path(model).name / kind, arrays) for kind, arrays in kinds.items()}
            face_files = faces(args.n_ood)
            if face_files:
                folders["faces (CelebA)"] = work / Path(model).name / "faces"
                folders["faces (CelebA)"].mkdir()
                for f in face_files:
                    shutil.copy(f, folders["faces (CelebA)"] / f.name)
            for kind, folder in folders.items():
                share, n = flagged(model, folder)
                rows.append({"model": model, "dataset": dataset, "kind": kind, "images": n, "flagged": share})
                print(f"{model:16s} {kind:18s} {n:5d} images, {100 * share:5.1f}% flagged", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = ["# Out-of-domain inputs flagged by `classify` (column `ood`)", "",
             f"Commit {common.STARTED_AT}, {time.time() - started:.0f} s, `{' '.join(sys.argv)}`. Each share is "
             "read from the console command's CSV. Target: >= 95% of out-of-domain inputs flagged at <= 5% of "
             "in-domain ones.", "", "| model | inputs | images | flagged |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['kind']} | {r['images']} | {100 * r['flagged']:.1f}% |")
    for model in args.models:
        ood = [r for r in rows if r["model"] == model and not r["kind"].startswith("in-domain")]
        pooled = sum(r["flagged"] * r["images"] for r in ood) / max(1, sum(r["images"] for r in ood))
        lines.append(f"| {model} | all out-of-domain kinds, pooled | {sum(r['images'] for r in ood)} | "
                     f"{100 * pooled:.1f}% |")
    md, _ = common.write(args.name, {**common.provenance(args, started), "rows": rows}, "\n".join(lines), args.out)
    print(md)


if __name__ == "__main__":
    main()
