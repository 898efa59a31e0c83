"""Compare trained runs in one picture: ``python scripts/contact_sheet.py runs=[checkpoints/multirun/<date>]``.

A row per run (its label: the overrides that differ between runs), a column per content photo
(``photos=[a.jpg,b.jpg]``, default three built-in generated scenes). Prints the output path.
"""

from fast_style.config.cli import launch


def main(cfg) -> None:
    from fast_style.contact_sheet import main as contact_sheet

    contact_sheet(cfg)


if __name__ == "__main__":
    launch("contact_sheet", main)
