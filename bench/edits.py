"""Edits that keep the image: reconstruct / swap / traverse of real test images, scored by a
judge CNN that this bench trains itself on the training split (never the model's own encoder).

    python bench/edits.py                                          # the bundled models
    python bench/edits.py --models runs/mnist runs/beta-vae        # model folders (each on its dataset)
    python bench/edits.py --baselines 3000 --runs /tmp/edit-runs   # also train beta-VAE and JointVAE rows

Per dataset the judge (bench's own SmallCNN, true labels, the last 5,000 training images held
out as its validation split) is trained once; its penultimate layer gives the features of the
Frechet distance. Per model, on the first --n test images:
- reconstructions, the decoder's own drawing (`reconstruct`, no detail kept): grey SSIM to the
  input (scikit-image's default window), Frechet distance of judge features against the real
  test images, the judge's accuracy against the true labels;
- category edits: `traverse --discrete` (every category, detail kept where the category is the
  image's own) and `swap --discrete-from b` (image i's style with image i+1's category): the share
  of cells the judge reads as the class matched to the target category (Hungarian matching of
  the model's categories to the labels on the test images, as `evaluate` does);
- continuous traversal (detail kept): per code, the mean pixel change from one end to the other,
  the share of cells the judge still reads as the input's class, and which simple image measure
  (ink, width, height, slant, centre) follows the code most closely (Spearman's rho);
- speed: `infoedit reconstruct` / `swap` through the console command on --speed-n PNGs at once.
Each --models entry with G2 is scored twice: as the commands run by default (with the model's own
refine_steps), and with --refine (the codes fitted to the image by gradient steps first, engine.refine).
References on the same images: the 3x3 box blur of the input, and real training images.
Writes bench/results/edits.{md,json} and, per bundled model, a traversal grid edits-<dataset>.png and
a swap grid edits-<dataset>-swaps.png (the first test image of each class: row i in image i's style, column
j in image j's category, the top row the images themselves).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import common
import numpy as np
import torch
from scipy import ndimage, stats

from infoedit import engine, hub
from infoedit.images import make_grid, save_png
from trainer import data
from trainer.evaluate.clustering import cluster_accuracy
from trainer.evaluate.fid import frechet_distance, statistics
from trainer.evaluate.pseudo_label import PseudoLabelConfig, train_cnn
from trainer.config import TrainConfig
from trainer.train import train

VALIDATION = 5_000
MEASURES = ("ink", "width", "height", "slant", "centre x", "centre y")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mnist", "fashion-mnist"],
                    help="model folders, bundled names or Hub ids (each scored on its own dataset)")
    ap.add_argument("--labels", nargs="+", default=None, help="a name per --models entry for the tables")
    ap.add_argument("--baselines", type=int, default=0, metavar="STEPS",
                    help="also train beta-VAE and JointVAE on each dataset for STEPS steps (0: none)")
    ap.add_argument("--n", type=int, default=10_000, help="test images for reconstructions")
    ap.add_argument("--n-edits", type=int, default=1_000, help="test images for category and traversal edits")
    ap.add_argument("--speed-n", type=int, default=1_000, help="PNGs for the console-command speed rows (0: none)")
    ap.add_argument("--refine", type=int, default=20, metavar="STEPS",
                    help="also score each --models entry that has G2 with --refine STEPS (0: not)")
    ap.add_argument("--validation", action="store_true",
                    help="edit the judge's validation images (the last 5,000 training images) instead of the test "
                         "images: the split to choose settings on (the bundled models trained on it)")
    ap.add_argument("--judge-epochs", type=int, default=3)
    ap.add_argument("--width", type=float, default=0.3, help="baselines' network width")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=Path, default=None, help="keep the baselines' model folders here")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    ap.add_argument("--name", default="edits", help="results file stem (bench/results/NAME.md)")
    return ap.parse_args()


# -- the judge --------------------------------------------------------------------------------
class Judge:
    """The bench's own classifier of a dataset, trained on its training split with true labels."""

    def __init__(self, ds: data.Dataset, epochs: int, seed: int):
        train_x, train_y = ds.images[:-VALIDATION], ds.labels[:-VALIDATION]
        cfg = PseudoLabelConfig(epochs=epochs, seed=seed)
        self.net, info = train_cnn(train_x, train_y, int(ds.labels.max()) + 1, cfg)
        self.validation_accuracy = float((self.classify(ds.images[-VALIDATION:].float() / 255)
                                          == ds.labels[-VALIDATION:].numpy()).mean())
        self.seconds = info["seconds"]

    @torch.inference_mode()
    def _run(self, x: torch.Tensor, layers: slice) -> torch.Tensor:
        return torch.cat([self.net.net[layers](x[i:i + 1000].float()) for i in range(0, len(x), 1000)])

    def classify(self, x: torch.Tensor) -> np.ndarray:
        return self._run(x, slice(None)).argmax(1).numpy()

    def features(self, x: torch.Tensor) -> np.ndarray:
        return self._run(x, slice(None, -1)).numpy()  # the 128 units before the last layer

    def frechet(self, x: torch.Tensor, reference: np.ndarray) -> float:
        return frechet_distance(*statistics(self.features(x)), *statistics(reference))


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean grey SSIM, scikit-image's defaults (7x7 window), images in [0, 1]."""
    from skimage.metrics import structural_similarity

    grey = [t.mean(dim=1).numpy() for t in (a, b)]
    return float(np.mean([structural_similarity(p, q, data_range=1.0) for p, q in zip(*grey)]))


def box_blur(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(ndimage.uniform_filter(x.numpy(), size=(1, 1, 3, 3), mode="constant"))


def measures(x: torch.Tensor) -> np.ndarray:
    """[N, len(MEASURES)]: ink mass, bounding width and height (of pixels over 0.3), slant (the
    x-y covariance over the y variance of the ink) and the centre of mass."""
    img = x.mean(dim=1).numpy().astype(np.float64)
    n, h, w = img.shape
    ys, xs = np.mgrid[:h, :w]
    mass = img.sum(axis=(1, 2)) + 1e-8
    cy, cx = (img * ys).sum(axis=(1, 2)) / mass, (img * xs).sum(axis=(1, 2)) / mass
    dy, dx = ys[None] - cy[:, None, None], xs[None] - cx[:, None, None]
    slant = (img * dx * dy).sum(axis=(1, 2)) / ((img * dy * dy).sum(axis=(1, 2)) + 1e-8)
    on = img > 0.3
    width = np.array([np.ptp(np.nonzero(m.any(axis=0))[0]) if m.any() else 0 for m in on])
    height = np.array([np.ptp(np.nonzero(m.any(axis=1))[0]) if m.any() else 0 for m in on])
    return np.stack([mass / (h * w), width, height, slant, cx, cy], axis=1)


# -- one model --------------------------------------------------------------------------------
def category_map(model, x: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    """Category -> the class it is matched to (Hungarian, as `evaluate`); unmatched: -1."""
    pred = engine.encode(model, x).cluster.cpu().numpy()
    _, mapping = cluster_accuracy(pred, labels)
    table = np.full(model.config.n_classes, -1)
    for category, label in mapping.items():
        table[category] = label
    return table


def score_model(model, name: str, judge: Judge, x: torch.Tensor, labels: np.ndarray, real_features: np.ndarray,
                n_edits: int, grid_path: Path | None, refine: int = 0) -> dict:
    own = getattr(model.config, "refine_steps", 0)
    label = f" (its default, --refine {refine})" if refine and refine == own else f" --refine {refine}"
    row = {"model": name + (label if refine else ""), "family": model.config.model, "refine": refine}
    start = time.time()
    rec = torch.cat([engine.reconstruct(model, x[i:i + 1000], refine_steps=refine).cpu() for i in range(0, len(x), 1000)])
    row["reconstruct_seconds_per_image"] = (time.time() - start) / len(x)
    row["ssim"] = ssim(rec, x)
    row["frechet"] = judge.frechet(rec, real_features)
    row["judge_accuracy"] = float((judge.classify(rec) == labels).mean())
    targets = category_map(model, x, labels)
    xe, ye = x[:n_edits], labels[:n_edits]
    cells = torch.cat([engine.traverse_discrete(model, img, refine_steps=refine).cpu() for img in xe])  # [n * K]
    wanted = np.tile(targets, len(xe))
    row["discrete_traverse"] = float((judge.classify(cells) == wanted)[wanted >= 0].mean())
    partner = xe.roll(-1, dims=0)
    swapped = engine.swap(model, xe, partner, "b", "a", refine_steps=refine).cpu()
    wanted = targets[engine.encode(model, partner).cluster.cpu().numpy()]
    row["swap_discrete_from_b"] = float((judge.classify(swapped) == wanted)[wanted >= 0].mean())
    row["codes"] = []
    steps = 7
    for code in range(model.config.c_dim):
        grid = torch.cat([engine.traverse(model, img, [code], steps=steps, refine_steps=refine).cpu() for img in xe])
        grid = grid.view(len(xe), steps, *grid.shape[1:])
        moved = (grid[:, -1] - grid[:, 0]).abs().mean().item()
        kept = float((judge.classify(grid.flatten(0, 1)) == np.repeat(ye, steps)).mean())
        values = np.tile(np.linspace(-1, 1, steps), len(xe))
        m = measures(grid.flatten(0, 1)).reshape(len(xe), steps, -1)
        # rank correlation of each measure with the code, within each image, averaged
        with warnings.catch_warnings():  # a measure that stays constant over a row has no rank correlation
            warnings.simplefilter("ignore")
            rho = [np.nanmean([stats.spearmanr(values[:steps], m[i, :, j]).statistic for i in range(len(xe))])
                   for j in range(len(MEASURES))]
        best = int(np.nanargmax(np.abs(rho)))
        row["codes"].append({"code": code, "mean_abs_change": moved, "judge_keeps_class": kept,
                             "follows": MEASURES[best], "rho": float(rho[best])})
    if grid_path is not None and model.config.c_dim:  # 4 test images, one row per code each
        rows = [engine.traverse(model, img, list(range(model.config.c_dim)), steps=10).cpu() for img in x[:4]]
        save_png(make_grid(torch.cat(rows), nrow=10), grid_path)
        # the first test image of each class: row i in image i's style, column j in image j's category
        firsts = torch.stack([x[int(np.flatnonzero(labels == k)[0])] for k in range(int(labels.max()) + 1)])
        n = len(firsts)
        swaps = torch.cat([engine.swap(model, firsts[i:i + 1].expand(n, -1, -1, -1), firsts).cpu() for i in range(n)])
        save_png(make_grid(torch.cat([firsts, swaps]), nrow=n), grid_path.with_name(grid_path.stem + "-swaps.png"))
    return row


def console_speed(model_ref: str, x: torch.Tensor, n: int, refine: int | None = None) -> dict:
    """Images per second of `infoedit reconstruct` and of `infoedit swap` (every image with the
    first one's category) on n PNGs, end to end through the console command (start-up included),
    with --refine ``refine`` (None: the command's default)."""
    exe = str(Path(sys.executable).with_name("infoedit"))
    speed = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, img in enumerate(x[:n]):
            files.append(Path(tmp) / f"{i:05d}.png")
            save_png(img, files[-1])
        for name, args in (("reconstruct", ["reconstruct", *map(str, files), "-o", f"{tmp}/rec"]),
                           ("swap", ["swap", *map(str, files), str(files[0]), "-o", f"{tmp}/swap"])):
            start = time.time()
            refining = [] if refine is None else ["--refine", str(refine)]
            subprocess.run([exe, *args, "--model", model_ref, *refining, "--quiet"], check=True)
            speed[f"{name}_folder_img_per_s"] = len(files) / (time.time() - start)
    return speed


def main() -> None:
    args = parse_args()
    started = time.time()
    (args.out or common.RESULTS).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    if args.labels and len(args.labels) != len(args.models):
        raise SystemExit(f"--labels: {len(args.labels)} names for {len(args.models)} models")
    models = [(ref, hub.from_pretrained(ref).eval()) for ref in args.models]
    labels = dict(zip(args.models, args.labels or args.models))
    datasets = sorted({m.config.dataset for _, m in models})
    if args.baselines:
        for dataset in datasets:
            for family in ("beta-vae", "jointvae"):
                folder = common.run_dir(args.runs, f"{dataset}-{family}")
                tc = TrainConfig(seed=args.seed, max_steps=args.baselines, command=f"bench/edits.py ({family})")
                train(dataset, folder, family, common.data_root(), {"width": args.width}, tc, progress=False)
                models.append((str(folder), hub.from_pretrained(folder).eval()))
    rows, references = [], {}
    for dataset in datasets:
        ds = data.load(dataset, common.data_root(), progress=False)
        judge = Judge(ds, args.judge_epochs, args.seed)
        if args.validation:  # the judge's validation split: to choose settings on, never the test split
            x, truth = ds.images[-VALIDATION:][:args.n].float() / 255, ds.labels[-VALIDATION:][:args.n].numpy()
        else:
            x, truth = ds.test_images[:args.n].float() / 255, ds.test_labels[:args.n].numpy()
        real_features = judge.features(x)
        train_x = ds.images[:len(x)].float() / 255
        blurred = box_blur(x)
        references[dataset] = {
            "judge_validation_accuracy": judge.validation_accuracy, "judge_test_accuracy": float(
                (judge.classify(x) == truth).mean()), "judge_seconds": judge.seconds,
            "real_train_frechet": judge.frechet(train_x, real_features),
            "blur_ssim": ssim(blurred, x), "blur_frechet": judge.frechet(blurred, real_features),
            "blur_judge_accuracy": float((judge.classify(blurred) == truth).mean())}
        print(dataset, references[dataset], flush=True)
        for ref, model in models:
            if model.config.dataset != dataset:
                continue
            bundled = ref == dataset and not args.validation  # grids of the bundled models' test images
            grid = (args.out or common.RESULTS) / f"{args.name}-{dataset}.png" if bundled else None
            own = getattr(model.config, "refine_steps", 0)  # as the commands run by default
            more = args.refine and args.refine != own and ref in args.models and hasattr(model, "G2")
            for refine in [own] + ([args.refine] if more else []):
                row = {"dataset": dataset, **score_model(model, labels.get(ref, ref), judge, x, truth, real_features,
                                                         args.n_edits, grid if refine == own else None, refine)}
                if ref in args.models and args.speed_n:
                    row.update(console_speed(ref, x, args.speed_n, None if refine == own else refine))
                rows.append(row)
                print(row, flush=True)
    payload = {**common.provenance(args, started), "references": references, "rows": rows}
    md, _ = common.write(args.name, payload, markdown(payload), args.out)
    print(md.read_text())


def markdown(payload: dict) -> str:
    a = payload["args"]
    split = "validation" if a.get("validation") else "test"
    lines = ["# Edits that keep the image", "",
             f"Commit {payload['commit']}, {payload['wall_seconds']:.0f} s. Reconstructions: the first {a['n']} "
             f"{split} images; edits: the first {a['n_edits']}. Judge: the bench's own CNN (true labels, trained on the "
             "training split less its last 5,000, its validation split). Frechet: the judge's 128 features "
             f"against the real {split} images.", "",
             "| dataset | judge validation / test acc | real train images: Frechet "
             "| 3x3 blur: SSIM / Frechet / judge |",
             "|---|---|---|---|"]
    for dataset, r in payload["references"].items():
        lines.append(f"| {dataset} | {r['judge_validation_accuracy']:.2%} / {r['judge_test_accuracy']:.2%} | "
                     f"{r['real_train_frechet']:.1f} | {r['blur_ssim']:.3f} / {r['blur_frechet']:.1f} / "
                     f"{r['blur_judge_accuracy']:.2%} |")
    lines += ["", "| dataset | model | reconstruction SSIM | Frechet | judge reads true class | category edits: "
              "traverse --discrete / swap --discrete-from b | reconstruct / swap img/s (console, a folder) |",
              "|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        speed = (f"{r['reconstruct_folder_img_per_s']:.0f} / {r['swap_folder_img_per_s']:.0f}"
                 if "reconstruct_folder_img_per_s" in r else "-")
        lines.append(f"| {r['dataset']} | {r['model']} ({r['family']}) | {r['ssim']:.3f} | {r['frechet']:.1f} | "
                     f"{r['judge_accuracy']:.2%} | {r['discrete_traverse']:.2%} / {r['swap_discrete_from_b']:.2%} | "
                     f"{speed} |")
    lines += ["", "Continuous traversal (detail kept), 7 steps over [-1, 1]:", "",
              "| dataset | model | code | mean pixel change, end to end | judge keeps the class | follows (rho) |",
              "|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        for c in r["codes"]:
            lines.append(f"| {r['dataset']} | {r['model']} | {c['code']} | {c['mean_abs_change']:.3f} | "
                         f"{c['judge_keeps_class']:.2%} | {c['follows']} ({c['rho']:+.2f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
