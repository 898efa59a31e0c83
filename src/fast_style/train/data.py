"""Training photos: a LightningDataModule over a folder, a (streamed) Hugging Face dataset, or a
packed uint8 dataset made by ``scripts/prepare_data.py``.

Batches are ``{"images": uint8 (B, 3, S, S), "skipped": [descriptions of undecodable files]}``:
uint8 keeps worker->trainer traffic 4x smaller than float; the module converts to [0, 1] on the
device. A file that cannot be decoded is skipped and reported, never fatal.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from fast_style.errors import FastStyleError
from fast_style.files import atomic_write
from fast_style.images import crop_or_reason, list_images
from fast_style.train.packed import PackedPhotos


class FolderPhotos(Dataset):
    """Map-style dataset over image files; a description string for a file that cannot be decoded."""

    def __init__(self, files: list[Path], image_size: int, random_crop: bool = True) -> None:
        self.files, self.image_size, self.random_crop = files, image_size, random_crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor | str:
        # Crops draw from the global stream, which seed_everything seeds per worker and
        # callbacks.RNGState restores on resume: runs are repeatable, resumes do not replay.
        rng = random.Random(random.getrandbits(64)) if self.random_crop else None
        return crop_or_reason(self.files[index], self.image_size, rng, str(self.files[index]))


class StreamedPhotos(IterableDataset):
    """Iterates a Hugging Face (streaming) dataset; HF shards it across DataLoader workers itself."""

    def __init__(self, hf_dataset, image_column: str, image_size: int, seed: int = 0) -> None:
        self.hf_dataset, self.image_column, self.image_size, self.seed = hf_dataset, image_column, image_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.hf_dataset, "set_epoch"):
            self.hf_dataset.set_epoch(epoch)

    def __iter__(self):
        worker = get_worker_info()
        rng = random.Random(hash((self.seed, self.epoch, worker.id if worker else -1)))
        for index, example in enumerate(self.hf_dataset):
            yield crop_or_reason(example[self.image_column], self.image_size, rng, f"example {index} of the stream")


def collate_photos(items: list[torch.Tensor | str] | torch.Tensor) -> dict[str, Any]:
    """Stack the decoded images; list the failures (strings) instead of crashing.

    A ready ``uint8 (B, 3, S, S)`` tensor (from ``PackedPhotos.__getitems__``) passes through.
    """
    if isinstance(items, torch.Tensor):
        return {"images": items, "skipped": []}
    images = [item for item in items if isinstance(item, torch.Tensor)]
    skipped = [item for item in items if isinstance(item, str)]
    stacked = torch.stack(images) if images else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    return {"images": stacked, "skipped": skipped}


def write_skipped_report(skipped: Iterable[str], run_dir: str | Path) -> str | None:
    """List unreadable files in ``<run_dir>/skipped_files.txt``; return the summary line (None if none).

    Each entry is ``"<path or stream position> (<error type>)"`` as the datasets produce them.
    """
    entries = sorted(set(skipped))
    if not entries:
        return None
    path = atomic_write(
        Path(run_dir) / "skipped_files.txt", lambda tmp: tmp.write_text("".join(f"{e}\n" for e in entries))
    )
    noun = "file" if len(entries) == 1 else "files"
    return f"skipped {len(entries)} unreadable {noun} (see {path})"


class PhotoDataModule(pl.LightningDataModule):
    """Content photos for training.

    Args (``configs/data/*.yaml``; types, defaults and allowed values: ``fast_style.config.schema``,
    checked before this is built):
        source: ``hub`` (``datasets.load_dataset(path, name, split, data_files, streaming)``, e.g.
            COCO streamed from the Hub, or local parquet/image files through the same call),
            ``folder`` (every image under ``root``) or ``packed`` (``scripts/prepare_data.py`` output at ``path``).
        image_size: side of the square training crops (pixels).
        batch_size: images per step per device.
    """

    def __init__(
        self,
        source: str = "hub",
        image_size: int = 256,
        batch_size: int = 4,
        num_workers: int = 4,
        root: str | None = None,
        path: str | None = None,
        name: str | None = None,
        split: str = "train",
        data_files: Any = None,
        image_column: str = "image",
        streaming: bool = True,
        shuffle_buffer: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.source, self.image_size, self.batch_size, self.num_workers = source, image_size, batch_size, num_workers
        self.root, self.path, self.name, self.split, self.data_files = root, path, name, split, data_files
        self.image_column, self.streaming, self.shuffle_buffer, self.seed = (
            image_column,
            streaming,
            shuffle_buffer,
            seed,
        )
        self.streaming_shuffle = True
        self.dataset: Dataset | IterableDataset | None = None

    # -- building -----------------------------------------------------------------------------
    def _folder_files(self) -> list[Path]:
        root = Path(self.root).expanduser()
        files = list_images(root)
        if not files:
            raise FastStyleError(f"data.root={root} holds no image files (.jpg, .png, ...): add photos or fix the path")
        return files

    def _hub_dataset(self, rank: int = 0, world_size: int = 1):
        import datasets

        try:
            hf = datasets.load_dataset(
                self.path, self.name, split=self.split, data_files=self.data_files, streaming=self.streaming
            )
        except Exception as exc:
            raise FastStyleError(
                f"could not open dataset {self.path!r} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}): "
                "check the network or use data=folder data.root=/path/to/photos"
            ) from exc
        if self.image_column not in (hf.column_names or [self.image_column]):
            raise FastStyleError(
                f"dataset {self.path!r} has no column {self.image_column!r} (columns: {hf.column_names}): set data.image_column"
            )
        if isinstance(hf.features, dict) and self.image_column in hf.features:
            hf = hf.cast_column(self.image_column, datasets.Image(decode=False))  # we decode, robustly
        if world_size > 1:
            from datasets.distributed import split_dataset_by_node

            hf = split_dataset_by_node(hf, rank=rank, world_size=world_size)
        if self.streaming and self.streaming_shuffle:
            hf = hf.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        return hf

    def _packed_dataset(self, augment: bool = True) -> PackedPhotos:
        return PackedPhotos(self.path, self.image_size, augment=augment)

    def iter_sources(self) -> tuple[Iterator[tuple[Any, str]], int | None]:
        """Every raw photo of the source, in order, as ``(path | bytes | HF image, description)``,
        and the count when known. For ``scripts/prepare_data.py`` (``data=folder`` or a Hub source)."""
        if self.source == "folder":
            files = self._folder_files()
            return ((f, str(f)) for f in files), len(files)
        self.streaming_shuffle = False
        hf = self._hub_dataset()
        total = len(hf) if hasattr(hf, "__len__") and not self.streaming else None
        return ((example[self.image_column], f"example {i}") for i, example in enumerate(hf)), total

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if self.source == "folder":
            self.dataset = FolderPhotos(self._folder_files(), self.image_size)
        elif self.source == "packed":
            self.dataset = self._packed_dataset()
        else:
            hf = self._hub_dataset(rank, world)
            if isinstance(hf, torch.utils.data.IterableDataset) or not hasattr(hf, "__len__"):
                self.dataset = StreamedPhotos(hf, self.image_column, self.image_size, self.seed)
            else:  # a non-streamed HF dataset is map-style: random access, distributed sampler
                self.dataset = _MapHFPhotos(hf, self.image_column, self.image_size)

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        iterable = isinstance(self.dataset, IterableDataset)
        if not iterable:
            self._check_enough_photos(len(self.dataset))
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=not iterable,
            num_workers=self.num_workers,
            collate_fn=collate_photos,
            drop_last=not iterable,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def _check_enough_photos(self, photos: int) -> None:
        """A full batch per process, or the run would train 0 steps (whole batches only) and still
        write a "final" model: refuse with one line instead."""
        trainer = getattr(self, "trainer", None)
        processes = trainer.world_size if trainer is not None else 1
        if photos < self.batch_size * processes:
            gpus = f" x {processes} processes" if processes > 1 else ""
            raise FastStyleError(
                f"data has {photos} photos, fewer than one batch (data.batch_size={self.batch_size}{gpus}): "
                "add photos or lower data.batch_size"
            )

    def sample_images(self, count: int = 4) -> torch.Tensor:
        """Fixed centre crops ``uint8 (count, 3, S, S)`` of the first decodable photos, for visual checks."""
        if self.source == "folder":
            files = self._folder_files()
            stride = max(1, len(files) // max(1, count))  # spread over the folder
            files = files[::stride] + [f for i, f in enumerate(files) if i % stride]
            photos = FolderPhotos(files, self.image_size, random_crop=False)
            candidates = (photos[i] for i in range(len(files)))
        elif self.source == "packed":
            dataset = self._packed_dataset(augment=False)
            candidates = (dataset[i] for i in range(min(len(dataset), count)))
        else:
            hf = self._hub_dataset()
            candidates = (
                crop_or_reason(example[self.image_column], self.image_size, None, "") for example in hf.take(4 * count)
            )
        images = []
        for item in candidates:
            if isinstance(item, torch.Tensor):
                images.append(item)
            if len(images) == count:
                break
        return torch.stack(images) if images else torch.empty(0, 3, self.image_size, self.image_size, dtype=torch.uint8)


class _MapHFPhotos(Dataset):
    def __init__(self, hf_dataset, image_column: str, image_size: int) -> None:
        self.hf_dataset, self.image_column, self.image_size = hf_dataset, image_column, image_size

    def __len__(self) -> int:
        return len(self.hf_dataset)

    def __getitem__(self, index: int) -> torch.Tensor | str:
        image = self.hf_dataset[index][self.image_column]
        return crop_or_reason(image, self.image_size, random.Random(), f"example {index}")
