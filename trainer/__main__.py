"""`python -m trainer DATASET [train options]`: the old name of `python -m infoedit.cli train
DATASET [train options]`, kept for the torchrun commands that use it.

It runs that command in its place (the same process, so torchrun still watches it), rather
than importing the command line into the training package. `infoedit train --nproc N` and
torchrun launch `-m infoedit.cli train` themselves.
"""

import os
import sys

if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, "-m", "infoedit.cli", "train", *sys.argv[1:]])
