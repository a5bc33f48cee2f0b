"""`infoedit evaluate`: the paper's metrics on a trained model, as one JSON-able dict.

- clustering: argmax q(s|x) in eval mode vs the labels, Hungarian-matched ACC, NMI, ARI;
- pseudo-label CNN (Table 1 "Proposed CNN"), FactorVAE score (Table 2) and FID on request;
- reconstruction MSE on the scored split (G2 for InfoVAEGAN2, G with z = 0 for InfoVAEGAN);
- supervised models (Sec. 3): label (angle) accuracy without matching, and leakage of c.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from infoedit.datasets import labelled_names, rotated_names
from trainer.evaluate.factorvae import FactorVAEProtocol
from trainer.evaluate.pseudo_label import PseudoLabelConfig
from trainer.evaluate.supervised import SUPERVISED, reconstruction_mse, supervised_metrics

CLUSTERING_PROTOCOL = ("argmax q(s|x) in eval mode; clusters matched to labels one-to-one by the Hungarian "
                       "method (scipy.optimize.linear_sum_assignment) on the contingency matrix; "
                       "NMI normalised by the arithmetic mean of the entropies; ARI of Hubert & Arabie")
DSPRITES_GRID = Path("dsprites") / "dsprites_downsampled.npz"


def _dsprites_grid(data: str | None) -> Path:
    from trainer.data import default_root

    path = (Path(data).expanduser() if data else default_root()) / DSPRITES_GRID
    if not path.is_file():
        raise ValueError(f"{path}: not found; --real-subset needs the real dSprites grid under --data DIR")
    return path


def labelled_split(ds, name: str, data: str | None, split: str, real_grid: Path | None, seed: int,
                   limit: int | None) -> tuple[torch.Tensor, torch.Tensor, float, str] | None:
    """(uint8 images, labels, scale, description) to cluster, or None when there are no labels."""
    if name == "dsprites":  # the shape factor is dSprites' class (K=3 in the paper)
        from trainer.evaluate.factorvae import dsprites_source

        sizes, observe, what = dsprites_source(real_grid)
        factors = np.random.default_rng(seed).integers(0, sizes, size=(limit or 10_000, len(sizes)))
        return observe(factors), torch.from_numpy(factors[:, 0]), 1.0, f"{what}, shape factor as label"
    if ds is None:
        return None
    if split == "test":
        images, labels = ds.test_images, ds.test_labels
    else:
        images, labels = ds.images, ds.labels
    if images is None or labels is None:
        return None
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels, ds.scale, f"{name} {split} split"


def clustering(model, images: torch.Tensor, labels: torch.Tensor, scale: float, out: Path | None,
               title: str) -> dict:
    from trainer.evaluate.clustering import clustering_report, matched_confusion, save_confusion_png
    from trainer.evaluate.clustering import predict_clusters

    pred, confidence = predict_clusters(model, images, scale=scale)
    pred, labels = pred.numpy(), labels.numpy()
    result = clustering_report(pred, labels)
    mapping = {int(k): v for k, v in result["cluster_to_label"].items()}
    matrix, names = matched_confusion(pred, labels, mapping)
    png = None
    if out is not None:
        png = str(save_confusion_png(matrix, Path(out) / "confusion.png", names, title))
    return {**result, "confusion": matrix.tolist(), "confusion_columns": names, "confusion_png": png,
            "mean_confidence": float(confidence.mean()),
            "fraction_confident": float((confidence > 0.9).float().mean())}


def evaluate(model: str, dataset: str | None = None, data: str | None = None, split: str = "test",
             out: Path | None = None, pseudo_label_cnn: bool = False, factorvae: bool = False,
             representation: str = "mu", real_subset: bool = False, fid_against: str | None = None,
             inception_weights: Path | None = None, fid_samples: int = 10_000, device: str = "auto",
             seed: int = 0, limit: int | None = None, factorvae_protocol: FactorVAEProtocol | None = None,
             pseudo_label: PseudoLabelConfig | None = None, extractor=None, progress: bool = False) -> dict:
    """Evaluate a model folder (or Hub id); ValueError with one line on bad input.
    ``progress``: bars on stderr for the long parts (the pseudo-label CNN, the FactorVAE votes).

    ``dataset`` defaults to the one in the model's config. ``real_subset`` implies ``factorvae``.
    ``extractor`` replaces the Inception network for FID (tests use a tiny stand-in).
    """
    start = time.time()
    net, dev, name = _load_model(model, dataset, device)
    cfg = net.config
    factorvae = factorvae or real_subset
    _check(model, cfg, name, split, representation, pseudo_label_cnn, factorvae,
           fid_against is not None and extractor is None and inception_weights is None)
    real_grid = _dsprites_grid(data) if real_subset else None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    result: dict = {"model": str(model), "dataset": name, "split": split, "device": str(dev), "seed": seed,
                    "model_config": cfg.to_dict(), "protocol": {"clustering": CLUSTERING_PROTOCOL}}
    ds = _labelled_dataset(cfg, name, data, result)
    labelled = labelled_split(ds, name, data, split, real_grid, seed, limit)
    if labelled is None and not (pseudo_label_cnn or factorvae or fid_against):
        raise ValueError(f"{name} has no labels for the {split} split: nothing to evaluate "
                         "(add --fid-against FOLDER_OR_DATASET)")
    if labelled is not None:
        result.update(_score_labelled(net, labelled, out))
    if cfg.model in SUPERVISED and ds is not None:
        result["supervised"] = supervised_metrics(net, ds, split, limit)
    if pseudo_label_cnn:
        result["pseudo_label_cnn"] = _pseudo_label(net, ds, pseudo_label, seed, limit, progress)
    if factorvae:
        protocol = factorvae_protocol or FactorVAEProtocol(seed=seed)
        result["factorvae"] = _factorvae(net, real_grid, representation, protocol, progress)
    if fid_against:
        from trainer.evaluate.fid import InceptionExtractor, fid

        extractor = extractor or InceptionExtractor(inception_weights, dev)
        result["fid"] = fid(net, fid_against, extractor, fid_samples, split, data, seed)
    result["seconds"] = round(time.time() - start, 1)
    if out is not None:
        from infoedit.hub import atomic_write_bytes

        atomic_write_bytes(Path(out) / "evaluation.json", (json.dumps(result, indent=2) + "\n").encode())
    return result


def _load_model(model: str, dataset: str | None, device: str):
    """(the model on its device, the device, the dataset to score: ``dataset`` or the model's own);
    a supervised model is scored only on a rotated dataset, whose labels are its angles."""
    from infoedit import hub
    from trainer.loop import resolve_device

    dev = resolve_device(device)
    net = hub.from_pretrained(model, device=str(dev))
    cfg = net.config
    name = dataset or cfg.dataset
    if cfg.model in SUPERVISED and name not in rotated_names():  # its labels are angles, not these
        raise ValueError(f"{cfg.model} predicts rotation angles: evaluate it on {' or '.join(rotated_names())}, "
                         f"not {name}")
    return net, dev, name


def _labelled_dataset(cfg, name: str, data: str | None, result: dict):
    """The dataset ``name`` when it is one with labels (else None), in the model's polarity; a
    turn to it is noted in ``result`` ("inverted_to")."""
    from trainer import data as data_mod

    # Only the labelled datasets carry labels; other datasets are not loaded just to be unused.
    # A rotated dataset is rebuilt from the class the model was trained on (its config records it).
    rotated = name == cfg.dataset and name in rotated_names() and hasattr(cfg, "source_class")
    extra = {"source_class": cfg.source_class} if rotated else {}
    # (load refuses a dataset whose size or channels are not the model's)
    ds = (data_mod.load(name, data, progress=False, image_size=cfg.image_size, channels=cfg.channels,
                        crop=cfg.crop, **extra)
          if name in labelled_names() else None)
    if ds is not None and cfg.channels == 1 and data_mod.background(ds) != cfg.background:
        # the model learned the other polarity (a folder of ink on paper): turn the images to it,
        # as --invert auto does for image files
        ds = replace(ds, images=255 - ds.images, test_images=255 - ds.test_images)
        result["inverted_to"] = f"{cfg.background} background"
    return ds


def _score_labelled(net, labelled: tuple, out: Path | None) -> dict:
    """Clustering against the labels (when the model has a discrete code), what was scored, and
    the reconstruction MSE, on the labelled split ``labelled`` (labelled_split's tuple)."""
    cfg = net.config
    images, labels, scale, what = labelled
    scores: dict = {}
    if cfg.n_classes < 2:  # beta-VAE: one constant category; ACC would be the largest class's share
        scores.update(accuracy=None, nmi=None, ari=None, clustering=f"not defined: {cfg.model} has no "
                      "discrete code")
    else:
        scores.update(clustering(net, images, labels, scale, out, f"{cfg.model} on {what}"))
    scores["evaluated_on"] = what
    scores["reconstruction_mse"] = reconstruction_mse(net, images, scale)
    return scores


def _factorvae(net, real_grid: Path | None, representation: str, protocol: FactorVAEProtocol,
               progress: bool) -> dict:
    """Table 2's FactorVAE score on dSprites (the real grid, or rendered), with what it scored."""
    from trainer.evaluate.factorvae import dsprites_source, factorvae_score, model_representation

    sizes, observe, what = dsprites_source(real_grid)
    score = factorvae_score(sizes, observe, model_representation(net, representation), protocol, progress)
    score["protocol"].update(representation=representation, data=what)
    return score


def _check(model: str, cfg, name: str, split: str, representation: str, pseudo_label_cnn: bool,
           factorvae: bool, fid_without_weights: bool) -> None:
    """Refuse bad arguments before any slow work, with one line each."""
    from trainer.train import defaults_for

    if not name:
        raise ValueError(f"{model}: the config names no dataset; pass --dataset NAME")
    defaults_for(name)  # DataError (a ValueError) for an unknown name
    if split not in ("train", "test"):
        raise ValueError(f"--split {split}: use 'train' or 'test'")
    if representation not in ("mu", "mu+softmax"):
        raise ValueError(f"--representation {representation}: use 'mu' or 'mu+softmax'")
    if fid_without_weights:
        raise ValueError("--fid-against needs --inception-weights PATH (pytorch-fid's pt_inception-2015-12-05)")
    if (factorvae or name == "dsprites") and (cfg.image_size, cfg.channels) != (64, 1):
        raise ValueError(f"dSprites (and --factorvae) needs a 64px 1-channel model; {model} is "
                         f"{cfg.image_size}px {cfg.channels}-channel")
    if pseudo_label_cnn and cfg.n_classes < 2:
        raise ValueError(f"--pseudo-label-cnn needs a discrete code; {cfg.model} has none")
    if pseudo_label_cnn and name not in labelled_names():
        raise ValueError(f"--pseudo-label-cnn needs training images and test labels ({', '.join(labelled_names())}), "
                         f"not {name}")


def _pseudo_label(net, ds, config: PseudoLabelConfig | None, seed: int, limit: int | None,
                  progress: bool = False) -> dict:
    from trainer.evaluate.pseudo_label import pseudo_label_accuracy

    config = config or PseudoLabelConfig(seed=seed)
    train = ds.images[:limit] if limit else ds.images
    return pseudo_label_accuracy(net, train, ds.test_images, ds.test_labels, config, ds.scale, progress)


def report(result: dict, as_json: bool = False) -> str:
    """What the CLI prints: the JSON, or a few readable lines."""
    if as_json:
        return json.dumps(result, indent=2)
    lines = [f"{result['model']} on {result.get('evaluated_on', result['dataset'])}"
             + (f" (inverted to the model's {result['inverted_to']})" if "inverted_to" in result else "")]
    if result.get("clustering"):
        lines.append(f"  accuracy {result['clustering']}")
    elif "accuracy" in result:
        lines.append(f"  accuracy {100 * result['accuracy']:.2f}%  NMI {result['nmi']:.4f}  "
                     f"ARI {result['ari']:.4f}  (n={result['n']})")
        pairs = ", ".join(f"s={k}->{v}" for k, v in result["cluster_to_label"].items())
        lines.append(f"  clusters -> labels: {pairs}")
        if result.get("confusion_png"):
            lines.append(f"  confusion matrix: {result['confusion_png']}")
    if "reconstruction_mse" in result:
        lines.append(f"  reconstruction MSE {result['reconstruction_mse']:.5f} per pixel")
    if "supervised" in result:
        s = result["supervised"]
        lines.append(f"  label accuracy {100 * s['label_accuracy']:.2f}% ({s['label_accuracy_split']} split)  "
                     f"leakage {100 * s['leakage']:.2f}% (chance {100 * s['chance']:.0f}%, adversary "
                     f"{'on, rho2=' + str(s['rho2']) if s['adversary'] else 'off'})")
    if "pseudo_label_cnn" in result:
        p = result["pseudo_label_cnn"]
        if p["accuracy"] is None:
            lines.append(f"  pseudo-label CNN: skipped, {p['skipped']}")
        else:
            lines.append(f"  pseudo-label CNN: accuracy {100 * p['accuracy']:.2f}% (trained on {p['n_selected']} "
                         f"images with confidence > {p['config']['threshold']})")
    if "factorvae" in result:
        f = result["factorvae"]
        lines.append(f"  FactorVAE score {f['eval_accuracy']:.4f} ({f['protocol']['representation']}, "
                     f"{f['num_active_dims']}/{f['code_dim']} active dims, {f['protocol']['data']})")
    if "fid" in result:
        lines.append(f"  FID {result['fid']['fid']:.2f} ({result['fid']['n_generated']} samples)")
    return "\n".join(lines)
