"""Table 1's pseudo-label CNN on trained model folders, under named training recipes.

    python bench/pseudo_label.py MODEL_DIR [MODEL_DIR ...] [--recipes default plain ...] [--tag T]

For each model folder (a trained MNIST or Fashion-MNIST model) and each recipe: the encoder's
own test ACC, then the CNN trained on its confident (> 0.9) training clusters and scored on
the test split (trainer.evaluate.pseudo_label). Recipes are PseudoLabelConfig settings:
"default" is today's, "plain" the earlier 3 epochs of constant-rate Adam on unchanged images,
the others remove one part of the default. Writes bench/results/pseudo_label[-TAG].{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import data_root, mean_std, provenance, write  # noqa: E402

RECIPES = {
    "default": {},
    "plain": {"epochs": 3, "augment": False, "label_smoothing": 0.0, "schedule": "constant"},
    "no-augment": {"augment": False},
    "no-smoothing": {"label_smoothing": 0.0},
    "constant-lr": {"schedule": "constant"},
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--recipes", nargs="+", default=["default", "plain"], choices=list(RECIPES))
    ap.add_argument("--seed", type=int, default=0, help="the CNN's seed")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    return ap.parse_args()


def main() -> None:
    from infoedit import hub
    from trainer import data
    from trainer.evaluate.clustering import cluster_accuracy
    from trainer.evaluate.pseudo_label import PseudoLabelConfig, pseudo_label_accuracy
    from trainer.evaluate.clustering import predict_clusters

    args = parse_args()
    started = time.time()
    rows = []
    for folder in args.models:
        model = hub.from_pretrained(str(folder))
        ds = data.load(model.config.dataset, data_root(), progress=False)
        clusters, _ = predict_clusters(model, ds.test_images, scale=ds.scale)
        teacher, _ = cluster_accuracy(clusters.numpy(), ds.test_labels.numpy())
        row = {"model": str(folder), "dataset": ds.name, "teacher": teacher, "cnn": {}}
        for name in args.recipes:
            cfg = replace(PseudoLabelConfig(seed=args.seed), **RECIPES[name])
            res = pseudo_label_accuracy(model, ds.images, ds.test_images, ds.test_labels, cfg, ds.scale)
            row["cnn"][name] = {k: res.get(k) for k in ("accuracy", "fraction_selected", "seconds", "config")}
            print(f"{folder}: teacher {100 * teacher:.2f}%, {name} CNN {100 * res['accuracy']:.2f}% "
                  f"({res['seconds']:.0f} s)", flush=True)
        rows.append(row)
    summary = {name: mean_std([r["cnn"][name]["accuracy"] for r in rows]) for name in args.recipes}
    summary["teacher"] = mean_std([r["teacher"] for r in rows])
    prov = provenance(args, started)
    lines = ["# Pseudo-label CNN (Table 1's \"Proposed CNN\") under training recipes", "",
             "| model | teacher ACC | " + " | ".join(f"CNN: {n}" for n in args.recipes) + " |",
             "|---|---|" + "---|" * len(args.recipes)]
    for r in rows:
        lines.append(f"| {Path(r['model']).name} | {100 * r['teacher']:.2f} | "
                     + " | ".join(f"{100 * r['cnn'][n]['accuracy']:.2f}" for n in args.recipes) + " |")
    lines.append(f"| mean ± std ({len(rows)}) | {100 * summary['teacher']['mean']:.2f} ± "
                 f"{100 * summary['teacher']['std']:.2f} | "
                 + " | ".join(f"{100 * summary[n]['mean']:.2f} ± {100 * summary[n]['std']:.2f}"
                              for n in args.recipes) + " |")
    lines += ["", "Recipes (PseudoLabelConfig over the default): "
              + "; ".join(f"{n}: {json.dumps(RECIPES[n]) if RECIPES[n] else 'the default'}" for n in args.recipes)
              + f". Default: {json.dumps({k: v for k, v in vars(PseudoLabelConfig()).items()})}.",
              f"CNN seed {args.seed}; test ACC Hungarian-matched, no true label used in training.",
              f"Commit `{prov['commit']}`, {prov['date']}, `{prov['command']}`. "
              f"Total wall time {prov['wall_seconds'] / 60:.1f} min."]
    name = "pseudo_label" + (f"-{args.tag}" if args.tag else "")
    md, js = write(name, {**prov, "recipes": {n: RECIPES[n] for n in args.recipes}, "summary": summary,
                          "rows": rows}, "\n".join(lines), args.out)
    print("\n".join(lines))
    print(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
