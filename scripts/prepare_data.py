"""Pack any photo source into a memory-mapped uint8 dataset for ``data=packed``.

python scripts/prepare_data.py data=folder data.root=/data/train2014 out=/data/coco256
python scripts/prepare_data.py data=coco limit=20000 out=/data/coco256   # from the Hub stream
python train.py data=packed data.path=/data/coco256
"""

import itertools
import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # runnable without install

from fast_style.cli import check_group_choices, run_guarded  # noqa: E402
from fast_style.errors import FastStyleError  # noqa: E402
from fast_style.packed import pack_photos  # noqa: E402


def prepare(cfg: DictConfig) -> None:
    if cfg.size < 32:
        raise FastStyleError(f"size={cfg.size} is too small: use 32 or more (256 matches the paper)")
    datamodule = instantiate(cfg.data)
    sources, total = datamodule.iter_sources()
    if cfg.limit:
        sources, total = itertools.islice(sources, cfg.limit), min(total or cfg.limit, cfg.limit)
    summary = pack_photos(sources, cfg.out, cfg.size, total=total, workers=cfg.workers)
    for item in summary["skipped"]:
        print(f"skipped an unreadable photo: {item}")
    print(
        f"packed {summary['count']} photos at {summary['size']}x{summary['size']} into {cfg.out} ({len(summary['skipped'])} skipped)"
    )


@hydra.main(version_base="1.3", config_path="../configs", config_name="prepare_data")
def main(cfg: DictConfig) -> None:
    run_guarded(prepare, cfg)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:])
    main()
