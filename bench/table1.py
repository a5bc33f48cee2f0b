"""Table 1: unsupervised classification accuracy on MNIST and Fashion-MNIST, over seeds.

    python bench/table1.py --seeds 5 --budget-minutes 30 --datasets mnist fashion-mnist
    python bench/table1.py --preset cpu-fast --max-steps 2811 --jobs 2 --seeds 5 --datasets mnist
    python bench/table1.py --preset cpu-fast --restarts 3 --set augment=affine+shear --tag shear ...

Per dataset and seed: train the preset's model (trainer.train.train; `paper`: InfoVAEGAN as
the paper, `cpu-fast`: our tuned InfoVAEGAN2) for as many steps as the time budget allows
(never more than the dataset's default epochs) or --max-steps, then evaluate on the test split:
argmax q(s|x) Hungarian-matched ACC, NMI, ARI, and Table 1's "Proposed CNN" (a small CNN
trained on the training images whose confidence > 0.9, labels = inferred clusters).
Writes bench/results/table1.{md,json}: mean ± std over seeds, per-seed values, steps actually
trained, wall time, commit and machine. The budget is a target; the wall time is measured.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import common

from trainer.evaluate.command import evaluate
from trainer.evaluate.pseudo_label import PseudoLabelConfig
from trainer.config import TrainConfig
from trainer.train import PRESETS, defaults_for, train

DATASETS = ("mnist", "fashion-mnist")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget-minutes", type=float, default=30.0, help="whole run, all datasets and seeds")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--max-steps", type=int, default=None, help="train this many steps; no budget calibration")
    ap.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--width", type=float, default=None, help="network width (default: the preset's)")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                    help="a model-config field over the preset (repeatable), as `infoedit train --set`")
    ap.add_argument("--restarts", type=int, default=1, help="as `infoedit train --restarts` (probes of 2 epochs)")
    ap.add_argument("--tag", default="", help="added to the results' file name")
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained at once, one thread each")
    ap.add_argument("--train-share", type=float, default=0.7, help="part of each run's budget spent training")
    ap.add_argument("--cnn-epochs", type=int, default=PseudoLabelConfig.epochs)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    ap.add_argument("--runs", type=Path, default=None, help="keep the trained model folders here")
    args = ap.parse_args()
    from infoedit.cli import parse_sets

    args.overrides = {"width": args.width, **parse_sets(args.settings)}
    return args


def trainer_for(args, dataset: str, seed: int):
    def run(folder: Path, max_steps: int) -> dict:
        # the model card names the `infoedit train` command that trains the same run
        sets = [f"--set {k}={v}" for k, v in args.overrides.items() if v is not None]
        restarts = [f"--restarts {args.restarts}"] if args.restarts > 1 else []
        command = " ".join(["infoedit train", dataset, "--preset", args.preset, *sets, *restarts,
                            "--max-steps", str(max_steps), "--seed", str(seed), "--device", args.device])
        tc = TrainConfig(seed=seed, device=args.device, max_steps=max_steps, command=command)
        return train(dataset, folder, data_root=common.data_root(), overrides=args.overrides,
                     tc=tc, progress=False, preset=args.preset, restarts=args.restarts)
    return run


def plan_steps(args, dataset: str, per_run: float) -> tuple[int, dict]:
    """Training steps that fit the budget's training share, and how that was worked out."""
    if args.max_steps:
        return args.max_steps, {"max_steps": args.max_steps, "from": "--max-steps"}
    width = args.width or PRESETS[args.preset]["model"].get("width", 1.0)
    per_step, fixed = common.calibrate(trainer_for(args, dataset, 0), dataset, width, args.device)
    steps = int((per_run * args.train_share - fixed) / per_step)
    if steps < 1:
        raise SystemExit(f"{dataset}: a budget of {per_run:.0f} s per run cannot train one step "
                         f"({per_step:.2f} s/step + {fixed:.0f} s fixed); raise --budget-minutes")
    return steps, {"max_steps": steps, "from": "budget", "seconds_per_step": round(per_step, 3),
                   "fixed_seconds": round(fixed, 1), "budget_seconds_per_run": round(per_run, 1)}


def one_seed(args, dataset: str, seed: int, max_steps: int, cnn_seconds: float | None) -> dict:
    if args.jobs > 1:  # a worker process among --jobs: one thread each
        import torch

        torch.set_num_threads(1)
    folder = common.run_dir(args.runs, f"{dataset}-{args.preset}-seed{seed}")
    start = time.time()
    try:
        record = trainer_for(args, dataset, seed)(folder, max_steps)
        trained = time.time()
        cnn = PseudoLabelConfig(seed=seed, epochs=args.cnn_epochs, max_seconds=cnn_seconds)
        res = evaluate(str(folder), dataset=dataset, data=common.data_root(), split="test", device=args.device,
                       seed=seed, pseudo_label_cnn=True, pseudo_label=cnn, out=folder if args.runs else None)
        choice = folder / "restarts" / "choice.json"
        probes = json.loads(choice.read_text()) if choice.is_file() else None
    finally:
        common.cleanup(folder, keep=args.runs is not None)
    p = res["pseudo_label_cnn"]
    return {"seed": seed, "accuracy": res["accuracy"], "nmi": res["nmi"], "ari": res["ari"],
            "cnn_accuracy": p["accuracy"], "cluster_to_label": res["cluster_to_label"],
            "cnn": {k: p.get(k) for k in ("n_selected", "fraction_selected", "steps", "epochs_done", "stopped_by",
                                          "skipped") if k in p},
            "steps": record["steps"], "epochs_done": round(record["epochs_done"], 3), "probes": probes,
            "train_seconds": round(trained - start, 1), "eval_seconds": round(time.time() - trained, 1)}


def markdown(rows: dict, seeds_of: dict, prov: dict, args) -> str:
    preset, sets = args.preset, " ".join(f"--set {s}" for s in args.settings)
    restarts = f", best of {args.restarts} probes per seed (--restarts)" if args.restarts > 1 else ""
    lines = ["# Table 1: unsupervised classification accuracy (%), mean ± std over seeds", "",
             f"Preset `{preset}` ({PRESETS[preset]['family']}){' ' + sets if sets else ''}{restarts}.", "",
             "| dataset | ACC | Proposed CNN (pseudo-labels) | NMI | ARI | seeds | "
             "steps trained (epochs of default) | wall time |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        default = defaults_for(name)["epochs"]
        n, cnn = r["accuracy"]["n"], r["cnn_accuracy"]
        cnn_text = common.pct(cnn) if cnn["n"] else "n/a"
        cnn_text += f" ({cnn['n']}/{n} seeds)" if cnn["n"] < n else ""
        lines.append(f"| {name} | {common.pct(r['accuracy'])} | {cnn_text} | "
                     f"{r['nmi']['mean']:.3f} ± {r['nmi']['std']:.3f} | "
                     f"{r['ari']['mean']:.3f} ± {r['ari']['std']:.3f} | "
                     f"{r['accuracy']['n']} | {r['steps']} ({r['epochs_done']:.2f} of {default}) | "
                     f"{r['wall_seconds'] / 60:.1f} min |")
    lines += ["", "Per seed (ACC / CNN ACC, %):"]
    for name, r in rows.items():
        pairs = ", ".join(f"{100 * s['accuracy']:.2f} / " + ("n/a" if s["cnn_accuracy"] is None
                                                              else f"{100 * s['cnn_accuracy']:.2f}")
                          for s in seeds_of[name])
        lines.append(f"- {name}: {pairs}")
    m = prov["machine"]
    lines += ["", f"Commit `{prov['commit']}`, {prov['date']}, `{prov['command']}`.",
              f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}"
              f"{', ' + m['cuda_device'] if 'cuda_device' in m else ''}. Total wall time "
              f"{prov['wall_seconds'] / 60:.1f} min.",
              "Training stops at the time budget (or --max-steps): a run shorter than the default epochs is not the paper's "
              "setting, and its numbers are not comparable with the paper's."]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    started = time.time()
    per_run = args.budget_minutes * 60 / (len(args.datasets) * args.seeds)
    rows, details = {}, {}
    for dataset in args.datasets:
        t0 = time.time()
        steps, plan = plan_steps(args, dataset, per_run)
        # Under a time budget the CNN gets part of it (the rest: encoder passes over the data);
        # with --max-steps there is no budget and it trains its --cnn-epochs in full.
        cnn_seconds = None if args.max_steps else per_run * (1 - args.train_share) / 2
        seeds = []
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            # with --restarts R a seed's probes are seeds seed..seed+R-1: space the seeds so no two share a probe
            futures = [pool.submit(one_seed, args, dataset, i * args.restarts, steps, cnn_seconds)
                       for i in range(args.seeds)]
            for future in futures:
                s = future.result()
                seeds.append(s)
                cnn = "n/a" if s["cnn_accuracy"] is None else f"{100 * s['cnn_accuracy']:.2f}%"
                print(f"{dataset} seed {s['seed']}: ACC {100 * s['accuracy']:.2f}%  CNN {cnn}  "
                      f"({s['steps']} steps, {s['train_seconds'] + s['eval_seconds']:.0f} s)", flush=True)
        rows[dataset] = {**{k: common.mean_std([s[k] for s in seeds]) for k in ("accuracy", "nmi", "ari")},
                         # a seed whose model is confident on no image has no CNN score; say how many did
                         "cnn_accuracy": common.mean_std([s["cnn_accuracy"] for s in seeds
                                                          if s["cnn_accuracy"] is not None]),
                         "steps": seeds[0]["steps"], "epochs_done": seeds[0]["epochs_done"],
                         "wall_seconds": round(time.time() - t0, 1)}
        details[dataset] = {"plan": plan, "seeds": seeds, "width": args.width, "preset": args.preset}
    prov = common.provenance(args, started)
    payload = {**prov, "table": "Table 1 (Ye & Bors 2021): unsupervised classification accuracy",
               "protocol": {"split": "test", "pseudo_label_threshold": PseudoLabelConfig.threshold,
                            "cnn_epochs": args.cnn_epochs}, "results": rows, "details": details}
    text = markdown(rows, {d: v["seeds"] for d, v in details.items()}, prov, args)
    name = f"table1-{args.preset}{'-' + args.tag if args.tag else ''}-{'-'.join(args.datasets)}"
    md, js = common.write(name, payload, text, args.out)
    print(text)
    print(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
