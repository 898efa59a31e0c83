"""Tiling: frozen instance-norm statistics make tiles agree with the untiled image; memory stays bounded."""

import sys

import pytest
import torch
from PIL import Image

from fast_style.infer.stylizer import load_stylizer
from fast_style.infer.tiling import frozen_instance_norm, measure_statistics, ramp_weights, stylize_tiled, tile_spans

from .conftest import ROOT, skimage_photo


def photo(height: int, width: int) -> torch.Tensor:
    """A real photo crop ``(3, height, width)`` in [0, 1] (textures matter for the statistics)."""
    array = skimage_photo("chelsea")[:height, :width]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def stylizer(trained_run):
    return load_stylizer(trained_run[0] / "final.ckpt")


def seam_mask(height: int, width: int, tile: int, band: int = 40) -> torch.Tensor:
    """True within ``band`` pixels of an interior tile boundary."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for boundary in range(tile, max(height, width), tile):
        mask[max(0, boundary - band) : boundary + band, :] |= boundary < height
        mask[:, max(0, boundary - band) : boundary + band] |= boundary < width
    return mask


@torch.inference_mode()
@pytest.mark.parametrize(("tile", "blend"), [(48, 16), (64, 32), (100, 0)])
def test_tiled_equals_untiled_when_statistics_are_exact(stylizer, tile, blend):
    image = photo(150, 230)
    untiled = stylizer(image[None])[0]
    tiled = stylize_tiled(stylizer, stylizer, image, tile, blend=blend)
    assert tiled.shape == image.shape
    error = (tiled - untiled).abs().amax(0)
    seams = seam_mask(150, 230, tile)
    assert seams.any() and (~seams).any()
    assert float(error[~seams].max()) < 1e-4  # away from seams: the same image
    assert float(error[seams].max()) < 1e-3  # at the seams: no visible step either


@torch.inference_mode()
def test_plain_tiles_would_not_match(stylizer):
    """Why the statistics are frozen: tiles normalized on their own come out visibly different."""
    image, tile = photo(150, 230), 64
    untiled = stylizer(image[None])[0]
    naive = torch.zeros_like(image)
    for y0, y1, iy0, iy1 in tile_spans(150, tile, 0, 64):
        for x0, x1, ix0, ix1 in tile_spans(230, tile, 0, 64):
            out = stylizer(image[None, :, iy0:iy1, ix0:ix1])[0]
            naive[:, y0:y1, x0:x1] = out[:, y0 - iy0 : y1 - iy0, x0 - ix0 : x1 - ix0]
    frozen = stylize_tiled(stylizer, stylizer, image, tile)
    assert float((naive - untiled).abs().max()) > 0.05
    assert float((naive - untiled).abs().max()) > 100 * float((frozen - untiled).abs().max())


@torch.inference_mode()
def test_statistics_from_a_proxy_give_a_seamless_close_result(stylizer):
    image = photo(300, 450)
    budget = 100 * 150  # force a 3x downscaled proxy
    tiled = stylize_tiled(stylizer, stylizer, image, 96, stats_pixels=budget)
    # Seamless: identical to the whole image run once with the same (proxy) statistics.
    stats = measure_statistics(stylizer, stylizer, image, budget)
    with frozen_instance_norm(stylizer, stats):
        whole = stylizer(image[None])[0]
    assert float((tiled - whole).abs().max()) < 1e-3
    # Close to the untiled result: the proxy's statistics approximate the full image's.
    untiled = stylizer(image[None])[0]
    assert float((tiled - untiled).abs().mean()) < 0.05


@pytest.mark.parametrize(("length", "tile", "blend"), [(230, 64, 16), (97, 32, 16), (64, 64, 8), (500, 128, 0)])
def test_feathering_weights_sum_to_one(length, tile, blend):
    total = torch.zeros(length)
    for start, end, _, _ in tile_spans(length, tile, blend, 0):
        lo, hi = max(0, start - blend), min(length, end + blend)
        total[lo:hi] += ramp_weights(lo, hi - lo, start, end, length, blend)
    assert torch.allclose(total, torch.ones(length), atol=1e-6)


DRIVER = """
import resource, runpy, sys
script = {script!r}
sys.argv = [script, *sys.argv[1:]]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_an_8k_image_stays_under_4_gb(tmp_path):
    """8K (7680x4320) through stylize.py in a subprocess; peak RSS measured, not time.

    A narrow network keeps the test quick: memory is dominated by the full-size image buffers
    (input, output, 8-bit copies), which do not depend on the width, and by one tile's activations.
    Untiled, even this network's activations would take ~0.5 GB each.
    """
    import subprocess

    from fast_style.infer.export import export_stylizer
    from fast_style.infer.stylizer import Stylizer
    from fast_style.model.networks import TransformerNet

    export_stylizer(Stylizer(TransformerNet(4, 0)), tmp_path, "narrow", ["safetensors"], log=lambda line: None)
    height, width = 4320, 7680
    ramp = torch.linspace(0, 255, width).to(torch.uint8)
    array = torch.stack(
        [
            ramp.expand(height, width),
            ramp.flip(0).expand(height, width),
            torch.full((height, width), 90, dtype=torch.uint8),
        ],
        -1,
    )
    Image.fromarray(array.numpy()).save(tmp_path / "8k.ppm")
    del array
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(script=str(ROOT / "stylize.py")))
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            f"ckpt={tmp_path / 'narrow.safetensors'}",
            f"input={tmp_path / '8k.ppm'}",
            f"output={tmp_path / 'out.ppm'}",
            "tile=1024",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    peak_gb = int(result.stdout.split("peak_rss_kb")[-1]) / 2**20
    assert Image.open(tmp_path / "out.ppm").size == (width, height)
    assert peak_gb < 4.0, f"peak RSS {peak_gb:.2f} GB"
