"""Minutes of CPU training until MNIST (or Fashion-MNIST) test accuracy first reaches 90% and 95%, and the
accuracy the run had reached at given minutes (the learning curve).

    python bench/time_to_acc.py [--preset paper|cpu-fast] [--dataset mnist|fashion-mnist] [--budget-minutes 30]
                                [--seed 0] [--marks 3 15 30]
    python bench/time_to_acc.py --preset paper --resume RUN --budget-minutes 40 --marks 60 80 100

Trains with held-out accuracy logged every --eval-every steps (evaluation time is not
counted), then reads the curve from metrics.jsonl: at each of --marks minutes, the accuracy of
the last evaluation at or before it. --resume continues a run this script wrote (its folder,
given as --out before) for --budget-minutes more; the curve and the marks then count the run's
minutes from its start, in a new row with the whole curve. Data root: $INFOEDIT_DATA, default
../shared/data. Writes
bench/results/time_to_acc.{md,json} (one row per run, appended) and the curve as
time_to_acc-<preset>-seed<seed>.png (time_to_acc-<preset>-fashion-mnist-seed<seed>.png for Fashion-MNIST).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import commit, data_root, machine  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.loop import read_metrics  # noqa: E402
from trainer.plots import plot_curves  # noqa: E402
from trainer.train import PRESETS, resume_training, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def first_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """Minutes at the first logged point whose accuracy is >= target."""
    for seconds, acc in curve:
        if acc >= target:
            return round(seconds / 60, 2)
    return None


def reached_by(curve: list[tuple[float, float]], minutes: float) -> float | None:
    """The accuracy of the last logged point at or before ``minutes`` (None before the first)."""
    before = [acc for seconds, acc in curve if seconds <= 60 * minutes]
    return before[-1] if before else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu-fast", choices=sorted(PRESETS))
    ap.add_argument("--budget-minutes", type=float, default=30)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    ap.add_argument("--marks", type=float, nargs="*", default=[3, 15, 30, 60],
                    help="minutes at which to read the curve (those within the budget)")
    ap.add_argument("--out", type=Path, default=None, help="Model folder (default: a temp dir).")
    ap.add_argument("--resume", type=Path, default=None, help="Continue this run's folder (an earlier --out).")
    args = ap.parse_args()
    out = args.resume or args.out or Path(tempfile.mkdtemp(prefix="time_to_acc_"))
    tc = TrainConfig(epochs=1000, seed=args.seed, max_seconds=60 * args.budget_minutes, eval_every=args.eval_every,
                     resume=args.resume,
                     command=f"bench/time_to_acc.py --preset {args.preset} --dataset {args.dataset} --seed {args.seed}"
                             + (f" --resume {args.resume.name}" if args.resume else ""))
    run = resume_training if args.resume else train  # resuming: the run's own settings, checked against the preset
    run(args.dataset, out, data_root=str(data_root()), preset=args.preset, tc=tc, progress=sys.stderr.isatty())
    records = read_metrics(out)
    curve = [(r["seconds"], r["test_acc"]) for r in records if "test_acc" in r]
    minutes = round(curve[-1][0] / 60) if args.resume and curve else args.budget_minutes  # the run's, from its start
    row = {"preset": args.preset, "dataset": args.dataset, "seed": args.seed, "budget_minutes": minutes,
           "minutes_to_90": first_reach(curve, 0.90), "minutes_to_95": first_reach(curve, 0.95),
           "final_acc": curve[-1][1] if curve else None, "best_acc": max((a for _, a in curve), default=None),
           "steps": records[-1].get("steps", records[-1].get("step")), "commit": commit(), "machine": machine(),
           "at_minutes": {f"{m:g}": reached_by(curve, m) for m in args.marks if m <= minutes},
           "curve": curve}
    RESULTS.mkdir(parents=True, exist_ok=True)
    which = args.preset if args.dataset == "mnist" else f"{args.preset}-{args.dataset}"
    plot_curves({"test ACC": [(round(seconds / 60, 2), acc) for seconds, acc in curve]},
                RESULTS / f"time_to_acc-{which}-seed{args.seed}.png",
                f"{args.dataset} test accuracy, --preset {args.preset}, seed {args.seed}", x_name="minutes")
    log = RESULTS / "time_to_acc.json"
    rows = json.loads(log.read_text()) if log.exists() else []
    rows.append(row)
    log.write_text(json.dumps(rows, indent=2) + "\n")
    fmt = lambda v: "not reached" if v is None else v  # noqa: E731
    lines = ["| dataset | preset | seed | budget min | min to 90% | min to 95% | final ACC | best ACC | ACC at minutes "
             "| commit |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.get('dataset', 'mnist')} | {r['preset']} | {r['seed']} | {r['budget_minutes']} | "
              f"{fmt(r['minutes_to_90'])} | {fmt(r['minutes_to_95'])} | {r['final_acc']} | {r['best_acc']} | "
              f"{', '.join(f'{m}: {fmt(a)}' for m, a in r.get('at_minutes', {}).items()) or '-'} | {r['commit']} |"
              for r in rows]
    m = row["machine"]
    table = "\n".join([f"Time to test accuracy, {m['processor']} x{m['cpu_count']}, torch {m['torch']}", "", *lines])
    (RESULTS / "time_to_acc.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
