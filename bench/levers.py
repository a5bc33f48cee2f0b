"""Ablation of the levers against MNIST accuracy: each a model-config option, same budget.
(--from-runs tabulates runs on any labelled dataset, e.g. Fashion-MNIST.)

    python bench/levers.py [--steps 1800] [--seeds 0] [--levers paper cpu-fast z-scale ...]
    python bench/levers.py --from-runs runs/a runs/b ... [--steps 1800]

Trains each named configuration for --steps steps (width 0.5, 1 thread recommended on a
shared machine) with held-out accuracy every 200 steps, or tabulates existing run folders
(their config.json and metrics.jsonl, as `infoedit train --eval-every` writes them). The table
gives the test ACC (Hungarian-matched argmax q(s|x)) at the last evaluation at or before
--steps, and the best seen. Writes bench/results/levers.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import data_root, provenance, run_dir, write  # noqa: E402
from trainer.train import PRESETS  # noqa: E402

BASE = {"width": 0.5, "mi_weight_c": 0.1}
# name: (model family, config overrides over BASE); "paper" is the paper-faithful setting.
LEVERS = {
    "paper": ("infovaegan", {"width": 1.0, "mi_weight_c": 1.0, "d_real_s": "gumbel"}),
    "half-width": ("infovaegan", {"d_real_s": "gumbel"}),
    "onehot-real-s": ("infovaegan", {}),
    "shared-trunk": ("infovaegan", {"shared_trunk": True}),
    "real-mi-1": ("infovaegan", {"real_mi_weight": 1.0}),
    "real-mi-5": ("infovaegan", {"real_mi_weight": 5.0}),
    "z-scale-0.1": ("infovaegan", {"z_scale": 0.1}),
    "infovaegan2": ("infovaegan2", {}),
    "infovaegan2+z-scale-0.1": ("infovaegan2", {"z_scale": 0.1}),
    "infovaegan2+z-scale-0.1+real-mi-5": ("infovaegan2", {"z_scale": 0.1, "real_mi_weight": 5.0}),
    "real-mi-20": ("infovaegan", {"real_mi_weight": 20.0}),
    "infovaegan2+real-mi-20": ("infovaegan2", {"real_mi_weight": 20.0}),
    "infovaegan2+z-scale-0.1+real-mi-20": ("infovaegan2", {"z_scale": 0.1, "real_mi_weight": 20.0}),
    "+real-mi-balance-2": ("infovaegan2", {"z_scale": 0.1, "real_mi_weight": 20.0, "real_mi_balance": 2.0}),
    "v2+z-scale+real-mi-20": ("infovaegan2", {"z_scale": 0.1, "real_mi_weight": 20.0}),  # cpu-fast before reseed
    "+overcluster-50": ("infovaegan2", {"z_scale": 0.1, "real_mi_weight": 20.0, "overcluster": 50}),
    "+shear+stroke": ("infovaegan2", {"z_scale": 0.1, "real_mi_weight": 20.0, "augment": "affine+shear+stroke"}),
    "+reseed": ("infovaegan2", {"z_scale": 0.1, "real_mi_weight": 20.0, "reseed": True}),
    "cpu-fast": ("infovaegan2", PRESETS["cpu-fast"]["model"]),  # the preset as it is now
}
FIELDS = ("width", "mi_weight_s", "mi_weight_c", "d_real_s", "shared_trunk", "real_mi_weight", "real_mi_balance",
          "z_scale", "augment", "overcluster", "reseed")


def row_from_run(folder: Path, steps: int) -> dict:
    from infoedit.models.infovaegan import InfoVAEGANConfig
    from trainer.loop import read_metrics

    # a run older than a lever trained as the lever's ADDED_FIELDS value says
    config = {**InfoVAEGANConfig.ADDED_FIELDS, **json.loads((folder / "config.json").read_text())}
    evals = [r for r in read_metrics(folder) if "test_acc" in r]
    upto = [r for r in evals if r["step"] <= steps] or evals[:1]
    return {"run": folder.name, "dataset": config.get("dataset"), "model": config["model"],
            **{f: config.get(f) for f in FIELDS},
            "step": upto[-1]["step"], "acc": upto[-1]["test_acc"], "best": max(r["test_acc"] for r in upto),
            "seed": json.loads((folder / "train_config.json").read_text()).get("seed")
            if (folder / "train_config.json").is_file() else None}


def train_lever(name: str, seed: int, steps: int, root: Path | None) -> Path:
    from trainer.config import TrainConfig
    from trainer.train import train

    family, overrides = LEVERS[name]
    out = run_dir(root, f"levers-{name}-s{seed}")
    tc = TrainConfig(epochs=100, max_steps=steps, eval_every=200, seed=seed, checkpoint_every=None)
    train("mnist", out, model_name=family, data_root=data_root(), overrides={**BASE, **overrides}, tc=tc,
          progress=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    ap.add_argument("--from-runs", type=Path, nargs="+", help="Tabulate these run folders instead of training.")
    ap.add_argument("--runs", type=Path, help="Keep the trained runs here (default: a temp folder).")
    ap.add_argument("--name", default="levers", help="results file name (bench/results/NAME.{md,json})")
    ap.add_argument("--note", default="", help="a line of context under the table's title")
    args = ap.parse_args()
    started = time.time()
    folders = args.from_runs or [train_lever(n, s, args.steps, args.runs) for n in args.levers for s in args.seeds]
    rows = [row_from_run(f, args.steps) for f in folders]
    head = "| run | model | " + " | ".join(FIELDS) + " | seed | step | ACC | best ACC |"
    datasets = ", ".join(sorted({str(r["dataset"]) for r in rows}))
    lines = [f"{datasets} test ACC per lever at <= {args.steps} steps (batch 64)", "",
             *([args.note, ""] if args.note else []), head,
             "|" + "---|" * (len(FIELDS) + 6)]
    lines += [f"| {r['run']} | {r['model']} | " + " | ".join(str(r[f]) for f in FIELDS)
              + f" | {r['seed']} | {r['step']} | {100 * r['acc']:.1f}% | {100 * r['best']:.1f}% |" for r in rows]
    markdown = "\n".join(lines)
    print(markdown)
    write(args.name, {**provenance(args, started), "rows": rows}, markdown + "\n")


if __name__ == "__main__":
    main()
