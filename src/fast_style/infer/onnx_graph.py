"""The ONNX graph of a stylizer: what ``formats=[onnx]`` writes and what OpenVINO converts.

Kept apart from ``export`` (which verifies files through ``backends``) so that the OpenVINO
backend can convert a ``.ckpt`` on load without an import cycle. The graph's contract: input
``images`` float32 RGB ``(B, 3, H, W)`` in [0, 1], any B/H/W; output ``stylized``, same shape, in [0, 1].
A multi-style net's graph takes a second input, ``style_weights`` float32 ``(B, S)`` (rows summing
to 1, one column per style named in the export's info), sharing the batch dimension of ``images``.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from fast_style.infer.stylizer import Stylizer
from fast_style.model.cpu_kernels import use_fast_kernels

# Written into every export (ONNX metadata, TorchScript extra file, safetensors header + sidecar, IR rt_info).
INFO_KEY = "fast_style"
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


def write_onnx(stylizer: Stylizer, path: Path, info: dict[str, Any]) -> None:
    """The ONNX file of ``stylizer`` (a plain copy, see ``plain_copy``) with ``info`` in its
    metadata: inputs ``images`` (and ``style_weights`` for a multi-style net), output ``stylized``."""
    import onnx
    from torch.export import Dim

    example = example_inputs(stylizer, torch.rand(1, 3, 64, 64))
    batch = Dim("batch")
    dims = {"images": {0: batch, 2: Dim("height"), 3: Dim("width")}}
    if len(example) == 2:  # the style weights share the images' batch dimension
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
    model = plain_graph(program.model_proto)
    entry = model.metadata_props.add()
    entry.key, entry.value = INFO_KEY, json.dumps(info)
    model.doc_string = f"fast-style stylizer. {info.get('contract', CONTRACT)}"
    onnx.save_model(model, str(path))  # one file: the weights (~7 MB) stay inside
    onnx.checker.check_model(str(path))


def plain_graph(model):
    """The exporter's ONNX graph made plain enough for every common runtime (ONNX Runtime, OpenVINO,
    OpenCV's DNN module), same function, same dynamic batch/height/width.

    The dynamo exporter writes each bias-free convolution's implicit zero bias as
    ``Expand(CastLike(Constant 0), Expand(Shape(weight), [1]))``, the clamp bounds as ``CastLike``
    of constants, and shape arithmetic constants as ``Constant`` nodes, some with an int64
    ``value_ints`` attribute that OpenCV reads as int32 (its Concat then refuses to mix them with
    the int64 sizes of the dynamic padding). Folding every input-independent subgraph, dropping
    the zero biases and turning the remaining constants into int64/float initializers leaves
    only the network's own ops plus the few Shape/Mod/Slice nodes the dynamic padding needs.
    Weights keep their PyTorch names (no initializer deduplication): stylize.py rebuilds the
    eager network from them for tiling. ``model``: an ``onnx.ModelProto``; returns a new one.
    """
    import onnx_ir as ir
    import onnx_ir.passes.common as passes
    from onnxscript import optimizer, rewriter

    graph = ir.from_proto(model)
    optimizer.fold_constants(graph)  # Shape(weight), Expand, CastLike of known types -> constants
    rewriter.rewrite(graph)  # its default rules include dropping all-zero Conv biases
    passes.RemoveUnusedNodesPass()(graph)
    passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(graph)
    plain = ir.to_proto(graph)
    # The output has the input's size: say so instead of the exporter's symbolic expressions.
    for dim, name in zip(
        plain.graph.output[0].type.tensor_type.shape.dim, ("batch", None, "height", "width"), strict=True
    ):
        if name is not None:
            dim.dim_param = name
    return plain


def plain_copy(stylizer: Stylizer) -> Stylizer:
    """A float32, contiguous CPU copy with the plain PyTorch layers: what every exporter traces.
    The caller's module keeps its device, dtype, layout and CPU fast paths (a channels-last one
    would make the exporters trace layout checks on symbolic shapes)."""
    stylizer = copy.deepcopy(stylizer).eval().float().cpu().to(memory_format=torch.contiguous_format)
    return use_fast_kernels(stylizer, False)


def write_onnx_plain(stylizer: Stylizer, path: Path, info: dict[str, Any]) -> None:
    """``write_onnx`` for any stylizer (fast paths on or off, any layout), unverified."""
    write_onnx(plain_copy(stylizer), path, info)
