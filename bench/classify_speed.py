"""`infoedit classify` over folders: throughput against a decode-only loop, and peak memory.

    python bench/classify_speed.py --model MODEL_DIR [--files 10000 100000]

Writes N small PNGs (28x28 digits-like noise) into a temp folder, then measures in one run:
- decode-only: open + preprocess every file in a plain loop (the floor any classifier pays);
- classify: the real command in a child process (CSV to a file), img/s and peak RSS; also
  img/s without the fixed start-up (importing torch, loading the model), measured as the time
  of the same command on a one-file folder.
Writes bench/results/classify_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import commit, machine  # noqa: E402
from infoedit.images import list_images, load_image  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def make_files(folder: Path, n: int, size: int = 28) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, size, size), dtype=np.uint8)
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(base[i % 64]).save(sub / f"{i:06d}.png")


def decode_only(folder: Path, size: int, channels: int) -> float:
    paths = list_images(folder)
    t = time.perf_counter()
    for p in paths:
        load_image(p, size, channels)
    return len(paths) / (time.perf_counter() - t)


def classify(folder: Path, model: str) -> tuple[float, float]:
    """(img/s, peak RSS MiB) of the real command in a fresh child process."""
    out = folder.parent / f"{folder.name}.csv"
    code = ("import resource, sys; from infoedit.cli import app\n"
            "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, "classify", str(folder), "-m", model, "-o", str(out),
                           "--quiet"], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t
    rss_kib = int(done.stderr.strip().splitlines()[-1])
    n = sum(1 for _ in open(out)) - 1
    return n / seconds, rss_kib / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--files", type=int, nargs="+", default=[10_000, 100_000])
    args = ap.parse_args()
    from infoedit.hub import load_config, resolve

    cfg = load_config(resolve(args.model))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.files:
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            make_files(folder, n)
            one = Path(tmp) / f"one{n}"
            one.mkdir()
            make_files(one, 1)
            startup = 1 / classify(one, args.model)[0]
            decode = decode_only(folder, cfg.image_size, cfg.channels)
            rate, rss = classify(folder, args.model)
            steady = n / max(1e-9, n / rate - startup)
            rows.append({"files": n, "decode_only_img_per_s": round(decode, 1), "classify_img_per_s": round(rate, 1),
                         "ratio": round(rate / decode, 3), "startup_s": round(startup, 2),
                         "classify_after_startup_img_per_s": round(steady, 1),
                         "ratio_after_startup": round(steady / decode, 3), "classify_peak_rss_mib": round(rss, 1)})
            print(rows[-1], file=sys.stderr)
    m = machine()
    lines = [f"classify throughput, commit {commit()}, {m['processor']} x{m['cpu_count']}", "",
             "| files | decode-only img/s | classify img/s | ratio | start-up s | after start-up img/s | ratio | "
             "classify peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['files']} | {r['decode_only_img_per_s']} | {r['classify_img_per_s']} | {r['ratio']} | "
              f"{r['startup_s']} | {r['classify_after_startup_img_per_s']} | {r['ratio_after_startup']} | "
              f"{r['classify_peak_rss_mib']} |" for r in rows]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "classify_speed.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "classify_speed.json").write_text(json.dumps({"commit": commit(), "machine": m, "model": args.model,
                                                            "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
