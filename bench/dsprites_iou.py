"""How close is the procedural dSprites renderer to the real frames? IoU against both real subsets.

Renders every image of dsprites_downsampled.npz and dsprites_subset.npz from its factor classes
with trainer.dsprites.render, and compares pixels. Data root: $INFOEDIT_DATA, else ../shared/data
beside the repository. Writes bench/results/dsprites_iou.{md,json} and prints the markdown.

Note: the ellipse axes and the heart outline were fitted on dsprites_downsampled.npz, so the
"held out" row (subset images absent from the grid) is the fair generalisation figure.

    python bench/dsprites_iou.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer import dsprites  # noqa: E402

SHAPES = ("square", "ellipse", "heart")


def data_dir() -> Path:
    return Path(os.environ.get("INFOEDIT_DATA", REPO.parent / "shared" / "data")) / "dsprites"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except OSError:
        return "uncommitted"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "uncommitted"


def iou(rendered: torch.Tensor, real: torch.Tensor) -> np.ndarray:
    """Per-image intersection over union of two {0,1} batches; two empty images count as 1."""
    a, b = rendered.bool().flatten(1), real.bool().flatten(1)
    inter, union = (a & b).sum(1).double(), (a | b).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter)).numpy()


def stats(scores: np.ndarray) -> dict:
    return {"n": int(len(scores)), "mean_iou": float(scores.mean()) if len(scores) else float("nan"),
            "frac_iou_ge_0.9": float((scores >= 0.9).mean()) if len(scores) else float("nan")}


def main() -> int:
    root = data_dir()
    files = ("dsprites_downsampled.npz", "dsprites_subset.npz")
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        print(f"dSprites data not found at {root} ({', '.join(missing)}); set INFOEDIT_DATA", file=sys.stderr)
        return 1
    torch.set_num_threads(1)  # report single-core speed, as a data-loader worker would see it
    per_file, all_idx, all_iou, all_cls, grid_idx = {}, [], [], [], None
    seconds, n_rendered = 0.0, 0
    for name in files:
        images, classes = dsprites.load_npz(root / name)
        t0 = time.perf_counter()
        rendered = dsprites.render(classes)
        seconds += time.perf_counter() - t0
        n_rendered += len(classes)
        scores = iou(rendered, images)
        per_file[name] = stats(scores)
        idx = dsprites.factors_to_index(classes.numpy())
        if name == files[0]:
            grid_idx = idx
        all_idx.append(idx), all_iou.append(scores), all_cls.append(classes.numpy())
    idx, scores, cls = np.concatenate(all_idx), np.concatenate(all_iou), np.concatenate(all_cls)
    # The files share 1,246 identical images: count each distinct official image once.
    _, first = np.unique(idx, return_index=True)
    idx, scores, cls = idx[first], scores[first], cls[first]
    held = ~np.isin(idx, grid_idx)

    overall = stats(scores)
    by_shape = {SHAPES[s]: stats(scores[cls[:, 0] == s]) for s in range(3)}
    by_scale = {f"{dsprites.SCALES[s]:.1f}": stats(scores[cls[:, 1] == s]) for s in range(6)}
    combos = {}
    for key in np.unique(cls[:, :3], axis=0):
        m = (cls[:, :3] == key).all(1)
        combos[tuple(int(k) for k in key)] = (float(scores[m].mean()), int(m.sum()))
    worst = sorted(combos.items(), key=lambda kv: kv[1][0])[:5]
    # Render speed in the shape the trainer uses: random batches of 64 by official index.
    sprites, rng = dsprites.ProceduralDSprites(), np.random.default_rng(0)
    sprites.images(rng.integers(0, dsprites.N_IMAGES, 64))
    t0 = time.perf_counter()
    for _ in range(100):
        sprites.images(rng.integers(0, dsprites.N_IMAGES, 64))
    ms_per_64 = (time.perf_counter() - t0) / 100 * 1000

    result = {
        "commit": git_commit(), "data": str(root), "overall": overall, "held_out": stats(scores[held]),
        "per_file": per_file, "by_shape": by_shape, "by_scale": by_scale,
        "worst_combos": [{"shape": SHAPES[k[0]], "scale": f"{dsprites.SCALES[k[1]]:.1f}", "orientation": k[2],
                          "mean_iou": v[0], "n": v[1]} for k, v in worst],
        "render_ms_per_64": ms_per_64, "render_ms_per_image_bulk": seconds / n_rendered * 1000,
        "torch_threads": 1,
    }
    f = lambda s: f"| {s['n']} | {s['mean_iou']:.4f} | {s['frac_iou_ge_0.9']:.4f} |"  # noqa: E731
    lines = ["# dSprites renderer vs real frames (IoU)", "",
             f"commit `{result['commit']}`; data `{root}`; 1 CPU thread", "",
             "| set | images | mean IoU | IoU >= 0.9 |", "|---|---|---|---|",
             f"| all distinct images {f(overall)}", f"| held out (subset, not in grid) {f(result['held_out'])}"]
    lines += [f"| {name} {f(s)}" for name, s in per_file.items()]
    lines += [f"| shape = {name} {f(s)}" for name, s in by_shape.items()]
    lines += [f"| scale = {name} {f(s)}" for name, s in by_scale.items()]
    lines += ["", "Worst 5 (shape, scale, orientation class) combos:", "",
              "| shape | scale | orientation | images | mean IoU |", "|---|---|---|---|---|"]
    lines += [f"| {w['shape']} | {w['scale']} | {w['orientation']} | {w['n']} | {w['mean_iou']:.4f} |"
              for w in result["worst_combos"]]
    lines += ["", f"Render speed: {ms_per_64:.2f} ms per random batch of 64 "
              f"({result['render_ms_per_image_bulk']:.3f} ms per image in bulk)."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dsprites_iou.md").write_text(text)
    (out / "dsprites_iou.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
