"""Many images per call: images/s of each command on a folder of 1,000 PNGs, end to end through
the console command (start-up and model load included), against one call per image.

    python bench/batch_speed.py                 # the bundled mnist model, its first 1,000 test images
    python bench/batch_speed.py --model fashion-mnist --n 500

Writes bench/results/batch_speed.{md,json}.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from PIL import Image

from infoedit import hub
from trainer import data


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist")
    ap.add_argument("--n", type=int, default=1000, help="PNGs in the folder")
    ap.add_argument("--singles", type=int, default=10, help="images run one call each, for the per-call cost")
    ap.add_argument("--name", default="batch_speed")
    ap.add_argument("--out", type=Path, default=None)
    return ap.parse_args()


def timed(args: list[str], model: str) -> float:
    exe = str(Path(sys.executable).with_name("infoedit"))
    start = time.time()
    res = subprocess.run([exe, *args, "--model", model, "--quiet"], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"infoedit {' '.join(args[:2])}: exit {res.returncode}: {res.stderr}")
    return time.time() - start


def main() -> None:
    args = parse_args()
    started = time.time()
    ds = data.load(hub.from_pretrained(args.model).config.dataset, common.data_root(), progress=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        files = []
        for i, img in enumerate(ds.test_images[:args.n]):
            files.append(folder / f"{i:05d}.png")
            Image.fromarray(img[0].numpy()).save(files[-1])
        pairs = Path(tmp) / "pairs.csv"
        pairs.write_text("".join(f"{a},{b}\n" for a, b in zip(files, files[1:] + files[:1])))
        commands = {
            "encode FOLDER --json": ["encode", str(folder), "--json", "-o", f"{tmp}/codes.jsonl"],
            "classify FOLDER": ["classify", str(folder), "-o", f"{tmp}/clusters.csv"],
            "reconstruct FOLDER": ["reconstruct", str(folder), "-o", f"{tmp}/rec"],
            "swap FOLDER B": ["swap", str(folder), str(files[0]), "-o", f"{tmp}/swaps"],
            "swap --pairs FILE": ["swap", "--pairs", str(pairs), "-o", f"{tmp}/pairs"],
            "traverse FOLDER --code 0 (one 10-cell grid each)": ["traverse", str(folder), "--code", "0",
                                                                 "-o", f"{tmp}/grids"],
        }
        for name, cmd in commands.items():
            seconds = timed(cmd, args.model)
            rows.append({"command": name, "images": len(files), "seconds": round(seconds, 2),
                         "img_per_s": round(len(files) / seconds, 1)})
            print(f"{name:50s} {len(files) / seconds:8.1f} img/s", flush=True)
        singles = [timed(["reconstruct", str(f), "-o", f"{tmp}/one-{i}.png"], args.model)
                   for i, f in enumerate(files[:args.singles])]
        per_call = sum(singles) / len(singles)
        rows.append({"command": "reconstruct IMAGE, one call per image", "images": len(singles),
                     "seconds": round(sum(singles), 2), "img_per_s": round(1 / per_call, 2)})
        print(f"one call per image: {per_call:.2f} s a call", flush=True)
    lines = ["# Many images per call", "",
             f"Commit {common.STARTED_AT}, {time.time() - started:.0f} s, `{' '.join(sys.argv)}`, model "
             f"`{args.model}`: {args.n} of its test images as PNGs, each command once through the console "
             "(start-up and model load included).", "", "| command | images | seconds | img/s |", "|---|---|---|---|"]
    lines += [f"| `{r['command']}` | {r['images']} | {r['seconds']} | {r['img_per_s']} |" for r in rows]
    md, _ = common.write(args.name, {**common.provenance(args, started), "rows": rows}, "\n".join(lines), args.out)
    print(md)


if __name__ == "__main__":
    main()
