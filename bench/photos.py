"""`infoedit classify` on photos of ink on paper: the bundled models with `--frame auto` and `--frame no`.

Each test image of a labelled dataset is drawn as a photo would show it: dark ink on grey paper
(the page 170-230, the ink 20-70, a lighting gradient, corners up to 40% darker, sensor noise),
5-11x larger than the dataset's image, anywhere on a 500-900 px page, saved as JPEG; digits also
with a thin pen. The score is the unsupervised accuracy (Hungarian-matched clusters, as
`infoedit evaluate`) on the photos, beside the same images given as they are.

    python bench/photos.py [--n 300] [--datasets mnist fashion-mnist]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common  # noqa: E402
from trainer import data  # noqa: E402
from infoedit.images import DATASET_FRAMING  # noqa: E402
from trainer.evaluate.clustering import cluster_accuracy  # noqa: E402


def photo(image: np.ndarray, rng: np.random.Generator, thin: bool = False) -> Image.Image:
    """A light-on-dark uint8 [H, W] image as a photo of ink on paper; ``thin``: drawn with a pen
    a third of the width (the strokes binarised, eroded and softened)."""
    side = int(rng.integers(5, 12)) * image.shape[0]
    big = Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC)
    if thin:
        size = 2 * round(side / 56) + 1  # MNIST's strokes are about a seventh of the image: keep a third
        big = big.point(lambda v: 255 if v > 127 else 0).filter(ImageFilter.MinFilter(size))
        big = big.filter(ImageFilter.GaussianBlur(side / 224))
    obj = np.asarray(big, np.float32) / 255
    h, w = int(rng.integers(max(500, side + 1), 900)), int(rng.integers(max(500, side + 1), 900))
    page = np.full((h, w), rng.uniform(170, 230), np.float32) + np.linspace(0, rng.uniform(-30, 30), w)[None]
    y, x = np.mgrid[-1:1:h * 1j, -1:1:w * 1j]
    page *= 1 - rng.uniform(0, 0.4) * (x * x + y * y) / 2  # a lens's vignette: corners up to 40% darker
    top, left = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    region = page[top:top + side, left:left + side]
    page[top:top + side, left:left + side] = region * (1 - obj) + rng.uniform(20, 70) * obj
    page += rng.normal(0, 4, page.shape)
    return Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))


def classify(folder: Path, model: str, frame: str) -> np.ndarray:
    """The clusters `infoedit classify` gives the folder's files, in file-name order."""
    out = folder.parent / f"{folder.name}-{frame}.csv"
    code = "from infoedit.cli import app; app()"
    subprocess.run([sys.executable, "-c", code, "classify", str(folder), "-m", model, "--frame", frame,
                    "-o", str(out), "--quiet"], check=True)
    with out.open() as f:
        rows = sorted(csv.DictReader(f), key=lambda r: Path(r["path"]).name)
    return np.array([int(r["cluster"]) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="test images per dataset")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.time()
    rows = {}
    for name in args.datasets:
        ds = data.load(name, common.data_root(), progress=False)
        images, labels = ds.test_images[:args.n, 0].numpy(), ds.test_labels[:args.n].numpy()
        rng = np.random.default_rng(args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            plain, photos, thin = Path(tmp) / "plain", Path(tmp) / "photos", Path(tmp) / "thin"
            strokes = DATASET_FRAMING.get(name) == "digit"  # a thin pen: handwriting, not products
            for folder in (plain, photos, thin)[:3 if strokes else 2]:
                folder.mkdir()
            for i, image in enumerate(images):
                Image.fromarray(image).save(plain / f"{i:05d}.png")
                photo(image, rng).save(photos / f"{i:05d}.jpg", quality=85)
                if strokes:
                    photo(image, rng, thin=True).save(thin / f"{i:05d}.jpg", quality=85)
            rows[name] = {"dataset images": cluster_accuracy(classify(plain, name, "auto"), labels)[0],
                          "photos, --frame auto": cluster_accuracy(classify(photos, name, "auto"), labels)[0],
                          "photos, --frame no": cluster_accuracy(classify(photos, name, "no"), labels)[0],
                          "thin pen, --frame auto": cluster_accuracy(classify(thin, name, "auto"), labels)[0]
                          if strokes else None}
    prov = common.provenance(args, started)
    lines = ["# `infoedit classify` on photos of ink on paper (bundled models)", "",
             "| model | " + " | ".join(next(iter(rows.values()))) + " |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join("n/a" if v is None else f"{100 * v:.1f}%" for v in r.values()) + " |")
    lines += ["", f"Unsupervised accuracy (Hungarian-matched clusters) on the first {args.n} test images of each "
              f"dataset, each drawn as a photo (see bench/photos.py), seed {args.seed}.",
              f"Commit `{prov['commit']}`, {prov['date']}, `{prov['command']}`."]
    text = "\n".join(lines)
    md, js = common.write("photos", {**prov, "results": rows}, text, args.out)
    print(text)
    print(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
