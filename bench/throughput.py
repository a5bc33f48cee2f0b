"""Training throughput per model config, against the machine's own sgemm speed.

    python bench/throughput.py [--steps 30] [--batch-size 64] [--widths 1.0 0.5] [--adam loop fused]
                               [--compile no yes] [--tag compile]

For each config: img/s of `train_step`, the FLOPs of one step (torch.utils.flop_counter),
achieved GFLOP/s, and the ratio to a float32 matmul (sgemm) measured in the same run, so the
numbers survive a noisy, shared machine. Writes bench/results/throughput.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from infoedit.models.infovaegan import InfoVAEGAN, InfoVAEGANConfig  # noqa: E402
from trainer.infovaegan import make_optimizers, train_step  # noqa: E402
from trainer.config import ADAM_IMPLS, TrainConfig  # noqa: E402
from trainer.loop import compile_networks, memory_format  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {"28px-mnist": dict(image_size=28, channels=1, z_dim=62, n_classes=10, c_dim=2),
           "64px-rgb": dict(image_size=64, channels=3, z_dim=100, n_classes=10, c_dim=10, nets="dcgan"),
           "64px-rgb-authors": dict(image_size=64, channels=3, z_dim=100, n_classes=10, c_dim=10, nets="authors")}


def sgemm_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9


def measure(name: str, width: float, batch: int, steps: int, adam: str, layout: str, compiled: bool = False) -> dict:
    torch.manual_seed(0)
    tc = TrainConfig(adam=adam, memory_format=layout)
    model = InfoVAEGAN(InfoVAEGANConfig(width=width, **CONFIGS[name]))
    fmt = memory_format(tc, model.config.image_size)
    model.to(memory_format=fmt)
    opt, gen = make_optimizers(model, tc), torch.Generator().manual_seed(0)
    cfg = model.config
    x = torch.rand(batch, cfg.channels, cfg.image_size, cfg.image_size).to(memory_format=fmt)
    with FlopCounterMode(display=False) as counter:
        train_step(model, opt, x, gen)
    flops = counter.get_total_flops()
    if compiled:  # after counting: the same FLOPs, now through TorchInductor's kernels
        compile_networks(model)
    for _ in range(3):  # (compiling happens here, untimed)
        train_step(model, opt, x, gen)
    gemm_before = sgemm_gflops()
    t = time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, x, gen)
    seconds = time.perf_counter() - t
    gemm = (gemm_before + sgemm_gflops()) / 2
    achieved = flops * steps / seconds / 1e9
    return {"config": name, "width": width, "batch": batch, "adam": adam, "layout": str(fmt).split(".")[-1],
            "compile": compiled,
            "img_per_s": round(batch * steps / seconds, 1),
            "gflop_per_step": round(flops / 1e9, 2), "achieved_gflops": round(achieved, 1),
            "sgemm_gflops": round(gemm, 1), "ratio_to_sgemm": round(achieved / gemm, 3)}


def training_peak_rss_mib(data: str, steps: int = 30) -> float:
    """Peak RSS of a real `infoedit train mnist` child process (all of MNIST in memory)."""
    import resource
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "trainer", "mnist", "--data", data, "--max-steps", str(steps),
                        "--out", out, "--quiet"], check=True, capture_output=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--widths", type=float, nargs="+", default=[1.0])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--adam", nargs="+", default=["fused"], choices=list(ADAM_IMPLS),
                    help="Adam implementations to compare (TrainConfig.adam).")
    ap.add_argument("--memory-format", nargs="+", default=["auto"], choices=["auto", "channels_last", "contiguous"],
                    help="Memory layouts to compare (TrainConfig.memory_format).")
    ap.add_argument("--compile", nargs="+", default=["no"], choices=["no", "yes"],
                    help="Compare eager networks with torch.compile'd ones (TrainConfig.compile).")
    ap.add_argument("--tag", default="", help="added to the results' file name (throughput-TAG.md)")
    ap.add_argument("--rss", action="store_true", help="Also measure peak RSS of MNIST training (needs the data).")
    args = ap.parse_args()
    rows = [measure(c, w, args.batch_size, args.steps, a, m, k == "yes") for c in args.configs for w in args.widths
            for a in args.adam for m in args.memory_format for k in args.compile]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    machine = f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip()
    header = ("| config | width | batch | adam | layout | compile | img/s | GFLOP/step | GFLOP/s | sgemm GFLOP/s "
              "| ratio |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [f"| {r['config']} | {r['width']} | {r['batch']} | {r['adam']} | {r['layout']} | "
             f"{'yes' if r['compile'] else 'no'} | {r['img_per_s']} | "
             f"{r['gflop_per_step']} | "
             f"{r['achieved_gflops']} | {r['sgemm_gflops']} | {r['ratio_to_sgemm']} |" for r in rows]
    table = "\n".join([f"Training throughput, commit {commit or 'uncommitted'}, {machine}, torch {torch.__version__}",
                       "", header, *lines])
    rss = None
    if args.rss:
        from bench.common import data_root

        rss = round(training_peak_rss_mib(data_root()), 1)
        table += f"\n\nPeak RSS of `infoedit train mnist` (full width, 30 steps): {rss} MiB"
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"throughput-{args.tag}" if args.tag else "throughput"
    (RESULTS / f"{name}.md").write_text(table + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"commit": commit, "machine": machine,
                                                        "torch": torch.__version__, "rows": rows,
                                                        "train_mnist_peak_rss_mib": rss}, indent=2) + "\n")


if __name__ == "__main__":
    main()
