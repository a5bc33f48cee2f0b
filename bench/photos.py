"""`infoedit classify` on photos of ink on paper: the bundled models with `--frame auto` and `--frame no`.

Each test image of a labelled dataset is drawn as a photo would show it: dark ink on grey paper
(the page 170-230, the ink 20-70, a lighting gradient, corners up to 40% darker, sensor noise),
5-11x larger than the dataset's image, anywhere on a 500-900 px page, saved as JPEG; also on
ruled and on squared paper (tilted lines), on notebook paper (ruled, with a red margin line,
single or double, beside the object), as a sheet lying on a darker desk, with a shadow across
the page or a glare on it, and digits in a form's box or on its line, and with a thin pen. The score is the
unsupervised accuracy (Hungarian-matched clusters, as `infoedit evaluate`) on the photos, beside
the same images given as they are.

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
from infoedit.datasets import framing  # noqa: E402
from trainer.evaluate.clustering import cluster_accuracy  # noqa: E402


def rule(page: np.ndarray, rng: np.random.Generator, spacing: float, vertical: bool) -> None:
    """Print a ruling on ``page`` in place: lines ``spacing`` px apart, 1-3 px thick, 15-40% darker
    than the paper, tilted up to 2 degrees (a page never lies square to the camera)."""
    h, w = page.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    across = (x if vertical else y) + np.tan(np.radians(rng.uniform(-2, 2))) * (y if vertical else x)
    offset = np.abs((across - rng.uniform(0, spacing)) % spacing - spacing / 2) - spacing / 2  # <= 0
    line = np.clip(rng.uniform(1, 3) / 2 + 0.5 + offset, 0, 1)  # 1 on the line, antialiased edge
    page *= 1 - rng.uniform(0.15, 0.4) * line


def on_desk(page: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The sheet ``page`` lying on a darker desk (grey 30-110, a faint wood-like grain), turned
    up to 8 degrees, in a frame 10-40% wider and taller than the sheet, anywhere in it."""
    h, w = page.shape
    fh, fw = int(h * rng.uniform(1.1, 1.4)), int(w * rng.uniform(1.1, 1.4))
    texture = Image.fromarray(rng.normal(0, 12, (fh // 64 + 2, fw // 8 + 2)).astype(np.float32), "F")
    desk = rng.uniform(30, 110) + np.asarray(texture.resize((fw, fh), Image.Resampling.BICUBIC))
    angle = rng.uniform(-8, 8)
    sheet = Image.fromarray(page.astype(np.float32), "F").rotate(angle, Image.Resampling.BILINEAR, expand=True)
    mask = Image.fromarray(np.ones((h, w), np.float32), "F").rotate(angle, Image.Resampling.BILINEAR, expand=True)
    sheet, mask = np.asarray(sheet), np.asarray(mask)
    top, left = int(rng.integers(0, max(1, fh - sheet.shape[0]))), int(rng.integers(0, max(1, fw - sheet.shape[1])))
    sh, sw = min(sheet.shape[0], fh - top), min(sheet.shape[1], fw - left)
    region = desk[top:top + sh, left:left + sw]
    desk[top:top + sh, left:left + sw] = region * (1 - mask[:sh, :sw]) + sheet[:sh, :sw] * mask[:sh, :sw]
    return desk


def photo(image: np.ndarray, rng: np.random.Generator, thin: bool = False, paper: str = "plain",
          desk: bool = False) -> Image.Image:
    """A light-on-dark uint8 [H, W] image as a photo of ink on paper; ``thin``: drawn with a pen
    a third of the width (the strokes binarised, eroded and softened); ``paper``: "plain",
    "ruled" (horizontal lines 0.5-0.9 of the object's height apart, so it crosses one or two),
    "squared" (lines both ways), "notebook" (ruled, with a notebook's red margin line, 2-4 px,
    or a double one, down the page beside the object: an RGB photo) or "form" (a printed box
    around the object, or a line it stands on, 2-4 px); ``desk``: the sheet lies on a desk that
    shows around it."""
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
    if paper in ("ruled", "squared", "notebook"):
        spacing = side * rng.uniform(0.5, 0.9)
        rule(page, rng, spacing, vertical=False)
        if paper == "squared":
            rule(page, rng, spacing, vertical=True)
    page *= 1 - rng.uniform(0, 0.4) * (x * x + y * y) / 2  # a lens's vignette: corners up to 40% darker
    top, left = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
    region = page[top:top + side, left:left + side]
    page[top:top + side, left:left + side] = region * (1 - obj) + rng.uniform(20, 70) * obj
    if paper == "form":
        thick, grey = int(rng.integers(2, 5)), rng.uniform(40, 110)
        if rng.random() < 0.5:  # a box 5-25% of the object's side clear of its frame
            pad = int(side * rng.uniform(0.05, 0.25))
            y0, y1 = max(top - pad, 0), min(top + side + pad, h - thick)
            x0, x1 = max(left - pad, 0), min(left + side + pad, w - thick)
            bars = [(slice(y0, y0 + thick), slice(x0, x1 + thick)), (slice(y1, y1 + thick), slice(x0, x1 + thick)),
                    (slice(y0, y1 + thick), slice(x0, x0 + thick)), (slice(y0, y1 + thick), slice(x1, x1 + thick))]
        else:  # a line through the foot of an MNIST digit (its box ends at 0.86 of the frame) or under it
            y, past = min(top + int(side * rng.uniform(0.82, 0.95)), h - thick), int(side * rng.uniform(0.1, 0.6))
            bars = [(slice(y, y + thick), slice(max(left - past, 0), left + side + past))]
        for bar in bars:
            page[bar] = np.minimum(page[bar], grey)
    if desk:
        page = on_desk(page, rng)
    page += rng.normal(0, 4, page.shape)
    if paper != "notebook":
        return Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    rgb = np.repeat(page[..., None], 3, axis=2)
    # the margin: a vertical red line, or two 3-7 px apart, 20 px or more from the object, on the
    # side with more room
    room_left, room_right = left - 20, w - (left + side) - 20
    if room_left > room_right:
        x0 = int(rng.uniform(0, room_left))
    else:
        x0 = int(left + side + 20 + rng.uniform(0, room_right))
    thick, red = int(rng.integers(2, 5)), rng.uniform(0.3, 0.6)
    for x in [x0] if rng.random() < 0.5 else [x0, x0 - thick - int(rng.integers(3, 8))]:
        rgb[:, max(x, 0):x + thick, 1:] *= red
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def shade(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """``photo`` with a straight-edged shadow across it (a hand's or a phone's): 25-50% darker on
    one side of a line through its middle part, the edge softened over 5-40 px."""
    g = np.asarray(photo.convert("L"), np.float32)
    h, w = g.shape
    y, x = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, 2 * np.pi)
    across = (x - w * rng.uniform(0.2, 0.8)) * np.cos(angle) + (y - h * rng.uniform(0.2, 0.8)) * np.sin(angle)
    dark = rng.uniform(0.25, 0.5) * np.clip(0.5 + across / rng.uniform(5, 40), 0, 1)
    return Image.fromarray(np.clip(g * (1 - dark), 0, 255).astype(np.uint8))


def glare(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """``photo`` with a lamp's or a flash's glare on the page: 40-90 grey levels brighter at a
    point anywhere in it, falling off as a Gaussian of 10-30% of the picture's shorter side."""
    g = np.asarray(photo.convert("L"), np.float32)
    h, w = g.shape
    y, x = np.mgrid[0:h, 0:w]
    cy, cx, radius = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.3) * min(h, w)
    g = g + rng.uniform(40, 90) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius ** 2))
    return Image.fromarray(np.clip(g, 0, 255).astype(np.uint8))


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
            strokes = framing(name) == "digit"  # a thin pen: handwriting, not products
            # folder -> how its images are drawn (None: the dataset's image as it is)
            kinds = {"plain": None, "photos": {}, "ruled": {"paper": "ruled"}, "squared": {"paper": "squared"},
                     "desk": {"desk": True}}
            if strokes:
                kinds["thin"] = {"thin": True}
            for kind in kinds:
                (Path(tmp) / kind).mkdir()
            for kind in ("shadow", "notebook", "form", "glare"):  # drawn from their own random streams
                (Path(tmp) / kind).mkdir()
            shadows = np.random.default_rng(args.seed + 1)  # its own stream: the other columns' photos stay
            notebooks, forms = np.random.default_rng(args.seed + 2), np.random.default_rng(args.seed + 3)  # the same
            glares = np.random.default_rng(args.seed + 4)
            for i, image in enumerate(images):
                for kind, how in kinds.items():
                    if how is None:
                        Image.fromarray(image).save(Path(tmp) / kind / f"{i:05d}.png")
                    else:
                        photo(image, rng, **how).save(Path(tmp) / kind / f"{i:05d}.jpg", quality=85)
                plain_photo = Image.open(Path(tmp) / "photos" / f"{i:05d}.jpg")
                shade(plain_photo, shadows).save(Path(tmp) / "shadow" / f"{i:05d}.jpg", quality=85)
                glare(plain_photo, glares).save(Path(tmp) / "glare" / f"{i:05d}.jpg", quality=85)
                photo(image, notebooks, paper="notebook").save(Path(tmp) / "notebook" / f"{i:05d}.jpg", quality=85)
                if strokes:
                    photo(image, forms, paper="form").save(Path(tmp) / "form" / f"{i:05d}.jpg", quality=85)

            def accuracy(kind: str, frame: str = "auto") -> float:
                return cluster_accuracy(classify(Path(tmp) / kind, name, frame), labels)[0]

            rows[name] = {"dataset images": accuracy("plain"),
                          "photos, --frame auto": accuracy("photos"),
                          "photos, --frame no": accuracy("photos", "no"),
                          "ruled paper, --frame auto": accuracy("ruled"),
                          "squared paper, --frame auto": accuracy("squared"),
                          "notebook paper (red margin), --frame auto": accuracy("notebook"),
                          "a form's box or line, --frame auto": accuracy("form") if strokes else None,
                          "sheet on a desk, --frame auto": accuracy("desk"),
                          "shadow across the page, --frame auto": accuracy("shadow"),
                          "a glare on the page, --frame auto": accuracy("glare"),
                          "thin pen, --frame auto": accuracy("thin") if strokes else None}
    prov = common.provenance(args, started)
    columns = list(next(iter(rows.values())))
    lines = ["# `infoedit classify` on photos of ink on paper (bundled models)", "",
             "| model | " + " | ".join(columns) + " |", "|---" * (1 + len(columns)) + "|"]
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
