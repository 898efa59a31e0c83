"""Shared fixtures: small real photos, an offline style cache, the stand-in VGG weights."""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fast_style.config import CONFIG_DIR
from fast_style.config.cli import compose
from fast_style.model.cpu_kernels import cpu_has_native_bf16
from fast_style.train.styles import cached_style_path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
STAND_IN_VGG = SHARED / "weights" / "vgg16_hed_features.pth"
STYLE_DIR = SHARED / "styles"
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
HELD_OUT_PHOTOS = ("chelsea",)
# The stand-in's activations are on another scale than ImageNet VGG16 (see its README):
# configs/loss/standin.yaml holds the recipe measured to give a balanced result with it.
STAND_IN_LOSS = ["loss=standin"]


# Tests train in the fastest precision of the machine they run on (bf16 where the CPU has bf16
# instructions, fp32 elsewhere); bf16 itself has its own tests.
TEST_PRECISION = "bf16-mixed" if cpu_has_native_bf16() else "32"


def skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def write_crops(folder: Path, names, per_photo: int, seed: int = 0) -> Path:
    """Random square-ish crops of scikit-image's real photos, saved as JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for name in names:
        array = skimage_photo(name)
        h, w = array.shape[:2]
        for i in range(per_photo):
            side = rng.randint(min(h, w) // 2, min(h, w))
            y, x = rng.randint(0, h - side), rng.randint(0, w - side)
            Image.fromarray(array[y : y + side, x : x + side]).save(folder / f"{name}_{i}.jpg", quality=92)
    return folder


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory) -> Path:
    """48 training crops of six scikit-image photos."""
    return write_crops(tmp_path_factory.mktemp("photos"), TRAIN_PHOTOS, per_photo=8)


@pytest.fixture(scope="session")
def held_out_photos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("held_out")
    paths = []
    for name in HELD_OUT_PHOTOS:
        paths.append(folder / f"{name}.png")
        Image.fromarray(skimage_photo(name)).save(paths[-1])
    return paths


@pytest.fixture(scope="session", autouse=True)
def offline_style_cache(tmp_path_factory):
    """Point the style cache at a temp dir seeded from ../shared/styles (the real lookup path runs)."""
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("FAST_STYLE_CACHE", str(cache))
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    if STYLE_DIR.is_dir():
        import yaml

        for config in (CONFIG_DIR / "style").glob("*.yaml"):
            style = yaml.safe_load(config.read_text())["style"]
            source = STYLE_DIR / f"{style['name']}.jpg"
            if style.get("url") and source.is_file():
                target = cached_style_path(style["url"], style["sha256"])
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    yield cache
    mp.undo()


@pytest.fixture
def needs_styles():
    if not (STYLE_DIR / "starry_night.jpg").is_file():
        pytest.skip(f"style paintings not found in {STYLE_DIR} (shared/ is absent)")


@pytest.fixture
def stand_in_vgg() -> Path:
    if not STAND_IN_VGG.is_file():
        pytest.skip(f"stand-in VGG weights not found at {STAND_IN_VGG} (shared/ is absent)")
    return STAND_IN_VGG


def compose_train(overrides: list[str], run_dir: Path):
    """Compose configs/train.yaml as train.py would, with the run directory pinned (not validated)."""
    return compose("train", [*overrides, f"run_dir={run_dir}"])


def tiny_train_overrides(photos: Path, weights: str = "random", steps: int = 3, size: int = 64) -> list[str]:
    """A few CPU steps on local photos (channels_last; bf16 where the CPU has bf16 instructions)."""
    return [
        f"trainer.precision={TEST_PRECISION}",
        "data=folder",
        f"data.root={photos}",
        f"data.image_size={size}",
        "data.batch_size=2",
        "data.num_workers=0",
        f"perceptual.weights={weights}",
        f"trainer.max_steps={steps}",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=1",
        "samples.count=2",
        "logger=csv",
        "export.formats=[]",  # exporting takes ~20 s on 2 CPU cores; test_export.py covers it
    ]


def run_script(script: str, *args: str, cwd: Path = ROOT, env: dict | None = None):
    """Run ``python <script> args...`` from the repo root; returns the CompletedProcess."""
    import os
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )


def assert_one_line_error(result, *fragments: str) -> str:
    """Non-zero exit, no traceback, and a last stderr line 'error: ...' holding each fragment."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture(scope="session")
def trained_run(photos_dir, tmp_path_factory):
    """A short stand-in-VGG training run that exports its final model to every format.

    Trained weights, not random ones: scale bugs (0-255 vs 0-1, a missing clamp) hide behind an
    untrained network's near-constant output. Returns ``(run_dir, captured stdout)``.
    """
    import contextlib
    import io

    from fast_style.train.training import train

    if not STAND_IN_VGG.is_file() or not (STYLE_DIR / "starry_night.jpg").is_file():
        pytest.skip(f"stand-in VGG or style paintings not found under {SHARED}")
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    overrides = [
        *tiny_train_overrides(photos_dir, weights=str(STAND_IN_VGG), steps=25),
        *STAND_IN_LOSS,
        "samples.count=0",
        "export.formats=[onnx,torchscript,safetensors]",
    ]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        train(compose_train(overrides, run_dir))
    return run_dir, stdout.getvalue()


def pytest_collection_modifyitems(session, config, items):
    """Run tests/test_openvino.py last. Known bug (2026-11-30, OpenVINO 2026.4.1, torch 2.14.1, AVX2 CPU):
    after OpenVINO has read an ``.onnx`` file in a process (``backend=openvino`` with ``final.onnx``),
    a later multi-step training in the same process can segfault inside torch's OpenMP instance-norm
    kernel (gdb: ``batch_norm_cpu_collect_stats_contiguous_impl``). Seen only in a training that followed
    (stylize.py's tiled PyTorch path after OpenVINO passes its tests); until it is understood, the training
    tests of this one pytest process run first."""
    items.sort(key=lambda item: item.path.name == "test_openvino.py")
