"""`python -m trainer DATASET [train options]`: the entry point torchrun launches on every rank."""

import os
import sys

from infoedit.cli import app

if __name__ == "__main__":
    try:
        app(["train", *sys.argv[1:]], prog_name="python -m trainer")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    # The process group's threads could abort the interpreter's own teardown (SIGABRT, so exit 1
    # after the model was written: one run in three here): leave the group, flush, and exit now.
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
