"""Does the real-data information pick the runs whose categories are the classes? Label-free.

    python bench/restarts.py --from-runs RUN ...          # any runs with real_mi_weight > 0
    python bench/restarts.py --seeds 10 20 [--restarts 3]  # train `--preset cpu-fast --restarts R`

Table 1: per run, the epoch-mean real-data MI (mi_real, lower = more information) after each
epoch, beside the held-out accuracy (labels are used only here, to score). Table 2: runs
trained with --restarts: each probe's mi_real, the one chosen, and the final accuracy.
Writes bench/results/restarts.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import data_root, provenance, run_dir, write  # noqa: E402


def epochs_of(folder: Path) -> list[dict]:
    from trainer.loop import read_metrics

    return [r for r in read_metrics(folder) if "epoch" in r and "mi_real" in r]


def train_with_restarts(seed: int, restarts: int, epochs: int, root: Path | None) -> Path:
    from trainer.config import TrainConfig
    from trainer.train import train

    out = run_dir(root, f"restarts-seed{seed}")
    train("mnist", out, data_root=data_root(), preset="cpu-fast", restarts=restarts, progress=False,
          tc=TrainConfig(epochs=epochs, seed=seed, command=f"bench/restarts.py (seed {seed}, {restarts} restarts)"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-runs", type=Path, nargs="+", default=[])
    ap.add_argument("--seeds", type=int, nargs="*", default=[])
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--runs", type=Path, help="Keep trained runs here (default: a temp folder).")
    args = ap.parse_args()
    started = time.time()
    folders = list(args.from_runs) + [train_with_restarts(s, args.restarts, args.epochs, args.runs) for s in args.seeds]
    lines = ["Real-data MI per epoch (lower = more information) against held-out MNIST accuracy", "",
             "| run | mi_real by epoch | ACC by epoch |", "|---|---|---|"]
    rows, chosen = [], []
    for f in folders:
        ep = epochs_of(f)
        name = f"{f.parent.name}/{f.name}"  # tables name their runs alike: keep the parent folder
        rows.append({"run": name, "mi_real": [r["mi_real"] for r in ep], "acc": [r.get("test_acc") for r in ep]})
        lines.append(f"| {name} | " + ", ".join(f"{v:.3f}" for v in rows[-1]["mi_real"]) + " | "
                     + ", ".join(f"{100 * a:.1f}%" for a in rows[-1]["acc"] if a is not None) + " |")
        choice = f / "restarts" / "choice.json"
        if choice.is_file():
            probes = json.loads(choice.read_text())
            probe_acc = {s: epochs_of(f / "restarts" / f"seed{s}")[-1].get("test_acc") for s in probes}
            chosen.append({"run": name, "probes": probes, "probe_acc": probe_acc, "final_acc": rows[-1]["acc"][-1]})
    if chosen:
        lines += ["", "Runs with --restarts: each probe's mi_real after its 2 epochs (ACC there), the choice, "
                  "the final ACC", "", "| run | probes | final ACC |", "|---|---|---|"]
        for c in chosen:
            probes = ", ".join(f"seed {s}: {p['mi_real']:.3f} ({100 * c['probe_acc'][s]:.1f}%)"
                               + (" **chosen**" if p["chosen"] else "") for s, p in c["probes"].items())
            lines.append(f"| {c['run']} | {probes} | {100 * c['final_acc']:.2f}% |")
    markdown = "\n".join(lines)
    print(markdown)
    write("restarts", {**provenance(args, started), "runs": rows, "restarts": chosen}, markdown + "\n")


if __name__ == "__main__":
    main()
