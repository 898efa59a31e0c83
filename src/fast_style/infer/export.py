"""Exporting a trained stylizer to ONNX, TorchScript, safetensors and OpenVINO IR, each checked after writing.

The contract of every export (the ``Stylizer`` module): input ``images`` float32 RGB ``(B, 3, H, W)``
in [0, 1], any batch, height and width (odd and tiny sizes included); output ``stylized`` float32
RGB of the same shape in [0, 1]. No 0-255 scaling, no BGR, no mean/std: it is all inside the graph.

Each file is written under a temporary name, loaded back through the same loader ``stylize.py``
uses, compared with eager PyTorch on several sizes, and only then renamed into place: a failed
export leaves no file behind.
"""

from __future__ import annotations

import base64
import json
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from fast_style.checkpoint_format import CHECKPOINT_KEY, read_checkpoint
from fast_style.errors import FastStyleError
from fast_style.files import atomic_write
from fast_style.infer.backends import (
    INFO_KEY,
    OV_WEIGHTS_KEY,
    load_backend,
    refuse_multi_style_openvino,
    require_openvino,
)
from fast_style.infer.onnx_graph import (
    CONTRACT,
    MULTI_CONTRACT,
    ONNX_OPSET,
    example_inputs,
    export_info,
    plain_copy,
    plain_graph,
    write_onnx,
)
from fast_style.infer.stylizer import Stylizer, network_from_checkpoint, style_mixes

__all__ = [
    "CONTRACT",
    "MULTI_CONTRACT",
    "ONNX_OPSET",
    "example_inputs",
    "export_info",
    "plain_graph",
    "export_stylizer",
    "export_checkpoint",
]

SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors", "openvino": ".xml"}
# (batch, height, width): square, odd and non-square with batch 2, tiny and odd.
VERIFY_SIZES = ((1, 64, 64), (2, 37, 53), (1, 7, 5))
TOLERANCE = 1e-3
# What training and scripts/export.py write unless told otherwise (openvino is an optional extra).
DEFAULT_FORMATS = ("onnx", "torchscript", "safetensors")


def _write_torchscript(stylizer: Stylizer, path: Path, info: dict[str, Any]) -> None:
    # Scripted, not traced: the pad-to-multiple-of-4 and crop depend on the input size.
    with warnings.catch_warnings():  # "torch.jit is deprecated": still the portable format
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(stylizer)
        torch.jit.save(scripted, str(path), _extra_files={f"{INFO_KEY}.json": json.dumps(info)})


def _write_openvino(stylizer: Stylizer, path: Path, info: dict[str, Any]) -> None:
    """OpenVINO IR: ``path`` (``.xml``, the graph) and ``path.with_suffix(".bin")`` (the weights).

    Converted from the ONNX export (so the same dynamic batch/height/width and the same contract),
    weights kept in float32 (``save_model`` would halve them to fp16 by default, ~1e-3 off). The
    converter folds each instance norm's affine parameters into reshaped, renamed constants, so
    those (a few KB) also travel in the IR's rt_info: stylize.py rebuilds the eager net from the
    IR for tiling. ``info`` goes into rt_info too.
    """
    import tempfile

    ov = require_openvino("formats=[openvino]")
    with tempfile.TemporaryDirectory(prefix="fast_style_ov_") as folder:
        onnx_path = Path(folder) / "model.onnx"
        write_onnx(stylizer, onnx_path, info)
        model = ov.convert_model(str(onnx_path))
    named = {op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "Constant"}
    extra = {}
    for name, tensor in stylizer.state_dict().items():
        if name not in named:
            array = tensor.detach().float().cpu().numpy()
            extra[name] = {"shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode("ascii")}
    model.set_rt_info(json.dumps(info), [INFO_KEY])
    model.set_rt_info(json.dumps(extra), [OV_WEIGHTS_KEY])
    ov.save_model(model, str(path), compress_to_fp16=False)


def _write_safetensors(stylizer: Stylizer, path: Path, info: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in stylizer.state_dict().items()}
    save_file(state, str(path), metadata={INFO_KEY: json.dumps(info)})


WRITERS: dict[str, Callable[[Stylizer, Path, dict[str, Any]], None]] = {
    "onnx": write_onnx,
    "torchscript": _write_torchscript,
    "safetensors": _write_safetensors,
    "openvino": _write_openvino,
}


def parity(stylizer: Stylizer, path: Path, sizes=VERIFY_SIZES) -> float:
    """Max abs difference (on the [0, 1] scale) between ``path`` loaded as ``stylize.py`` would
    and eager ``stylizer``, over ``sizes`` of a fixed random batch (a multi-style net: with random
    ``style_weights``, pure styles and blends, see ``example_inputs``)."""
    backend = load_backend(path, "cpu", "32")
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch, height, width in sizes:
        inputs = example_inputs(stylizer, torch.rand(batch, 3, height, width, generator=generator), generator)
        images = inputs[0]
        with torch.inference_mode():
            expected = stylizer(*inputs)
        if len(inputs) == 2:
            got = torch.cat([_run_with_mix(backend, images[i : i + 1], inputs[1][i]) for i in range(batch)])
        else:
            got = backend(images)
        if got.shape != expected.shape:
            raise FastStyleError(f"{path.name} returned shape {tuple(got.shape)} for {tuple(images.shape)}")
        worst = max(worst, float((got - expected).abs().max()))
    return worst


def _run_with_mix(backend, images: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """One image ``(1, 3, H, W)`` through ``backend`` with the style weights ``mix`` ``(S,)``."""
    backend.select_style(mix)
    return backend(images)


def export_stylizer(
    stylizer: Stylizer,
    out_dir: str | Path,
    stem: str,
    formats: Iterable[str] = DEFAULT_FORMATS,
    style: str | None = None,
    log: Callable[[str], None] = print,
    styles: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``<out_dir>/<stem><suffix>`` for each format, verify it, print one line per format."""
    stylizer = plain_copy(stylizer)  # the graph gets the plain PyTorch ops; the caller's module is untouched
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    info = export_info(stylizer, style, styles)
    sizes = ", ".join(f"{b}x{h}x{w}" for b, h, w in VERIFY_SIZES)
    written = {}
    formats = list(dict.fromkeys(formats))
    if "openvino" in formats:  # both checked before writing any other format
        require_openvino("formats=[openvino]")
        refuse_multi_style_openvino(Path(stem), info.get("styles") or [])
    for fmt in formats:
        target = out_dir / f"{stem}{SUFFIX[fmt]}"
        diff = write_verified(fmt, stylizer, target, info)
        if fmt == "safetensors":
            atomic_write(target.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(info, indent=2) + "\n"))
        log(f"exported {fmt}: {target} (parity vs PyTorch on {sizes}: max abs diff {diff:.1e} <= {TOLERANCE:.0e} ok)")
        written[fmt] = target
    return written


def write_verified(fmt: str, stylizer: Stylizer, target: Path, info: dict) -> float:
    """Write one format to ``target`` through a temporary file that is checked against eager
    PyTorch before it is renamed into place; returns the max abs diff, raises (nothing kept) on failure."""
    checked: list[float] = []

    def write(tmp: Path) -> None:
        try:
            checked.append(_write_and_check(fmt, stylizer, tmp, info, target.stem))
            if fmt == "openvino":  # the weights file goes next to the graph, then the graph is renamed
                os.replace(tmp.with_suffix(".bin"), target.with_suffix(".bin"))
        finally:
            if fmt == "openvino":  # a failed write or check leaves no weights file behind
                tmp.with_suffix(".bin").unlink(missing_ok=True)

    atomic_write(target, write)
    return checked[0]


def _write_and_check(fmt: str, stylizer: Stylizer, tmp: Path, info: dict, name: str) -> float:
    try:
        WRITERS[fmt](stylizer, tmp, info)
    except Exception as exc:
        message = " ".join(str(exc).split())[:200]
        raise FastStyleError(f"{fmt} export of {name} failed ({type(exc).__name__}: {message})") from exc
    diff = parity(stylizer, tmp)
    if not diff <= TOLERANCE:
        raise FastStyleError(
            f"{fmt} export failed its check: max abs diff {diff:.2e} > {TOLERANCE:.0e} vs PyTorch; nothing written"
        )
    return diff


def export_checkpoint(
    ckpt: str | Path,
    formats: Iterable[str] = DEFAULT_FORMATS,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    style: Any = None,
) -> dict[str, Path]:
    """Export a fast-style Lightning checkpoint; files go next to it unless ``out_dir`` is given.

    A multi-style checkpoint exports with a ``style_weights`` input, or, given ``style`` (a name
    or a blend, see ``style_mixes``), baked into a plain single-input stylizer named
    ``<stem>_<style>``."""
    ckpt = Path(ckpt).expanduser()
    formats = list(formats)
    checkpoint = read_checkpoint(ckpt, "pass ckpt=<a .ckpt written by train.py>")
    stylizer = Stylizer(network_from_checkpoint(checkpoint)).eval()
    meta = checkpoint[CHECKPOINT_KEY]
    styles = list(meta.get("styles") or [])
    stem = ckpt.stem
    if style is not None and not styles:
        raise FastStyleError(f"{ckpt.name} holds one style ({meta.get('style')}): drop style= to export it")
    if style is None and "openvino" in formats:  # before any other format is written
        refuse_multi_style_openvino(ckpt, styles)
    if style is not None:
        [(label, mix)] = style_mixes(style, styles)[:1] if str(style) != "all" else [(None, None)]
        if label is None:
            raise FastStyleError("style=all applies to stylize.py: export one style or blend at a time, or none")
        stylizer = Stylizer(stylizer.net.baked(mix), margin=stylizer.margin).eval()
        return export_stylizer(stylizer, out_dir or ckpt.parent, f"{stem}_{label}", formats, style=label, log=log)
    return export_stylizer(
        stylizer, out_dir or ckpt.parent, stem, formats, style=meta.get("style"), log=log, styles=styles
    )
