"""Which dSprites factor do E's categories follow when E learns from the real-data MI alone?

Trains a fresh InfoVAEGAN encoder (64px, K=3, the dSprites model's networks) only with the
real-data information term (trainer.losses.paired_information_loss) between two views of each
procedural dSprites image under each named ``augment``, then reports how often two views of an
image get the same category and the NMI between the categories and each ground-truth factor.
It asks whether the views leave shape as the factor the categories can agree on. Writes
bench/results/real_mi_views.{md,json} and prints the markdown.

    python bench/real_mi_views.py --augment affine affine+spin affine+centre+spin --steps 1500
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import provenance, write  # noqa: E402
from infoedit.models import build  # noqa: E402
from infoedit.models.infovaegan import InfoVAEGANConfig  # noqa: E402
from trainer import augment as views_of  # noqa: E402
from trainer.dsprites import ProceduralDSprites  # noqa: E402
from trainer.evaluate.clustering import nmi  # noqa: E402
from trainer.losses import paired_information_loss  # noqa: E402
from trainer.train import defaults_for  # noqa: E402
from trainer.progress import make_progress  # noqa: E402

FACTORS = ("shape", "scale", "orientation", "posX", "posY")


def train_alone(augment: str, steps: int, width: float, seed: int, ds, held_out: torch.Tensor, advance) -> dict:
    torch.manual_seed(seed)
    settings = {k: v for k, v in defaults_for("dsprites").items() if k != "epochs"}
    model = build(InfoVAEGANConfig(**settings, width=width, model="infovaegan2", dataset="dsprites", augment=augment))
    encoder = model.E
    opt = torch.optim.Adam(encoder.parameters(), 2e-4, betas=(0.5, 0.999))
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = ds.images(rng.integers(0, len(ds), 64)).float()
        loss = paired_information_loss(encoder(views_of.views(x, augment, gen))[2],
                                       encoder(views_of.views(x, augment, gen))[2])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        advance()
    encoder.eval()
    with torch.no_grad():
        a, b = (encoder(views_of.views(held_out, augment, torch.Generator().manual_seed(s)))[2].argmax(1).numpy()
                for s in (1, 2))
    return {"agreement": float((a == b).mean()), "categories": a}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--augment", nargs="+", default=["affine", "affine+spin", "affine+centre+spin"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=2000, help="held-out images the categories are read on")
    args = parser.parse_args()
    started = time.time()
    torch.set_num_threads(1)
    ds = ProceduralDSprites()
    idx = np.random.default_rng(10_000 + args.seed).integers(0, len(ds), args.images)
    held_out, factors = ds.images(idx).float(), ds.factors(idx).numpy()
    rows = []
    with make_progress() as progress:
        task = progress.add_task("real-data MI alone", total=args.steps * len(args.augment), info="")
        for augment in args.augment:
            run = train_alone(augment, args.steps, args.width, args.seed, ds, held_out,
                              lambda: progress.advance(task))
            rows.append({"augment": augment, "agreement": run["agreement"],
                         "nmi": {f: nmi(run["categories"], factors[:, i]) for i, f in enumerate(FACTORS)}})
    lines = ["# E's 3 categories trained by the real-data MI alone on dSprites views", "",
             "| augment | steps | two views agree | " + " | ".join(f"NMI {f}" for f in FACTORS) + " |",
             "|---|---|---|" + "---|" * len(FACTORS)]
    for row in rows:
        lines.append(f"| {row['augment']} | {args.steps} | {row['agreement']:.2f} | "
                     + " | ".join(f"{row['nmi'][f]:.3f}" for f in FACTORS) + " |")
    meta = provenance(args, started)
    lines += ["", f"Width {args.width}, seed {args.seed}, batch 64, Adam 2e-4; categories read on {args.images} "
              "held-out procedural images (one view each; agreement over two views).",
              f"Commit `{meta['commit']}`, {meta['date']}, `{meta['command']}`. Wall time "
              f"{meta['wall_seconds'] / 60:.1f} min."]
    md, _ = write("real_mi_views", {"rows": rows, **meta}, "\n".join(lines))
    print(md.read_text())


if __name__ == "__main__":
    main()
