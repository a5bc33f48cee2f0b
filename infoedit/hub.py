"""Model folder I/O: ``config.json`` + ``model.safetensors`` (+ ``README.md`` card).

The same layout locally and on the Hugging Face Hub. Loading never unpickles anything and
checks every tensor against the config, so a tampered or truncated folder fails with one line.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
# Optional: a name per category (a JSON list of K strings), for folders whose categories were
# matched to known classes (the bundled models: on the test set, as their cards say).
CLASS_NAMES_NAME = "class_names.json"
# Models that ship inside the package, by name (`--model mnist`): trained by our own trainer,
# each folder's README.md gives the command, seed and measured accuracy.
PRETRAINED = Path(__file__).parent / "pretrained"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(ValueError):
    """A model folder or Hub id that cannot be loaded; the message is one line for the user."""


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", **kwargs):
    """A file object on a temp file beside ``path``, fsynced and renamed over ``path`` only
    when the block ends without error: readers never see a half-written file."""
    path = Path(path)
    # The temp file's name is chosen before the file exists, so an interruption at any moment (a
    # SIGTERM arriving inside mkstemp left its file behind) finds the name to remove.
    tmp = str(path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp")
    try:
        # 0o666 less the umask, as an ordinary file; O_EXCL: never another writer's file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        # a full disk, a read-only folder: name the output, not its temp file
        if isinstance(exc, OSError) and exc.filename in (None, tmp):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def save_pretrained(model, folder: str | Path, card: str | None = None) -> Path:
    """Write the model folder (each file atomically) and return its path. It holds the weights
    the commands use: training-only networks (a discriminator) stay in the run's checkpoint."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.folder_state().items()}
    atomic_write_bytes(folder / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
    atomic_write_bytes(folder / CONFIG_NAME, (json.dumps(model.config.to_dict(), indent=2) + "\n").encode())
    if card is not None:
        atomic_write_bytes(folder / CARD_NAME, card.encode())
    return folder


def pretrained_names() -> list[str]:
    """The bundled models' names."""
    return sorted(p.parent.name for p in PRETRAINED.glob(f"*/{CONFIG_NAME}"))


def resolve(path_or_id: str, revision: str | None = None) -> Path:
    """A local model folder, a bundled model's name, or a Hub repo id downloaded (or read from
    the cache when offline). A local folder wins over a bundled name only if it is a model
    folder: a data folder called ``mnist`` in the working directory does not hide the model."""
    local = Path(path_or_id).expanduser()
    bundled = path_or_id in pretrained_names()
    if local.is_dir() and not (bundled and not (local / CONFIG_NAME).is_file()):
        return local
    if bundled:
        return PRETRAINED / path_or_id
    # "runs/typo" is a repo id in form, but where a folder "runs" is here it meant a local path
    looks_local = (local.exists() or path_or_id.startswith((".", "/", "~")) or not _REPO_ID.match(path_or_id)
                   or local.parent.is_dir() and local.parent != Path("."))
    if looks_local:
        names = ", ".join(pretrained_names()) or "none installed"
        raise ModelLoadError(f"{path_or_id}: no model folder there (expected a folder with {CONFIG_NAME}; "
                             f"bundled models: {names})")
    from huggingface_hub import snapshot_download

    patterns = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, CLASS_NAMES_NAME]
    try:
        return Path(snapshot_download(path_or_id, revision=revision, allow_patterns=patterns))
    except Exception:
        pass
    try:  # offline or Hub unreachable: serve what the cache already holds
        return Path(snapshot_download(path_or_id, revision=revision, allow_patterns=patterns,
                                      local_files_only=True))
    except Exception as exc:
        raise ModelLoadError(f"{path_or_id}: no such local folder, and no Hub repo of that id could be "
                             f"fetched or found in the cache ({type(exc).__name__})") from None


def load_config(folder: Path):
    from infoedit.models import config_from_dict

    path = folder / CONFIG_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: {exc}") from None


def from_pretrained(path_or_id: str, revision: str | None = None, device: str = "cpu"):
    """Load a model folder (local or Hub) in eval mode. Raises ModelLoadError with one line."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from infoedit.models import build

    folder = resolve(path_or_id, revision)
    config = load_config(folder)
    model = build(config)
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable or truncated weights ({exc})") from None
    # Training-only weights may be absent (the usual folder) or present (a full state dict).
    training_only = model.training_only()
    expected = {k: v for k, v in model.state_dict().items() if not (k.startswith(training_only) and k not in state)}
    mismatch = weights_mismatch(state, expected)
    if mismatch:
        raise ModelLoadError(f"{path}: weights do not match config.json ({mismatch})")
    for name, tensor in expected.items():
        if state[name].dtype != tensor.dtype:  # weights stored in half precision load as float32
            if not (state[name].is_floating_point() and tensor.is_floating_point()):
                raise ModelLoadError(f"{path}: {name} has dtype {state[name].dtype}, expected {tensor.dtype}")
            state[name] = state[name].to(tensor.dtype)
        if state[name].is_floating_point() and not torch.isfinite(state[name]).all():
            # a run that diverged: every output would be NaN, read as some category
            raise ModelLoadError(f"{path}: {name} holds NaN or infinite values (the training diverged?)")
    model.load_state_dict(state, strict=False)  # exactly the keys checked above
    model.class_names = load_class_names(folder, config.n_classes)
    from infoedit import ood

    model.ood = ood.load(folder, ood.code_dim(model))
    return model.to(device).eval()


def weights_mismatch(weights: dict, expected: dict) -> str | None:
    """The first way a state dict differs from the expected one in keys or shapes, or None."""
    missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or extra:
        return f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
    for name, tensor in expected.items():
        if weights[name].shape != tensor.shape:
            return f"{name} has shape {tuple(weights[name].shape)}, expected {tuple(tensor.shape)}"
    return None


def load_class_names(folder: Path, k: int) -> list[str] | None:
    """The folder's category names, or None when it has none."""
    path = folder / CLASS_NAMES_NAME
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None
    if not (isinstance(names, list) and len(names) == k and all(isinstance(n, str) and n for n in names)
            and len(set(names)) == k):
        raise ModelLoadError(f"{path}: expected a list of {k} distinct, non-empty names")
    return names


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload a model folder's config, weights and card to a Hub repo; returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                      allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, CLASS_NAMES_NAME, "*.png"])
    return f"https://huggingface.co/{repo_id}"
