"""InfoVAEGAN against its baselines on the same networks, data and budget, over seeds.

    python bench/compare.py --seeds 3 --budget-minutes 120 --datasets mnist fashion-mnist \
        --models infovaegan infogan ali beta-vae jointvae [--width 0.5] [--max-steps N]

The paper (Sec. 5.2) compares "with the same network architecture and hyperparameter
configurations"; here every model is built from nets.py at one --width, with the dataset's
defaults (K, c, z) and trainer.loop's learning rates, and trains on the same data for the same
time: the budget's training share split evenly over datasets x models x seeds, enforced by
TrainConfig.max_seconds (so a faster model takes more steps in it). --max-steps gives every run
the same number of steps instead. beta-VAE has no discrete code, so its continuous code gets
K + c dims: every model's code [s, c] is then as wide.

Per run, on the test split: unsupervised ACC (Hungarian-matched argmax q(s|x); not defined for
beta-VAE), the FactorVAE score (dsprites runs only), reconstruction MSE per pixel where it is
defined (models that decode codes without noise: the VAEs and InfoVAEGAN2; for the others the
JSON keeps evaluate's G(z = 0, s, c) number, marked undefined), and training img/s.
Writes bench/results/compare.{md,json} with commit and machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common

from trainer.evaluate.command import evaluate
from trainer.evaluate.factorvae import FactorVAEProtocol
from trainer.config import TrainConfig
from trainer.train import defaults_for, train

DATASETS = ("mnist", "fashion-mnist", "dsprites")
MODELS = ("infovaegan", "infovaegan2", "infogan", "ali", "beta-vae", "jointvae")
NOISELESS = ("infovaegan2", "beta-vae", "jointvae")  # reconstruction from (s, c) alone is defined
METRICS = ("accuracy", "factorvae", "reconstruction_mse", "img_per_s")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget-minutes", type=float, default=120.0, help="whole run: all datasets, models, seeds")
    ap.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"], choices=DATASETS)
    ap.add_argument("--models", nargs="+", default=["infovaegan", "infogan", "ali", "beta-vae", "jointvae"],
                    choices=MODELS)
    ap.add_argument("--max-steps", type=int, default=None, help="train every run this many steps (no time budget)")
    ap.add_argument("--width", type=float, default=1.0, help="network width (1.0 = the paper's networks)")
    ap.add_argument("--train-share", type=float, default=0.7, help="part of each run's budget spent training")
    ap.add_argument("--train-votes", type=int, default=10_000, help="FactorVAE protocol (dsprites runs)")
    ap.add_argument("--eval-votes", type=int, default=5_000)
    ap.add_argument("--variance-samples", type=int, default=10_000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default bench/results)")
    ap.add_argument("--runs", type=Path, default=None, help="keep the trained model folders here")
    return ap.parse_args()


def overrides(args, dataset: str, model: str) -> dict:
    settings = {"width": args.width}
    if model == "beta-vae":  # no s: give c the width of [s, c]
        d = defaults_for(dataset)
        settings["c_dim"] = d["n_classes"] + d["c_dim"]
    return settings


def one_run(args, dataset: str, model: str, seed: int, train_seconds: float | None) -> dict:
    folder = common.run_dir(args.runs, f"{dataset}-{model}-seed{seed}")
    start = time.time()
    tc = TrainConfig(seed=seed, device=args.device, max_steps=args.max_steps, max_seconds=train_seconds,
                     command=f"bench/compare.py ({dataset}, {model}, seed {seed})")
    protocol = FactorVAEProtocol(n_train_votes=args.train_votes, n_eval_votes=args.eval_votes,
                                 n_variance_samples=args.variance_samples, seed=seed)
    try:
        record = train(dataset, folder, model, data_root=common.data_root(),
                       overrides=overrides(args, dataset, model), tc=tc, progress=False)
        trained = time.time()
        res = evaluate(str(folder), dataset=dataset, data=common.data_root(), split="test", device=args.device,
                       seed=seed, factorvae=dataset == "dsprites", factorvae_protocol=protocol)
    finally:
        common.cleanup(folder, keep=args.runs is not None)
    return {"seed": seed, "accuracy": res.get("accuracy"), "nmi": res.get("nmi"),
            "factorvae": res["factorvae"]["eval_accuracy"] if "factorvae" in res else None,
            "reconstruction_mse": res.get("reconstruction_mse"), "reconstruction_defined": model in NOISELESS,
            "img_per_s": record["img_per_s"], "steps": record["steps"],
            "epochs_done": round(record["epochs_done"], 3), "evaluated_on": res.get("evaluated_on"),
            "train_seconds": round(trained - start, 1), "eval_seconds": round(time.time() - trained, 1)}


def summarise(runs: list[dict], model: str) -> dict:
    """mean ± std over seeds of each metric that is defined for the model (else n = 0)."""
    out = {}
    for key in METRICS:
        values = [r[key] for r in runs if r[key] is not None]
        if key == "reconstruction_mse" and model not in NOISELESS:
            values = []
        out[key] = common.mean_std(values)
    out["steps"] = common.mean_std([r["steps"] for r in runs])
    return out


def cell(stat: dict, fmt: str, scale: float = 1.0) -> str:
    if not stat["n"]:
        return "—"
    return f"{format(scale * stat['mean'], fmt)} ± {format(scale * stat['std'], fmt)}"


def markdown(rows: dict, args, prov: dict) -> str:
    how = (f"{args.max_steps} steps per run" if args.max_steps else
           f"{args.train_share:.0%} of {args.budget_minutes:g} min over {len(args.datasets)} dataset(s) x "
           f"{len(args.models)} model(s) x {args.seeds} seed(s) of training time per run")
    lines = ["# InfoVAEGAN and baselines: same networks, data and budget (mean ± std over seeds)", "",
             "| dataset | model | ACC (%) | FactorVAE | test rec. MSE | train img/s | steps | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for (dataset, model), r in rows.items():
        lines.append(f"| {dataset} | {model} | {cell(r['accuracy'], '.2f', 100)} | {cell(r['factorvae'], '.3f')} | "
                     f"{cell(r['reconstruction_mse'], '.4f')} | {cell(r['img_per_s'], '.0f')} | "
                     f"{r['steps']['mean']:.0f} | {r['img_per_s']['n']} |")
    m = prov["machine"]
    lines += ["", f"Budget: {how}; width {args.width}; the dataset defaults of trainer/train.py (beta-VAE: "
              "c = K + c dims). ACC: Hungarian-matched argmax q(s|x) on the test split (dSprites: the "
              "shape factor); not defined for beta-VAE (no discrete code). FactorVAE: dSprites only, "
              f"{args.train_votes} / {args.eval_votes} votes, mu_c. Reconstruction MSE per pixel, from "
              "(argmax s, mu_c): defined only for decoders without noise (VAEs, InfoVAEGAN2).",
              f"Commit `{prov['commit']}`, {prov['date']}, `{prov['command']}`.",
              f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}"
              f"{', ' + m['cuda_device'] if 'cuda_device' in m else ''}. Total wall time "
              f"{prov['wall_seconds'] / 60:.1f} min.",
              "Runs stop at the budget (or --max-steps), far short of the paper's epochs: not the paper's setting."]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    started = time.time()
    n_runs = len(args.datasets) * len(args.models) * args.seeds
    train_seconds = None if args.max_steps else args.budget_minutes * 60 * args.train_share / n_runs
    rows, details = {}, {}
    for dataset in args.datasets:
        for model in args.models:
            runs = []
            for seed in range(args.seeds):
                r = one_run(args, dataset, model, seed, train_seconds)
                runs.append(r)
                acc = "—" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%"
                print(f"{dataset} {model} seed {seed}: ACC {acc}, {r['steps']} steps, {r['img_per_s']:.0f} img/s "
                      f"({r['train_seconds'] + r['eval_seconds']:.0f} s)", flush=True)
            rows[(dataset, model)] = summarise(runs, model)
            details[f"{dataset}/{model}"] = {"overrides": overrides(args, dataset, model), "runs": runs}
    prov = common.provenance(args, started)
    payload = {**prov, "table": "InfoVAEGAN vs InfoGAN, ALI, beta-VAE, JointVAE on the same networks",
               "plan": {"train_seconds_per_run": train_seconds, "max_steps": args.max_steps, "width": args.width},
               "results": {f"{d}/{m}": r for (d, m), r in rows.items()}, "details": details}
    text = markdown(rows, args, prov)
    md, js = common.write("compare", payload, text, args.out)
    print(text)
    print(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
