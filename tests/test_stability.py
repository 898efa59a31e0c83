"""Stability training (``loss.stability_weight``): the warp helper, the term, and a short run with it on."""

import math

import pytest
import torch

from fast_style.model.stability import (
    StabilityLoss,
    affine_positions,
    identity_positions,
    random_positions,
    stability_from_config,
    warp,
)
from fast_style.train.training import train

from .conftest import compose_train, run_script, tiny_train_overrides


def shift_positions(batch: int, height: int, width: int, dx: float, dy: float, dtype=torch.float32) -> torch.Tensor:
    return identity_positions(batch, height, width, dtype=dtype) + torch.tensor([dx, dy], dtype=dtype)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("dx, dy", [(3, 0), (-2, 5), (0, -4), (7, -1)])
def test_warp_is_exact_for_integer_shifts_and_keeps_only_valid_pixels(dx, dy, dtype, tolerance, mode):
    height, width = 19, 24
    images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0), dtype=dtype)
    warped, valid = warp(images, shift_positions(2, height, width, dx, dy, dtype), mode=mode)
    # Output pixel (y, x) samples input pixel (y + dy, x + dx): a plain copy where that is inside.
    expected = torch.zeros(height, width, dtype=torch.bool)
    expected[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)] = True
    assert torch.equal(valid[0, 0], expected) and torch.equal(valid[1, 0], expected)
    ys, xs = expected.nonzero(as_tuple=True)
    torch.testing.assert_close(
        warped[:, :, ys, xs], images[:, :, ys + dy, xs + dx], atol=tolerance, rtol=0
    )  # exact up to float rounding of the grid
    assert valid.sum() == 2 * (height - abs(dy)) * (width - abs(dx))


def test_warp_masks_sub_pixel_positions_that_leave_the_frame():
    positions = shift_positions(1, 8, 10, 0.5, -0.25)
    _, valid = warp(torch.rand(1, 3, 8, 10), positions)
    # x + 0.5 > 9 for the last column; y - 0.25 < 0 for the first row.
    assert not valid[0, 0, :, -1].any() and not valid[0, 0, 0, :].any()
    assert valid[0, 0, 1:, :-1].all()


def test_bicubic_warp_softens_fine_detail_less_than_bilinear():
    # Stripes of period 4 px moved by half a pixel: bilinear averages neighbours and loses about
    # 30 % of their contrast, bicubic about 3 % (why loss.stability_interpolation exists).
    xs = torch.arange(32, dtype=torch.float64)
    stripes = torch.sin(2 * math.pi * xs / 4 + 0.3).expand(1, 1, 8, 32).contiguous()
    positions = shift_positions(1, 8, 32, 0.5, 0, dtype=torch.float64)
    exact = torch.sin(2 * math.pi * (xs + 0.5) / 4 + 0.3)[4:-4]
    kept = {}
    for mode in ("bilinear", "bicubic"):
        warped, _ = warp(stripes, positions, mode=mode)
        row = warped[0, 0, 4, 4:-4]
        kept[mode] = float((row * exact).sum() / (exact * exact).sum())  # share of the stripes' amplitude
    assert 0.65 < kept["bilinear"] < 0.75 and 0.93 < kept["bicubic"] < 1.02


def test_affine_positions_rotate_about_the_centre():
    # A quarter turn of a square frame maps the top-left corner's sample onto another corner.
    positions = affine_positions(torch.tensor([math.pi / 2]), torch.ones(1), torch.zeros(1, 2), 5, 5)
    torch.testing.assert_close(positions[0, 0, 0], torch.tensor([4.0, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(positions[0, 2, 2], torch.tensor([2.0, 2.0]), atol=1e-5, rtol=0)


def test_random_motion_stays_within_the_configured_strengths():
    generator = torch.Generator().manual_seed(1)
    positions = random_positions(16, 32, 40, shift=2.0, rotation=0, zoom=0, flow=1.0, generator=generator)
    displacement = positions - identity_positions(16, 32, 40)
    assert displacement.abs().max() <= 3.0 + 1e-5  # shift 2 + flow 1
    assert displacement.abs().max() > 1.0  # not the identity
    still = random_positions(2, 8, 8, shift=0, rotation=0, zoom=0, flow=0)
    torch.testing.assert_close(still, identity_positions(2, 8, 8))


def pointwise_net(images: torch.Tensor) -> torch.Tensor:
    """A pure per-pixel function: commutes with every warp that copies pixels."""
    return torch.sigmoid(3 * images - 1).flip(1) * 0.8 + 0.1


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_stability_term_is_zero_for_a_pointwise_net_without_noise(interpolation):
    photos = torch.rand(2, 3, 24, 28, generator=torch.Generator().manual_seed(2))
    term = StabilityLoss(weight=1.0, shift=0, rotation=0, zoom=0, flow=0, noise=0, interpolation=interpolation)
    moved, positions = term.perturb(photos)
    torch.testing.assert_close(moved, photos, atol=1e-5, rtol=0)  # float rounding of the grid
    assert float(term(pointwise_net(photos), pointwise_net(moved), positions)) < 1e-6
    # Integer shifts copy pixels, so a pointwise net commutes with them too over the valid pixels.
    shifted = shift_positions(2, 24, 28, 3, -2)
    moved, _ = warp(photos, shifted, mode=interpolation)
    assert float(term(pointwise_net(photos), pointwise_net(moved), shifted)) < 1e-5
    # Noise (or a net that is not pointwise) makes the term positive: it can fail.
    noisy = StabilityLoss(weight=1.0, shift=0, rotation=0, zoom=0, flow=0, noise=0.05)
    moved, positions = noisy.perturb(photos)
    assert float(noisy(pointwise_net(photos), pointwise_net(moved), positions)) > 1e-3
    blur = torch.nn.AvgPool2d(3, stride=1, padding=1)
    moved, _ = warp(photos, shift_positions(2, 24, 28, 0.5, 0.5))
    assert float(term(blur(photos), blur(moved), shift_positions(2, 24, 28, 0.5, 0.5))) > 1e-3


def test_stability_term_is_fp32_and_has_gradients_under_bf16_autocast():
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    photos = torch.rand(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    term = StabilityLoss(weight=2.0)
    moved, positions = term.perturb(photos)
    assert moved.is_contiguous(memory_format=torch.channels_last) and 0 <= moved.min() and moved.max() <= 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        both = net(torch.cat([photos, moved]))
        assert both.dtype == torch.bfloat16
        value = term(both[:2], both[2:], positions)
    assert value.dtype == torch.float32 and torch.isfinite(value) and value > 0
    value.backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


def test_detached_term_trains_only_the_moved_copy(tmp_path):
    """``loss.stability_detach``: W(f(x)) is a fixed target; the term's gradient reaches only f(W(x) + n)."""
    photos = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    for detach in (False, True):
        term = StabilityLoss(weight=1.0, detach=detach)
        moved, positions = term.perturb(photos)
        stylized, stylized_moved = photos.clone().requires_grad_(), (moved * 0.5).requires_grad_()
        value = term(stylized, stylized_moved, positions)
        value.backward()
        assert stylized_moved.grad.abs().sum() > 0
        assert (stylized.grad is None) == detach  # no path to f(x) at all when detached
    cfg = compose_train(
        ["data=folder", f"data.root={tmp_path}", "loss.stability_weight=5", "loss.stability_detach=true"], tmp_path
    )
    assert stability_from_config(cfg.loss).detach


def test_stability_interpolation_is_configurable_and_checked(tmp_path):
    base = ["data=folder", f"data.root={tmp_path}", "loss.stability_weight=5"]
    assert stability_from_config(compose_train(base, tmp_path).loss).interpolation == "bilinear"
    cfg = compose_train([*base, "loss.stability_interpolation=Bicubic"], tmp_path)
    assert stability_from_config(cfg.loss).interpolation == "bicubic"
    result = run_script("train.py", "loss.stability_interpolation=nearest", f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode != 0 and "loss.stability_interpolation" in result.stderr
    assert "bilinear, bicubic" in result.stderr.strip().splitlines()[-1]


def test_stability_config_is_off_by_default_and_checked(tmp_path):
    cfg = compose_train(["data=folder", f"data.root={tmp_path}"], tmp_path / "run")
    assert cfg.loss.stability_weight == 0 and stability_from_config(cfg.loss) is None
    result = run_script("train.py", "loss.stability_weight=-1", f"hydra.run.dir={tmp_path / 'r'}")
    assert result.returncode != 0 and "loss.stability_weight=-1.0 is not allowed" in result.stderr


def test_short_run_with_the_stability_term_trains_with_finite_losses(photos_dir, tmp_path, needs_styles):
    overrides = [*tiny_train_overrides(photos_dir, steps=3, size=32), "loss.stability_weight=10", "samples.count=0"]
    run_dir = tmp_path / "run"
    loss = train(compose_train(overrides, run_dir))
    assert math.isfinite(loss) and loss > 0
    header, *rows = (run_dir / "logs" / "metrics.csv").read_text().splitlines()
    columns = header.split(",")
    assert "loss/stability" in columns
    values = [
        float(r.split(",")[columns.index("loss/stability")])
        for r in rows
        if r.split(",")[columns.index("loss/stability")]
    ]
    assert len(values) == 3 and all(math.isfinite(v) and v > 0 for v in values)
