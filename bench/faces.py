"""Face models, judged by OpenCV's bundled Haar cascades (never by the model): numbers only.

    python bench/faces.py runs/celeba [--inception-weights pt_inception-2015-12-05.pth]

The judge: a frontal face (haarcascade_frontalface_default) with an eye (haarcascade_eye) found in
its upper half, on the 64 px image scaled up 4x. On the model's held-out faces (the 10% that
`infoedit train celeba` holds out, `trainer.data.hold_out`) it reports:
- references: real faces, the same blurred by 1.5 px (a Gaussian), random noise;
- samples: the share of --n samples judged faces, their sharpness (variance of the Laplacian of
  the grey image) against the real faces';
- reconstructions (the model's own drawing, `reconstruct`): share judged faces, sharpness ratio,
  grey SSIM to the held-out face; the same with `--refine` (codes fitted to the face first);
- each continuous code: traversed over [-1, 1] in 7 steps on 100 held-out faces (detail kept, as
  `traverse` does), the mean pixel change end to end, the share of cells still judged faces, and
  what it changes most: brightness, colour (red minus blue), the face's position or size in the
  judge's box (pose), or its width;
- FID against the held-out faces when Inception weights are given.
No image is written: CelebA's terms keep its faces, and anything drawn from them, out of the repo.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common
import numpy as np
import torch

from infoedit import engine, hub
from trainer import data

CHANGES = ("brightness", "colour (red - blue)", "face x (pose)", "face y", "face size")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a face model folder (trained on celeba)")
    ap.add_argument("--data", default=None, help="CelebA root (default: $INFOEDIT_DATA/celeba-subset or ../shared)")
    ap.add_argument("--n", type=int, default=1000, help="samples, and held-out faces for reconstructions")
    ap.add_argument("--n-traverse", type=int, default=100, help="held-out faces per traversed code")
    ap.add_argument("--validation", action="store_true",
                    help="score on training-split faces from id 009001 on (which a run with --limit 9000 never saw) "
                         "instead of the held-out ones: the split to choose settings on")
    ap.add_argument("--refine", type=int, default=20, metavar="STEPS",
                    help="also score reconstructions with --refine STEPS (0: not)")
    ap.add_argument("--inception-weights", type=Path, default=None, help="pt_inception weights: also report FID")
    ap.add_argument("--name", default="faces", help="results file stem (bench/results/NAME.md)")
    ap.add_argument("--out", type=Path, default=None)
    return ap.parse_args()


class HaarJudge:
    """A face with an eye in its upper half, on the image scaled up 4x (OpenCV's cascades)."""

    def __init__(self, upscale: int = 4, neighbours: int = 3):
        import cv2

        self.cv2, self.up, self.neighbours = cv2, upscale, neighbours
        self.face = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        self.eye = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")

    def box(self, rgb: np.ndarray) -> tuple[float, float, float] | None:
        """(centre x, centre y, width) of the largest judged face in a 64 px frame's units, or None."""
        cv2, up = self.cv2, self.up
        grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR)
        found = []
        for x, y, w, h in self.face.detectMultiScale(grey, 1.1, self.neighbours, minSize=(12 * up, 12 * up)):
            if len(self.eye.detectMultiScale(grey[y:y + h // 2, x:x + w], 1.1, self.neighbours)):
                found.append(((x + w / 2) / up, (y + h / 2) / up, w / up))
        return max(found, key=lambda b: b[2]) if found else None

    def boxes(self, images: torch.Tensor) -> list:
        return [self.box(to_rgb(img)) for img in images]


def to_rgb(img: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray((img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def sharpness(images: torch.Tensor) -> float:
    """Mean variance of the Laplacian of the grey image (0-255 levels)."""
    import cv2

    return float(np.mean([cv2.Laplacian(cv2.cvtColor(to_rgb(im), cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
                          for im in images]))


def grey_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    from skimage.metrics import structural_similarity

    return float(np.mean([structural_similarity(p.mean(0).numpy(), q.mean(0).numpy(), data_range=1.0)
                          for p, q in zip(a, b)]))


def blur(images: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    import cv2

    return torch.stack([torch.from_numpy(cv2.GaussianBlur(to_rgb(im), (0, 0), sigma)).permute(2, 0, 1).float() / 255
                        for im in images])


def share(boxes: list) -> float:
    return float(np.mean([b is not None for b in boxes]))


def measures(images: torch.Tensor, boxes: list) -> np.ndarray:
    """[N, len(CHANGES)]; the box columns are NaN where the judge found no face."""
    rows = []
    for img, b in zip(images, boxes):
        bx = (np.nan, np.nan, np.nan) if b is None else b
        rows.append([img.mean().item(), (img[0] - img[2]).mean().item(), *bx])
    return np.array(rows, np.float64)


def traversal(model, judge: HaarJudge, faces: torch.Tensor, code: int, steps: int = 7) -> dict:
    from scipy import stats

    cells = torch.cat([engine.traverse(model, x, [code], steps=steps).cpu() for x in faces])
    boxes = judge.boxes(cells)
    m = measures(cells, boxes).reshape(len(faces), steps, -1)
    values = np.linspace(-1, 1, steps)
    rho = []
    for j in range(len(CHANGES)):
        per_face = [stats.spearmanr(values, m[i, :, j]).statistic for i in range(len(faces))
                    if np.isfinite(m[i, :, j]).all() and np.ptp(m[i, :, j]) > 0]
        rho.append(float(np.mean(per_face)) if per_face else 0.0)
    rows = cells.view(len(faces), steps, *cells.shape[1:])
    moved = rows[:, -1] - rows[:, 0]
    best = int(np.argmax(np.abs(rho)))
    return {"code": code, "mean_abs_change": float(moved.abs().mean()), "judged_faces": share(boxes),
            "changes": CHANGES[best], "rho": rho[best]}


def main() -> None:
    args = parse_args()
    started = time.time()
    model = hub.from_pretrained(args.model).eval()
    root = args.data or str(Path(common.data_root()) / "celeba-subset")
    # the same hold-out as training (a fixed seed), framed as the model's faces were
    ds = data.load("celeba", root, progress=False, crop=model.config.crop)
    if args.validation:  # training-split faces after the 9,000th: outside a --limit 9000 run
        after = [i for i, name in enumerate(ds.names) if int(Path(name).stem) > 9000]
        held = ds.images[after[:args.n]].float() / 255
    else:
        held = ds.test_images[:args.n].float() / 255
    judge = HaarJudge()
    real_boxes = judge.boxes(held)
    real_sharp = sharpness(held)
    noise = torch.rand(min(200, args.n), 3, 64, 64, generator=torch.Generator().manual_seed(0))
    refs = {"real": share(real_boxes), "blurred_1.5px": share(judge.boxes(blur(held))),
            "noise": share(judge.boxes(noise)), "real_sharpness": real_sharp, "held_out_faces": len(held),
            "split": "validation: training-split faces from 009001 on" if args.validation else "held out"}
    samples = engine.sample(model, args.n, 0).cpu()
    rec = torch.cat([engine.reconstruct(model, held[i:i + 250]).cpu() for i in range(0, len(held), 250)])
    row = {"samples_judged": share(judge.boxes(samples)), "samples_sharpness_ratio": sharpness(samples) / real_sharp,
           "reconstructions_judged": share(judge.boxes(rec)),
           "reconstructions_sharpness_ratio": sharpness(rec) / real_sharp,
           "reconstruction_ssim": grey_ssim(rec, held)}
    if args.refine:
        start = time.time()
        fitted = torch.cat([engine.reconstruct(model, held[i:i + 250], refine_steps=args.refine).cpu()
                            for i in range(0, len(held), 250)])
        row["refined"] = {"steps": args.refine, "judged": share(judge.boxes(fitted)),
                          "sharpness_ratio": sharpness(fitted) / real_sharp, "ssim": grey_ssim(fitted, held),
                          "img_per_s": len(held) / (time.time() - start)}
    row["codes"] = [traversal(model, judge, held[:args.n_traverse], code) for code in range(model.config.c_dim)]
    row["codes_that_keep_a_face"] = sum(c["judged_faces"] >= 0.6 and c["mean_abs_change"] > 0.01 for c in row["codes"])
    if args.inception_weights:
        from trainer.evaluate.fid import Extractor, features_of, frechet_distance, statistics

        extractor = Extractor(args.inception_weights)
        real = statistics(features_of([held], extractor))
        row["fid_samples"] = frechet_distance(*statistics(features_of([samples], extractor)), *real)
        row["fid_reconstructions"] = frechet_distance(*statistics(features_of([rec], extractor)), *real)
    card = (Path(args.model) / "README.md")
    payload = {**common.provenance(args, started), "references": refs, "model": row,
               "model_card": card.read_text() if card.is_file() else None}
    md, _ = common.write(args.name, payload, markdown(payload), args.out)
    print(md.read_text())


def markdown(p: dict) -> str:
    r, m = p["references"], p["model"]
    trained = [line for line in (p.get("model_card") or "").splitlines()
               if line.startswith(("- command:", "- resumed with:", "- trained:", "- held out:"))]
    lines = [f"# Faces: {p['args']['model']}", "", *trained, "",
             f"Commit {p['commit']}, {p['wall_seconds']:.0f} s. Judge: OpenCV's "
             "Haar cascades, a frontal face with an eye in its upper half, at 4x. Held-out faces: "
             f"{r['held_out_faces']} ({r.get('split', 'held out')}).", "",
             "| what | judged faces | sharpness vs real | grey SSIM to the held-out face |", "|---|---|---|---|",
             f"| real held-out faces | {r['real']:.2f} | 1 | - |",
             f"| the same, blurred 1.5 px | {r['blurred_1.5px']:.2f} | - | - |",
             f"| random noise | {r['noise']:.2f} | - | - |",
             f"| samples | {m['samples_judged']:.2f} | {m['samples_sharpness_ratio']:.2f} | - |",
             f"| reconstructions | {m['reconstructions_judged']:.2f} | {m['reconstructions_sharpness_ratio']:.2f} | "
             f"{m['reconstruction_ssim']:.3f} |"]
    if "refined" in m:
        f = m["refined"]
        lines.append(f"| reconstructions, --refine {f['steps']} ({f['img_per_s']:.0f} img/s) | {f['judged']:.2f} | "
                     f"{f['sharpness_ratio']:.2f} | {f['ssim']:.3f} |")
    if "fid_samples" in m:
        lines += ["", f"FID against the held-out faces: samples {m['fid_samples']:.1f}, reconstructions "
                      f"{m['fid_reconstructions']:.1f}."]
    lines += ["", f"Continuous codes whose traversal changes the face and keeps it judged a face in >= 60% of cells: "
                  f"{m['codes_that_keep_a_face']} of {len(m['codes'])}.", "",
              "| code | mean pixel change, end to end | cells judged faces | changes most (rho) |", "|---|---|---|---|"]
    for c in m["codes"]:
        lines.append(f"| {c['code']} | {c['mean_abs_change']:.3f} | {c['judged_faces']:.2f} | "
                     f"{c['changes']} ({c['rho']:+.2f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
