"""The benchmark scripts run end to end at toy sizes and print the figures docs/performance.md quotes.

Speeds are not asserted (no timed assertions): only that each script finishes, prints a figure per
loop or backend, and that the faster paths agree with the reference output.
"""

import re

import torch

from fast_style.infer.stylizer import take_peak_gpu_gib

from .conftest import run_script


def test_training_benchmark_prints_both_loops():
    result = run_script("scripts/benchmark.py", "size=64", "batch=2", "warmup=1", "window=1", "windows=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^reference .*: +\d+\.\d+ img/s$", result.stdout, re.M), result.stdout
    assert re.search(r"^project +\(bf16-mixed, channels_last\): +\d+\.\d+ img/s$", result.stdout, re.M), result.stdout
    assert "peak" not in result.stdout  # GPU memory is a CUDA-only figure


def test_inference_benchmark_rows_match_the_reference():
    result = run_script(
        "scripts/benchmark_inference.py", "size=64x48", "windows=1", "iters=1", "warmup=1",
        "backends=[eager32,torchscript]",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    row = re.search(r"^torchscript +(\S+) +(\S+) +(\S+)x +(\S+)$", result.stdout, re.M)
    assert row, result.stdout
    assert float(row.group(4)) < 1e-3  # same fp32 network, another runtime
    assert "peak GiB" not in result.stdout


def test_peak_gpu_memory_is_a_cuda_figure_only():
    assert take_peak_gpu_gib(torch.device("cpu")) is None
