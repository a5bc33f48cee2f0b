"""`infoedit classify` over folders: throughput against a decode-only loop, peak memory, and framing's cost.

    python bench/classify_speed.py --model MODEL_DIR [--files 10000 100000] [--photos 100]

Writes N PNGs of the model's dataset's test images (cycled: 28px MNIST digits for the bundled
`mnist`), so images already in the dataset's polarity and size, into a temp folder, then
measures in one run:
- decode-only: open + preprocess every file in a plain loop (the floor any classifier pays);
- frame auto: the same loop as classify reads the files (`--frame auto --invert auto`), and its
  ratio to decode-only (issue #24's target: 0.5 or more; the dataset's own images need no framing);
- classify: the real command in a child process (CSV to a file), img/s and peak RSS; also
  img/s without the fixed start-up (importing torch, loading the model), measured as the time
  of the same command on a one-file folder;
- photos: the dataset's test images drawn as photos of ink on paper by bench/photos.py (plain,
  ruled, squared and notebook paper, a form, a desk, a shadow, a glare, a thin pen; JPEGs of
  500-900 px), img/s through the framing (`--frame auto`) in a plain loop, and through the
  classify command over the folder of them all (target: 300 or more).
Writes bench/results/<--name>.{md,json} (classify_speed by default).
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
from bench import common, photos  # noqa: E402
from bench.common import commit, machine  # noqa: E402
from infoedit import images  # noqa: E402
from infoedit import datasets  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# a photo of each kind, as bench/photos.py draws its columns: photo()'s arguments, or a plain photo
# shaded or glared; "form" and "thin" for handwriting only
PHOTO_KINDS = {"plain": {}, "ruled": {"paper": "ruled"}, "squared": {"paper": "squared"},
               "notebook": {"paper": "notebook"}, "desk": {"desk": True}, "shadow": photos.shade,
               "glare": photos.glare, "form": {"paper": "form"}, "thin": {"thin": True}}


def make_files(folder: Path, n: int, base: np.ndarray) -> None:
    """``n`` PNGs of the uint8 images ``base`` [M, H, W], cycled, 1,000 a sub-folder."""
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(base[i % len(base)]).save(sub / f"{i:06d}.png")


def make_photos(folder: Path, base: np.ndarray, n: int, digits: bool) -> dict[str, list[Path]]:
    """``n`` JPEG photos of each kind (PHOTO_KINDS) of the first images of ``base``."""
    rng, made = np.random.default_rng(0), {}
    for kind, how in PHOTO_KINDS.items():
        if kind in ("form", "thin") and not digits:
            continue
        made[kind] = []
        for i, image in enumerate(base[:n]):
            picture = how(photos.photo(image, rng), rng) if callable(how) else photos.photo(image, rng, **how)
            made[kind].append(folder / f"{kind}-{i:04d}.jpg")
            picture.save(made[kind][-1], quality=85)
    return made


def read_rate(paths: list[Path], read) -> float:
    """img/s of ``read`` (a path -> pixels) over ``paths`` in a plain loop."""
    t = time.perf_counter()
    for p in paths:
        read(p)
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


def reader(cfg):
    """path -> pixels as classify reads a file for the model of config ``cfg`` by default
    (--frame auto, --invert auto)."""
    how = (cfg.image_size, cfg.channels, "auto", cfg.background, "auto", datasets.framing(cfg.dataset))
    return lambda p: images.load_for_model(p, *how)


def folder_row(tmp: Path, n: int, base: np.ndarray, model: str, cfg) -> dict:
    """Decode-only, frame auto and classify on ``n`` dataset images."""
    folder, one = tmp / f"n{n}", tmp / f"one{n}"
    folder.mkdir()
    make_files(folder, n, base)
    one.mkdir()
    make_files(one, 1, base)
    startup = 1 / classify(one, model)[0]
    paths = images.list_images(folder)
    decode = read_rate(paths, lambda p: images.load_image(p, cfg.image_size, cfg.channels))
    framed = read_rate(paths, reader(cfg))
    rate, rss = classify(folder, model)
    steady = n / max(1e-9, n / rate - startup)
    return {"files": n, "decode_only_img_per_s": round(decode, 1), "frame_auto_img_per_s": round(framed, 1),
            "frame_auto_ratio": round(framed / decode, 3), "classify_img_per_s": round(rate, 1),
            "ratio": round(rate / decode, 3), "startup_s": round(startup, 2),
            "classify_after_startup_img_per_s": round(steady, 1), "ratio_after_startup": round(steady / decode, 3),
            "classify_peak_rss_mib": round(rss, 1)}


def photo_rates(tmp: Path, base: np.ndarray, n: int, cfg, model: str) -> dict[str, float]:
    """img/s through load_for_model with --frame auto on ``n`` photos of each kind, and over all
    of them; then the classify command over the folder of them all (end to end, and without the
    start-up of a one-photo call)."""
    folder = tmp / "photos"
    folder.mkdir()
    kinds = make_photos(folder, base, n, datasets.framing(cfg.dataset) == "digit")
    read = reader(cfg)
    read(kinds["plain"][0])  # once untimed: the first framing imports scipy.ndimage (start-up)
    rates = {kind: round(read_rate(paths, read), 1) for kind, paths in kinds.items()}
    count = sum(len(paths) for paths in kinds.values())
    rates["all"] = round(count / sum(len(kinds[k]) / rates[k] for k in kinds), 1)
    one = tmp / "one-photo"
    one.mkdir()
    (one / "photo.jpg").write_bytes(kinds["plain"][0].read_bytes())
    startup = 1 / classify(one, model)[0]
    rate = classify(folder, model)[0]
    rates["classify"] = round(rate, 1)
    rates["classify after start-up"] = round(count / max(1e-9, count / rate - startup), 1)
    return rates


def report(rows: list[dict], rates: dict[str, float], n_photos: int, model: str) -> str:
    m = machine()
    lines = [f"classify throughput, commit {commit()}, {m['processor']} x{m['cpu_count']}, model {model}", "",
             "Files: the dataset's test images as PNGs (already in its polarity and size). frame auto: the "
             "files read as classify reads them (`--frame auto --invert auto`), in-process; its ratio is to "
             "decode-only (target >= 0.5).", "",
             "| files | decode-only img/s | frame auto img/s | ratio | classify img/s | ratio | start-up s | "
             "after start-up img/s | ratio | classify peak RSS MiB |", "|---" * 10 + "|"]
    lines += [f"| {r['files']} | {r['decode_only_img_per_s']} | {r['frame_auto_img_per_s']} | {r['frame_auto_ratio']} "
              f"| {r['classify_img_per_s']} | {r['ratio']} | {r['startup_s']} | "
              f"{r['classify_after_startup_img_per_s']} | {r['ratio_after_startup']} | "
              f"{r['classify_peak_rss_mib']} |" for r in rows]
    lines += ["", f"Photos through the framing (`--frame auto`, JPEG decode included), {n_photos} photos of each "
              "kind (bench/photos.py's drawing; target >= 300 img/s): each kind and all in-process in one "
              "loop (one core), then the classify command over the folder of them all (its decoding in "
              "processes on every core), end to end and without the start-up of a one-photo call:", "",
              "| " + " | ".join(rates) + " |", "|---" * len(rates) + "|",
              "| " + " | ".join(str(v) for v in rates.values()) + " |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--files", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--photos", type=int, default=100, help="photos of each kind")
    ap.add_argument("--name", default="classify_speed", help="results file name, without extension")
    args = ap.parse_args()
    from infoedit.hub import load_config, resolve
    from trainer import data

    cfg = load_config(resolve(args.model))
    base = data.load(cfg.dataset, common.data_root(), progress=False).test_images[:, 0].numpy()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in args.files:
            rows.append(folder_row(Path(tmp), n, base, args.model, cfg))
            print(rows[-1], file=sys.stderr)
        rates = photo_rates(Path(tmp), base, args.photos, cfg, args.model)
        print(rates, file=sys.stderr)
    text = report(rows, rates, args.photos, args.model)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"commit": commit(), "machine": machine(),
                                                            "model": args.model, "rows": rows,
                                                            "photos_per_kind": args.photos,
                                                            "photo_img_per_s": rates}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
