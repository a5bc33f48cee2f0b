"""A run's settings (TrainConfig), and what every family's training step builds from them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch


@dataclass
class TrainConfig:
    epochs: int | None = None  # None: the dataset default (infoedit.datasets)
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
    # torch.compile each network's forward (TorchInductor; about 45 s of compiling first). On this
    # 2-core CPU it pays at the larger models (28px width 1.0: 1.07x, 64px width 0.5: 1.33x) and
    # costs at the cpu-fast width (28px, 0.3: 0.89x): bench/results/throughput-compile*.md. Off by
    # default: it needs a C++ compiler, and the compile time only pays back on long runs.
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"      # "bf16": autocast on GPU (on CPUs without bf16 units it is far slower)
    limit: int | None = None
    max_steps: int | None = None
    max_seconds: float | None = None  # stop (and save) after this much training time
    eval_every: int | None = None     # also log held-out accuracy every N steps (time not counted)
    command: str = ""            # the command line, recorded in the model card
    log_every: int = 10
    epoch_lines: bool = False  # a line on stderr per epoch: for a log file, where no bar is drawn
    checkpoint_every: int | None = 500  # also write the resumable checkpoint every N steps (None: epoch ends)
    resume: Path | None = None          # a run folder: continue the run its checkpoint/ holds
    init_from: str | None = None        # a model (folder, bundled name, Hub id) whose weights start the run
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=str))  # Path -> str


def requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


ADAM_IMPLS = {"fused": dict(fused=True), "foreach": dict(foreach=True), "loop": dict(foreach=False)}


def adam(params, lr: float, tc: TrainConfig) -> torch.optim.Adam:
    """The Adam every trainer uses: betas (tc.beta1, 0.999), implementation tc.adam."""
    if tc.adam not in ADAM_IMPLS:
        raise ValueError(f"adam must be one of {', '.join(ADAM_IMPLS)}, got {tc.adam!r}")
    return torch.optim.Adam(params, lr, betas=(tc.beta1, 0.999), **ADAM_IMPLS[tc.adam])
