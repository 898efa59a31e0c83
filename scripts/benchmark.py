"""Training throughput: the project's real training step vs a plain fp32 eager PyTorch loop.

    python scripts/benchmark.py                          # 256x256, batch 4, bf16-mixed, this machine
    python scripts/benchmark.py batch=16 precision=bf16-mixed compile=true device=cuda
    python scripts/benchmark.py loader=/data/coco256 workers=2   # packed-data loader only
    python scripts/benchmark.py device=cuda profile=true         # + the step's top GPU kernels

"project" runs StyleTransferModule through a Lightning Trainer (precision plugin, channels_last,
optimizer step, logging: everything ``train.py`` runs except data decoding, which is replaced by
random uint8 batches). "reference" is the pytorch/examples fast_neural_style loop on the same
TransformerNet and VGG16 with Adam, in fp32, eager, NCHW. Both report images/s as the median of
several timed windows after a warm-up. Weights are random: speed does not depend on them. On CUDA
each line also gives the peak GPU memory allocated by that loop; ``profile=true`` runs one more
window under ``torch.profiler`` after the timed ones and prints the kernels that took the most time.
"""

from __future__ import annotations

import itertools
import platform
import statistics
import time
import warnings
from dataclasses import dataclass

from fast_style.config.cli import launch
from fast_style.config.schema import TRAINER_PRECISIONS, at_least, choice, device_setting, existing, setting


@dataclass
class BenchmarkConfig:
    """``python scripts/benchmark.py``: the training step vs a plain fp32 loop."""

    size: int = setting(256, **at_least(32))
    batch: int = setting(4, **at_least(1))
    precision: str = choice("bf16-mixed", TRAINER_PRECISIONS)
    compile: bool = False  # torch.compile the nets (the project's step only)
    channels_last: bool = True
    fast_kernels: bool | None = None
    device: str = device_setting()
    warmup: int = setting(3, **at_least(0))
    window: int = setting(4, **at_least(1))  # steps per timed window
    windows: int = setting(5, **at_least(1))
    reference: bool = True  # also time the pytorch/examples fp32 loop
    loader: str | None = existing(None, "folder", "pass a folder written by scripts/prepare_data.py")
    workers: int = setting(2, **at_least(0))
    loader_images: int = setting(20000, **at_least(1))
    profile: bool = False  # one extra window under torch.profiler: the top kernels (not timed)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device) -> str:
    """`` peak 3.1 GiB`` (GPU memory allocated since the last reset) on CUDA, else ``""``; resets it."""
    from fast_style.infer.stylizer import take_peak_gpu_gib

    peak = take_peak_gpu_gib(device)
    return "" if peak is None else f", peak {peak:.1f} GiB"


def windows_throughput(step, device, batch: int, warmup: int, window: int, windows: int) -> list[float]:
    """Run ``step()`` warmup + window*windows times; images/s of each window."""
    for _ in range(warmup):
        step()
    sync(device)
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(window):
            step()
        sync(device)
        rates.append(batch * window / (time.perf_counter() - start))
    return rates


# -- the reference: pytorch/examples fast_neural_style, fp32 eager ------------------------------
def reference_rates(args, device) -> list[float]:
    import torch
    import torch.nn.functional as F

    from fast_style.model.networks import TransformerNet
    from fast_style.model.perceptual import IMAGENET_MEAN, IMAGENET_STD, load_vgg_features

    net = TransformerNet().to(device)
    vgg = load_vgg_features("vgg16", "random")[:23].to(device).eval().requires_grad_(False)  # up to relu4_3
    taps = {3: "relu1_2", 8: "relu2_2", 15: "relu3_3", 22: "relu4_3"}
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def features(x):
        out, x = {}, (x - mean) / std
        for i, layer in enumerate(vgg):
            x = layer(x)
            if i in taps:
                out[taps[i]] = x
        return out

    def gram(y):
        b, c, h, w = y.size()
        f = y.view(b, c, w * h)
        return f.bmm(f.transpose(1, 2)) / (c * h * w)

    style_grams = {k: gram(v) for k, v in features(torch.rand(1, 3, args.size, args.size, device=device)).items()}
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    data = torch.randint(0, 256, (8, args.batch, 3, args.size, args.size), dtype=torch.uint8, device=device)
    batches = itertools.cycle(data)

    def step():
        x = next(batches).float() / 255.0
        optimizer.zero_grad()
        y = net(x)
        fy, fx = features(y), features(x)
        content = 1e5 * F.mse_loss(fy["relu2_2"], fx["relu2_2"])
        style = 1e10 * sum(F.mse_loss(gram(fy[k]), style_grams[k].expand(len(x), -1, -1)) for k in taps.values())
        (content + style).backward()
        optimizer.step()

    return windows_throughput(step, device, args.batch, args.warmup, args.window, args.windows)


# -- the project: StyleTransferModule under a Lightning Trainer ---------------------------------
def project_rates(args, device) -> list[float]:
    import pytorch_lightning as pl
    import torch

    from fast_style.model.cpu_kernels import use_fast_kernels
    from fast_style.model.networks import TransformerNet
    from fast_style.model.perceptual import PerceptualLoss
    from fast_style.train.allocator import keep_freed_memory
    from fast_style.train.module import StyleTransferModule

    keep_freed_memory()  # as train.py does; process-wide, hence the reference runs first

    net = use_fast_kernels(TransformerNet(), args.fast_kernels)
    loss = PerceptualLoss(torch.rand(1, 3, args.size, args.size), weights="random")
    module = StyleTransferModule(net, loss, channels_last=args.channels_last, compile=args.compile)
    data = torch.randint(0, 256, (8, args.batch, 3, args.size, args.size), dtype=torch.uint8)
    total_steps = args.warmup + args.window * args.windows
    batches = [{"images": data[i % 8], "skipped": []} for i in range(total_steps)]

    profiled = args.window if args.profile else 0
    batches += batches[:profiled]

    class Timer(pl.Callback):
        def __init__(self):
            self.marks = []
            self.profiler = None

        def on_train_batch_end(self, trainer, *_):
            sync(device)
            self.marks.append(time.perf_counter())
            if profiled and len(self.marks) == total_steps:  # the timed windows are over
                self.profiler = torch.profiler.profile(activities=profiler_activities(device))
                self.profiler.__enter__()
            elif self.profiler is not None and len(self.marks) == total_steps + profiled:
                self.profiler.__exit__(None, None, None)

    timer = Timer()
    trainer = pl.Trainer(
        accelerator=device.type,
        devices=1,
        precision=args.precision,
        max_steps=total_steps + profiled,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        log_every_n_steps=25,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    if timer.profiler is not None:
        print_top_kernels(timer.profiler, device, profiled)
    marks = timer.marks[args.warmup - 1 :]
    return [
        args.batch * args.window / (marks[(i + 1) * args.window] - marks[i * args.window]) for i in range(args.windows)
    ]


def profiler_activities(device) -> list:
    import torch

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return activities


def print_top_kernels(profiler, device, steps: int, rows: int = 15) -> None:
    """The GPU kernels (on the CPU: the ops) that took the most time per step, with their share.

    On CUDA only kernel events count: the ops that launch them and the ``record_function`` ranges
    (Lightning wraps the whole step, closure included, in ``Optimizer.step``) would count twice."""
    from torch.autograd import DeviceType

    averages = profiler.key_averages()
    if device.type == "cuda":
        events = [e for e in averages if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", 0)]
        self_time = lambda e: e.self_device_time_total  # noqa: E731
    else:
        events = list(averages)
        self_time = lambda e: e.self_cpu_time_total  # noqa: E731
    events = [e for e in events if self_time(e) > 0]
    total = sum(self_time(e) for e in events) or 1
    kind = "GPU kernels" if device.type == "cuda" else "CPU ops"
    print(f"top {kind} by self time ({steps} profiled steps; {total / 1e3 / steps:.2f} ms of them per step):")
    for event in sorted(events, key=self_time, reverse=True)[:rows]:
        ms = self_time(event) / 1e3 / steps
        print(f"  {ms:8.3f} ms {100 * self_time(event) / total:5.1f}%  {event.count // steps:4d}x  {event.key[:90]}")


def loader_rate(args) -> None:
    from fast_style.train.data import PhotoDataModule

    dm = PhotoDataModule(
        source="packed", path=args.loader, image_size=args.size, batch_size=args.batch, num_workers=args.workers
    )
    loader = dm.train_dataloader()
    count, start, seen = 0, None, 0
    while seen < args.loader_images:
        for batch in loader:
            if start is None:  # first batch includes worker start-up
                start = time.perf_counter()
                continue
            count += len(batch["images"])
            seen += len(batch["images"])
            if seen >= args.loader_images:
                break
    print(
        f"packed loader: {count / (time.perf_counter() - start):.0f} img/s ({args.workers} workers, {args.size}x{args.size}, batch {args.batch})"
    )


def describe(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main(args) -> None:
    """``args``: a validated ``configs/benchmark.yaml`` (``BenchmarkConfig``)."""
    import torch

    from fast_style.infer.stylizer import resolve_device

    warnings.filterwarnings("ignore")
    if args.loader:
        return loader_rate(args)
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    print(f"device: {describe(device)}; torch {torch.__version__}; {args.size}x{args.size}, batch {args.batch}")
    peak_memory(device)
    if args.reference:  # first: the project's allocator setting is process-wide
        reference = statistics.median(reference_rates(args, device))
        print(f"reference (fp32 eager, pytorch/examples loop): {reference:8.2f} img/s{peak_memory(device)}", flush=True)
    project = statistics.median(project_rates(args, device))
    label = f"{args.precision}{', channels_last' if args.channels_last else ''}{', compile' if args.compile else ''}"
    print(f"project   ({label}): {project:8.2f} img/s{peak_memory(device)}")
    if args.reference:
        print(f"ratio: {project / reference:.2f}x")


if __name__ == "__main__":
    launch("benchmark", main, config_schema=BenchmarkConfig)
