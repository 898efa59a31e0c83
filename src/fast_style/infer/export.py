"""Exporting a trained stylizer to ONNX, TorchScript and safetensors, each checked after writing.

The contract of every export (the ``Stylizer`` module): input ``images`` float32 RGB ``(B, 3, H, W)``
in [0, 1], any batch, height and width (odd and tiny sizes included); output ``stylized`` float32
RGB of the same shape in [0, 1]. No 0-255 scaling, no BGR, no mean/std: it is all inside the graph.

Each file is written under a temporary name, loaded back through the same loader ``stylize.py``
uses, compared with eager PyTorch on several sizes, and only then renamed into place: a failed
export leaves no file behind.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from fast_style.checkpoint_format import CHECKPOINT_KEY, read_checkpoint
from fast_style.errors import FastStyleError
from fast_style.files import atomic_write
from fast_style.infer.backends import INFO_KEY, load_backend
from fast_style.infer.stylizer import Stylizer, network_from_checkpoint, style_mixes
from fast_style.model.cpu_kernels import use_fast_kernels

SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "safetensors": ".safetensors"}
# (batch, height, width): square, odd and non-square with batch 2, tiny and odd.
VERIFY_SIZES = ((1, 64, 64), (2, 37, 53), (1, 7, 5))
TOLERANCE = 1e-3
ONNX_OPSET = 18
CONTRACT = "images: float32 RGB (B, 3, H, W) in [0, 1], any B/H/W -> stylized: float32 RGB, same shape, in [0, 1]"
MULTI_CONTRACT = CONTRACT.replace(" -> ", ", style_weights: float32 (B, S), rows summing to 1 (columns: styles) -> ")


def export_info(stylizer: Stylizer, style: str | None = None, styles: list[str] | None = None) -> dict[str, Any]:
    """The small JSON every export carries: enough to rebuild the network and to use it right.
    A multi-style net's also lists its ``styles`` (the columns of its ``style_weights`` input)."""
    multi = stylizer.net.num_styles > 1
    info = {"model": dict(stylizer.net.config), "margin": stylizer.margin, "style": style}
    if multi:
        info["styles"] = list(styles or (f"style_{i}" for i in range(stylizer.net.num_styles)))
    return info | {"contract": MULTI_CONTRACT if multi else CONTRACT}


def example_inputs(stylizer: Stylizer, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple:
    """``(images,)``, or for a multi-style net ``(images, style_weights)`` with random blends
    ``(B, S)`` (rows summing to 1; the first row one-hot), so parity covers pure styles and blends."""
    styles = stylizer.net.num_styles
    if styles == 1:
        return (images,)
    weights = torch.rand(images.shape[0], styles, generator=generator)
    weights[0] = torch.nn.functional.one_hot(torch.tensor(styles - 1), styles)
    return images, weights / weights.sum(1, keepdim=True)


def _write_onnx(stylizer: Stylizer, path: Path, info: dict[str, Any]) -> None:
    import onnx
    from torch.export import Dim

    example = example_inputs(stylizer, torch.rand(1, 3, 64, 64))
    batch = Dim("batch")
    dims = {"images": {0: batch, 2: Dim("height"), 3: Dim("width")}}
    if len(example) == 2:
        dims["style_weights"] = {0: batch}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            stylizer,
            example,
            dynamo=True,
            opset_version=ONNX_OPSET,
            dynamic_shapes=dims,
            input_names=list(dims),
            output_names=["stylized"],
            verbose=False,
            # The graph optimizer merges equal initializers (e.g. untrained norm weights) and
            # renames them; unoptimized, every weight keeps its PyTorch name, which lets stylize.py
            # rebuild the eager network from the file for tiling. ONNX Runtime optimizes anyway.
            optimize=False,
        )
    model = program.model_proto
    entry = model.metadata_props.add()
    entry.key, entry.value = INFO_KEY, json.dumps(info)
    model.doc_string = f"fast-style stylizer. {CONTRACT}"
    onnx.save_model(model, str(path))  # one file: the weights (~7 MB) stay inside
    onnx.checker.check_model(str(path))


def _write_torchscript(stylizer: Stylizer, path: Path, info: dict[str, Any]) -> None:
    # Scripted, not traced: the pad-to-multiple-of-4 and crop depend on the input size.
    with warnings.catch_warnings():  # "torch.jit is deprecated": still the portable format
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(stylizer)
        torch.jit.save(scripted, str(path), _extra_files={f"{INFO_KEY}.json": json.dumps(info)})


def _write_safetensors(stylizer: Stylizer, path: Path, info: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in stylizer.state_dict().items()}
    save_file(state, str(path), metadata={INFO_KEY: json.dumps(info)})


WRITERS: dict[str, Callable[[Stylizer, Path, dict[str, Any]], None]] = {
    "onnx": _write_onnx,
    "torchscript": _write_torchscript,
    "safetensors": _write_safetensors,
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
    formats: Iterable[str] = tuple(WRITERS),
    style: str | None = None,
    log: Callable[[str], None] = print,
    styles: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``<out_dir>/<stem><suffix>`` for each format, verify it, print one line per format."""
    # A plain copy: the caller's module keeps its device, dtype, layout and CPU fast paths (a
    # channels-last one would make the exporters trace layout checks on symbolic shapes).
    stylizer = copy.deepcopy(stylizer).eval().float().cpu().to(memory_format=torch.contiguous_format)
    use_fast_kernels(stylizer, False)  # the graph gets the plain PyTorch ops
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    info = export_info(stylizer, style, styles)
    sizes = ", ".join(f"{b}x{h}x{w}" for b, h, w in VERIFY_SIZES)
    written = {}
    for fmt in dict.fromkeys(formats):
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
    atomic_write(target, lambda tmp: checked.append(_write_and_check(fmt, stylizer, tmp, info, target.stem)))
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
    formats: Iterable[str] = tuple(WRITERS),
    out_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    style: Any = None,
) -> dict[str, Path]:
    """Export a fast-style Lightning checkpoint; files go next to it unless ``out_dir`` is given.

    A multi-style checkpoint exports with a ``style_weights`` input, or, given ``style`` (a name
    or a blend, see ``style_mixes``), baked into a plain single-input stylizer named
    ``<stem>_<style>``."""
    ckpt = Path(ckpt).expanduser()
    checkpoint = read_checkpoint(ckpt, "pass ckpt=<a .ckpt written by train.py>")
    stylizer = Stylizer(network_from_checkpoint(checkpoint)).eval()
    meta = checkpoint[CHECKPOINT_KEY]
    styles = list(meta.get("styles") or [])
    stem = ckpt.stem
    if style is not None and not styles:
        raise FastStyleError(f"{ckpt.name} holds one style ({meta.get('style')}): drop style= to export it")
    if style is not None:
        [(label, mix)] = style_mixes(style, styles)[:1] if str(style) != "all" else [(None, None)]
        if label is None:
            raise FastStyleError("style=all applies to stylize.py: export one style or blend at a time, or none")
        stylizer = Stylizer(stylizer.net.baked(mix), margin=stylizer.margin).eval()
        return export_stylizer(stylizer, out_dir or ckpt.parent, f"{stem}_{label}", formats, style=label, log=log)
    return export_stylizer(
        stylizer, out_dir or ckpt.parent, stem, formats, style=meta.get("style"), log=log, styles=styles
    )
