"""`python -m infoedit.cli ...`: the console command (torchrun's ranks of `train --nproc` run it)."""

from infoedit.cli import main

main()
