"""The flicker figure (``fast_style/flicker.py``, ``scripts/evaluate.py``): known answers first, then
the script end to end on a small untrained network and a real (encoded) video."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fast_style.checkpoint_format import CHECKPOINT_KEY, NET_PREFIX
from fast_style.flicker import (
    clip_flicker,
    comparison_animation,
    global_shift,
    save_animation,
    synthetic_clip,
    video_flicker,
    warping_error,
)
from fast_style.infer.temporal import TemporalBlend
from fast_style.model.networks import TransformerNet

from .conftest import STAND_IN_VGG, assert_one_line_error, run_script, skimage_photo


def photo(name: str = "chelsea", size: int = 64) -> torch.Tensor:
    image = torch.from_numpy(skimage_photo(name)).permute(2, 0, 1).float()[None] / 255
    return F.interpolate(image, size=(size, round(size * 1.5)), mode="area")[0]


def colour_map(batch: torch.Tensor) -> torch.Tensor:
    """A steady 'stylizer': the same per-pixel function of every frame (moves with the scene)."""
    return (1.2 * batch.flip(1) - 0.1).clamp(0, 1)


class NoisyStylizer:
    """An unsteady one: the steady output plus fresh fine noise on every call (strokes that repaint)."""

    def __init__(self, amount: float) -> None:
        self.amount, self.generator = amount, torch.Generator().manual_seed(0)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(batch.shape, generator=self.generator) - 0.5
        return (colour_map(batch) + self.amount * noise).clamp(0, 1)


def pinned_texture(batch: torch.Tensor) -> torch.Tensor:
    """Another unsteady one: a texture fixed to the screen, not to the scene (it swims over the picture)."""
    y, x = torch.meshgrid(torch.arange(batch.shape[-2]), torch.arange(batch.shape[-1]), indexing="ij")
    texture = 0.15 * torch.sin(x * 1.3) * torch.cos(y * 0.9)
    return (colour_map(batch) + texture).clamp(0, 1)


def test_synthetic_clip_moves_by_the_known_motion():
    image = photo()
    clip, back = synthetic_clip(image, frames=5, noise=0.0)
    assert clip.shape[0] == 5 and back.shape == (4, *clip.shape[-2:], 2)
    assert 0 <= clip.min() and clip.max() <= 1
    aligned = warping_error(clip, back)
    # Undoing the known motion lines the frames up (resampling error only); ignoring it does not.
    unaligned = (clip[1:] - clip[:-1]).abs().mean().item()
    assert aligned < 0.4 * unaligned
    # Noise raises the unstylized clip's own figure: it is the floor a stylizer is compared with.
    noisy, _ = synthetic_clip(image, frames=5, noise=0.03)
    assert warping_error(noisy, back) > aligned + 0.01


def test_flicker_ranks_noisy_and_screen_pinned_stylizers_as_less_stable_than_a_steady_one():
    image = photo()
    steady = clip_flicker(colour_map, image, frames=4)
    assert steady["flicker"] < 1.5 * steady["flicker_clip"] + 0.005  # near the clip's own floor
    noisy = clip_flicker(NoisyStylizer(0.2), image, frames=4)
    pinned = clip_flicker(pinned_texture, image, frames=4)
    assert noisy["flicker"] > 2 * steady["flicker"]
    assert pinned["flicker"] > 1.5 * steady["flicker"]
    assert noisy["flicker_clip"] == pytest.approx(steady["flicker_clip"])  # the same clip


def test_clip_too_small_for_its_motion_is_one_clear_error():
    from fast_style.errors import FastStyleError

    with pytest.raises(FastStyleError, match="too small"):
        synthetic_clip(torch.rand(3, 12, 12), frames=8)


def test_global_shift_and_video_flicker_on_a_panning_clip():
    frames = panning_frames()
    assert global_shift(frames[0], frames[1]) == (2, 1)
    steady = video_flicker(colour_map, frames)
    assert steady["flicker"] < 1e-6 and steady["flicker_clip"] < 1e-6 and steady["static_share"] > 0.9
    noisy = video_flicker(NoisyStylizer(0.2), frames)
    assert noisy["flicker"] > 0.03


def write_video(path, frames: torch.Tensor, fps: int = 10) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[-2:]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            array = frame.mul(255).round().byte().permute(1, 2, 0).numpy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode(None))


def tiny_checkpoint(path) -> None:
    """An untrained 4-channel net in train.py's checkpoint layout: enough to run the scripts."""
    torch.manual_seed(0)
    net = TransformerNet(channels=4, residual_blocks=1)
    checkpoint = {
        "state_dict": {NET_PREFIX + k: v for k, v in net.state_dict().items()},
        CHECKPOINT_KEY: {"format_version": 1, "model": dict(net.config), "style": "starry_night"},
    }
    torch.save(checkpoint, path)


def panning_frames(frames: int = 5, size: int = 80) -> torch.Tensor:
    """A camera panning 2 px right and 1 px down a frame: frame t shows the photo from (2t, t)."""
    image = photo(size=size)
    return torch.stack([image[:, t : t + 60, 2 * t : 2 * t + 90] for t in range(frames)])


def test_video_blend_steadies_a_noisy_stylizer_and_leaves_a_steady_one_and_cuts_alone():
    frames = panning_frames()
    noisy = video_flicker(NoisyStylizer(0.2), frames)
    blend = TemporalBlend(0.5)
    blended = video_flicker(lambda batch: blend(batch, NoisyStylizer(0.2)(batch)), frames)
    assert blended["flicker"] < 0.7 * noisy["flicker"]
    # A steady stylizer's frames already line up: the blend changes nothing where the shift is exact.
    blend = TemporalBlend(0.5)
    first = blend(frames[:1], colour_map(frames[:1]))
    second = blend(frames[1:2], colour_map(frames[1:2]))
    torch.testing.assert_close(second[..., :-1, :-2], colour_map(frames[1:2])[..., :-1, :-2], atol=1e-5, rtol=0)
    assert torch.equal(first, colour_map(frames[:1]))
    # A cut (an unrelated picture) is not blended with the previous shot.
    other = photo("coffee", size=80)[:, :60, :90][None]
    torch.testing.assert_close(blend(other, colour_map(other)), colour_map(other))
    assert torch.equal(TemporalBlend(0)(frames, frames.flip(1)), frames.flip(1))


def test_stylize_video_with_video_blend(tmp_path):
    tiny_checkpoint(tmp_path / "tiny.ckpt")
    write_video(tmp_path / "pan.mp4", panning_frames(4))
    ckpt, video = f"ckpt={tmp_path / 'tiny.ckpt'}", f"input={tmp_path / 'pan.mp4'}"
    result = run_script("stylize.py", ckpt, video, f"output={tmp_path / 'out.mp4'}", "video_blend=0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(4 frames)" in result.stdout and (tmp_path / "out.mp4").stat().st_size > 0
    bad = run_script("stylize.py", ckpt, video, f"output={tmp_path / 'bad.mp4'}", "video_blend=1")
    assert_one_line_error(bad, "video_blend=1.0", "0.9")
    assert not (tmp_path / "bad.mp4").exists()


def test_evaluate_script_reports_clip_and_video_flicker(tmp_path, stand_in_vgg, needs_styles):
    tiny_checkpoint(tmp_path / "tiny.ckpt")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage_photo("coffee")).resize((72, 48)).save(photos / "coffee.png")
    image = photo(size=64)
    write_video(tmp_path / "pan.mp4", torch.stack([image[:, t : t + 48, 2 * t : 2 * t + 64] for t in range(4)]))
    out = tmp_path / "report.json"
    args = [f"ckpt={tmp_path / 'tiny.ckpt'}", f"photos={photos}", f"weights={STAND_IN_VGG}", "flicker_frames=3"]
    result = run_script("scripts/evaluate.py", *args, f"video={tmp_path / 'pan.mp4'}", f"out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "flicker" in result.stdout.splitlines()[0] and "video flicker" in result.stdout
    report = json.loads(out.read_text())
    model = report["models"][0]
    assert model["mean"]["flicker"] > 0 and report["photos"]["mean"]["flicker"] > 0
    assert set(model["video"]) == {"flicker", "flicker_clip", "static_share"}
    assert 0 < model["video"]["static_share"] <= 1
    blended_out = tmp_path / "blended.json"
    result = run_script("scripts/evaluate.py", *args, "video_blend=0.5", "size=64", f"out={blended_out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(blended_out.read_text())["models"][0]["mean"]["flicker"] > 0
    bad = run_script("scripts/evaluate.py", *args[:-1], "flicker_frames=1", f"out={tmp_path / 'no.json'}")
    assert_one_line_error(bad, "flicker_frames=1")
    assert not (tmp_path / "no.json").exists()


def test_comparison_animation_loops_and_shows_each_column_frame_by_frame(tmp_path):
    image = photo(size=64)
    clip, _ = synthetic_clip(image, 4)
    frames = comparison_animation([("photo", None), ("map", colour_map)], image, frames=4, label_height=10)
    assert len(frames) == 6  # 0 1 2 3 2 1: a ping-pong never jumps when it loops
    h, w = clip.shape[-2:]
    assert all(f.size == (2 * w, h + 10) for f in frames)
    second = torch.from_numpy(np.asarray(frames[1])).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(second[:, 10:, :w], clip[1], atol=1 / 255, rtol=0)
    torch.testing.assert_close(second[:, 10:, w:], colour_map(clip[1:2])[0], atol=1 / 255, rtol=0)
    assert frames[4].tobytes() == frames[2].tobytes()
    gif = save_animation(frames, tmp_path / "strip.gif", fps=10)
    with Image.open(gif) as animation:
        assert animation.n_frames == 6 and animation.info["loop"] == 0
        decoded = []
        for index in range(animation.n_frames):
            animation.seek(index)
            decoded.append(np.asarray(animation.convert("RGB")).reshape(-1, 3))
    # One palette, no dithering: a colour is written the same way in every frame, so GIF
    # quantization adds no flicker of its own.
    written: dict[bytes, bytes] = {}
    for source, gif_frame in zip(frames, decoded, strict=True):
        for colour, stored in zip(np.asarray(source).reshape(-1, 3)[::7], gif_frame[::7], strict=True):
            assert written.setdefault(colour.tobytes(), stored.tobytes()) == stored.tobytes()
    apng = save_animation(frames, tmp_path / "strip.png")
    with Image.open(apng) as animation:
        assert animation.n_frames == 6


def test_flicker_strip_script_writes_the_animation_and_checks_its_labels(tmp_path):
    tiny_checkpoint(tmp_path / "tiny.ckpt")
    Image.fromarray(skimage_photo("coffee")).save(tmp_path / "coffee.png")
    args = [f"ckpt=[{tmp_path / 'tiny.ckpt'},{tmp_path / 'tiny.ckpt'}]", f"photo={tmp_path / 'coffee.png'}", "size=64"]
    out = tmp_path / "strip.gif"
    result = run_script("scripts/flicker_strip.py", *args, "labels=[a,b]", "frames=3", f"out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("strip.gif")
    with Image.open(out) as animation:
        assert animation.n_frames == 4 and animation.width % 3 == 0  # 0 1 2 1; photo and two models
    bad = run_script("scripts/flicker_strip.py", *args, "labels=[only_one]", f"out={tmp_path / 'bad.gif'}")
    assert_one_line_error(bad, "1 labels for 2 models")
    assert not (tmp_path / "bad.gif").exists()
