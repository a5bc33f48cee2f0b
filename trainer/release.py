"""Bundle a trained run's model folder into the package: `python -m trainer.release RUN NAME`.

Copies config.json and the model card (which holds the training command, seed and measured
held-out accuracy) into infoedit/pretrained/NAME, with the weights stored as float16 (they load
as float32), after checking that the folder loads and fits the size budget of a bundled model.
For MNIST and Fashion-MNIST it also writes class_names.json: each category named after the
class the run's last held-out evaluation matched it to (its metrics.jsonl). The run's ood.json
(how far an input is from the training images, infoedit.ood) comes along; a run from before it
gets one measured with --data.

`python -m trainer.release FOLDER --ood-only --data DIR` writes ood.json into a model folder,
a bundled one included, and nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from infoedit import hub, ood
from infoedit.datasets import DATASETS
from trainer.loop import read_metrics

MAX_BYTES = 5_000_000  # per bundled model: the package stays small enough to install anywhere


def class_names(run: Path) -> list[str] | None:
    """Category k's name: the label the last held-out evaluation matched it to."""
    config = json.loads((run / hub.CONFIG_NAME).read_text())
    spec = DATASETS.get(config.get("dataset"))
    labels = spec.class_names if spec else ()
    matched = [r["cluster_to_label"] for r in read_metrics(run) if "cluster_to_label" in r]
    if not labels or not matched or len(matched[-1]) != config["n_classes"]:
        return None
    return [labels[matched[-1][str(k)]] for k in range(config["n_classes"])]


def release(run: Path, name: str, data: str | None = None) -> Path:
    from safetensors.torch import load_file, save

    hub.from_pretrained(str(run))  # raises ModelLoadError unless it is a complete, valid folder
    state = load_file(str(run / hub.WEIGHTS_NAME))
    weights = save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, metadata={"format": "pt"})
    card = (run / hub.CARD_NAME).read_text() + "\nBundled with infoedit; the weights are stored as float16.\n"
    config = (run / hub.CONFIG_NAME).read_bytes()
    size = len(weights) + len(card.encode()) + len(config)
    if size > MAX_BYTES:
        raise SystemExit(f"{run}: {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB of a bundled model "
                         "(train it narrower, e.g. --width 0.25)")
    dest = hub.PRETRAINED / name
    dest.mkdir(parents=True, exist_ok=True)
    hub.atomic_write_bytes(dest / hub.WEIGHTS_NAME, weights)
    hub.atomic_write_bytes(dest / hub.CONFIG_NAME, config)
    hub.atomic_write_bytes(dest / hub.CARD_NAME, card.encode())
    names = class_names(run)
    if names:
        hub.atomic_write_bytes(dest / hub.CLASS_NAMES_NAME, (json.dumps(names) + "\n").encode())
    if (run / "samples.png").is_file():
        hub.atomic_write_bytes(dest / "samples.png", (run / "samples.png").read_bytes())
    if (run / ood.FILE_NAME).is_file():
        hub.atomic_write_bytes(dest / ood.FILE_NAME, (run / ood.FILE_NAME).read_bytes())
    elif data:
        write_ood_reference(dest, data)
    else:
        print(f"note: {run} has no {ood.FILE_NAME}; pass --data DIR to measure it", file=sys.stderr)
    return dest


def write_ood_reference(folder: Path, data: str | None) -> None:
    """ood.json for the model in ``folder``, from the sample of its dataset's training images
    that training measures it on (ood.reference_sample)."""
    from trainer.data import load

    model = hub.from_pretrained(str(folder))
    ds = load(model.config.dataset, data, progress=False)
    ood.save(folder, ood.reference(model, ds.batch(ood.reference_sample(len(ds)))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="A training output folder.")
    ap.add_argument("name", nargs="?", help="The bundled name, e.g. mnist (then `--model mnist` loads it).")
    ap.add_argument("--data", default=None, help="Data root holding the dataset (default as train's).")
    ap.add_argument("--ood-only", action="store_true", help="Only (re)write RUN's ood.json.")
    args = ap.parse_args()
    if args.ood_only:
        write_ood_reference(args.run, args.data)
        print(args.run / "ood.json")
    else:
        print(release(args.run, args.name, args.data))


if __name__ == "__main__":
    main()
