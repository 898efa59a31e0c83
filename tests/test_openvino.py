"""OpenVINO: the IR export and the backend (files, ONNX and checkpoints), with stylize.py's options.

Skipped, with the reason, only where the ``openvino`` extra is not installed; the missing-extra
error itself is tested without it. The model is a small random-init network whose instance-norm
scales and shifts are randomized too, so that it changes a photo a lot (an untrained net's output
is nearly flat and would hide scale or clamp bugs): it exports in seconds instead of a training run.
"""

import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fast_style.config.cli import load_config
from fast_style.errors import FastStyleError
from fast_style.infer.backends import load_backend, require_openvino
from fast_style.infer.export import export_checkpoint
from fast_style.infer.stylize import Options, stylize, stylize_batch
from fast_style.infer.stylizer import Stylizer, load_stylizer
from fast_style.model.networks import TransformerNet

from .conftest import assert_one_line_error, run_script, skimage_photo
from .test_stylize import make_video, probe

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="OpenVINO is not installed (pip install -e '.[openvino]')"
)


def write_model(path, seed: int = 0):
    """A random-init 8-channel, 1-block network with random instance-norm affine parameters,
    saved as a fast-style checkpoint (what train.py writes, less the optimizer)."""
    torch.manual_seed(seed)
    net = TransformerNet(channels=8, residual_blocks=1)
    for layer in net.modules():
        if isinstance(layer, torch.nn.InstanceNorm2d):
            layer.weight.data.uniform_(0.5, 1.5)
            layer.bias.data.uniform_(-0.3, 0.3)
    state = {f"net.{key}": value for key, value in net.state_dict().items()}
    torch.save({"state_dict": state, "fast_style": {"model": net.config, "style": "starry_night"}}, path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A folder holding final.ckpt and its final.onnx, like a training run's."""
    folder = tmp_path_factory.mktemp("model")
    export_checkpoint(write_model(folder / "final.ckpt"), ["onnx"], log=lambda line: None)
    return folder


@pytest.fixture(scope="module")
def ir(model_dir, tmp_path_factory):
    """final.ckpt exported to OpenVINO IR: ``(xml path, printed lines)``."""
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("OpenVINO is not installed (pip install -e '.[openvino]')")
    lines: list[str] = []
    out = tmp_path_factory.mktemp("ir")
    written = export_checkpoint(model_dir / "final.ckpt", ["openvino"], out, log=lines.append)
    return written["openvino"], lines


def photo_batch(height: int, width: int, batch: int = 1) -> torch.Tensor:
    array = skimage_photo("astronaut")[:height, :width]
    image = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255
    return image[None].repeat(batch, 1, 1, 1)


@needs_openvino
def test_ir_export_writes_xml_and_bin_checked_against_pytorch(ir, model_dir):
    xml, lines = ir
    assert sorted(p.name for p in xml.parent.iterdir()) == ["final.bin", "final.xml"]  # no temp files
    (line,) = lines
    assert line.startswith(f"exported openvino: {xml} (parity") and line.endswith("ok)")
    reference = load_stylizer(model_dir / "final.ckpt")
    backend = load_backend(xml)
    assert backend.kind == "openvino" and backend.info["style"] == "starry_night"
    generator = torch.Generator().manual_seed(3)
    for shape in [(1, 3, 64, 64), (2, 3, 37, 53), (1, 3, 7, 5), (1, 3, 1, 1), (3, 3, 45, 77)]:
        images = torch.rand(*shape, generator=generator)
        with torch.inference_mode():
            expected = reference(images)
        got = backend(images)
        assert got.shape == images.shape and got.dtype == torch.float32
        assert float((got - expected).abs().max()) <= 1e-3, shape
    assert float((expected - images).abs().mean()) > 0.05  # the net changes the photo: not a no-op
    # The eager net rebuilt from the IR (for tiling) has exactly the checkpoint's weights.
    rebuilt, original = backend.eager().state_dict(), reference.state_dict()
    assert rebuilt.keys() == original.keys() and all(torch.equal(rebuilt[k], original[k]) for k in original)


@needs_openvino
def test_onnx_and_checkpoints_run_on_openvino_too(model_dir):
    run_dir = model_dir
    reference = load_stylizer(run_dir / "final.ckpt")
    images = photo_batch(45, 61, batch=2)
    with torch.inference_mode():
        expected = reference(images)
    for name in ("final.onnx", "final.ckpt"):
        backend = load_backend(run_dir / name, backend="openvino")
        assert backend.kind == "openvino"
        assert float((backend(images) - expected).abs().max()) <= 1e-3, name


@needs_openvino
def test_each_input_size_compiles_once(ir):
    backend = load_backend(ir[0])
    small, other = photo_batch(40, 56), photo_batch(33, 21)
    first = backend(small)
    for _ in range(2):
        assert torch.equal(backend(small), first)
    assert len(backend.compile_seconds) == 1
    backend(other)
    backend(small)  # still cached
    assert len(backend.compile_seconds) == 2 and len(backend.compiled) == 2


@needs_openvino
def test_bf16_hint_is_as_close_as_our_bf16_path_and_says_what_runs(ir, model_dir, capfd):
    reference = load_backend(model_dir / "final.ckpt")
    half = load_backend(ir[0], precision="bf16")
    image = photo_batch(128, 128)
    expected = stylize_batch(reference, image, Options())
    got = stylize_batch(half, image, Options())
    assert float((got - expected).abs().mean()) < 0.02  # test_stylize.py's bound for precision=bf16
    actual = half.effective_precision()
    assert actual in ("bfloat16", "float32")
    if actual == "float32":  # no bf16 units here: OpenVINO ran f32, and said so
        assert "OpenVINO runs float32 on this CPU, not bfloat16" in capfd.readouterr().err
        assert float((got - expected).abs().max()) <= 1e-3


@needs_openvino
@pytest.mark.parametrize(("tile", "blend"), [(48, 16), (64, 32)])
def test_tiled_equals_untiled_away_from_seams(ir, tile, blend):
    """Tiles run the PyTorch net rebuilt from the IR with frozen instance-norm statistics; the
    untiled image runs on OpenVINO: the two agree away from the seams (and nearly on them)."""
    backend = load_backend(ir[0])
    image = photo_batch(150, 230)
    untiled = stylize_batch(backend, image, Options(tile=None))[0]
    from fast_style.infer.tiling import stylize_tiled

    tiled = stylize_tiled(backend.run_eager, backend.eager(), image[0], tile, blend=blend)
    error = (tiled - untiled).abs().amax(0)
    mask = torch.zeros(150, 230, dtype=torch.bool)
    for boundary in range(tile, 230, tile):
        mask[:, max(0, boundary - 40) : boundary + 40] = True
        if boundary < 150:
            mask[max(0, boundary - 40) : boundary + 40, :] = True
    assert mask.any() and (~mask).any()
    assert float(error[~mask].max()) < 1e-3
    assert float(error[mask].max()) < 2e-3
    assert torch.equal(
        stylize_batch(backend, image, Options(tile=tile))[0],
        stylize_tiled(backend.run_eager, backend.eager(), image[0], tile),
    )  # stylize.py's tile= takes this path


@needs_openvino
def test_stylize_folder_video_and_options_with_the_ir(ir, model_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(skimage_photo(name)[:72, :90]).save(folder / f"{name}.png")  # equal sizes: one batch
    options = ["strength=0.6", "preserve_color=true", "batch_size=3"]
    run = lambda ckpt, out, *extra: stylize(  # noqa: E731
        load_config("stylize", [f"ckpt={ckpt}", f"input={folder}", f"output={out}", *options, *extra])
    )
    run(ir[0], tmp_path / "ov")
    run(model_dir / "final.ckpt", tmp_path / "torch")
    for name in ("astronaut", "coffee", "chelsea"):
        ov = np.asarray(Image.open(tmp_path / "ov" / f"{name}.png"), dtype=np.int16)
        pt = np.asarray(Image.open(tmp_path / "torch" / f"{name}.png"), dtype=np.int16)
        assert np.abs(ov - pt).max() <= 1, name  # one 8-bit rounding step
        assert np.abs(ov - np.asarray(Image.open(folder / f"{name}.png"), dtype=np.int16)).mean() > 3
    source = tmp_path / "clip.mp4"
    make_video(source, frames=6, audio=False)
    stylize(
        load_config(
            "stylize",
            [
                f"ckpt={model_dir / 'final.onnx'}",
                f"input={source}",
                f"output={tmp_path / 'clip_ov.mp4'}",
                "backend=openvino",
                "batch_size=4",
            ],
        )
    )
    frames_in, rate_in, _ = probe(source)
    frames_out, rate_out, _ = probe(tmp_path / "clip_ov.mp4")
    assert len(frames_out) == 6 and rate_out == rate_in
    assert np.abs(frames_out[2].astype(int) - frames_in[2]).mean() > 10  # stylized, not copied


def test_without_openvino_asking_for_it_is_one_line_saying_how_to_install(monkeypatch, model_dir, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # "import openvino" now raises ImportError
    with pytest.raises(FastStyleError, match=r'pip install -e "\.\[openvino\]"') as info:
        require_openvino("formats=[openvino]")
    assert "\n" not in str(info.value)
    with pytest.raises(FastStyleError, match="needs OpenVINO"):
        load_backend(model_dir / "final.onnx", backend="openvino")
    with pytest.raises(FastStyleError, match="needs OpenVINO"):
        export_checkpoint(model_dir / "final.ckpt", ["onnx", "openvino"], tmp_path)
    assert list(tmp_path.iterdir()) == []  # checked before any format is written
    # The command lines refuse before anything runs (config check, no torch import).
    from fast_style.config import schema

    monkeypatch.setattr(schema, "openvino_installed", lambda: False)
    for command, args in [
        ("stylize", [f"ckpt={model_dir / 'final.onnx'}", "input=a.jpg", "output=b.jpg", "backend=openvino"]),
        ("export", [f"ckpt={model_dir / 'final.ckpt'}", "formats=[openvino]"]),
    ]:
        with pytest.raises(FastStyleError, match=r"needs OpenVINO, an optional extra: pip install"):
            load_config(command, args)


def test_openvino_settings_are_checked_on_the_command_line(model_dir):
    onnx = model_dir / "final.onnx"
    result = run_script("stylize.py", f"ckpt={onnx}", "input=a.jpg", "output=b.jpg", "device=gpu")
    assert_one_line_error(result, "device=gpu", "backend=openvino")
    if importlib.util.find_spec("openvino") is not None:
        result = run_script(
            "stylize.py", f"ckpt={onnx}", "input=a.jpg", "output=b.jpg", "backend=openvino", "device=cuda"
        )
        assert_one_line_error(result, "device=cuda", "not an OpenVINO device")
    result = run_script("stylize.py", f"ckpt={onnx}", "input=a.jpg", "output=b.jpg", "backend=tensorrt")
    assert_one_line_error(result, "backend='tensorrt'", "auto, openvino")


@needs_openvino
def test_a_multi_style_model_is_refused_in_one_line_and_a_baked_style_runs(tmp_path):
    from .test_multi_style import save_multi_checkpoint, styled_net

    net = styled_net(2)
    ckpt = save_multi_checkpoint(tmp_path / "multi.ckpt", net, ["starry_night", "wave"])
    bake = f"bake one first with python scripts/export.py ckpt={ckpt} style=<name> formats=[openvino]"
    with pytest.raises(FastStyleError, match="holds 2 styles") as info:
        load_backend(ckpt, backend="openvino")
    assert bake in str(info.value) and "\n" not in str(info.value)
    out = tmp_path / "out"
    with pytest.raises(FastStyleError, match="OpenVINO runs one style per model") as info:
        export_checkpoint(ckpt, ["onnx", "openvino"], out, log=lambda line: None)
    assert bake in str(info.value)
    assert not out.exists() or list(out.iterdir()) == []  # refused before any format is written
    photo = tmp_path / "photo.png"
    Image.fromarray(skimage_photo("astronaut")[:32, :40]).save(photo)
    styled = tmp_path / "styled.png"
    result = run_script("stylize.py", f"ckpt={ckpt}", f"input={photo}", f"output={styled}", "backend=openvino")
    assert_one_line_error(result, "holds 2 styles", "style=<name> formats=[openvino]")
    assert not styled.exists()
    # Training several styles with an IR export is refused before training starts.
    with pytest.raises(FastStyleError, match=r"export.formats=\[...,openvino\] takes one style"):
        load_config("train", ["styles=[wave,udnie]", "export.formats=[openvino]"])
    # What the message says to do works: the baked style exports to an IR and runs.
    written = export_checkpoint(ckpt, ["openvino"], out, style="wave", log=lambda line: None)
    assert written["openvino"].name == "multi_wave.xml"
    backend = load_backend(written["openvino"])
    assert backend.styles == [] and backend.info["style"] == "wave"
    images = photo_batch(40, 36)
    with torch.inference_mode():
        expected = Stylizer(net.baked(torch.tensor([0.0, 1.0]))).eval()(images)
    assert float((backend(images) - expected).abs().max()) <= 1e-3
