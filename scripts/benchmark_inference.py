"""Inference speed of one stylizer across backends and precisions, on the same machine.

    python scripts/benchmark_inference.py [ckpt=final.ckpt] [device=auto] [size=1024x680] [batch=1]
        [windows=5] [iters=3] [warmup=2] [backends=[eager32,eager32_cl,autocast_bf16_cl,bf16,fp16,torchscript,
        torchscript_bf16,onnx,openvino,openvino_bf16]] [compile=false] [fast_kernels=false]

The reference is eager fp32 PyTorch (NCHW). Every other row is timed the same way: ``warmup`` runs,
then ``windows`` windows of ``iters`` runs; the median window gives ms per image. Each row also
prints its max abs difference from the reference output on the [0, 1] scale, so a fast but wrong
precision shows. ``bf16``/``fp16``/``torchscript*``/``onnx`` rows run through ``load_backend``, i.e.
exactly what ``stylize.py precision=...`` does (including the host-device copies). Without ``ckpt`` a freshly initialised Johnson network is timed (speed does not
depend on the weights). On CUDA, try ``size=1920x1080 batch=8`` for batched 1080p throughput; a
last column gives each row's peak GPU memory (the eager network stays resident throughout).

``openvino``/``openvino_bf16`` run the OpenVINO IR export (``stylize.py ckpt=final.xml
[precision=bf16]``, the ``openvino`` extra) on the CPU with ``INFERENCE_PRECISION_HINT`` f32/bf16;
their first call compiles the model for the image size, which is reported on its own line and not
timed in the row. A bf16 request that the CPU cannot honour (no AVX512-BF16/AMX) runs f32: the row
says which precision actually ran.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from fast_style.config.cli import launch
from fast_style.config.schema import at_least, device_setting, existing, setting
from fast_style.errors import FastStyleError
from fast_style.infer.backends import load_backend
from fast_style.infer.export import export_stylizer
from fast_style.infer.stylizer import Stylizer, load_stylizer, resolve_device, take_peak_gpu_gib
from fast_style.model.cpu_kernels import use_fast_kernels
from fast_style.model.networks import TransformerNet

BACKENDS = ("eager32", "eager32_cl", "autocast_bf16_cl", "bf16", "fp16", "torchscript", "torchscript_bf16", "onnx")
BACKENDS += ("openvino", "openvino_bf16", "compile_bf16")


@dataclass
class BenchmarkInferenceConfig:
    """``python scripts/benchmark_inference.py``: one stylizer across backends and precisions."""

    ckpt: str | None = existing(None, "file", "pass a .ckpt written by train.py (or leave ckpt out)")
    device: str = device_setting()
    size: str = setting("1024x680", "WIDTHxHEIGHT, e.g. 1024x680", lambda v: bool(re.fullmatch(r"\d+x\d+", v)))
    batch: int = setting(1, **at_least(1))
    windows: int = setting(5, **at_least(1))
    iters: int = setting(3, **at_least(1))
    warmup: int = setting(2, **at_least(0))
    backends: list[str] = setting(
        allowed=f"of {', '.join(BACKENDS)}",
        check=lambda v: all(b in BACKENDS for b in v),
        factory=lambda: list(BACKENDS[:-1]),
    )
    compile: bool = False  # adds compile_bf16
    fast_kernels: bool | None = None


def runner(module: torch.nn.Module, device: torch.device, dtype: torch.dtype | None, channels_last: bool):
    """``batch -> stylized batch`` at the given precision and memory layout (inference mode)."""
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    amp = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    @torch.inference_mode()
    def run(batch: torch.Tensor) -> torch.Tensor:
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with amp:
            return module(batch)

    return run


def time_it(run: Callable, batch: torch.Tensor, device: torch.device, warmup: int, windows: int, iters: int) -> float:
    """Median seconds per image over ``windows`` timed windows of ``iters`` calls."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        run(batch)
    sync()
    per_image = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(iters):
            run(batch)
        sync()
        per_image.append((time.perf_counter() - start) / (iters * batch.shape[0]))
    return statistics.median(per_image)


def benchmark(args) -> list[tuple[str, float, float]]:
    """``args``: a validated ``configs/benchmark_inference.yaml`` (``BenchmarkInferenceConfig``)."""
    device = resolve_device(args.device)
    width, height = (int(v) for v in args.size.split("x"))
    batch_size, windows, iters, warmup = args.batch, args.windows, args.iters, args.warmup
    stylizer = load_stylizer(args.ckpt) if args.ckpt else Stylizer(TransformerNet()).eval()
    stylizer = use_fast_kernels(stylizer.requires_grad_(False), args.fast_kernels)
    wanted = list(args.backends)
    cuda = device.type == "cuda"
    batch = torch.rand(batch_size, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(
        f"image {width}x{height}, batch {batch_size}, median of {windows} windows x {iters} runs after {warmup} warm-up"
    )

    eager = stylizer.to(device)
    tmp = Path(tempfile.mkdtemp(prefix="fast_style_bench_"))
    exported: dict[str, Path] = {}

    def exported_file(fmt: str) -> Path:
        if fmt not in exported:
            exported.update(export_stylizer(stylizer.cpu(), tmp, "bench", [fmt], log=lambda line: None))
            stylizer.to(device)
        return exported[fmt]

    def backend(fmt: str, precision: str) -> Callable:
        """Exactly what ``stylize.py ckpt=<fmt file> precision=<precision>`` runs (untiled)."""
        loaded = load_backend(exported_file(fmt), device, precision, fast_kernels=args.fast_kernels)
        return lambda b: loaded(b.cpu())  # backends take and return host tensors

    def openvino(precision: str) -> Callable:
        """``stylize.py ckpt=final.xml precision=...``; the first (compiling) call is timed apart."""
        if device.type != "cpu":
            raise FastStyleError("the OpenVINO rows run on the CPU: use device=cpu")
        loaded = load_backend(exported_file("openvino"), "cpu", precision)
        loaded(batch.cpu())
        ran = loaded.effective_precision() or "?"
        name = "openvino" if precision == "32" else f"openvino_{precision}"
        print(f"{name}: first call compiled for {tuple(batch.shape)} in {loaded.compile_seconds[0]:.1f} s; runs {ran}")
        return lambda b: loaded(b.cpu())

    def compiled_bf16() -> Callable:
        loaded = load_backend(
            exported_file("safetensors"), device, "bf16", compile=True, fast_kernels=args.fast_kernels
        )
        return lambda b: loaded(b.cpu())

    candidates: dict[str, Callable[[], Callable]] = {
        "eager32": lambda: runner(eager, device, None, False),
        "eager32_cl": lambda: runner(eager, device, None, True),
        "autocast_bf16_cl": lambda: runner(eager, device, torch.bfloat16, True),
        "bf16": lambda: backend("safetensors", "bf16"),
        "fp16": lambda: backend("safetensors", "fp16"),
        "torchscript": lambda: backend("torchscript", "32"),
        "torchscript_bf16": lambda: backend("torchscript", "bf16"),
        "onnx": lambda: backend("onnx", "32"),
        "openvino": lambda: openvino("32"),
        "openvino_bf16": lambda: openvino("bf16"),
        "compile_bf16": compiled_bf16,
    }
    if args.compile and "compile_bf16" not in wanted:
        wanted.append("compile_bf16")
    if not cuda and "fp16" in wanted:
        wanted.remove("fp16")  # CPUs without fp16 units emulate it: not a deployment option

    def peak_gib() -> str:
        """Peak GPU memory allocated since the last call (CUDA only: a column of its own)."""
        peak = take_peak_gpu_gib(device)
        return "" if peak is None else f"{peak:>10.2f}"

    peak_gib()
    reference_out = candidates["eager32"]()(batch).float().cpu()
    reference = time_it(candidates["eager32"](), batch, device, warmup, windows, iters)
    rows = [("eager32", reference, 0.0)]
    print(
        f"{'backend':<22}{'ms/image':>10}{'images/s':>10}{'speed-up':>10}{'max diff':>10}" + cuda * f"{'peak GiB':>10}"
    )
    print(
        f"{'eager32 (reference)':<22}{reference * 1e3:>10.1f}{1 / reference:>10.2f}{1.0:>9.2f}x{0.0:>10.1e}{peak_gib()}"
    )
    for name in wanted:
        if name == "eager32":
            continue
        try:
            run = candidates[name]()
            diff = float((run(batch).float().cpu() - reference_out).abs().max())
            seconds = time_it(run, batch, device, warmup, windows, iters)
        except (RuntimeError, FastStyleError) as exc:  # e.g. a precision this build lacks
            print(f"{name:<22} skipped: {' '.join(str(exc).split())[:100]}")
            peak_gib()
            continue
        rows.append((name, seconds, diff))
        line = f"{name:<22}{seconds * 1e3:>10.1f}{1 / seconds:>10.2f}{reference / seconds:>9.2f}x{diff:>10.1e}"
        print(line + peak_gib())
    best = min(rows, key=lambda row: row[1])
    print(f"fastest: {best[0]} at {reference / best[1]:.2f}x the eager fp32 reference")
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


if __name__ == "__main__":
    launch("benchmark_inference", benchmark, config_schema=BenchmarkInferenceConfig)
