"""One interface over every file a stylizer can come in: checkpoint, ONNX, TorchScript, safetensors,
OpenVINO IR (and OpenVINO running any of the others: ``backend=openvino``).

``load_backend(path)`` picks the runtime from the file name; every backend maps a batch
``(B, 3, H, W)`` float32 RGB in [0, 1] (CPU) to the stylized batch, same shape, in [0, 1] (CPU).
Each backend can also rebuild the eager PyTorch ``Stylizer`` from the weights its file carries:
tiled stylizing of large images needs the network's instance norms (see ``tiling``), which an
ONNX session or a TorchScript graph does not expose.

A multi-style model (``styles`` lists its style names) runs the style chosen with
``select_style(weights)`` (``(S,)``, summing to 1): the eager network is baked to that style or
blend, ONNX and TorchScript get it as their ``style_weights`` input ``(B, S)``.
"""

from __future__ import annotations

import base64
import json
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fast_style.checkpoint_format import CHECKPOINT_KEY, file_kind, read_checkpoint
from fast_style.config.schema import STYLIZE_PRECISIONS
from fast_style.errors import FastStyleError
from fast_style.infer.onnx_graph import INFO_KEY, export_info, write_onnx_plain
from fast_style.infer.stylizer import Stylizer, network_from_checkpoint
from fast_style.model.cpu_kernels import use_fast_kernels
from fast_style.model.networks import TransformerNet

DTYPES = {"32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SUFFIXES = {".ckpt": "checkpoint", ".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}
SUFFIXES[".safetensors"] = "safetensors"
SUFFIXES[".xml"] = "openvino"
CONTENT_KINDS = {"torch": "checkpoint", "torchscript": "torchscript", "safetensors": "safetensors"}
# The OpenVINO IR's rt_info entry holding the weights its graph no longer names (see export.py).
OV_WEIGHTS_KEY = "fast_style_weights"
OPENVINO_INSTALL = 'pip install -e ".[openvino]" (or pip install openvino)'
# stylize.py precision= -> OpenVINO's INFERENCE_PRECISION_HINT; device= -> OpenVINO device names.
OV_PRECISIONS = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}
OV_DEVICES = {"cpu": "CPU", "gpu": "GPU", "auto": "AUTO"}


def require_openvino(what: str):
    """``import openvino``, or a one-line ``FastStyleError`` saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise FastStyleError(f"{what} needs OpenVINO, an optional extra: {OPENVINO_INSTALL}") from exc
    return openvino


def stylizer_from_weights(state: dict[str, torch.Tensor], info: dict[str, Any], source: Path) -> Stylizer:
    """Eager ``Stylizer`` from a ``Stylizer`` state dict (keys ``net.…``) and the export's info."""
    try:
        net = TransformerNet(**info["model"])
        stylizer = Stylizer(net, margin=int(info.get("margin", 8)))
        stylizer.load_state_dict({k: torch.as_tensor(v).float() for k, v in state.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise FastStyleError(
            f"{source} does not hold fast-style weights ({type(exc).__name__}): re-export it with scripts/export.py"
        ) from exc
    return stylizer.eval().requires_grad_(False)


def for_reduced_precision(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast a stylizer (eager or TorchScript) to ``dtype`` (weights and activations, no autocast
    round trips) and channels-last, the layout the network's CPU fast paths keep."""
    return module.to(dtype=dtype, memory_format=torch.channels_last)


class Backend:
    """A loaded stylizer. ``__call__``: ``(B, 3, H, W)`` [0, 1] CPU -> same shape [0, 1] CPU."""

    kind = "checkpoint"

    def __init__(
        self,
        path: Path,
        device: torch.device,
        dtype: torch.dtype,
        compile: bool = False,
        fast_kernels: bool | None = None,
    ) -> None:
        self.path, self.device, self.dtype = path, device, dtype
        self._eager: Stylizer | None = None
        self.compile = compile  # torch.compile the eager network (checkpoint/safetensors only)
        self.fast_kernels = fast_kernels  # CPU fast paths of the eager network (None: the environment decides)
        self._compiled: nn.Module | None = None
        self.info: dict[str, Any] = {}  # the file's self-description (model config, style names, ...)
        self.mix: torch.Tensor | None = None  # (S,) style weights chosen by select_style
        self._full: Stylizer | None = None  # the eager stylizer as stored (all styles)

    def full(self) -> Stylizer:
        """The eager stylizer as the file stores it (every style; fp32 CPU); reads ``info``."""
        if self._full is None:
            self._full = self._load_eager()
        return self._full

    @property
    def styles(self) -> list[str]:
        """The style names of a multi-style model, in the order of its ``style_weights`` columns;
        ``[]`` for a single-style model."""
        return list(self.info.get("styles") or [])

    def select_style(self, weights: torch.Tensor) -> None:
        """Stylize with ``weights`` ``(S,)`` (one per ``styles`` entry, summing to 1) from now on."""
        self.mix = weights.float().cpu()
        self._eager = self._compiled = None  # rebuilt (baked to the new mix) on the next call

    def style_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """The chosen style weights for every image of ``batch``: ``(B, S)`` float32."""
        if self.mix is None:
            raise FastStyleError(
                f"{self.path.name} holds {len(self.styles)} styles ({', '.join(self.styles)}): pass style=<name>, "
                "a blend such as style=[name_a:0.5,name_b:0.5], or style=all"
            )
        return self.mix[None].expand(batch.shape[0], -1).contiguous()

    def eager(self) -> Stylizer:
        """The eager PyTorch stylizer (on ``device``), rebuilt from this file's weights; a
        multi-style one baked to the chosen style (a single-style network: tiling works as usual)."""
        if self._eager is None:
            stylizer = self.full()
            if stylizer.net.num_styles > 1:
                mix = self.style_batch(torch.empty(1))[0]
                stylizer = Stylizer(stylizer.net.baked(mix), margin=stylizer.margin).eval().requires_grad_(False)
            self._eager = use_fast_kernels(stylizer, self.fast_kernels).to(self.device)
            if self.dtype != torch.float32:
                self._eager = for_reduced_precision(self._eager, self.dtype)
        return self._eager

    def _load_eager(self) -> Stylizer:
        checkpoint = read_checkpoint(self.path)
        self.info = dict(checkpoint[CHECKPOINT_KEY])
        return Stylizer(network_from_checkpoint(checkpoint)).eval()

    @torch.inference_mode()
    def run_module(self, module: nn.Module, batch: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        """Run a PyTorch module (already cast to this backend's dtype) on ``device``; result
        float32 on the CPU. ``extra``: further inputs (``style_weights``), moved to ``device``."""
        batch = batch.to(self.device, non_blocking=True)
        if self.dtype != torch.float32:
            # NHWC in the module's dtype: the fast layout for bf16/fp16 convolutions.
            batch = batch.to(dtype=self.dtype, memory_format=torch.channels_last)
        return module(batch, *(e.to(self.device) for e in extra)).float().cpu().contiguous()

    def run_eager(self, batch: torch.Tensor) -> torch.Tensor:
        return self.run_module(self.eager(), batch)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.compile:
            if self._compiled is None:
                # A wrapper: tiling keeps running (and patching) the plain eager module. Static
                # shapes (one compile per image size): dynamic ones hit an inductor bug on the
                # pad-to-multiple-of-4 arithmetic in torch 2.14.
                self._compiled = torch.compile(self.eager(), dynamic=False)
            return self.run_module(self._compiled, batch)
        return self.run_eager(batch)


class SafetensorsBackend(Backend):
    kind = "safetensors"

    def _load_eager(self) -> Stylizer:
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        try:
            with safe_open(str(self.path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            state = load_file(str(self.path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise FastStyleError(f"cannot read {self.path} ({exc}): the file is damaged; re-export it") from exc
        sidecar = self.path.with_suffix(".json")
        if INFO_KEY in metadata:
            info = json.loads(metadata[INFO_KEY])
        elif sidecar.is_file():
            info = json.loads(sidecar.read_text())
        else:
            raise FastStyleError(f"{self.path} has no model config: put its {sidecar.name} next to it")
        self.info = info
        return stylizer_from_weights(state, info, self.path)


class TorchScriptBackend(Backend):
    kind = "torchscript"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        extra = {f"{INFO_KEY}.json": ""}
        try:
            with warnings.catch_warnings():  # "torch.jit is deprecated": still the portable format
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(self.path), map_location=self.device, _extra_files=extra).eval()
        except Exception as exc:
            raise FastStyleError(
                f"cannot load TorchScript file {self.path} ({type(exc).__name__}): it is damaged or not TorchScript; "
                "re-export it with scripts/export.py"
            ) from exc
        self.info = json.loads(extra[f"{INFO_KEY}.json"] or "{}")
        if self.dtype != torch.float32:
            self.module = for_reduced_precision(self.module, self.dtype)

    def _load_eager(self) -> Stylizer:
        state = {k: v.float().cpu() for k, v in self.module.state_dict().items()}
        return stylizer_from_weights(state, self.info, self.path)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.styles:
            return self.run_module(self.module, batch, self.style_batch(batch).to(self.dtype))
        return self.run_module(self.module, batch)


class OnnxBackend(Backend):
    kind = "onnx"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        path, device = self.path, self.device
        import onnxruntime as ort

        if self.dtype != torch.float32:
            raise FastStyleError(
                f"precision={self.dtype} applies to .ckpt and TorchScript models; {path.name} runs in float32: drop precision="
            )
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise FastStyleError(
                    "device=cuda but this onnxruntime has no CUDA provider: pip install onnxruntime-gpu or use device=cpu"
                )
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers are noise for users
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise FastStyleError(
                f"cannot load ONNX model {path} ({first}): it is damaged or not ONNX; re-export it with scripts/export.py"
            ) from exc
        self.input_name = self.session.get_inputs()[0].name
        self.info = json.loads(self.session.get_modelmeta().custom_metadata_map.get(INFO_KEY, "{}"))

    def _load_eager(self) -> Stylizer:
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(self.path))
        info = json.loads({p.key: p.value for p in model.metadata_props}.get(INFO_KEY, "{}"))
        state = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
        return stylizer_from_weights({k: v for k, v in state.items() if k.startswith("net.")}, info, self.path)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        feed = {self.input_name: np.ascontiguousarray(batch.float().numpy())}
        if self.styles:
            feed["style_weights"] = self.style_batch(batch).numpy()
        return torch.from_numpy(self.session.run(None, feed)[0])


OV_NAMES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def _ran(compiled) -> str | None:
    """The inference precision a compiled OpenVINO model runs, as ``float32``/``bfloat16``/...;
    None where the device does not report it (AUTO)."""
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except Exception:
        return None
    text = (value.get_type_name() if hasattr(value, "get_type_name") else str(value)).lower()
    return OV_NAMES.get(text, text)


def refuse_multi_style_openvino(path: Path, styles: list[str]) -> None:
    """OpenVINO runs single-style models only: a multi-style one (``styles`` its style names) is
    one line saying how to bake one style into a plain model first."""
    if styles:
        source = path if path.suffix.lower() == ".ckpt" else "<its .ckpt>"
        raise FastStyleError(
            f"{path.name} holds {len(styles)} styles ({', '.join(styles)}) and OpenVINO runs one style per model: "
            f"bake one first with python scripts/export.py ckpt={source} style=<name> formats=[openvino] "
            "and pass the .xml it writes"
        )


class OpenVinoBackend(Backend):
    """OpenVINO runtime: an IR (``.xml`` + ``.bin``), or an ``.onnx`` or ``.ckpt`` converted on load.

    ``dtype`` maps to OpenVINO's ``INFERENCE_PRECISION_HINT`` (a request: a CPU without bf16/fp16
    units runs f32, which is printed once), ``ov_device`` to its device (CPU, GPU; AUTO: the GPU if
    OpenVINO sees one, else the CPU). The model
    is compiled for each input shape it sees (static shapes compile to faster kernels than the
    dynamic graph) and the last ``CACHE`` compiled shapes are kept, so a video or a folder of
    equal-size photos compiles once. Tiling runs the eager PyTorch net rebuilt from the weights,
    as for every other format.
    """

    kind = "openvino"
    CACHE = 4

    def __init__(self, *args: Any, ov_device: str = "CPU", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ov = require_openvino(f"OpenVINO ({self.path.name})")
        self.ov_device, self.hint = ov_device, OV_PRECISIONS[self.dtype]
        self.core = ov.Core()
        self.compiled: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self.compile_seconds: list[float] = []  # one per compiled shape (benchmarks report them)
        self._warned = False
        suffix = self.path.suffix.lower()
        try:
            if suffix == ".xml":
                self.model = self.core.read_model(str(self.path))
            elif suffix == ".onnx":
                self.model = self.core.read_model(str(self.path))  # OpenVINO's own ONNX reader
            else:
                self.model = self._convert_checkpoint()
        except FastStyleError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise FastStyleError(
                f"cannot load {self.path} into OpenVINO ({first}): it is damaged or not a model; "
                "re-export it with scripts/export.py"
            ) from exc
        if suffix == ".xml":
            self.info = self._rt_json(INFO_KEY)
        elif suffix == ".onnx":
            import onnx

            meta = {p.key: p.value for p in onnx.load(str(self.path), load_external_data=False).metadata_props}
            self.info = json.loads(meta.get(INFO_KEY, "{}"))
        refuse_multi_style_openvino(self.path, self.styles)
        if ov_device == "AUTO":  # like device=auto for PyTorch: the GPU if there is one, else the CPU
            self.ov_device = ov_device = "GPU" if "GPU" in self.core.available_devices else "CPU"
        if ov_device not in self.core.available_devices:
            raise FastStyleError(
                f"OpenVINO has no {ov_device} device here (it has {', '.join(self.core.available_devices)}): "
                "use device=cpu or device=auto"
            )

    def _rt_json(self, key: str) -> dict:
        return json.loads(self.model.get_rt_info([key]).astype(str)) if self.model.has_rt_info([key]) else {}

    def _convert_checkpoint(self):
        """A ``.ckpt`` (or safetensors/TorchScript) file -> the exported ONNX graph -> OpenVINO (~20 s)."""
        import tempfile

        source = load_backend(self.path, "cpu", "32")
        self._eager_source, self.info = source.full(), source.info
        # Checked before the conversion (~20 s): the graph would need a second input.
        refuse_multi_style_openvino(self.path, self.styles)
        with tempfile.TemporaryDirectory(prefix="fast_style_ov_") as folder:
            onnx_path = Path(folder) / "model.onnx"
            write_onnx_plain(self._eager_source, onnx_path, export_info(self._eager_source))
            return self.core.read_model(str(onnx_path))

    def _load_eager(self) -> Stylizer:
        if getattr(self, "_eager_source", None) is not None:
            return self._eager_source
        if self.path.suffix.lower() == ".onnx":
            return OnnxBackend._load_eager(self)  # reads the initializers by name, like the ONNX backend
        # IR: the convolution weights keep their PyTorch names as constants; the rest (instance-norm
        # affine parameters, which OpenVINO folds into reshaped constants) travel in rt_info.
        state: dict[str, torch.Tensor] = {}
        for op in self.model.get_ops():
            name = op.get_friendly_name()
            if op.get_type_name() == "Constant" and name.startswith("net."):
                state[name] = torch.from_numpy(op.get_data().copy())
        for name, entry in self._rt_json(OV_WEIGHTS_KEY).items():
            array = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.float32).reshape(entry["shape"])
            state[name] = torch.from_numpy(array.copy())
        return stylizer_from_weights(state, self.info, self.path)

    def _compiled_for(self, shape: tuple[int, ...]):
        if shape in self.compiled:
            self.compiled.move_to_end(shape)
            return self.compiled[shape]
        import time

        from openvino import PartialShape

        model = self.model.clone()
        model.reshape({model.inputs[0]: PartialShape(list(shape))})
        start = time.perf_counter()
        try:
            compiled = self.core.compile_model(model, self.ov_device, {"INFERENCE_PRECISION_HINT": self.hint})
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise FastStyleError(f"OpenVINO could not compile {self.path.name} for {self.ov_device} ({first})") from exc
        self.compile_seconds.append(time.perf_counter() - start)
        self._check_precision(compiled)
        self.compiled[shape] = compiled
        while len(self.compiled) > self.CACHE:
            self.compiled.popitem(last=False)
        return compiled

    def _check_precision(self, compiled) -> None:
        """Say so (once) when the device runs another precision than asked for: no silent fallback."""
        actual, wanted = _ran(compiled), OV_NAMES[self.hint]
        if actual is not None and actual != wanted and not self._warned:
            self._warned = True
            print(
                f"note: OpenVINO runs {actual} on this {self.ov_device}, not {wanted}: the device has no {wanted} "
                "support (on CPUs bf16 needs AVX512-BF16 or AMX)",
                file=sys.stderr,
            )

    def effective_precision(self) -> str | None:
        """What the last compiled model runs (``float32``, ``bfloat16``, ``float16``), if the device says."""
        return _ran(next(reversed(self.compiled.values()))) if self.compiled else None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.float().numpy())
        compiled = self._compiled_for(tuple(array.shape))
        return torch.from_numpy(np.asarray(compiled(array)[0]).copy())


BACKENDS = {"checkpoint": Backend, "safetensors": SafetensorsBackend, "torchscript": TorchScriptBackend}
BACKENDS["onnx"] = OnnxBackend
BACKENDS["openvino"] = OpenVinoBackend


def load_backend(
    path: str | Path,
    device: torch.device | str = "cpu",
    precision: str = "32",
    compile: bool = False,
    fast_kernels: bool | None = None,
    backend: str = "auto",
) -> Backend:
    """Open an existing stylizer file; the runtime follows the suffix (``.ckpt``, ``.onnx``,
    ``.pt``/``.ts``, ``.safetensors``, OpenVINO's ``.xml``), or the content when the suffix says
    nothing; ``backend="openvino"`` runs any of them on OpenVINO (``device``: cpu, gpu or auto,
    OpenVINO's devices). ``precision``:
    32, bf16 or fp16 (or a spelling ``STYLIZE_PRECISIONS`` knows). ``compile`` applies
    ``torch.compile`` to ``.ckpt``/``.safetensors`` models (a one-off ~20 s that pays for itself on
    folders and videos). One-line ``FastStyleError`` for damaged or unknown files."""
    path = Path(path).expanduser()
    kind = SUFFIXES.get(path.suffix.lower())
    if kind in (None, "checkpoint"):
        kind = CONTENT_KINDS.get(file_kind(path))
    if kind is None:
        raise FastStyleError(
            f"{path.name} is not a PyTorch checkpoint, ONNX, TorchScript or safetensors file: "
            "pass ckpt=<a .ckpt from train.py or its .onnx, .torchscript.pt, .safetensors or OpenVINO .xml export>"
        )
    dtype = DTYPES[STYLIZE_PRECISIONS[str(precision).lower()]]
    if backend == "openvino" or kind == "openvino":
        if compile:
            raise FastStyleError("compile=true is torch.compile; OpenVINO compiles by itself: drop compile=")
        name = str(device).split(":")[0].lower()
        if name not in OV_DEVICES:
            raise FastStyleError(f"device={device} is not an OpenVINO device: use device=cpu, gpu (Intel GPUs) or auto")
        return OpenVinoBackend(path, torch.device("cpu"), dtype, False, fast_kernels, ov_device=OV_DEVICES[name])
    if compile and kind not in ("checkpoint", "safetensors"):
        raise FastStyleError(f"compile=true applies to .ckpt and .safetensors models, not {path.name}: drop compile=")
    if str(device) == "gpu":
        raise FastStyleError("device=gpu means OpenVINO's Intel GPU: pass backend=openvino, or device=cuda for PyTorch")
    loaded = BACKENDS[kind](path, torch.device(device), dtype, compile, fast_kernels)
    if kind in ("checkpoint", "safetensors"):
        loaded.full()  # load now: a damaged file fails before any output is written
    return loaded
