"""The InfoVAEGAN training loop (Alg. 1): per batch a D step, then one G/E step."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from infoedit import codes, engine, hub
from infoedit.images import make_grid, save_png
from trainer import augment, checkpoint, dist, losses
from trainer.data import Dataset
from trainer.evaluate.clustering import cluster_accuracy
from trainer.plots import plot_curves
from trainer.progress import make_progress


@dataclass
class TrainConfig:
    epochs: int | None = None  # None: the dataset default (trainer.train.DEFAULTS)
    batch_size: int = 64
    lr_d: float = 2e-4   # authors: 2e-4 for D ...
    lr_g: float = 1e-3   # ... and 5x that for G, and for E (MI and VAE losses)
    lr_e: float = 1e-3
    beta1: float = 0.5
    # Adam's implementation: "fused" (one kernel for all tensors; on this CPU 6-13x faster than
    # the per-tensor "loop", bench/throughput.py), "foreach" or "loop". Same arithmetic.
    adam: str = "fused"
    # "auto": channels_last for 64px models (faster convolutions there, bench/throughput.py),
    # the default layout for 28px ones; or "channels_last" / "contiguous".
    memory_format: str = "auto"
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"      # "bf16": autocast on GPU (on CPUs without bf16 units it is far slower)
    limit: int | None = None
    max_steps: int | None = None
    max_seconds: float | None = None  # stop (and save) after this much training time
    eval_every: int | None = None     # also log held-out accuracy every N steps (time not counted)
    command: str = ""            # the command line, recorded in the model card
    log_every: int = 10
    checkpoint_every: int | None = 500  # also write the resumable checkpoint every N steps (None: epoch ends)
    resume: Path | None = None          # a run folder: continue the run its checkpoint/ holds
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))  # Path -> str


@dataclass
class Cursor:
    """Where a run is: its position in the data order (epoch, next batch) and running totals."""

    epoch: int = 0
    index: int = 0           # next batch within the epoch (fit uses epoch_order, so this is the position)
    step: int = 0            # steps done, all sessions
    seconds: float = 0.0     # training time of earlier sessions
    sums: dict = field(default_factory=dict)  # this epoch's loss sums, for its means
    epoch_steps: int = 0

    @classmethod
    def from_state(cls, state: dict) -> "Cursor":
        return cls(**{f: state[f] for f in ("epoch", "index", "step", "seconds", "sums", "epoch_steps")})

    def advance(self, values: dict[str, float]) -> None:
        self.step, self.index, self.epoch_steps = self.step + 1, self.index + 1, self.epoch_steps + 1
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def next_epoch(self) -> None:
        self.epoch, self.index, self.sums, self.epoch_steps = self.epoch + 1, 0, {}, 0


def requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return torch.device(name)


ADAM_IMPLS = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}


def adam(params, lr: float, tc: TrainConfig) -> torch.optim.Adam:
    """The Adam every trainer uses: betas (tc.beta1, 0.999), implementation tc.adam."""
    if tc.adam not in ADAM_IMPLS:
        raise ValueError(f"adam must be one of {', '.join(ADAM_IMPLS)}, got {tc.adam!r}")
    return torch.optim.Adam(params, lr, betas=(tc.beta1, 0.999), **ADAM_IMPLS[tc.adam])


def memory_format(tc: TrainConfig, image_size: int) -> torch.memory_format:
    choices = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
    if tc.memory_format == "auto":
        return torch.channels_last if image_size >= 64 else torch.contiguous_format
    if tc.memory_format not in choices:
        raise ValueError(f"memory_format must be auto, channels_last or contiguous, got {tc.memory_format!r}")
    return choices[tc.memory_format]


def make_optimizers(model, tc: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    # One Adam per network. The authors run one Adam per *loss* (G: adv, all: MI, E: VAE);
    # summing the losses per network and using one Adam each is the usual PyTorch reading.
    opt = {"D": adam(model.D.parameters(), tc.lr_d, tc), "G": adam(model.G.parameters(), tc.lr_g, tc),
           "E": adam(model.E.parameters(), tc.lr_e, tc)}
    if hasattr(model, "G2"):
        opt["G2"] = adam(model.G2.parameters(), tc.lr_g, tc)
    return opt


def train_step(model, opt: dict, x: torch.Tensor, gen: torch.Generator, y: torch.Tensor | None = None
               ) -> dict[str, float]:
    """One iteration of Alg. 1 on a real batch x (unsupervised: labels y are ignored); returns
    the loss values.

    Leaves each network's .grad from this step in place (tests read them).
    """
    cfg = model.config
    infovaegan2 = hasattr(model, "G2")
    real_mi = cfg.real_mi_weight > 0
    z, s, c = model.sample_prior(x.shape[0], gen)
    x_g = model.generate(z, s, c)  # one G forward feeds D, the G loss, MI and the VAE target

    # D step (Eq. 28): real pair (x, sample of E(x)) vs fake pair (G(z,s,c), s, c).
    # The real codes are sampled as the authors do (Gumbel-softmax s, reparameterised c) and
    # detached: the encoder takes no adversarial gradient. InfoVAEGAN2 keeps this E(x) graph
    # for its real-image VAE loss (Eq. 32), and the real-data MI lever for its first view, so
    # E(x) is computed once for all.
    with torch.set_grad_enabled(infovaegan2 or real_mi):
        mu_r, sigma_r, logits_r = model.encode(x)
        s_r = (codes.sample_onehot(logits_r, gen) if cfg.d_real_s == "onehot"
               else codes.gumbel_softmax(logits_r, cfg.tau, gen))
        c_r = codes.reparameterize(mu_r, sigma_r, gen)
    s_r, c_r = s_r.detach(), c_r.detach()
    requires_grad(model.D, True)
    d_loss = losses.discriminator_loss(model.discriminate(x, s_r, c_r), model.discriminate(x_g.detach(), s, c))
    opt["D"].zero_grad(set_to_none=True)
    d_loss.backward()
    dist.average_gradients(model.D)
    opt["D"].step()

    # G/E step: adversarial (Eq. 29, G only), MI (Eq. 30, G and E), VAE (Eq. 31, E only).
    requires_grad(model.D, False)
    g_adv = losses.generator_adv_loss(model.discriminate(x_g, s, c))
    mu, sigma, logits = model.encode(x_g)
    mi_s, mi_c = losses.mutual_information_loss(logits, s, mu, sigma, c, cfg.mi_continuous, generator=gen)
    mi = cfg.mi_weight_s * mi_s + cfg.mi_weight_c * mi_c
    extra = {}
    if real_mi:  # the lever: E alone, views x and a random affine warp of x
        _, _, logits_warped = model.encode(augment.random_affine(x, gen, flip=cfg.augment == "affine+flip"))
        extra["mi_real"] = losses.paired_information_loss(logits_r, logits_warped)
        mi = mi + cfg.real_mi_weight * extra["mi_real"]
    for o in opt.values():
        o.zero_grad(set_to_none=True)
    if infovaegan2:
        # Eq. 32 (replaces Eq. 31): reconstruct the real x from E's codes through G2; trains E and G2.
        s_2 = codes.gumbel_softmax(logits_r, cfg.tau, gen)
        c_2 = codes.reparameterize(mu_r, sigma_r, gen)
        x_rec = model.generate2(s_2, c_2)
        vae, rec, kl_c = losses.vae_loss(x, x_rec, mu_r, sigma_r, logits_r, cfg.c_prior, cfg.kl_s_weight)
        (g_adv + mi + vae).backward()
    else:
        s_p = codes.gumbel_softmax(logits, cfg.tau, gen)
        c_p = codes.reparameterize(mu, sigma, gen)
        requires_grad(model.G, False)  # regeneration G(z, s', c'): gradient flows to E through s', c' only
        x_re = model.generate(z, s_p, c_p)
        requires_grad(model.G, True)
        vae, rec, kl_c = losses.vae_loss(x_g, x_re, mu, sigma, logits, cfg.c_prior, cfg.kl_s_weight)
        e_params = list(model.E.parameters())
        # The VAE loss also depends on G through E's input x_g; taking its gradient w.r.t. E's
        # parameters alone keeps it an encoder-only loss (the authors' var_list=encoder).
        vae_grads = torch.autograd.grad(vae, e_params, retain_graph=True, allow_unused=True)
        (g_adv + mi).backward()
        for p, g in zip(e_params, vae_grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
    for name, o in opt.items():
        if name != "D":
            dist.average_gradients(getattr(model, name))
            o.step()
    requires_grad(model.D, True)
    return {"d": d_loss.item(), "g_adv": g_adv.item(), "mi_s": mi_s.item(), "mi_c": mi_c.item(),
            "vae": vae.item(), "rec": rec.item(), "kl_c": kl_c.item(), **{k: v.item() for k, v in extra.items()}}


@torch.inference_mode()
def predict_clusters(model, images: torch.Tensor, batch_size: int = 500, scale: float = 255.0):
    """argmax q(s|x) for uint8 images, in eval mode; returns (clusters, confidence)."""
    was_training = model.training
    model.eval()
    preds, confs = [], []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(model.device).float().div_(scale)
        conf, pred = engine.encode(model, x).probs.max(dim=1)
        preds.append(pred.cpu())
        confs.append(conf.cpu())
    model.train(was_training)
    return torch.cat(preds), torch.cat(confs)


def model_card(model, tc: TrainConfig, summary: dict) -> str:
    cfg = model.config
    lines = [f"---\nlibrary_name: infoedit\ntags: [{cfg.model}, disentanglement]\n---\n",
             f"# {cfg.model} on {cfg.dataset}\n",
             f"A `{cfg.model}` model trained with infoedit, the command-line tool for InfoVAEGAN "
             "(Ye & Bors, Information Sciences 2021) and its baselines.\n",
             f"- images: {cfg.image_size}x{cfg.image_size}, {cfg.channels} channel(s)",
             f"- codes: z {getattr(cfg, 'z_dim', 0)}, discrete s K={getattr(cfg, 'n_classes', 0)}, "
             f"continuous c {cfg.c_dim} ({getattr(cfg, 'c_prior', 'normal')} prior)",
             f"- command: `{tc.command}`" if tc.command else "- command: (library call)",
             f"- seed: {tc.seed}",
             f"- trained: {summary.get('steps', 0)} steps, {summary.get('epochs_done', 0):.2f} epochs, "
             f"{summary.get('seconds', 0):.0f} s on {summary.get('device', '?')}"]
    if summary.get("test_acc") is not None:
        how = "argmax q(s|x) against the labels" if cfg.model.startswith("supervised") else \
            "unsupervised, Hungarian-matched argmax q(s|x)"
        lines.append(f"- held-out accuracy ({how}): "
                     f"{100 * summary['test_acc']:.2f}% on {summary.get('test_n')} test images")
    lines.append("\nLoad with `infoedit.hub.from_pretrained(path_or_repo_id)` or any `infoedit` command's `--model`.\n")
    return "\n".join(lines)


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
        path = Path(src) / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.is_file() else []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            # later records belong to steps that will be trained again
            if isinstance(record, dict) and record.get("step", 0) <= state["step"]:
                self.records.append(record)

    def log(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.history.setdefault(k, []).append((step, v))

    def evaluate(self, record: dict) -> dict:
        """Add the held-out accuracy of argmax q(s|x) when the data has labels: Hungarian-matched
        for unsupervised codes, plain for supervised ones (s was trained on the labels)."""
        if self.ds.test_images is not None and self.model.config.n_classes > 1:
            pred, _ = predict_clusters(self.model, self.ds.test_images, scale=self.ds.scale)
            labels = self.ds.test_labels
            if self.model.config.model.startswith("supervised"):
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
        hub.save_pretrained(model, self.out, model_card(model, self.tc, record))
        save_png(make_grid(grid.cpu(), nrow=model.config.n_classes), self.out / "samples.png")
        plot_curves(self.history, self.out / "loss_curve.png", title=f"{model.config.model} on {self.ds.name}")
        self.write_metrics()
        (self.out / "train_config.json").write_text(json.dumps(self.tc.to_dict(), indent=2) + "\n")
        return record


def family_trainer(name: str):
    """(make_optimizers, train_step) for a model family.

    A step is ``step(model, opt, x, gen, y)`` (y: the batch's labels, or None) and returns a
    dict of floats; it leaves this step's .grad in place.
    """
    if name in ("infovaegan", "infovaegan2"):
        return make_optimizers, lambda *args: train_step(*args)  # late-bound: tests patch train_step
    if name in ("supervised-single", "supervised-dual"):
        from trainer import supervised  # imports this module: import it late

        return supervised.make_optimizers, supervised.train_step
    if name in ("infogan", "ali", "beta-vae", "jointvae"):
        from trainer import baselines  # it imports this module: import it late

        return baselines.TRAINERS[name]
    raise ValueError(f"no trainer for model family {name!r}")


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
    # Each rank draws its own z, s, c; the weights start equal because every rank seeds alike.
    gen = torch.Generator().manual_seed(tc.seed + 7919 * dist.get_rank())
    make_opt, step_fn = family_trainer(model.config.model)
    opt = make_opt(model, tc)
    world = dist.get_world_size()
    steps_per_epoch = len(ds) // (tc.batch_size * world)
    if steps_per_epoch == 0:
        raise ValueError(f"{ds.name}: {len(ds)} images is fewer than one batch of {tc.batch_size}")
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

    with make_progress(progress and dist.is_main()) as bar, StopSignals() as stop:
        task = bar.add_task(f"{model.config.model} on {ds.name}", total=total, completed=at.step, info="")
        while at.epoch < tc.epochs:
            order = epoch_order(len(ds), at.epoch, tc.seed)
            while at.index < steps_per_epoch and not (at.step >= total or stop.received or out_of_time()):
                t0 = time.time()
                idx = order[at.index * tc.batch_size:(at.index + 1) * tc.batch_size]
                x = ds.batch(idx)
                x = (x.pin_memory() if device.type == "cuda" else x).to(device, non_blocking=True,
                                                                         memory_format=layout)
                y = ds.labels[idx].to(device) if ds.labels is not None else None
                data_time += time.time() - t0
                with autocast:
                    values = step_fn(model, opt, x, gen, y)
                check_finite(values, at.step + 1, out)  # before any save: the checkpoint stays good
                at.advance(values)
                if run and (at.step % tc.log_every == 0 or at.step == total):
                    run.log(at.step, values)
                    rate = (at.step - first) * tc.batch_size * world / max(1e-9, elapsed())
                    bar.update(task, completed=at.step, info=f"ep {at.epoch + 1}/{tc.epochs} {rate:.0f} img/s "
                               + "  ".join(f"{k} {v:.2f}" for k, v in list(values.items())[:3]))
                if run and tc.eval_every and at.step % tc.eval_every == 0:
                    t0 = time.time()
                    run.records.append(run.evaluate({"step": at.step, "seconds": round(at.seconds + elapsed(), 1)}))
                    run.write_metrics()
                    eval_time += time.time() - t0
                if tc.checkpoint_every and at.step % tc.checkpoint_every == 0 and at.index < steps_per_epoch:
                    save()  # (an epoch end saves below)
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
            save()
            if stop.received:
                raise TrainingStopped(f"interrupted at step {at.step}; saved a checkpoint in {out} "
                                      f"(continue with --resume {out})", StopSignals.CODES[stop.received])
            if at.step >= total or out_of_time():
                break
    return record
