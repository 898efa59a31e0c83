"""The quality figures of ``scripts/evaluate.py``: each on images whose answer is known, then the
script end to end on a trained model and its ONNX export."""

import json

import pytest
import torch
from PIL import Image

from fast_style import quality

from .conftest import STAND_IN_VGG, assert_one_line_error, run_script, skimage_photo


def photo(name: str = "astronaut") -> torch.Tensor:
    return torch.from_numpy(skimage_photo(name)).permute(2, 0, 1).float() / 255


def test_artifact_share_separates_fine_texture_from_photos():
    y, x = torch.meshgrid(torch.arange(128), torch.arange(160), indexing="ij")
    smooth = torch.stack([x / 160, y / 128, (x + y) / 288]).float()
    checker = ((x + y) % 2).float().expand(3, -1, -1)  # period 2 px: all power at the Nyquist corner
    stripes = (torch.sin(2 * torch.pi * x / 3) * 0.5 + 0.5).float().expand(3, -1, -1)  # period 3 px
    assert quality.artifact_share(smooth) < 0.01
    assert quality.artifact_share(checker) > 0.99
    assert quality.artifact_share(stripes) > 0.99
    clean = photo()
    assert quality.artifact_share(clean) < 0.05
    # The same photo with a faint 2-3 px texture on top: the figure must rise several times.
    columns = torch.arange(clean.shape[2])
    textured = (clean + 0.08 * torch.sin(2 * torch.pi * columns / 2.5)).clamp(0, 1)
    assert quality.artifact_share(textured) > 3 * quality.artifact_share(clean)


def test_structure_kept_is_one_for_the_photo_and_ignores_brightness_but_not_noise():
    clean = photo("chelsea")
    assert quality.structure_kept(clean, clean) == pytest.approx(1.0)
    assert quality.structure_kept(0.5 * clean + 0.2, clean) == pytest.approx(1.0, abs=1e-5)
    noise = torch.rand(clean.shape, generator=torch.Generator().manual_seed(0))
    assert abs(quality.structure_kept(noise, clean)) < 0.1
    blurred = torch.nn.functional.avg_pool2d(clean[None], 5, stride=1, padding=2)[0]
    assert 0.2 < quality.structure_kept(blurred, clean) < 0.99


def test_palette_distance_is_zero_for_the_same_colours_and_grows_with_a_colour_shift():
    image = photo("coffee")[:, ::2, ::2]  # 200x300: every pixel counts (larger images are subsampled)
    shuffled = image.reshape(3, -1)[:, torch.randperm(image[0].numel())].reshape(image.shape)
    assert quality.palette_distance(shuffled, image) < 1e-3  # colours, not their places
    shifted = (image + torch.tensor([0.2, 0.0, -0.2]).view(3, 1, 1)).clamp(0, 1)
    assert quality.palette_distance(shifted, image) > 0.05
    assert quality.palette_distance(1 - image, image) > quality.palette_distance(shifted, image)


def test_style_gain_is_zero_for_the_photo_and_one_for_the_painting_statistics():
    photo_grams = {"a": torch.eye(3), "b": torch.ones(2, 2)}
    style_grams = {"a": 2 * torch.eye(3), "b": torch.zeros(2, 2)}
    assert quality.style_gain_per_layer(photo_grams, photo_grams, style_grams) == {"a": 0.0, "b": 0.0}
    assert quality.style_gain_per_layer(style_grams, photo_grams, style_grams) == {"a": 1.0, "b": 1.0}
    halfway = {k: (photo_grams[k] + style_grams[k]) / 2 for k in photo_grams}
    assert quality.style_gain_per_layer(halfway, photo_grams, style_grams) == {"a": 0.75, "b": 0.75}


def test_evaluate_script_reports_every_figure_for_a_checkpoint_and_its_export(trained_run, tmp_path):
    run_dir, _ = trained_run
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee"):
        Image.fromarray(skimage_photo(name)).resize((96, 64)).save(photos / f"{name}.png")
    out = tmp_path / "report.json"
    # An export carries its style's name but not the VGG it was trained with: weights= names it.
    result = run_script(
        "scripts/evaluate.py",
        f"ckpt=[{run_dir},{run_dir / 'final.onnx'}]",
        f"photos={photos}",
        f"weights={STAND_IN_VGG}",
        f"out={out}",
    )
    assert result.returncode == 0, result.stderr
    assert "MEAN" in result.stdout and "(the photo itself)" in result.stdout
    report = json.loads(out.read_text())
    checkpoint, export = report["models"]
    assert set(checkpoint["photos"]) == {"chelsea.png", "coffee.png"}
    for figure in ("style_gain", "content_error", "structure", "artifact_share", "palette_distance", "ms_per_mp"):
        assert figure in checkpoint["mean"], figure
    assert set(checkpoint["mean"]["style_gain_layers"]) == {"relu1_2", "relu2_2", "relu3_3", "relu4_3"}
    # The export paints the same pictures: the same figures (within ONNX Runtime's rounding).
    for figure in ("style_gain", "structure", "artifact_share", "palette_distance"):
        assert export["mean"][figure] == pytest.approx(checkpoint["mean"][figure], abs=2e-3), figure
    assert report["photos"]["mean"]["structure"] == 1.0


def test_evaluate_script_names_a_missing_model_in_one_line(tmp_path):
    result = run_script("scripts/evaluate.py", f"ckpt={tmp_path / 'nope.ckpt'}", f"photos={tmp_path}")
    assert_one_line_error(result, "nope.ckpt", "does not exist")


def test_loss_gradients_script_prints_each_terms_gradient_and_its_spectrum(tmp_path, stand_in_vgg, needs_styles):
    Image.fromarray(skimage_photo("chelsea")).save(tmp_path / "cat.png")
    result = run_script(
        "scripts/loss_gradients.py",
        f"photos={tmp_path}",
        f"weights={stand_in_vgg}",
        "size=64",
        "style_size=64",
        "loss.style_weight=2",
        "loss.style_layer_weights=[1,2,3,4]",
        "loss.tv_weight=5",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    rows = {
        line.split()[0] + " " + line.split()[1]: line.split()[2:]
        for line in result.stdout.splitlines()
        if line.startswith(" ")
    }
    assert set(rows) == {
        "style relu1_2",
        "style relu2_2",
        "style relu3_3",
        "style relu4_3",
        "content relu2_2",
        "tv image",
    }
    for layer, weight in zip(["relu1_2", "relu2_2", "relu3_3", "relu4_3"], [1, 2, 3, 4], strict=True):
        value, norm, layer_weight, weighted, high_frequency = map(float, rows[f"style {layer}"])
        assert value > 0 and norm > 0  # a photo is not the painting
        assert layer_weight == pytest.approx(2 * weight)
        assert weighted == pytest.approx(layer_weight * norm, rel=1e-2)
        assert 0 <= high_frequency <= 1
    # At the photo itself the content error and its gradient vanish.
    assert [float(v) for v in rows["content relu2_2"][:2]] == [0, 0]
    # A photo has edges: its total variation and the gradient of it do not vanish.
    value, norm, tv_weight, weighted, high_frequency = map(float, rows["tv image"])
    assert value > 0 and norm > 0 and tv_weight == 5
    assert weighted == pytest.approx(5 * norm, rel=1e-2)


def test_plain_loop_writes_checkpoints_stylize_reads(tmp_path, photos_dir, stand_in_vgg, needs_styles):
    from fast_style.infer.stylizer import load_stylizer

    out = tmp_path / "plain" / "final.ckpt"
    result = run_script(
        "scripts/plain_loop.py",
        f"photos={photos_dir}",
        f"weights={stand_in_vgg}",
        "steps=2",
        "size=32",
        "style_size=64",
        "save_every=1",
        f"out={out}",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["final.ckpt", "final_step1.ckpt"]
    image = load_stylizer(out)(torch.rand(1, 3, 36, 44))
    assert image.shape == (1, 3, 36, 44) and 0 <= image.min() and image.max() <= 1
