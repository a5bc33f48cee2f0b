"""The training loop every model family shares: data order, steps, evaluation, checkpoints.

A family's step and hooks: trainer/families.py.
"""

from __future__ import annotations

import inspect
import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from infoedit import engine, hub
from infoedit.datasets import framing
from infoedit.images import make_grid, save_png
from trainer import checkpoint, dist
from trainer.data import Dataset
from trainer.config import TrainConfig
from trainer.evaluate.clustering import cluster_accuracy, predict_clusters
from trainer.families import trainer_for
from trainer.plots import plot_curves
from trainer.progress import make_progress


@dataclass
class Cursor:
    """Where a run is: its position in the data order (epoch, next batch) and running totals."""

    epoch: int = 0
    index: int = 0           # next batch within the epoch (fit uses epoch_order, so this is the position)
    step: int = 0            # steps done, all sessions
    seconds: float = 0.0     # training time of earlier sessions
    sums: dict = field(default_factory=dict)  # this epoch's loss sums, for its means
    epoch_steps: int = 0
    hook_step: int = -1      # the step the family's after_epoch hook last ran at

    @classmethod
    def from_state(cls, state: dict) -> "Cursor":
        return cls(**{f: state[f] for f in ("epoch", "index", "step", "seconds", "sums", "epoch_steps")},
                   # (older checkpoints call it reseed_checked, or lack it)
                   hook_step=state.get("hook_step", state.get("reseed_checked", -1)))

    def advance(self, values: dict[str, float]) -> None:
        self.step, self.index, self.epoch_steps = self.step + 1, self.index + 1, self.epoch_steps + 1
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def next_epoch(self) -> None:
        self.epoch, self.index, self.sums, self.epoch_steps = self.epoch + 1, 0, {}, 0


def compile_networks(model: torch.nn.Module) -> None:
    """torch.compile every network (G, E, D, ...) of model in place: their forward calls run
    compiled, and the state-dict names stay as they are (no _orig_mod. prefix in model folders)."""
    import torch._functorch.config

    # InfoVAEGAN's step takes the VAE gradient with retain_graph=True (trainer.infovaegan), which
    # a compiled backward that donates its buffers refuses; the error message names this switch.
    torch._functorch.config.donated_buffer = False
    for net in model.children():
        net.compile()
        for method in ("forward_with_aux", "logits"):
            # E and G are also called through these (InfoVAEGAN2, the real-data MI, the VAE loss).
            # Left eager, their BatchNorm backward keeps the running stats, which the next,
            # compiled call rewrites in place before that backward runs ("modified by an inplace
            # operation").
            if inspect.ismethod(getattr(net, method, None)):  # E's `logits` is a layer, not this method
                setattr(net, method, torch.compile(getattr(net, method)))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return torch.device(name)


def memory_format(tc: TrainConfig, image_size: int) -> torch.memory_format:
    choices = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
    if tc.memory_format == "auto":
        return torch.channels_last if image_size >= 64 else torch.contiguous_format
    if tc.memory_format not in choices:
        raise ValueError(f"memory_format must be auto, channels_last or contiguous, got {tc.memory_format!r}")
    return choices[tc.memory_format]


def restarts_note(tc: TrainConfig) -> str:
    """Why a --restarts run's seed is not the command's: the probe it continued."""
    if not tc.extra.get("restarts"):
        return ""
    first, last = tc.extra["restarts"]
    return (f" (the probe --restarts continued: of seeds {first}-{last}, the lowest mi_real after its probe; "
            "restarts/choice.json)")


def model_card(model, tc: TrainConfig, summary: dict, held_out: tuple | None = None) -> str:
    """The model folder's README.md; ``held_out``: (held out, of) an unlabelled folder's images
    (trainer.data.hold_out)."""
    cfg = model.config
    lines = [f"---\nlibrary_name: infoedit\ntags: [{cfg.model}, disentanglement]\n---\n",
             f"# {cfg.model} on {cfg.dataset}\n",
             f"A `{cfg.model}` model trained with infoedit, the command-line tool for InfoVAEGAN "
             "(Ye & Bors, Information Sciences 2021) and its baselines.\n",
             f"- images: {cfg.image_size}x{cfg.image_size}, {cfg.channels} channel(s)"
             + (f", {cfg.background} background (`--invert auto` matches inputs to it)" if cfg.channels == 1 else ""),
             f"- codes: z {getattr(cfg, 'z_dim', 0)}, discrete s K={getattr(cfg, 'n_classes', 0)}, "
             f"continuous c {cfg.c_dim} ({getattr(cfg, 'c_prior', 'normal')} prior)",
             f"- command: `{tc.command}`" if tc.command else "- command: (library call)",
             f"- seed: {tc.seed}" + restarts_note(tc),
             f"- trained: {summary.get('steps', 0)} steps, {summary.get('epochs_done', 0):.2f} epochs, "
             f"{summary.get('seconds', 0):.0f} s on {summary.get('device', '?')}"]
    lines.append(method_line(cfg))
    if tc.init_from:
        lines.append(f"- started from the weights of `{tc.init_from}` (`--init-from`; trainer.train.warm_start)")
    if tc.extra.get("resumed_with"):
        lines.append("- resumed with: " + "; ".join(f"`{c}`" for c in tc.extra["resumed_with"]))
    if summary.get("test_acc") is not None:
        how = "argmax q(s|x) against the labels" if cfg.LEARNS_LABELS else \
            "unsupervised, Hungarian-matched argmax q(s|x)"
        lines.append(f"- held-out accuracy ({how}): "
                     f"{100 * summary['test_acc']:.2f}% on {summary.get('test_n')} test images")
    if held_out:
        count, total = held_out
        lines.append(f"- held out: {count} of {total} images, not trained on (those whose file name's CRC-32 is "
                     "0 mod 10, `trainer.data.held_out_name`: the same faces under any --limit)")
    if cfg.channels == 1 and framing(cfg.dataset) != "none":
        lines.append("- photos and scans (ink on paper, plain, ruled or squared): the editing commands' `--frame auto`, "
                     f"the default, cuts the object out and frames it as {cfg.dataset}'s images are framed")
    lines.append("\nLoad with `infoedit.hub.from_pretrained(path_or_repo_id)` or any `infoedit` command's `--model`.\n")
    return "\n".join(lines)


# What a model's own data and size set, not its method: left out of the card's method line.
FORMAT_FIELDS = ("image_size", "channels", "background", "z_dim", "n_classes", "c_dim", "width", "model",
                 "dataset", "format_version", "source_class")


def method_line(cfg) -> str:
    """The card's line saying what is the paper's and what is not: the config fields whose values
    differ from the family's defaults (which are its paper's method)."""
    defaults = type(cfg)()
    changed = [f"{f.name} {getattr(cfg, f.name)}" for f in fields(cfg)
               if f.name not in FORMAT_FIELDS and getattr(cfg, f.name) != getattr(defaults, f.name)]
    if not changed:
        return f"- method: {cfg.model} as its paper states it (infoedit's defaults for the family)"
    return (f"- method: {cfg.model} as its paper states it, with settings that are not the paper's "
            f"(infoedit's levers, docs/model.md): {', '.join(changed)}")


def read_metrics(folder: Path) -> list[dict]:
    """The records of a run folder's metrics.jsonl ([] when it has none); a line that is not a
    JSON object (a cut or edited file) is skipped."""
    path = Path(folder) / "metrics.jsonl"
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class Run:
    """Everything written into the output folder during training."""

    FILES = (hub.CONFIG_NAME, hub.WEIGHTS_NAME, hub.CARD_NAME, "samples.png", "loss_curve.png", "metrics.jsonl")

    def __init__(self, model, ds: Dataset, tc: TrainConfig, out: Path):
        self.model, self.ds, self.tc, self.out = model, ds, tc, Path(out)
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.records: list[dict] = []
        self.out.mkdir(parents=True, exist_ok=True)
        for name in self.FILES:  # temp files of atomic writes a killed run never renamed
            for stale in self.out.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)

    def restore(self, src: Path, state: dict) -> None:
        """Carry a resumed run's loss history and metrics records over, up to its checkpoint."""
        self.history = {k: [tuple(p) for p in pts] for k, pts in state.get("history", {}).items()}
        # later records belong to steps that will be trained again
        self.records += [r for r in read_metrics(src) if r.get("step", 0) <= state["step"]]

    def log(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.history.setdefault(k, []).append((step, v))

    def evaluate(self, record: dict) -> dict:
        """Add the held-out accuracy of argmax q(s|x) when the data has labels: Hungarian-matched
        for unsupervised codes, plain for supervised ones (s was trained on the labels)."""
        labelled = self.ds.test_images is not None and self.ds.test_labels is not None
        if labelled and self.model.config.n_classes > 1:
            pred, _ = predict_clusters(self.model, self.ds.test_images, scale=self.ds.scale)
            labels = self.ds.test_labels
            if self.model.config.LEARNS_LABELS:
                record["test_acc"] = float((pred == labels).float().mean())
            else:
                record["test_acc"], record["cluster_to_label"] = cluster_accuracy(pred.numpy(), labels.numpy())
            record["test_n"] = len(pred)
        return record

    def save_state(self, opt: dict, generators: dict, at: Cursor, seconds: float) -> None:
        """The resumable checkpoint: weights, optimizers, RNGs, position, history, settings."""
        state = {**asdict(at), "seconds": seconds, "dataset": self.ds.name, "dataset_length": len(self.ds),
                 "world_size": dist.get_world_size(), "model_config": self.model.config.to_dict(),
                 "train_config": self.tc.to_dict(), "history": self.history}
        checkpoint.save_checkpoint(self.out, self.model, opt, state, generators)

    def write_metrics(self) -> None:
        lines = "".join(json.dumps(r) + "\n" for r in self.records)
        hub.atomic_write_bytes(self.out / "metrics.jsonl", lines.encode())

    def checkpoint(self, record: dict) -> dict:
        """Evaluate, then write model folder, sample grid, loss curve and metrics.jsonl."""
        model = self.model
        record = self.evaluate(record)
        model.eval()
        grid = engine.class_grid(model, rows=10, seed=self.tc.seed)
        model.train()
        self.records.append(record)
        hub.save_pretrained(model, self.out, model_card(model, self.tc, record, self.ds.held_out))
        save_png(make_grid(grid.cpu(), nrow=model.config.n_classes), self.out / "samples.png")
        plot_curves(self.history, self.out / "loss_curve.png", title=f"{model.config.model} on {self.ds.name}")
        self.write_metrics()
        (self.out / "train_config.json").write_text(json.dumps(self.tc.to_dict(), indent=2) + "\n")
        return record


def epoch_order(n: int, epoch: int, seed: int) -> torch.Tensor:
    """This rank's share of a seeded shuffle of range(n) (DistributedSampler, drop_last)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=dist.get_world_size(), rank=dist.get_rank(),
                                 shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


class TrainingStopped(Exception):
    """Training ended early; ``exit_code`` is what the CLI exits with, the message one line."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class StopSignals:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, saves, then stops."""

    CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}

    def __enter__(self):
        self.received = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.CODES:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def check_finite(values: dict[str, float], step: int, out: Path | None = None) -> None:
    for name, v in values.items():
        if not math.isfinite(v):
            where = f"{out} keeps" if out is not None else "the run folder keeps"
            raise TrainingStopped(f"loss {name} is {v} at step {step}; stopped, {where} the last good "
                                  "checkpoint (try a lower learning rate)", 2)


def resume(model, opt: dict, gen: torch.Generator, ds: Dataset, tc: TrainConfig) -> dict:
    """Load the checkpoint of the run folder ``tc.resume`` into model, opt and gen, once it is
    checked to be this model's, on this data, with this setup; return its state."""
    src = Path(tc.resume)
    state = checkpoint.read_state(src)
    checkpoint.check_resumable(state, model, ds, tc, src)
    checkpoint.load_checkpoint(src, model, opt, {f"rank{dist.get_rank()}": gen})
    return state


def fit(model, ds: Dataset, tc: TrainConfig, out: Path, progress: bool = True) -> dict:
    """Train model on ds. Rank 0 writes the model folder into out after every epoch, and the
    resumable checkpoint (out/checkpoint) then, every ``tc.checkpoint_every`` steps and when
    stopped early. With ``tc.resume`` it continues the run saved in that folder."""
    device = resolve_device(tc.device)
    dist.init_from_env(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    layout = memory_format(tc, model.config.image_size)
    model.to(device, memory_format=layout).train()
    if tc.compile:
        compile_networks(model)
    # Each rank draws its own z, s, c; the weights start equal because every rank seeds alike.
    gen = torch.Generator().manual_seed(tc.seed + 7919 * dist.get_rank())
    family = trainer_for(model.config.model)
    opt = family.make_optimizers(model, tc)
    world = dist.get_world_size()
    steps_per_epoch = len(ds) // (tc.batch_size * world)
    if steps_per_epoch == 0:
        raise ValueError(f"{ds.name}: has {len(ds)} image(s), fewer than one batch of {tc.batch_size} (--batch-size)")
    state = resume(model, opt, gen, ds, tc) if tc.resume is not None else None
    at = Cursor.from_state(state) if state else Cursor()
    run = Run(model, ds, tc, out) if dist.is_main() else None
    if run and state:
        run.restore(Path(tc.resume), state)
    total = tc.epochs * steps_per_epoch if tc.max_steps is None else min(tc.max_steps, tc.epochs * steps_per_epoch)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
    first, start, data_time, eval_time, record = at.step, time.time(), 0.0, 0.0, {}

    def elapsed() -> float:  # this session's training time
        return time.time() - start - eval_time

    def out_of_time() -> bool:
        return tc.max_seconds is not None and elapsed() >= tc.max_seconds

    def save() -> None:
        gens = checkpoint.generator_states(gen)  # a collective: every rank calls it
        if run:
            run.save_state(opt, gens, at, at.seconds + elapsed())

    def after_epoch() -> None:
        """The family's hook, once at each epoch boundary that more training follows. A run
        resumed at a boundary its first session ended on (a --restarts probe) runs it there too."""
        if not (family.after_epoch and at.index == 0 and 0 < at.step < total and at.hook_step != at.step):
            return
        at.hook_step = at.step
        record = family.after_epoch(model, ds, tc.seed, at.epoch)
        if run and record:
            run.records.append({"step": at.step, **record})
            run.write_metrics()

    after_epoch()

    with make_progress(progress and dist.is_main()) as bar, StopSignals() as stop:
        task = bar.add_task(f"{model.config.model} on {ds.name}", total=total, completed=at.step, info="")
        halt = False  # a signal or the time budget, on any rank: all ranks stop at the same step
        while at.epoch < tc.epochs:
            order = epoch_order(len(ds), at.epoch, tc.seed)
            while at.index < steps_per_epoch and not (at.step >= total or halt):
                t0 = time.time()
                idx = order[at.index * tc.batch_size:(at.index + 1) * tc.batch_size]
                x = ds.batch(idx)
                x = (x.pin_memory() if device.type == "cuda" else x).to(device, non_blocking=True,
                                                                         memory_format=layout)
                y = ds.labels[idx].to(device) if ds.labels is not None else None
                data_time += time.time() - t0
                with autocast:
                    values = family.step(model, opt, x, gen, y)
                check_finite(values, at.step + 1, out)  # before any save: the checkpoint stays good
                at.advance(values)
                if run and (at.step % tc.log_every == 0 or at.step == total):
                    run.log(at.step, values)
                    rate = (at.step - first) * tc.batch_size * world / max(1e-9, elapsed())
                    if tc.max_seconds is not None:  # the steps the time budget allows, for the bar's ETA
                        left = max(0.0, tc.max_seconds - elapsed()) * (at.step - first) / max(1e-9, elapsed())
                        bar.update(task, total=min(total, at.step + round(left)))
                    bar.update(task, completed=at.step, info=f"ep {at.epoch + 1}/{tc.epochs} {rate:.0f} img/s "
                               + "  ".join(f"{k} {v:.2f}" for k, v in list(values.items())[:3]))
                if run and tc.eval_every and at.step % tc.eval_every == 0:
                    t0 = time.time()
                    run.records.append(run.evaluate({"step": at.step, "seconds": round(at.seconds + elapsed(), 1)}))
                    run.write_metrics()
                    eval_time += time.time() - t0
                if tc.checkpoint_every and at.step % tc.checkpoint_every == 0 and at.index < steps_per_epoch:
                    save()  # (an epoch end saves below)
                halt = dist.any_rank(stop.received is not None or out_of_time())
            dist.broadcast_buffers(model)
            record = {"epoch": at.epoch + 1, "step": at.step, "steps": at.step,
                      "epochs_done": at.step / steps_per_epoch,
                      "seconds": round(at.seconds + elapsed(), 1),
                      "data_fraction": round(data_time / max(elapsed(), 1e-9), 4),
                      "img_per_s": round((at.step - first) * tc.batch_size * world / max(elapsed(), 1e-9), 1),
                      "device": str(device), "world_size": world,
                      **{k: dist.reduce_mean(v / max(1, at.epoch_steps)) for k, v in at.sums.items()}}
            if at.index >= steps_per_epoch:
                at.next_epoch()
            if run:
                record = run.checkpoint(record)
                if tc.epoch_lines:
                    acc = record.get("test_acc")
                    budget = "" if tc.max_seconds is None else f" of {tc.max_seconds:.0f}"
                    print(f"{model.config.model} on {ds.name}: epoch {record['epoch']}/{tc.epochs}, step "
                          f"{at.step}/{total}, {record['seconds']:.0f} s{budget}, {record['img_per_s']:.0f} img/s"
                          + ("" if acc is None else f", held-out accuracy {100 * acc:.2f}%"),
                          file=sys.stderr, flush=True)
            after_epoch()  # after the epoch's model folder, before its checkpoint
            save()
            received = stop.received  # one reading: a signal after it is the next step's to act on
            halt = dist.any_rank(received is not None or out_of_time()) or halt
            if received:
                raise TrainingStopped(f"interrupted at step {at.step}; saved a checkpoint in {out} "
                                      f"(continue with --resume {out})", StopSignals.CODES[received])
            if at.step >= total or halt:
                break
    return record
