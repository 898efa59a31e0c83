"""stylize.py: every model format, folders, videos, options, sizes, safety and bad input."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from fast_style.config.cli import load_config
from fast_style.errors import FastStyleError
from fast_style.infer.backends import load_backend
from fast_style.infer.color import chroma, luma
from fast_style.infer.stylize import Options, stylize, stylize_batch

from .conftest import assert_one_line_error, run_script, skimage_photo


def run_stylize(ckpt, source, target, *overrides):
    """What ``stylize.py`` does: compose and check configs/stylize.yaml, then stylize."""
    return stylize(load_config("stylize", [f"ckpt={ckpt}", f"input={source}", f"output={target}", *overrides]))


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def models(trained_run):
    run_dir = trained_run[0]
    return {
        "ckpt": run_dir / "final.ckpt",
        "onnx": run_dir / "final.onnx",
        "torchscript": run_dir / "final.torchscript.pt",
    }


@pytest.fixture
def cat(tmp_path):
    """A real photo with an odd, non-square size."""
    path = tmp_path / "cat.png"
    Image.fromarray(skimage_photo("chelsea")[40:191, 60:263]).save(path)
    return path


def test_same_image_from_checkpoint_onnx_and_torchscript(models, cat, tmp_path):
    outputs = {}
    for kind, model in models.items():
        run_stylize(model, cat, tmp_path / kind / "art.png")
        outputs[kind] = pixels(tmp_path / kind / "art.png")
        assert outputs[kind].shape == (151, 203, 3)
    for kind in ("onnx", "torchscript"):
        assert np.abs(outputs[kind] - outputs["ckpt"]).max() <= 1, kind  # at most one rounding step
    assert np.abs(outputs["ckpt"] - pixels(cat)).mean() > 10  # it is stylized


def test_folder_keeps_names_batches_and_survives_a_broken_file(models, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    sizes = {"a.png": (40, 30), "b.png": (40, 30), "c.png": (17, 9), "sub/d.png": (1, 1)}
    rng = np.random.default_rng(0)
    for name, (w, h) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "deep" / "out"  # created on the way
    result = run_script("stylize.py", f"ckpt={models['ckpt']}", f"input={folder}", f"output={out}", "batch_size=2")
    line = assert_one_line_error(result, "1 of 5")
    assert "broken.jpg" in result.stderr and "broken.jpg" not in line  # reported on its own line
    for name, size in sizes.items():
        assert Image.open(out / name).size == size
    assert not (out / "broken.jpg").exists()
    # a batch of two equal-size photos gives what each gives alone
    run_stylize(models["ckpt"], folder / "b.png", tmp_path / "b_alone.png")
    assert np.abs(pixels(out / "b.png") - pixels(tmp_path / "b_alone.png")).max() <= 1


@torch.inference_mode()
def test_strength_preserve_color_scale_and_sizes(models):
    backend = load_backend(models["ckpt"])
    image = torch.from_numpy(skimage_photo("coffee")[::4, ::4].copy()).permute(2, 0, 1).float()[None] / 255
    full = stylize_batch(backend, image, Options())
    assert torch.equal(stylize_batch(backend, image, Options(strength=0.0)), image)
    half = stylize_batch(backend, image, Options(strength=0.5))
    assert torch.allclose(half, (image + full) / 2, atol=1e-5)
    kept = stylize_batch(backend, image, Options(preserve_color=True))
    inside = ((kept > 0.002) & (kept < 0.998)).all(1, keepdim=True)  # where nothing was clipped
    assert float((chroma(full) - chroma(image)).abs().mean()) > 0.03  # the style does change colours
    assert float((chroma(kept) - chroma(image)).abs().masked_select(inside).max()) < 1e-4
    assert float((luma(kept) - luma(full)).abs().masked_select(inside).max()) < 1e-4
    for scale in (0.5, 1.7):
        scaled = stylize_batch(backend, image, Options(scale=scale))
        assert scaled.shape == image.shape
        assert float((scaled - full).abs().mean()) > 0.01  # a different stroke size
    for height, width in [(1, 1), (2, 3), (5, 7), (33, 64), (64, 33)]:
        out = stylize_batch(backend, torch.rand(2, 3, height, width), Options(scale=0.5))
        assert out.shape == (2, 3, height, width) and 0 <= float(out.min()) and float(out.max()) <= 1


def test_strength_zero_writes_the_photo_back(models, cat, tmp_path):
    run_stylize(models["onnx"], cat, tmp_path / "same.png", "strength=0")
    assert np.array_equal(pixels(tmp_path / "same.png"), pixels(cat))


def test_never_overwrites_the_input_unless_told(models, cat, tmp_path):
    before = cat.read_bytes()
    with pytest.raises(FastStyleError, match="overwrite=true"):
        run_stylize(models["ckpt"], cat, cat)
    with pytest.raises(FastStyleError, match="overwrite=true"):
        run_stylize(models["ckpt"], tmp_path, tmp_path)
    assert cat.read_bytes() == before
    run_stylize(models["ckpt"], cat, cat, "overwrite=true")
    assert cat.read_bytes() != before and Image.open(cat).size == (203, 151)


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [("strength=1.5", "strength"), ("tile=banana", "tile"), ("precision=int8", "precision"), ("scale=0", "scale")],
)
def test_bad_options_are_one_line_errors(models, cat, tmp_path, setting, fragment):
    with pytest.raises(FastStyleError, match=fragment) as info:
        run_stylize(models["ckpt"], cat, tmp_path / "o.png", setting)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o.png").exists()


def test_bad_input_gives_one_line_errors(models, cat, tmp_path):
    out = tmp_path / "out.png"
    missing = run_script("stylize.py", f"ckpt={models['ckpt']}", f"input={tmp_path / 'nope.jpg'}", f"output={out}")
    assert_one_line_error(missing, "nope.jpg", "does not exist")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"GIF89a but not really" * 10)
    unreadable = run_script("stylize.py", f"ckpt={models['ckpt']}", f"input={garbage}", f"output={out}")
    assert_one_line_error(unreadable, "garbage.jpg")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    unsupported = run_script("stylize.py", f"ckpt={models['ckpt']}", f"input={text}", f"output={out}")
    assert_one_line_error(unsupported, "notes.txt", ".txt")
    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(models["onnx"].read_bytes()[:5000])
    broken_model = run_script("stylize.py", f"ckpt={corrupt}", f"input={cat}", f"output={out}")
    assert_one_line_error(broken_model, "model.onnx", "re-export")
    assert not out.exists()


def make_video(path, frames=10, fps=12, size=(64, 48), audio=True):
    """A short H.264 video of moving colour bars with (optionally) a 440 Hz AAC sine track."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if audio:
            sound = container.add_stream("aac", rate=16000)
            sound.layout = "mono"
        for i in range(frames):
            array = np.zeros((height, width, 3), np.uint8)
            array[:, (4 * i) % width :, 0] = 220
            array[: height // 2, :, 1] = 40 + 15 * i
            for packet in video.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        container.mux(video.encode(None))
        if audio:
            rate = 16000
            t = np.arange(int(rate * frames / fps)) / rate
            samples = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, samples.shape[1], 1024):
                chunk = av.AudioFrame.from_ndarray(
                    samples[:, start : start + 1024].copy(), format="fltp", layout="mono"
                )
                chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, Fraction(1, rate)
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))


def probe(path):
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        rate, kinds = video.average_rate, sorted(s.type for s in container.streams)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
    return frames, rate, kinds


@pytest.mark.parametrize("audio", [True, False])
def test_video_keeps_frames_fps_and_audio(models, tmp_path, audio):
    source = tmp_path / "clip.mp4"
    make_video(source, audio=audio)
    run_stylize(models["torchscript"], source, tmp_path / "out" / "clip.mp4", "batch_size=3")
    frames_in, rate_in, kinds_in = probe(source)
    frames_out, rate_out, kinds_out = probe(tmp_path / "out" / "clip.mp4")
    assert len(frames_out) == len(frames_in) == 10
    assert rate_out == rate_in == 12
    assert kinds_out == kinds_in == (["audio", "video"] if audio else ["video"])
    assert frames_out[0].shape == frames_in[0].shape
    assert np.abs(frames_out[3].astype(int) - frames_in[3]).mean() > 10  # stylized, not copied


@torch.inference_mode()
def test_bf16_is_close_to_fp32_tiled_or_not(models):
    full = load_backend(models["ckpt"])
    half = load_backend(models["ckpt"], precision="bf16")
    image = torch.from_numpy(skimage_photo("astronaut")[::4, ::4].copy()).permute(2, 0, 1).float()[None] / 255
    reference = stylize_batch(full, image, Options())
    untiled = stylize_batch(half, image, Options())
    tiled = stylize_batch(half, image, Options(tile=48))
    assert float((untiled - reference).abs().mean()) < 0.02
    assert float((tiled - untiled).abs().mean()) < 0.01
    with pytest.raises(FastStyleError, match="float32"):
        load_backend(models["onnx"], precision="bf16")
