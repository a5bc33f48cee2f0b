"""`python -m trainer DATASET [train options]`: the entry point torchrun launches on every rank."""

import sys

from infoedit.cli import app

if __name__ == "__main__":
    app(["train", *sys.argv[1:]], prog_name="python -m trainer")
