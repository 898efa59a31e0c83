"""Packed photos: fixed-size uint8 crops in an Arrow dataset (``datasets.save_to_disk``).

Decoding JPEGs costs far more CPU than the training step needs to be fed; packing decodes once.
Each row holds ``pixels``: the raw bytes of one ``uint8 (3, S, S)`` image (C, H, W order), so a
batch is a single memory-mapped gather plus ``np.frombuffer``: no per-image Python decoding.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from fast_style.errors import FastStyleError
from fast_style.images import crop_or_reason

INFO_FILE = "fast_style_packed.json"


def _pack_one(args) -> tuple[bytes | None, str]:
    source, description, size = args
    crop = crop_or_reason(source, size, None, description)
    return (None, crop) if isinstance(crop, str) else (crop.numpy().tobytes(), description)


def pack_photos(
    sources: Iterable[tuple[object, str]],
    out_dir: str | Path,
    size: int,
    total: int | None = None,
    workers: int = 2,
) -> dict:
    """Decode, resize (shorter side) and centre-crop every source to ``size``, save at ``out_dir``.

    ``sources`` yields ``(path | bytes | HF image dict, description)``. Returns the summary that is
    also written to ``out_dir/fast_style_packed.json``: ``{"size", "count", "skipped"}``.
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FastStyleError(f"out={out_dir} exists and is not empty: choose a new folder or delete it")
    skipped: list[str] = []

    def rows() -> Iterator[dict]:
        jobs = ((source, description, size) for source, description in sources)
        with Pool(max(1, workers)) as pool:
            results = pool.imap(_pack_one, jobs, chunksize=8) if workers > 1 else map(_pack_one, jobs)
            for pixels, description in tqdm(results, total=total, desc="packing", unit="img"):
                if pixels is None:
                    skipped.append(description)
                else:
                    yield {"pixels": pixels}

    features = datasets.Features({"pixels": datasets.Value("binary")})
    tmp_dir = out_dir.with_name(f".{out_dir.name}.partial")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    try:
        # Stream rows to an Arrow file on disk: COCO-sized sets never have to fit in memory.
        with ArrowWriter(features=features, path=str(tmp_dir / "data.arrow")) as writer:
            for row in rows():
                writer.write(row)
            count, _ = writer.finalize()
        if count == 0:
            raise FastStyleError(f"no decodable photos to pack ({len(skipped)} skipped): check the data source")
        datasets.Dataset.from_file(str(tmp_dir / "data.arrow")).save_to_disk(str(tmp_dir / "final"))
        summary = {"size": size, "count": count, "skipped": skipped}
        (tmp_dir / "final" / INFO_FILE).write_text(json.dumps(summary, indent=1))
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(tmp_dir / "final", out_dir)  # the folder appears complete or not at all
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return summary


class PackedPhotos(Dataset):
    """Map-style dataset over a packed folder; yields ``uint8 (3, S, S)`` crops of ``image_size``.

    Stored images larger than ``image_size`` are randomly cropped; every image is randomly
    flipped left-right. ``__getitems__`` fetches a whole batch in one Arrow gather.
    """

    def __init__(self, path: str | Path, image_size: int, augment: bool = True) -> None:
        import datasets

        path = Path(path).expanduser()
        info = path / INFO_FILE
        if not info.is_file():
            raise FastStyleError(
                f"data.path={path} is not a packed dataset (no {INFO_FILE}): run scripts/prepare_data.py first"
            )
        self.stored_size = json.loads(info.read_text())["size"]
        if image_size > self.stored_size:
            raise FastStyleError(
                f"data.image_size={image_size} is larger than the packed size {self.stored_size}: "
                f"repack with size>={image_size} or lower data.image_size"
            )
        self.image_size, self.augment = image_size, augment
        self.table = datasets.load_from_disk(str(path)).with_format("arrow")
        self._rng, self._rng_pid = None, None

    @property
    def rng(self) -> np.random.Generator:
        # DataLoader workers are forked copies: give each process its own stream (torch seeds
        # every worker differently, and Lightning's seed_everything makes that reproducible).
        if self._rng_pid != os.getpid():
            self._rng, self._rng_pid = np.random.default_rng(torch.initial_seed() % 2**63), os.getpid()
        return self._rng

    def __len__(self) -> int:
        return len(self.table)

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        """A whole batch: ``uint8 (len(indices), 3, image_size, image_size)``."""
        column = self.table[list(indices)]["pixels"].combine_chunks()
        s, size = self.stored_size, self.image_size
        # Binary arrays keep values back to back: one buffer holds the whole batch.
        offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset : column.offset + len(column) + 1]
        batch = np.frombuffer(column.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 3, s, s)
        out = np.empty((len(batch), 3, size, size), dtype=np.uint8)
        for i, image in enumerate(batch):
            top = left = (s - size) // 2
            if self.augment and s > size:
                top, left = self.rng.integers(0, s - size + 1, size=2)
            crop = image[:, top : top + size, left : left + size]
            out[i] = crop[:, :, ::-1] if self.augment and self.rng.random() < 0.5 else crop
        return torch.from_numpy(out)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.__getitems__([index])[0]
