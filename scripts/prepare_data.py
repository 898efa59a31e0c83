"""Pack any photo source into a memory-mapped uint8 dataset for ``data=packed``.

python scripts/prepare_data.py data=folder data.root=/data/train2014 out=/data/coco256
python scripts/prepare_data.py data=coco limit=20000 out=/data/coco256   # from the Hub stream
python train.py data=packed data.path=/data/coco256
"""

import itertools

from hydra.utils import instantiate

from fast_style.config.cli import launch


def main(cfg) -> None:
    from fast_style.train.packed import pack_photos

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


if __name__ == "__main__":
    launch("prepare_data", main)
