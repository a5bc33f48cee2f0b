"""Distributed helpers that do nothing in a single process, so the loop needs no branches.

Launch with ``infoedit train mnist --nproc N`` (``relaunch`` below), or by hand with
``torchrun --nproc_per_node N -m infoedit.cli train mnist ...``: gloo on CPU, NCCL on GPU.
Gradients are averaged across ranks after each backward, which is what DistributedDataParallel
does; we reduce by hand because one step runs several forwards through the same networks and
takes a partial gradient (Eq. 31 trains only E), which DDP's one-backward-per-forward hooks do
not support.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return get_rank() == 0


def init_from_env(device: torch.device) -> None:
    """Join the process group torchrun describes in the environment (no-op without it)."""
    if is_dist() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)


def average_gradients(module: torch.nn.Module) -> None:
    """All-reduce and average .grad of every parameter that has one."""
    average_parameter_gradients(module.parameters())


def average_parameter_gradients(params) -> None:
    """average_gradients for any parameters (an optimiser's, which may span networks)."""
    if not is_dist():
        return
    world = get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's BatchNorm statistics everywhere (DDP's broadcast_buffers), so ranks agree."""
    if not is_dist():
        return
    for b in module.buffers():
        dist.broadcast(b, src=0)


def collective_device() -> torch.device:
    """Where a tensor must be for this process group's collectives: NCCL moves only CUDA tensors."""
    if is_dist() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reduce_mean(value: float) -> float:
    if not is_dist():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.item() / get_world_size()


def any_rank(flag: bool) -> bool:
    """Whether flag holds on any rank. A rank that decides alone to stop (a signal only it got,
    its own clock) must stop at the same step as the others, or they wait in the next
    all-reduce for ever."""
    if not is_dist():
        return flag
    t = torch.tensor([float(flag)], device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def relaunch(nproc: int, argv: list[str], env: dict[str, str]) -> int:
    """Run ``python ARGV`` under torchrun with ``nproc`` processes on this machine, with ``env``
    added to the environment, and return its exit code.

    torchrun runs in its own session, so a terminal's Ctrl-C reaches it once, through this
    process, which passes SIGINT and SIGTERM on: stopping this process stops the ranks, not
    only itself."""
    import signal
    import subprocess

    cmd = [sys.executable, "-c", "from trainer.dist import torchrun; torchrun()", "--standalone",
           f"--nproc_per_node={nproc}", *argv]
    # each rank's share of the cores, said here so torchrun prints no banner about it
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": threads, **env}, start_new_session=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: proc.send_signal(signum))
    return proc.wait()


def torchrun() -> None:
    """torchrun (torch.distributed.run) on sys.argv, less its failure report: a rank that fails
    has said why in one line (rank 0; the CLI's errors), so torchrun's own log line and
    traceback of the failure are left out, and it exits with that rank's exit code."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(sys.argv[1:]))
    except ChildFailedError as failed:
        codes = [f.exitcode for f in failed.failures.values() if f.exitcode and f.exitcode > 0]
        sys.exit(codes[0] if codes else 1)


def exit_rank(code: int) -> None:
    """End this torchrun rank now with ``code``, once it has left its process group; return
    at once in a process that is in no group. The group's threads could abort the
    interpreter's own teardown (SIGABRT, so exit 1 after the model was written: one run in
    three here), so the rank flushes and exits without it."""
    if not is_dist():
        return
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
