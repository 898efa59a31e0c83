"""Issue 3: precision, non-finite detection, DDP, packed data, compile."""

import json
import math

import pytest
import torch
from PIL import Image

from fast_style.checkpoint_format import read_checkpoint
from fast_style.errors import FastStyleError
from fast_style.images import decode_photo, resize_crop
from fast_style.infer.stylizer import load_stylizer
from fast_style.model.networks import TransformerNet
from fast_style.model.perceptual import PerceptualLoss, gram_matrix
from fast_style.train.data import PhotoDataModule
from fast_style.train.module import NonFiniteLossError, StyleTransferModule
from fast_style.train.packed import pack_photos
from fast_style.train.training import train

from .conftest import compose_train, run_script, skimage_photo, tiny_train_overrides


def logged_losses(run_dir):
    import csv

    rows = list(csv.DictReader(open(run_dir / "logs" / "metrics.csv")))
    return [float(r["loss/total"]) for r in rows if r.get("loss/total")]


def test_bf16_mixed_on_cpu_trains_with_finite_losses(photos_dir, tmp_path, needs_styles):
    overrides = tiny_train_overrides(photos_dir, steps=4) + ["trainer.precision=bf16-mixed"]
    train(compose_train(overrides, tmp_path / "run"))
    losses = logged_losses(tmp_path / "run")
    assert len(losses) >= 4 and all(math.isfinite(v) and v > 0 for v in losses)
    out = load_stylizer(tmp_path / "run" / "final.ckpt")(torch.rand(1, 3, 30, 41))
    assert out.shape == (1, 3, 30, 41) and torch.isfinite(out).all()


def test_fp16_style_loss_does_not_overflow_on_large_activations():
    torch.manual_seed(0)
    loss = PerceptualLoss(torch.rand(1, 3, 32, 32), weights="random")
    huge = {
        name: torch.full((2, c, 16, 16), 2.0e3, dtype=torch.float16)
        for name, c in [("relu1_2", 64), ("relu2_2", 128), ("relu3_3", 256), ("relu4_3", 512)]
    }
    assert not torch.isfinite((huge["relu4_3"].flatten(2) @ huge["relu4_3"].flatten(2).transpose(1, 2)).sum())
    with torch.autocast("cpu", dtype=torch.float16):
        term = loss._style_term(huge)
    assert term.dtype == torch.float32 and torch.isfinite(term)
    assert torch.isfinite(gram_matrix(huge["relu4_3"])).all()


def test_non_finite_loss_names_step_and_term():
    torch.manual_seed(0)
    module = StyleTransferModule(TransformerNet(8, 1), PerceptualLoss(torch.rand(1, 3, 32, 32), weights="random"))
    images = torch.rand(2, 3, 32, 32)
    module.training_step({"images": images, "skipped": []}, 0)  # fine
    images[0, :, 3, 3] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"step 0") as info:
        module.training_step({"images": images, "skipped": []}, 1)
    assert "content" in str(info.value) and isinstance(info.value, FastStyleError)


DDP_COMMON = [
    "data.image_size=64",
    "data.num_workers=0",
    "perceptual.weights=random",
    "trainer.max_steps=1",
    "trainer.precision=32",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "samples.count=0",
    "optimizer._target_=torch.optim.SGD",
    "optimizer.lr=1.0",
    "logger=none",
    "style.size=64",
]


@pytest.fixture(scope="module")
def four_photos(tmp_path_factory):
    """Four 64x64 photos: at image_size=64 every crop is the whole photo (deterministic data)."""
    folder = tmp_path_factory.mktemp("four")
    for name in ("astronaut", "coffee", "rocket", "chelsea"):
        array = skimage_photo(name)
        side = min(array.shape[:2])
        Image.fromarray(array[:side, :side]).resize((64, 64), Image.Resampling.BICUBIC).save(folder / f"{name}.png")
    return folder


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_on_the_whole_batch(four_photos, tmp_path, needs_styles):
    ddp = run_script(
        "train.py",
        "trainer=ddp",
        "trainer.devices=2",
        "data=folder",
        f"data.root={four_photos}",
        "data.batch_size=2",
        *DDP_COMMON,
        f"hydra.run.dir={tmp_path / 'ddp'}",
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ddp").glob("*.ckpt")) == ["final.ckpt", "last.ckpt"]
    assert ddp.stdout.count("final checkpoint:") == 1  # only rank 0 reports
    single = run_script(
        "train.py",
        "data=folder",
        f"data.root={four_photos}",
        "data.batch_size=4",
        *DDP_COMMON,
        f"hydra.run.dir={tmp_path / 'single'}",
    )
    assert single.returncode == 0, single.stderr[-3000:]
    torch.manual_seed(0)  # train.py seeds with seed=0 before building the net
    initial = TransformerNet().state_dict()
    a = read_checkpoint(tmp_path / "ddp" / "final.ckpt")["state_dict"]
    b = read_checkpoint(tmp_path / "single" / "final.ckpt")["state_dict"]
    moved = 0
    for key, w0 in initial.items():
        step_ddp, step_single = a[f"net.{key}"] - w0, b[f"net.{key}"] - w0
        # Summation order differs (two half-batches + all-reduce): compare per tensor, relative.
        assert (step_ddp - step_single).norm() <= 1e-3 * step_single.norm() + 1e-7, key
        moved += int(step_single.abs().max() > 0)
    assert moved > len(initial) // 2  # the step really changed the weights


def test_packed_round_trip_equals_resized_source(photos_dir, tmp_path):
    files = sorted(photos_dir.iterdir())[:6]
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    sources = [(f, str(f)) for f in files] + [(tmp_path / "bad.jpg", "bad.jpg")]
    summary = pack_photos(sources, tmp_path / "packed", size=40, total=len(sources), workers=2)
    assert summary["count"] == 6 and len(summary["skipped"]) == 1 and "bad.jpg" in summary["skipped"][0]
    assert json.loads((tmp_path / "packed" / "fast_style_packed.json").read_text())["size"] == 40
    dm = PhotoDataModule(source="packed", path=str(tmp_path / "packed"), image_size=40)
    packed = dm._packed_dataset(augment=False)
    for i, f in enumerate(files):
        assert torch.equal(packed[i], resize_crop(decode_photo(f), 40, None))
    batch = packed.__getitems__([5, 0, 3])
    assert batch.shape == (3, 3, 40, 40) and torch.equal(batch[1], packed[0])
    # smaller training crops come out of larger packed images
    crops = PhotoDataModule(source="packed", path=str(tmp_path / "packed"), image_size=32)._packed_dataset()
    assert crops.__getitems__([0, 1]).shape == (2, 3, 32, 32)
    with pytest.raises(FastStyleError, match="larger than the packed size"):
        PhotoDataModule(source="packed", path=str(tmp_path / "packed"), image_size=48)._packed_dataset()
    with pytest.raises(FastStyleError, match="not empty"):
        pack_photos(sources, tmp_path / "packed", size=40)


def test_prepare_data_script_then_train_from_packed(photos_dir, tmp_path, needs_styles):
    result = run_script(
        "scripts/prepare_data.py", "data=folder", f"data.root={photos_dir}", f"out={tmp_path / 'packed'}", "size=64"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"packed 48 photos at 64x64 into {tmp_path / 'packed'}" in result.stdout
    overrides = [o for o in tiny_train_overrides(photos_dir, steps=3) if not o.startswith("data")]
    cfg = compose_train(
        [
            *overrides,
            "data=packed",
            f"data.path={tmp_path / 'packed'}",
            "data.image_size=64",
            "data.batch_size=2",
            "data.num_workers=0",
        ],
        tmp_path / "run",
    )
    train(cfg)
    assert read_checkpoint(tmp_path / "run" / "final.ckpt")["global_step"] == 3


@pytest.mark.slow
def test_compile_trains_and_checkpoint_loads_without_compile(photos_dir, tmp_path, needs_styles):
    overrides = tiny_train_overrides(photos_dir, steps=2, size=32) + ["compile=true", "model=small", "samples.count=0"]
    train(compose_train(overrides, tmp_path / "run"))
    checkpoint = read_checkpoint(tmp_path / "run" / "final.ckpt")
    assert not any("_orig_mod" in k for k in checkpoint["state_dict"])
    assert load_stylizer(tmp_path / "run" / "final.ckpt")(torch.rand(1, 3, 20, 20)).shape == (1, 3, 20, 20)


def test_a_finished_ddp_run_closes_its_process_group(photos_dir, tmp_path, needs_styles):
    # A gloo group left to interpreter shutdown can abort a rank after training (exit -6).
    overrides = tiny_train_overrides(photos_dir, steps=1) + ["trainer=ddp", "trainer.devices=1"]
    train(compose_train(overrides, tmp_path / "run"))
    assert (tmp_path / "run" / "final.ckpt").is_file()
    assert not torch.distributed.is_initialized()
