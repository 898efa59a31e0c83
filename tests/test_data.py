import io

import pytest
import torch
from PIL import Image

from fast_style.errors import FastStyleError
from fast_style.images import resize_crop
from fast_style.train.data import PhotoDataModule


def test_resize_crop_shapes_and_centre_is_deterministic():
    image = Image.new("RGB", (300, 120), (10, 200, 30))
    crop = resize_crop(image, 64, None)
    assert crop.shape == (3, 64, 64) and crop.dtype == torch.uint8
    assert torch.equal(crop, resize_crop(image, 64, None))
    assert resize_crop(Image.new("RGB", (20, 30)), 64, None).shape == (3, 64, 64)  # upscales small photos


def test_folder_batches(photos_dir):
    dm = PhotoDataModule(source="folder", root=str(photos_dir), image_size=48, batch_size=4, num_workers=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (4, 3, 48, 48) and batch["images"].dtype == torch.uint8
    assert batch["skipped"] == []
    samples = dm.sample_images()
    assert samples.shape == (4, 3, 48, 48) and torch.equal(samples, dm.sample_images())


def test_hub_code_path_on_local_parquet(photos_dir, tmp_path):
    """``data=coco`` streams with datasets.load_dataset; the same call reads local parquet files."""
    import datasets

    rows = []
    for path in sorted(photos_dir.iterdir())[:10]:
        rows.append({"image": {"bytes": path.read_bytes(), "path": path.name}, "id": len(rows)})
    ds = datasets.Dataset.from_list(rows).cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp_path / "train.parquet"))
    dm = PhotoDataModule(
        source="hub",
        path="parquet",
        data_files=str(tmp_path / "train.parquet"),
        image_size=40,
        batch_size=3,
        num_workers=0,
    )
    batches = list(dm.train_dataloader())
    assert sum(len(b["images"]) for b in batches) == 10
    assert batches[0]["images"].shape[1:] == (3, 40, 40)
    assert dm.sample_images().shape == (4, 3, 40, 40)


def test_empty_folders_are_one_line_errors(tmp_path):
    # A missing data.root is refused by the config check (test_validation.py).
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos")
    with pytest.raises(FastStyleError, match="holds no image"):
        PhotoDataModule(source="folder", root=str(tmp_path / "empty")).setup()


def test_unreadable_files_are_skipped_and_reported(tmp_path):
    Image.new("RGB", (50, 40), "red").save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    buffer = io.BytesIO()
    Image.new("RGB", (50, 40), "blue").save(buffer, format="JPEG")
    (tmp_path / "truncated.jpg").write_bytes(buffer.getvalue()[:60])
    dm = PhotoDataModule(source="folder", root=str(tmp_path), image_size=32, batch_size=3, num_workers=0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[0] == 1
    assert sorted(s.split(" ")[0].rsplit("/", 1)[-1] for s in batch["skipped"]) == ["broken.jpg", "truncated.jpg"]


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os

    from fast_style.images import save_image

    path = save_image(torch.rand(3, 8, 8), tmp_path / "x.png")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
