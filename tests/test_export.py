"""Exports: training ends by exporting, every format matches eager PyTorch, failures leave nothing."""

import json

import numpy as np
import pytest
import torch

from fast_style.errors import FastStyleError
from fast_style.infer import export as export_module
from fast_style.infer.backends import load_backend
from fast_style.infer.export import export_checkpoint
from fast_style.infer.stylizer import load_stylizer

from .conftest import assert_one_line_error, run_script

FILES = {"onnx": "final.onnx", "torchscript": "final.torchscript.pt", "safetensors": "final.safetensors"}


def test_training_exports_every_format_and_prints_the_checks(trained_run):
    run_dir, stdout = trained_run
    lines = stdout.strip().splitlines()
    assert lines[-1] == f"final checkpoint: {run_dir / 'final.ckpt'}"  # still the last line
    for fmt, name in FILES.items():
        assert (run_dir / name).is_file()
        (line,) = [line for line in lines if line.startswith(f"exported {fmt}: ")]
        assert str(run_dir / name) in line and "max abs diff" in line and line.endswith("ok)")
    info = json.loads((run_dir / "final.json").read_text())
    assert info["model"] == {"channels": 32, "residual_blocks": 5, "output": "tanh"} and info["style"] == "starry_night"
    assert "[0, 1]" in info["contract"]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_exports_match_pytorch_on_odd_sizes_and_batches(trained_run, fmt):
    run_dir, _ = trained_run
    reference = load_stylizer(run_dir / "final.ckpt")
    backend = load_backend(run_dir / FILES[fmt])
    generator = torch.Generator().manual_seed(1)
    for shape in [(1, 3, 64, 64), (3, 3, 45, 77), (2, 3, 31, 17), (1, 3, 2, 3), (1, 3, 96, 50)]:
        images = torch.rand(*shape, generator=generator)
        with torch.inference_mode():
            expected = reference(images)
        got = backend(images)
        assert got.shape == images.shape and got.dtype == torch.float32
        assert float((got - expected).abs().max()) <= 1e-3, shape
        assert 0.0 <= float(got.min()) and float(got.max()) <= 1.0
    # The trained network changes the photo a lot: parity is not a comparison of two no-ops.
    assert float((expected - images).abs().mean()) > 0.05


def test_the_weights_rebuilt_from_each_export_are_the_checkpoints(trained_run):
    run_dir, _ = trained_run
    reference = load_stylizer(run_dir / "final.ckpt").state_dict()
    for name in FILES.values():
        rebuilt = load_backend(run_dir / name).eager().state_dict()
        assert rebuilt.keys() == reference.keys()
        assert all(torch.equal(rebuilt[k], reference[k]) for k in reference)


def test_export_script_writes_into_out_dir_and_rejects_bad_formats(trained_run, tmp_path):
    run_dir, _ = trained_run
    result = run_script(
        "scripts/export.py",
        f"ckpt={run_dir / 'final.ckpt'}",
        "formats=[torchscript,safetensors]",
        f"out_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.json", "final.safetensors", "final.torchscript.pt"]
    assert result.stdout.count("max abs diff") == 2
    bad = run_script("scripts/export.py", f"ckpt={run_dir / 'final.ckpt'}", "formats=[tflite]", f"out_dir={tmp_path}/b")
    assert_one_line_error(bad, "tflite", "onnx")
    missing = run_script("scripts/export.py", f"ckpt={tmp_path / 'nope.ckpt'}")
    assert_one_line_error(missing, "nope.ckpt")
    assert not (tmp_path / "b").exists()


def test_a_failing_export_leaves_no_file(trained_run, tmp_path, monkeypatch):
    run_dir, _ = trained_run

    def half_write(stylizer, path, info):
        path.write_bytes(b"\x08\x01partial")
        raise RuntimeError("disk full\nsecond line")

    monkeypatch.setitem(export_module.WRITERS, "onnx", half_write)
    with pytest.raises(FastStyleError, match="onnx export of final failed") as info:
        export_checkpoint(run_dir / "final.ckpt", ["onnx"], tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
    # a file that writes fine but disagrees with PyTorch is not kept either
    monkeypatch.setattr(export_module, "parity", lambda stylizer, path: float(np.float32(0.5)))
    with pytest.raises(FastStyleError, match="failed its check"):
        export_checkpoint(run_dir / "final.ckpt", ["safetensors"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_channels_last_stylizer_exports_and_stays_as_it_was(tmp_path):
    """Training keeps nets channels-last; exporting such a module must neither fail (layout checks
    on symbolic shapes) nor change the caller's module."""
    from fast_style.infer.stylizer import Stylizer
    from fast_style.model.networks import TransformerNet

    stylizer = Stylizer(TransformerNet()).eval().to(memory_format=torch.channels_last)  # (8, 1) exported fine
    written = export_module.export_stylizer(stylizer, tmp_path, "cl", ["onnx", "torchscript"], log=lambda line: None)
    assert sorted(written) == ["onnx", "torchscript"] and all(path.is_file() for path in written.values())
    first_conv = stylizer.net.encoder[0][1].weight
    assert first_conv.is_contiguous(memory_format=torch.channels_last) and not first_conv.is_contiguous()
    images = torch.rand(1, 3, 30, 42)
    with torch.inference_mode():
        expected = stylizer(images)
    torch.testing.assert_close(load_backend(written["onnx"])(images), expected, rtol=1e-3, atol=1e-3)


def save_net_checkpoint(net, path):
    """A minimal training checkpoint of ``net`` (its weights and model config) at ``path``."""
    state = {f"net.{key}": value for key, value in net.state_dict().items()}
    torch.save({"state_dict": state, "fast_style": {"model": net.config, "style": "starry_night"}}, path)
    return path


def test_a_tanh_output_net_loads_and_exports_with_parity(tmp_path):
    """``model.output=tanh`` travels in the checkpoint's model config: stylize and every export
    rebuild the bounded net, not a linear one."""
    from fast_style.model.networks import TransformerNet

    torch.manual_seed(0)
    net = TransformerNet(8, 1, output="tanh")
    ckpt = save_net_checkpoint(net, tmp_path / "final.ckpt")
    images = torch.rand(2, 3, 37, 53)
    with torch.inference_mode():
        expected = net.eval()(torch.nn.functional.pad(images, (8, 8, 8, 8), mode="replicate"))[..., 8:-8, 8:-8]
        torch.testing.assert_close(load_stylizer(ckpt)(images), expected.clamp(0, 1))
    written = export_checkpoint(ckpt, ["onnx", "torchscript"], log=lambda line: None)
    for path in written.values():
        torch.testing.assert_close(load_backend(path)(images), expected.clamp(0, 1), rtol=1e-4, atol=1e-4)


def test_an_antialiased_net_loads_exports_and_tiles_with_parity(tmp_path):
    """``model.antialias=true`` travels in the checkpoint's model config: stylize, tiling and every
    export rebuild the anti-aliased net (blur, bilinear upsampling), dynamic in size."""
    from fast_style.infer.stylizer import Stylizer
    from fast_style.infer.tiling import stylize_tiled
    from fast_style.model.networks import TransformerNet

    torch.manual_seed(0)
    net = TransformerNet(8, 1, output="tanh", antialias=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))  # away from the identity-like init: the blur matters
    ckpt = save_net_checkpoint(net, tmp_path / "final.ckpt")
    stylizer = load_stylizer(ckpt)
    assert stylizer.net.config["antialias"] is True
    images = torch.rand(2, 3, 37, 53)
    with torch.inference_mode():
        expected = stylizer(images)
        plain = TransformerNet(8, 1, output="tanh")
        plain.load_state_dict(net.state_dict())
        assert float((Stylizer(plain.eval())(images) - expected).abs().mean()) > 1e-3  # not the plain net
        photo = torch.rand(3, 90, 130)
        untiled = stylizer(photo[None])[0]
        tiled = stylize_tiled(stylizer, stylizer, photo, 64, blend=16)
        assert float((tiled - untiled).abs().max()) < 1e-3  # the context covers the blurs' extra reach
    written = export_checkpoint(ckpt, ["onnx", "torchscript"], log=lambda line: None)
    for path in written.values():
        for shape in [(2, 3, 37, 53), (1, 3, 8, 5)]:
            batch = images if shape == tuple(images.shape) else torch.rand(*shape)
            with torch.inference_mode():
                reference = stylizer(batch)
            torch.testing.assert_close(load_backend(path)(batch), reference, rtol=1e-4, atol=1e-4)


def test_the_onnx_graph_is_plain_and_opencv_runs_it_with_the_same_result(tmp_path):
    """OpenCV's DNN module (the engine of its fast-style sample) refused the exporter's raw graph:
    int64 ``value_ints`` constants it reads as int32 met the int64 image sizes in a Concat."""
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is not installed (pip install -e '.[dev]')")
    import onnx

    from .test_openvino import write_model

    ckpt = write_model(tmp_path / "final.ckpt")  # random weights and norm parameters: a photo changes a lot
    path = export_checkpoint(ckpt, ["onnx"], log=lambda line: None)["onnx"]
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    assert not {"Constant", "Expand", "CastLike"} & set(ops), sorted(set(ops))
    assert ops.count("Conv") == 8 and ops.count("InstanceNormalization") == 7
    dims = [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (graph.input[0], graph.output[0])
    ]
    assert dims == [["batch", 3, "height", "width"]] * 2  # still dynamic
    reference = load_stylizer(ckpt)
    net = cv2.dnn.readNetFromONNX(str(path))
    generator = torch.Generator().manual_seed(2)
    for shape in [(1, 3, 64, 64), (2, 3, 37, 53), (1, 3, 7, 5), (1, 3, 1, 1)]:
        images = torch.rand(*shape, generator=generator)
        with torch.inference_mode():
            expected = reference(images).numpy()
        net.setInput(images.numpy())
        got = net.forward()
        assert got.shape == shape
        assert float(np.abs(got - expected).max()) <= 1e-3, shape
        assert float(np.abs(expected - images.numpy()).mean()) > 0.05  # the net changes the photo
