"""The training loop every model family shares: data order, steps, evaluation, checkpoints.

A family's step and hooks: trainer/families.py.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from infoedit import engine, hub, ood
from infoedit.images import make_grid, save_png
from trainer import checkpoint, dist
from trainer.data import Dataset
from trainer.config import TrainConfig
from trainer.card import model_card
from trainer.evaluate.clustering import cluster_accuracy, predict_clusters
from trainer.families import trainer_for
from trainer.plots import plot_curves
from trainer.progress import make_progress
from trainer.stopping import StopSignals, TrainingStopped, check_finite


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

    FILES = (hub.CONFIG_NAME, hub.WEIGHTS_NAME, hub.CARD_NAME, ood.FILE_NAME, "samples.png", "loss_curve.png",
             "metrics.jsonl")

    def __init__(self, model, ds: Dataset, tc: TrainConfig, out: Path):
        self.model, self.ds, self.tc, self.out = model, ds, tc, Path(out)
        self.history: dict[str, list[tuple[int, float]]] = {}
        self.records: list[dict] = []
        self.ood_sample = ood.reference_sample(len(ds))
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

    def write_checkpoint(self, opt: dict, generators: dict, at: Cursor, seconds: float) -> None:
        """The resumable checkpoint: weights, optimizers, RNGs, position, history, settings."""
        state = {**asdict(at), "seconds": seconds, "dataset": self.ds.name, "dataset_length": len(self.ds),
                 "world_size": dist.get_world_size(), "model_config": self.model.config.to_dict(),
                 "train_config": self.tc.to_dict(), "history": self.history}
        checkpoint.save_checkpoint(self.out, self.model, opt, state, generators)

    def write_metrics(self) -> None:
        lines = "".join(json.dumps(r) + "\n" for r in self.records)
        hub.atomic_write_bytes(self.out / "metrics.jsonl", lines.encode())

    def write_model_folder(self, record: dict) -> dict:
        """Evaluate, then write the model folder (weights, config, card), sample grid, loss curve
        and metrics.jsonl."""
        model = self.model
        record = self.evaluate(record)
        self.records.append(record)
        hub.save_pretrained(model, self.out, model_card(model, self.tc, record, self.ds.held_out))
        # drawn by the folder's weights (its G may be an average of the trained one's: g_average)
        grid = engine.class_grid(hub.from_pretrained(str(self.out), device=str(model.device)), rows=10,
                                 seed=self.tc.seed)
        ood.save(self.out, ood.reference(model, self.ds.batch(self.ood_sample).to(model.device)))
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


def resume(model, opt: dict, gen: torch.Generator, ds: Dataset, tc: TrainConfig) -> dict:
    """Load the checkpoint of the run folder ``tc.resume`` into model, opt and gen, once it is
    checked to be this model's, on this data, with this setup; return its state."""
    src = Path(tc.resume)
    state = checkpoint.read_state(src)
    checkpoint.check_resumable(state, model, ds, tc, src)
    checkpoint.load_checkpoint(src, model, opt, {f"rank{dist.get_rank()}": gen})
    return state


LOG_SECONDS = 30  # the longest wait between two lines of a run logged to a file


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class Session:
    """One call of fit: the model on its device, its optimisers and RNG, where the run is, the
    output folder (rank 0's), and this session's clock."""

    def __init__(self, model, ds: Dataset, tc: TrainConfig, out: Path):
        self.model, self.ds, self.tc, self.out = model, ds, tc, out
        self.device = resolve_device(tc.device)
        dist.init_from_env(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.layout = memory_format(tc, model.config.image_size)
        model.to(self.device, memory_format=self.layout).train()
        if tc.compile:
            compile_networks(model)
        # Each rank draws its own z, s, c; the weights start equal because every rank seeds alike.
        self.gen = torch.Generator().manual_seed(tc.seed + 7919 * dist.get_rank())
        self.family = trainer_for(model.config.model)
        self.opt = self.family.make_optimizers(model, tc)
        self.world = dist.get_world_size()
        self.steps_per_epoch = len(ds) // (tc.batch_size * self.world)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{ds.name}: has {len(ds)} image(s), fewer than one batch of {tc.batch_size} "
                             "(--batch-size)")
        state = resume(model, self.opt, self.gen, ds, tc) if tc.resume is not None else None
        self.at = Cursor.from_state(state) if state else Cursor()
        self.run = Run(model, ds, tc, out) if dist.is_main() else None
        if self.run and state:
            self.run.restore(Path(tc.resume), state)
        epochs_steps = tc.epochs * self.steps_per_epoch
        self.total = epochs_steps if tc.max_steps is None else min(tc.max_steps, epochs_steps)
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=tc.precision == "bf16")
        self.first, self.start, self.data_time, self.eval_time = self.at.step, time.time(), 0.0, 0.0
        self.said_at = None  # when the last log line (epoch_lines) was printed; None: the estimate is to come

    def elapsed(self) -> float:
        """This session's training time (evaluations not counted)."""
        return time.time() - self.start - self.eval_time

    def out_of_time(self) -> bool:
        return self.tc.max_seconds is not None and self.elapsed() >= self.tc.max_seconds

    def rate(self) -> float:
        return (self.at.step - self.first) * self.tc.batch_size * self.world / max(1e-9, self.elapsed())

    def train_batch(self, order: torch.Tensor) -> dict[str, float]:
        """The family's step on the next batch of ``order``; the cursor moves on."""
        tc, at = self.tc, self.at
        t0 = time.time()
        idx = order[at.index * tc.batch_size:(at.index + 1) * tc.batch_size]
        x = self.ds.batch(idx)
        x = (x.pin_memory() if self.device.type == "cuda" else x).to(self.device, non_blocking=True,
                                                                      memory_format=self.layout)
        y = self.ds.labels[idx].to(self.device) if self.ds.labels is not None else None
        self.data_time += time.time() - t0
        with self.autocast:
            values = self.family.step(self.model, self.opt, x, self.gen, y, iteration=at.step)
        check_finite(values, at.step + 1, self.out)  # before any save: the checkpoint stays good
        at.advance(values)
        return values

    def show(self, bar, task, values: dict[str, float]) -> None:
        """Every log_every steps: the loss history, and the progress bar (its ETA from the time
        budget when there is one)."""
        at, tc = self.at, self.tc
        if not self.run or not (at.step % tc.log_every == 0 or at.step == self.total):
            return
        self.run.log(at.step, values)
        if tc.max_seconds is not None:  # the steps the time budget allows
            left = max(0.0, tc.max_seconds - self.elapsed()) * (at.step - self.first) / max(1e-9, self.elapsed())
            bar.update(task, total=min(self.total, at.step + round(left)))
        bar.update(task, completed=at.step, info=f"ep {at.epoch + 1}/{tc.epochs} {self.rate():.0f} img/s "
                   + "  ".join(f"{k} {v:.2f}" for k, v in list(values.items())[:3]))

    def log_line(self) -> None:
        """For a log file (``epoch_lines``), where no bar is drawn: once the speed is measured, how
        long the run will take; then a line at least every LOG_SECONDS with the time left."""
        if not (self.run and self.tc.epoch_lines):
            return
        now, steps = time.time(), self.at.step - self.first
        if self.said_at is None and (steps >= 20 or self.elapsed() >= LOG_SECONDS):
            self.said_at = now
            left = self.time_left(whole_session=True)
            steps_left = min(self.total - self.first, round(left * steps / max(1e-9, self.elapsed())))
            print(f"{self.ds.name}: {self.rate():.0f} img/s; the run will take about {_minutes(left)} "
                  f"({steps_left} steps)", file=sys.stderr, flush=True)
        elif self.said_at is not None and now - self.said_at >= LOG_SECONDS:
            self.said_at = now
            print(f"{self.ds.name}: step {self.at.step}, epoch {self.at.epoch + 1}, {self.rate():.0f} img/s, "
                  f"{_minutes(self.time_left())} left", file=sys.stderr, flush=True)

    def time_left(self, whole_session: bool = False) -> float:
        """Seconds to the run's end at this session's speed, within --max-minutes: from now, or
        (``whole_session``) from this session's start."""
        per_step = self.elapsed() / max(1, self.at.step - self.first)
        since = 0.0 if whole_session else self.elapsed()
        left = (self.total - (self.first if whole_session else self.at.step)) * per_step
        return left if self.tc.max_seconds is None else min(left, max(0.0, self.tc.max_seconds - since))

    def evaluate_now(self) -> None:
        """--eval-every: a held-out accuracy record between epochs (its time not counted)."""
        if not (self.run and self.tc.eval_every and self.at.step % self.tc.eval_every == 0):
            return
        t0 = time.time()
        seconds = round(self.at.seconds + self.elapsed(), 1)
        self.run.records.append(self.run.evaluate({"step": self.at.step, "seconds": seconds}))
        self.run.write_metrics()
        self.eval_time += time.time() - t0

    def save(self) -> None:
        """The resumable checkpoint (every rank takes part: the RNG states are gathered)."""
        gens = checkpoint.generator_states(self.gen)
        if self.run:
            self.run.write_checkpoint(self.opt, gens, self.at, self.at.seconds + self.elapsed())

    def end_epoch(self) -> dict:
        """The epoch's record (loss means over ranks, speed); rank 0 writes the model folder."""
        at = self.at
        dist.broadcast_buffers(self.model)
        record = {"epoch": at.epoch + 1, "step": at.step, "steps": at.step,
                  "epochs_done": at.step / self.steps_per_epoch,
                  "seconds": round(at.seconds + self.elapsed(), 1),
                  "data_fraction": round(self.data_time / max(self.elapsed(), 1e-9), 4),
                  "img_per_s": round(self.rate(), 1), "device": str(self.device), "world_size": self.world,
                  **{k: dist.reduce_mean(v / max(1, at.epoch_steps)) for k, v in at.sums.items()}}
        if at.index >= self.steps_per_epoch:
            at.next_epoch()
        if self.run:
            record = self.run.write_model_folder(record)
            if self.tc.epoch_lines:
                print(self.epoch_line(record), file=sys.stderr, flush=True)
        return record

    def epoch_line(self, record: dict) -> str:
        acc = record.get("test_acc")
        budget = "" if self.tc.max_seconds is None else f" of {self.tc.max_seconds:.0f}"
        return (f"{self.model.config.model} on {self.ds.name}: epoch {record['epoch']}/{self.tc.epochs}, step "
                f"{self.at.step}/{self.total}, {record['seconds']:.0f} s{budget}, {record['img_per_s']:.0f} img/s"
                + ("" if acc is None else f", held-out accuracy {100 * acc:.2f}%"))

    def after_epoch(self) -> None:
        """The family's hook, once at each epoch boundary that more training follows. A run
        resumed at a boundary its first session ended on (a --restarts probe) runs it there too."""
        at = self.at
        if not (self.family.after_epoch and at.index == 0 and 0 < at.step < self.total and at.hook_step != at.step):
            return
        at.hook_step = at.step
        record = self.family.after_epoch(self.model, self.ds, self.tc.seed, at.epoch)
        if self.run and record:
            self.run.records.append({"step": at.step, **record})
            self.run.write_metrics()


def fit(model, ds: Dataset, tc: TrainConfig, out: Path, progress: bool = True) -> dict:
    """Train model on ds. Rank 0 writes the model folder into out after every epoch, and the
    resumable checkpoint (out/checkpoint) then, every ``tc.checkpoint_every`` steps and when
    stopped early. With ``tc.resume`` it continues the run saved in that folder."""
    session = Session(model, ds, tc, out)
    at, record = session.at, {}
    session.after_epoch()
    with make_progress(progress and dist.is_main()) as bar, StopSignals() as stop:
        task = bar.add_task(f"{model.config.model} on {ds.name}", total=session.total, completed=at.step, info="")
        halt = False  # a signal or the time budget, on any rank: all ranks stop at the same step
        while at.epoch < tc.epochs:
            order = epoch_order(len(ds), at.epoch, tc.seed)
            while at.index < session.steps_per_epoch and not (at.step >= session.total or halt):
                values = session.train_batch(order)
                session.show(bar, task, values)
                session.log_line()
                session.evaluate_now()
                if tc.checkpoint_every and at.step % tc.checkpoint_every == 0 and at.index < session.steps_per_epoch:
                    session.save()  # (an epoch end saves below)
                halt = dist.any_rank(stop.received is not None or session.out_of_time())
            record = session.end_epoch()
            session.after_epoch()  # after the epoch's model folder, before its checkpoint
            session.save()
            received = stop.received  # one reading: a signal after it is the next step's to act on
            halt = dist.any_rank(received is not None or session.out_of_time()) or halt
            if received:
                raise TrainingStopped(f"interrupted at step {at.step}; saved a checkpoint in {out} "
                                      f"(continue with --resume {out})", StopSignals.CODES[received])
            if at.step >= session.total or halt:
                break
    return record
