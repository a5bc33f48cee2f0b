"""Table 2: FactorVAE disentanglement score on dSprites, over seeds.

    python bench/table2.py --seeds 5 --budget-minutes 60 [--real-subset]
    python bench/table2.py --from-runs runs/dsprites-a runs/dsprites-b [--real-subset] [--tag T]
                           [--train-votes 10000 --eval-votes 5000 --variance-samples 10000]

Per seed: train InfoVAEGAN on procedural dSprites (trainer.train.train) for what the budget
leaves after the metric's own cost, then score it with disentanglement_lib's FactorVAE
protocol for each representation (mu_c, and mu_c + softmax(s)), on procedural dSprites and,
with --real-subset, on the real 3x6x10x16x16 grid. Writes bench/results/table2[-TAG].{md,json}:
the mean over the runs, and a row per run with its settings that differ from the paper's.
Fewer votes than the protocol's 10,000 / 5,000 make a CPU run fit; the table says so.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields
import time
from pathlib import Path

import common

from infoedit import hub
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig
from trainer.evaluate.command import DSPRITES_GRID
from trainer.evaluate.factorvae import FactorVAEProtocol, dsprites_source, factorvae_score, model_representation
from trainer.config import TrainConfig
from trainer.loop import resolve_device
from trainer.train import defaults_for, train

REPRESENTATIONS = ("mu", "mu+softmax")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget-minutes", type=float, default=60.0, help="whole run, all seeds")
    ap.add_argument("--max-steps", type=int, default=None, help="train this many steps; no budget calibration")
    ap.add_argument("--width", type=float, default=1.0, help="network width (1.0 = the paper's networks)")
    ap.add_argument("--train-votes", type=int, default=10_000)
    ap.add_argument("--eval-votes", type=int, default=5_000)
    ap.add_argument("--variance-samples", type=int, default=10_000)
    ap.add_argument("--real-subset", action="store_true", help="also score on the real dSprites grid")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    ap.add_argument("--tag", default="", help="added to the results' file name")
    ap.add_argument("--runs", type=Path, default=None, help="keep the trained model folders here")
    ap.add_argument("--from-runs", type=Path, nargs="+", default=None,
                    help="score these trained dSprites model folders instead of training")
    return ap.parse_args()


def sources(args) -> dict:
    found = {"procedural": dsprites_source()}
    if args.real_subset:
        path = Path(common.data_root()) / DSPRITES_GRID
        if not path.is_file():
            raise SystemExit(f"{path}: not found; set INFOEDIT_DATA to the folder holding dsprites/")
        found["real grid"] = dsprites_source(path)
    return found


def protocol(args, seed: int) -> FactorVAEProtocol:
    return FactorVAEProtocol(n_train_votes=args.train_votes, n_eval_votes=args.eval_votes,
                             n_variance_samples=args.variance_samples, seed=seed)


def score_all(model, args, found: dict, seed: int) -> dict:
    out = {}
    for rep in REPRESENTATIONS:
        for name, (sizes, observe, _what) in found.items():
            represent = model_representation(model, rep)
            out[f"{rep} / {name}"] = factorvae_score(sizes, observe, represent, protocol(args, seed))
    return out


def eval_seconds(args, found: dict) -> float:
    """The metric's cost per seed, timed on an untrained model of the same size (cost is the same)."""
    settings = defaults_for("dsprites")
    settings.pop("epochs")
    model = InfoVAEGAN(InfoVAEGANConfig(width=args.width, dataset="dsprites", **settings))
    model.to(resolve_device(args.device))
    small = FactorVAEProtocol(n_train_votes=16, n_eval_votes=16, n_variance_samples=1024)
    sizes, observe, _ = found["procedural"]
    start = time.time()
    factorvae_score(sizes, observe, model_representation(model, "mu"), small)
    per_image = (time.time() - start) / (1024 + 32 * 64)
    images = args.variance_samples + (args.train_votes + args.eval_votes) * 64
    return per_image * images * len(REPRESENTATIONS) * len(found)


def one_seed(args, seed: int, max_steps: int, found: dict) -> dict:
    folder = common.run_dir(args.runs, f"dsprites-seed{seed}")
    start = time.time()
    tc = TrainConfig(seed=seed, device=args.device, max_steps=max_steps, command=f"bench/table2.py (seed {seed})")
    try:
        train("dsprites", folder, overrides={"width": args.width}, tc=tc, progress=False)
        trained = time.time()
        result = score_run(args, folder, found)
    finally:
        common.cleanup(folder, keep=args.runs is not None)
    return {**result, "train_seconds": round(trained - start, 1)}


def score_run(args, folder: Path, found: dict) -> dict:
    """The FactorVAE scores of one trained model folder, with its seed and training length."""
    from trainer.loop import read_metrics

    start = time.time()
    records = [r for r in read_metrics(folder) if "epochs_done" in r] if (folder / "metrics.jsonl").is_file() else []
    if not (folder / "train_config.json").is_file() or not records:
        raise SystemExit(f"{folder}: not a finished training run (no train_config.json or no epoch in metrics.jsonl)")
    seed = json.loads((folder / "train_config.json").read_text())["seed"]
    record = records[-1]
    model = hub.from_pretrained(str(folder), device=str(resolve_device(args.device)))
    scores = score_all(model, args, found, seed)
    return {"seed": seed, "run": str(folder), "model": model.config.model, "settings": changed_settings(model.config),
            "scores": {k: v["eval_accuracy"] for k, v in scores.items()},
            "details": {k: {f: v[f] for f in ("train_accuracy", "num_active_dims", "code_dim", "classifier")
                            if f in v} for k, v in scores.items()},
            "steps": record["steps"], "epochs_done": round(record["epochs_done"], 4), "width": model.config.width,
            "eval_seconds": round(time.time() - start, 1)}


def changed_settings(config) -> dict:
    """The model-config fields that differ from the paper's dSprites model of the same family."""
    known = {f.name for f in fields(config)}  # dataset defaults a family has no field for (a VAE's z_dim)
    paper = asdict(type(config)(**{k: v for k, v in defaults_for("dsprites").items() if k in known},
                                model=config.model, dataset=config.dataset))
    return {k: v for k, v in asdict(config).items() if paper.get(k) != v}


def markdown(results: dict, seeds: list[dict], args, prov: dict) -> str:
    full = (args.train_votes, args.eval_votes, args.variance_samples) == (10_000, 5_000, 10_000)
    votes = (f"{args.train_votes} train / {args.eval_votes} eval votes, variance from {args.variance_samples}"
             + ("" if full else " (fewer than the protocol's 10,000 / 5,000 / 10,000)"))
    if len({json.dumps([s["model"], s["settings"], s["steps"]], sort_keys=True) for s in seeds}) > 1:
        lines, results = ["# FactorVAE disentanglement score on dSprites, per run (the runs differ in settings "
                          "or steps)"], {}  # a mean over different settings would mean nothing
    else:
        lines = ["# Table 2: FactorVAE disentanglement score on dSprites, mean ± std over seeds", "",
                 "| representation / data | FactorVAE score | active code dims (mean over seeds) | seeds |",
                 "|---|---|---|---|"]
    for key, stat in results.items():
        active = sum(s["details"][key]["num_active_dims"] for s in seeds) / len(seeds)
        lines.append(f"| {key} | {stat['mean']:.3f} ± {stat['std']:.3f} | "
                     f"{active:.1f} of {seeds[0]['details'][key]['code_dim']} | {stat['n']} |")
    lines += ["", "| run | seed | model | settings (besides the paper's) | steps (epochs) | "
              + " | ".join(seeds[0]["scores"]) + " |", "|---|---|---|---|---|" + "---|" * len(seeds[0]["scores"])]
    for s in seeds:
        changed = ", ".join(f"{k} {v}" for k, v in s["settings"].items()) or "the paper's"
        lines.append(f"| {Path(s['run']).name} | {s['seed']} | {s['model']} | {changed} | "
                     f"{s['steps']} ({s['epochs_done']:.2f}) | " + " | ".join(f"{v:.3f}" for v in s["scores"].values())
                     + " |")
    m = prov["machine"]
    lines += ["", f"Protocol: disentanglement_lib FactorVAE (batch 64, prune std < 0.05, majority vote), "
              f"{votes}. "
              "A code with no dim of std >= 0.05 scores 0, as in disentanglement_lib.",
              f"Training: `infoedit train dsprites` defaults to {defaults_for('dsprites')['epochs']} epoch(s) of "
              "the 737,280 images at width 1.0; the runs' steps and settings are in the table above.",
              f"Commit `{prov['commit']}`, {prov['date']}, `{prov['command']}`.",
              f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}. "
              f"Total wall time {prov['wall_seconds'] / 60:.1f} min."]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    started = time.time()
    found = sources(args)
    if args.from_runs:
        seeds = [score_run(args, folder, found) for folder in args.from_runs]
        return report(args, started, {"from": "--from-runs"}, seeds, found)
    per_run = args.budget_minutes * 60 / args.seeds
    plan = {"max_steps": args.max_steps, "from": "--max-steps"}
    if not args.max_steps:
        metric = eval_seconds(args, found)

        def run(folder: Path, steps: int) -> dict:
            tc = TrainConfig(seed=0, device=args.device, max_steps=steps)
            return train("dsprites", folder, overrides={"width": args.width}, tc=tc, progress=False)

        per_step, fixed = common.calibrate(run, "dsprites", args.width, args.device)
        steps = int((per_run - metric - fixed) / per_step)
        if steps < 1:
            raise SystemExit(f"the metric alone takes about {metric / 60:.1f} min per seed of the "
                             f"{per_run / 60:.1f} min budget; pass fewer --train-votes/--eval-votes "
                             "or more minutes")
        plan = {"max_steps": steps, "from": "budget", "seconds_per_step": round(per_step, 3),
                "fixed_seconds": round(fixed, 1), "metric_seconds_estimate": round(metric, 1),
                "budget_seconds_per_seed": round(per_run, 1)}
    seeds = []
    for seed in range(args.seeds):
        s = one_seed(args, seed, plan["max_steps"], found)
        seeds.append(s)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in s["scores"].items())
              + f" ({s['steps']} steps, {s['train_seconds'] + s['eval_seconds']:.0f} s)", flush=True)
    report(args, started, plan, seeds, found)


def report(args, started: float, plan: dict, seeds: list[dict], found: dict) -> None:
    results = {k: common.mean_std([s["scores"][k] for s in seeds]) for k in seeds[0]["scores"]}
    prov = common.provenance(args, started)
    payload = {**prov, "table": "Table 2 (Ye & Bors 2021): FactorVAE disentanglement score on dSprites",
               "protocol": {**asdict(protocol(args, 0)), "seed": "the run's seed",
                            "data": {k: v[2] for k, v in found.items()}},
               "plan": plan, "results": results, "seeds": seeds}
    name = "table2" + (f"-{args.tag}" if args.tag else "")
    md, js = common.write(name, payload, markdown(results, seeds, args, prov), args.out)
    print(markdown(results, seeds, args, prov))
    print(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
