"""The resumable training checkpoint: safetensors + JSON, never a pickle.

Layout inside a run folder::

    checkpoint/
        weights.safetensors    model state_dict
        optimizer.safetensors  every optimizer's state tensors, named "<opt>/state/<param index>/<key>"
        rng.safetensors        torch CPU (+ CUDA) RNG, numpy MT19937 keys, "generator/<name>" states
        state.json             format version, position in the data order, optimizer param_groups,
                               python `random` state, numpy scalars, whatever the loop adds

A save writes a fresh ``checkpoint.tmp-*`` folder (each file fsynced), renames the old
``checkpoint`` to ``checkpoint.old``, renames the new one into place and only then removes
the old one. A kill at any moment leaves one complete checkpoint: ``checkpoint``, or
``checkpoint.old`` if the kill fell between the two renames (``find_checkpoint`` takes it).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from infoedit import hub

FORMAT_VERSION = 1
DIR, BACKUP, TMP_PREFIX = "checkpoint", "checkpoint.old", "checkpoint.tmp-"
WEIGHTS, OPTIMIZER, RNG, STATE = "weights.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"
FILES = (WEIGHTS, OPTIMIZER, RNG, STATE)


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or does not fit; the message is one line."""


# -- writing ---------------------------------------------------------------------------------
def save_checkpoint(folder: str | Path, model: torch.nn.Module, opt: dict[str, torch.optim.Optimizer],
                    state: dict, generators: dict[str, torch.Generator] | None = None) -> Path:
    """Write ``folder/checkpoint`` atomically; ``state`` must be JSON-serialisable.

    Also stores the global RNGs (python, numpy, torch, CUDA) and the given generators' states.
    """
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(TMP_PREFIX + "*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    opt_tensors, opt_meta = _flatten_optimizers(opt)
    rng_tensors, rng_meta = _rng_state(generators or {})
    meta = {**state, "format_version": FORMAT_VERSION, "optimizers": opt_meta, "rng": rng_meta}
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blobs = {WEIGHTS: save(weights), OPTIMIZER: save(opt_tensors), RNG: save(rng_tensors),
             STATE: (json.dumps(meta, separators=(",", ":")) + "\n").encode()}  # last: marks completion
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=folder))
    try:
        for name, data in blobs.items():
            _write_synced(tmp / name, data)
        _fsync_dir(tmp)
        _swap_in(folder, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder / DIR


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (a power cut must not undo them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(folder: Path, tmp: Path) -> None:
    final, backup = folder / DIR, folder / BACKUP
    if final.is_dir():
        if backup.exists():  # a backup beside a complete checkpoint is stale
            shutil.rmtree(backup)
        os.rename(final, backup)
    os.rename(tmp, final)
    _fsync_dir(folder)
    shutil.rmtree(backup, ignore_errors=True)


def _flatten_optimizers(opt: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {}
    for name, o in opt.items():
        sd = o.state_dict()
        scalars = {}
        for index, entry in sd["state"].items():
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{name}/state/{index}/{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(index), {})[key] = value
        meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    return tensors, meta


def _rng_state(generators: dict[str, torch.Generator]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda/{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy/keys"] = torch.from_numpy(keys.astype(np.int64))  # uint32 values, held exactly
    for name, g in generators.items():
        tensors[f"generator/{name}"] = g.get_state()
    version, internal, gauss_next = random.getstate()
    meta = {"python": [version, list(internal), gauss_next],
            "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    return tensors, meta


# -- reading ---------------------------------------------------------------------------------
def find_checkpoint(folder: str | Path) -> Path:
    """The complete checkpoint folder in a run folder: ``checkpoint``, else ``checkpoint.old``."""
    folder = Path(folder)
    for name in (DIR, BACKUP):
        if all((folder / name / f).is_file() for f in FILES):
            return folder / name
    if (folder / DIR).exists():
        raise CheckpointError(f"{folder / DIR}: incomplete checkpoint (needs {', '.join(FILES)})")
    raise CheckpointError(f"{folder}: no checkpoint to resume from (no {DIR}/ folder)")


def read_state(folder: str | Path) -> dict:
    """state.json of the run folder's checkpoint, with its format version checked."""
    path = find_checkpoint(folder) / STATE
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported format_version {state.get('format_version')!r} "
                              f"(this infoedit reads {FORMAT_VERSION})")
    missing = [k for k in ("optimizers", "rng") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: missing field(s) {', '.join(missing)}")
    return state


def load_checkpoint(folder: str | Path, model: torch.nn.Module, opt: dict[str, torch.optim.Optimizer],
                    generators: dict[str, torch.Generator] | None = None) -> dict:
    """Restore model, optimizers, global RNGs and the named generators; return state.json.

    CheckpointError (one line) when a file is truncated or tampered with, or does not fit.
    """
    state = read_state(folder)
    ckpt = find_checkpoint(folder)
    weights = _read_tensors(ckpt / WEIGHTS)
    _check_weights(ckpt / WEIGHTS, weights, model)
    model.load_state_dict(weights, strict=True)
    _load_optimizers(ckpt / OPTIMIZER, opt, _read_tensors(ckpt / OPTIMIZER), state["optimizers"])
    _restore_rng(ckpt / RNG, _read_tensors(ckpt / RNG), state["rng"], generators or {})
    return state


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated ({exc})") from None


def _check_weights(path: Path, weights: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    mismatch = hub.weights_mismatch(weights, model.state_dict())
    if mismatch:
        raise CheckpointError(f"{path}: does not fit the model ({mismatch})")


def _load_optimizers(path: Path, opt: dict[str, torch.optim.Optimizer], tensors: dict[str, torch.Tensor],
                     meta: dict) -> None:
    if not isinstance(meta, dict) or set(meta) != set(opt):
        raise CheckpointError(f"{path}: optimizers {sorted(meta) if isinstance(meta, dict) else meta!r}, "
                              f"the trainer has {sorted(opt)}")
    states: dict[str, dict[int, dict]] = {name: {} for name in opt}
    for key, value in tensors.items():
        name, kind, index, field = (key.split("/", 3) + ["", "", ""])[:4]
        if name not in states or kind != "state" or not index.isdigit() or not field:
            raise CheckpointError(f"{path}: unexpected tensor {key!r}")
        states[name].setdefault(int(index), {})[field] = value
    for name, o in opt.items():
        try:
            for index, scalars in meta[name]["scalars"].items():
                states[name].setdefault(int(index), {}).update(scalars)
            groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta[name]["param_groups"]]
            o.load_state_dict({"state": states[name], "param_groups": groups})
        except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: optimizer {name} does not fit ({exc})") from None
        # load_state_dict checks only the number of parameters; a tampered moment must not
        # surface later as a shape error deep inside a step.
        for group in o.param_groups:
            for param in group["params"]:
                for key, value in o.state.get(param, {}).items():
                    if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                        raise CheckpointError(f"{path}: optimizer {name} {key} has shape {tuple(value.shape)}, "
                                              f"its parameter {tuple(param.shape)}")


def _restore_rng(path: Path, tensors: dict[str, torch.Tensor], meta: dict,
                 generators: dict[str, torch.Generator]) -> None:
    try:
        torch.set_rng_state(tensors["torch"])
        cuda = [tensors[f"cuda/{i}"] for i in range(torch.cuda.device_count()) if f"cuda/{i}" in tensors]
        if cuda and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        np_meta = meta["numpy"]
        np.random.set_state((np_meta["kind"], tensors["numpy/keys"].numpy().astype(np.uint32), np_meta["pos"],
                             np_meta["has_gauss"], np_meta["cached_gaussian"]))
        version, internal, gauss_next = meta["python"]
        random.setstate((version, tuple(internal), gauss_next))
        for name, g in generators.items():
            g.set_state(tensors[f"generator/{name}"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: bad RNG state ({type(exc).__name__}: {exc})") from None


# -- resuming a run ---------------------------------------------------------------------------
# TrainConfig fields that fix a run's data order and optimisers: a resumed run keeps the run's own.
RUN_SETTINGS = ("batch_size", "seed", "lr_d", "lr_g", "lr_e", "beta1")


def check_resumable(state: dict, model, ds, tc, src: Path) -> None:
    """ValueError (one line) unless the checkpoint's run is this model on this data and setup,
    with epochs left to train."""
    from trainer import dist

    missing = [k for k in ("epoch", "index", "step", "seconds", "sums", "epoch_steps") if k not in state]
    if missing:
        raise CheckpointError(f"{src}: the checkpoint holds no {', '.join(missing)} (not one fit wrote)")
    saved, mine = state.get("model_config") or {}, model.config.to_dict()
    try:  # a run from before a field was added trained as its ADDED_FIELDS value says
        saved = type(model.config).from_dict(saved).to_dict()
    except (ValueError, TypeError, KeyError):
        pass  # not this family's config at all: the comparison names the first difference
    for key in sorted(set(saved) | set(mine)):
        if saved.get(key) != mine.get(key):
            raise ValueError(f"{src}: the run's model has {key}={saved.get(key)!r}, this one {mine.get(key)!r}")
    if (state.get("dataset"), state.get("dataset_length")) != (ds.name, len(ds)):
        raise ValueError(f"{src}: the run trained on {state.get('dataset')} ({state.get('dataset_length')} "
                         f"images), not {ds.name} ({len(ds)} images)")
    run_tc = state.get("train_config") or {}
    for key in RUN_SETTINGS:
        if run_tc.get(key) != getattr(tc, key):
            raise ValueError(f"{src}: the run used {key}={run_tc.get(key)!r}, not {getattr(tc, key)!r} "
                             "(a resumed run keeps its settings)")
    if state.get("world_size", 1) != dist.get_world_size():
        raise ValueError(f"{src}: the run used {state.get('world_size')} process(es), not {dist.get_world_size()}")
    if state.get("epoch", 0) >= tc.epochs:
        raise ValueError(f"{src}: the run has done {state.get('epoch')} of {tc.epochs} epoch(s); "
                         "to train on, ask for more with --epochs")


def generator_states(gen: torch.Generator) -> dict[str, torch.Generator]:
    """Every rank's prior-sampling generator as {"rank<r>": generator}, for rank 0 to save."""
    from trainer import dist

    if not dist.is_dist():
        return {"rank0": gen}
    import torch.distributed as tdist

    state = gen.get_state().to(dist.collective_device())  # small: the round trip costs nothing
    states = [torch.empty_like(state) for _ in range(dist.get_world_size())]
    tdist.all_gather(states, state)
    gens = {}
    for rank, s in enumerate(states):
        gens[f"rank{rank}"] = torch.Generator()
        gens[f"rank{rank}"].set_state(s.cpu())
    return gens
