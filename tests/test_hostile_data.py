"""Broken and odd image files: decoded correctly (EXIF applied, RGB) or skipped, counted exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fast_style.checkpoint_format import read_checkpoint
from fast_style.images import decode_photo
from fast_style.train.data import FolderPhotos, write_skipped_report
from fast_style.train.training import train

from .conftest import STYLE_DIR, compose_train, tiny_train_overrides, write_crops
from .hostile_images import encoded, png_bytes, write_hostile_corpus


def test_exif_orientation_is_applied(tmp_path):
    # 40 wide x 20 high, left half red; orientation 6 = "rotate 90 clockwise to display".
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    path.write_bytes(encoded(Image.fromarray(array), "JPEG", quality=100, exif=exif.tobytes()))
    image = np.asarray(decode_photo(path))
    assert image.shape == (40, 20, 3)  # displayed upright: 20 wide, 40 high
    assert image[5, 10, 0] > 200 and image[35, 10, 0] < 60  # the red half is now on top


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("RGBA", (8, 8), (255, 0, 0, 0)), (255, 255, 255)),  # transparent -> white background
        (Image.new("RGBA", (8, 8), (0, 0, 255, 255)), (0, 0, 255)),
        (Image.new("CMYK", (8, 8), (0, 255, 255, 0)), (255, 0, 0)),  # magenta + yellow ink = red
        (Image.new("L", (8, 8), 128), (128, 128, 128)),
        (Image.new("LA", (8, 8), (0, 0)), (255, 255, 255)),
    ],
)
def test_modes_convert_to_rgb(image, expected, tmp_path):
    path = tmp_path / "odd.png" if image.mode != "CMYK" else tmp_path / "odd.tif"
    image.save(path)
    rgb = decode_photo(path)
    assert rgb.mode == "RGB" and rgb.getpixel((3, 3)) == expected


def test_sixteen_bit_images_keep_their_range(tmp_path):
    gray = np.array([[0, 32768, 65535]], dtype=np.uint16)
    (tmp_path / "g16.png").write_bytes(png_bytes(gray, 16, 0))
    assert np.asarray(decode_photo(tmp_path / "g16.png"))[0, :, 0].tolist() == [0, 128, 255]  # not clipped at 255
    rgb = np.zeros((1, 2, 3), np.uint16)
    rgb[0, 1] = (65535, 0, 32768)
    (tmp_path / "rgb16.png").write_bytes(png_bytes(rgb, 16, 2))
    decoded = np.asarray(decode_photo(tmp_path / "rgb16.png"))
    assert decoded[0, 0].tolist() == [0, 0, 0] and decoded[0, 1].tolist() == [255, 0, 128]


def test_every_bad_file_is_skipped_and_every_odd_one_decodes(tmp_path):
    bad, odd = write_hostile_corpus(tmp_path, copies=3)
    dataset = FolderPhotos(sorted(bad + odd), image_size=32)
    results = {path: dataset[i] for i, path in enumerate(dataset.files)}
    for path in bad:
        assert isinstance(results[path], str) and results[path].startswith(str(path)), path
    for path in odd:
        assert isinstance(results[path], torch.Tensor), (path, results[path])
        assert results[path].shape == (3, 32, 32) and results[path].dtype == torch.uint8


def test_skipped_report_is_sorted_unique_and_absent_when_nothing_was_skipped(tmp_path):
    assert write_skipped_report([], tmp_path) is None and not (tmp_path / "skipped_files.txt").exists()
    line = write_skipped_report(["b (OSError)", "a (OSError)", "b (OSError)"], tmp_path)
    assert line == f"skipped 2 unreadable files (see {tmp_path / 'skipped_files.txt'})"
    assert (tmp_path / "skipped_files.txt").read_text() == "a (OSError)\nb (OSError)\n"


@pytest.mark.slow
def test_training_on_a_hostile_folder_counts_every_bad_file_once(tmp_path, capsys):
    """250 generated bad/odd files + 6 photos, two DataLoader workers, one full epoch."""
    if not (STYLE_DIR / "starry_night.jpg").is_file():
        pytest.skip("style paintings not found (shared/ is absent)")
    folder = tmp_path / "photos"
    bad, odd = write_hostile_corpus(folder / "generated", copies=10)
    write_crops(folder / "real", ("astronaut", "coffee", "rocket"), per_photo=2)
    total = len(bad) + len(odd) + 6
    batch = 8
    assert total % batch == 0  # drop_last would otherwise hide the last partial batch's files
    run_dir = tmp_path / "run"
    overrides = [
        *tiny_train_overrides(folder, size=32),
        "style=custom",
        f"style.image={STYLE_DIR / 'starry_night.jpg'}",
        "style.size=64",
        "model=small",
        f"data.batch_size={batch}",
        "data.num_workers=2",  # skips arrive from two worker processes
        "trainer.max_steps=-1",
        "trainer.max_epochs=1",
        "perceptual.content_layers=[relu1_2]",
        "perceptual.style_layers=[relu1_2]",
        "checkpoint.every_n_steps=1000",
        "samples.count=0",
        "logger=none",
    ]
    capsys.readouterr()
    loss = train(compose_train(overrides, run_dir))
    stdout = capsys.readouterr().out.strip().splitlines()
    assert loss == loss  # finite: training ran on the readable files
    listed = (run_dir / "skipped_files.txt").read_text().splitlines()
    assert sorted(entry.split(" (")[0] for entry in listed) == sorted(str(p) for p in bad)
    assert stdout[-1] == f"final checkpoint: {run_dir / 'final.ckpt'}"
    assert stdout[-2] == f"skipped {len(bad)} unreadable files (see {run_dir / 'skipped_files.txt'})"
    assert read_checkpoint(run_dir / "final.ckpt")["fast_style"]["skipped_files"] == len(bad)
