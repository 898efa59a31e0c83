"""Compare trained runs in one picture: ``python scripts/contact_sheet.py checkpoints/multirun/<date>``.

A row per run (its label: the overrides that differ between runs), a column per content photo
(``--photos a.jpg b.jpg``, default three built-in generated scenes). Prints the output path.
"""

import sys

from fast_style.cli import run_guarded
from fast_style.contact_sheet import main

if __name__ == "__main__":
    run_guarded(main, sys.argv[1:])
