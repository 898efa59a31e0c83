"""Resume after kills and signals, atomic checkpoints, and checkpoints that would run code."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fast_style.checkpoint_format import read_checkpoint, safe_torch_load
from fast_style.errors import FastStyleError
from fast_style.infer.backends import load_backend
from fast_style.train.callbacks import RNGState
from fast_style.train.checkpoint_io import AtomicCheckpointIO, remove_partial_files
from fast_style.train.resume import check_resume_checkpoint, find_run_to_resume, resume_checkpoint
from fast_style.train.training import train

from .conftest import (
    ROOT,
    STYLE_DIR,
    assert_one_line_error,
    compose_train,
    skimage_photo,
    tiny_train_overrides,
    write_crops,
)


class Payload:
    """Unpickling this runs ``touch <marker>``: what a hostile checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def write_malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A file shaped like a Lightning checkpoint whose metadata executes a shell command when unpickled."""
    torch.save(
        {
            "state_dict": {"net.w": torch.zeros(1)},
            "optimizer_states": [],
            "loops": {},
            "global_step": 1,
            "fast_style": Payload(marker),
        },
        path,
    )
    return path


def fast_overrides(photos: Path, steps: int, every: int = 2) -> list[str]:
    """The cheapest real training: 32 px, a small net, VGG cut after relu2_1, no samples."""
    return [
        *tiny_train_overrides(photos, steps=steps, size=32),
        "style=custom",
        f"style.image={STYLE_DIR / 'starry_night.jpg'}",
        "style.size=64",
        "model=small",
        "samples.count=0",
        "perceptual.content_layers=[relu1_2]",
        "perceptual.style_layers=[relu2_1]",
        f"checkpoint.every_n_steps={every}",
        "checkpoint.keep=2",
    ]


@pytest.fixture
def needs_painting():
    if not (STYLE_DIR / "starry_night.jpg").is_file():
        pytest.skip("style paintings not found (shared/ is absent)")


# -- unsafe files -----------------------------------------------------------------------------
def test_the_payload_is_real_and_every_loader_refuses_it(tmp_path):
    control_marker, marker = tmp_path / "control_ran", tmp_path / "payload_ran"
    control = write_malicious_checkpoint(tmp_path / "control.ckpt", control_marker)
    torch.load(control, weights_only=False)  # proves the file really executes code when trusted
    assert control_marker.exists()
    evil = write_malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(FastStyleError, match="refusing to load"):
        safe_torch_load(evil)
    with pytest.raises(FastStyleError, match="refusing to load"):
        AtomicCheckpointIO().load_checkpoint(evil, weights_only=False)  # Lightning's resume path
    with pytest.raises(FastStyleError, match="refusing to load"):
        check_resume_checkpoint(evil, {})
    with pytest.raises(FastStyleError, match="refusing to load"):
        read_checkpoint(evil)  # stylize.py's path
    assert not marker.exists()


def stylize_and_resume_from(ckpt: Path, photos_dir: Path, tmp_path: Path) -> list[subprocess.CompletedProcess]:
    """``stylize.py ckpt=<ckpt>`` and ``train.py ckpt_path=<ckpt>``, side by side."""
    photo = next(photos_dir.glob("*.jpg"))
    commands = [
        [str(ROOT / "stylize.py"), f"ckpt={ckpt}", f"input={photo}", f"output={tmp_path / 'out.png'}"],
        [
            str(ROOT / "train.py"),
            *tiny_train_overrides(photos_dir),
            f"ckpt_path={ckpt}",
            f"hydra.run.dir={tmp_path / 'r'}",
        ],
    ]
    processes = [
        subprocess.Popen([sys.executable, *c], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=900)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    assert not (tmp_path / "out.png").exists() and not list((tmp_path / "r").glob("*.ckpt"))
    return results


def test_malicious_checkpoint_is_refused_by_both_entry_points(photos_dir, tmp_path):
    marker = tmp_path / "payload_ran"
    evil = write_malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    for result in stylize_and_resume_from(evil, photos_dir, tmp_path):
        assert_one_line_error(result, "refusing to load", "evil.ckpt")
    assert not marker.exists()


def write_files_that_are_no_checkpoint(folder: Path) -> list[Path]:
    """Plain text, random bytes, an empty file, a truncated zip and a truncated legacy pickle."""
    torch.save({"w": torch.ones(64)}, folder / "real.pt")
    torch.save({"w": torch.ones(64)}, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    contents = {
        "notes.txt": b"these are my notes, not a model\n",
        "noise.ckpt": random.Random(0).randbytes(4096),
        "empty.ckpt": b"",
        "truncated.ckpt": (folder / "real.pt").read_bytes()[:300],
        "truncated_legacy.ckpt": (folder / "legacy.pt").read_bytes()[:40],
    }
    for name, content in contents.items():
        (folder / name).write_bytes(content)
    return [folder / name for name in contents]


def test_files_that_are_no_checkpoint_get_their_own_line(tmp_path):
    """Only a real pickle with code in it is "could run code"; anything else that is not a
    checkpoint says so, in one short line, without PyTorch's message."""
    for path in write_files_that_are_no_checkpoint(tmp_path):
        damaged = path.name == "truncated_legacy.ckpt"  # a pickle stream: a checkpoint, cut short
        expected = (
            f"{path.name} is a damaged PyTorch checkpoint" if damaged else f"{path.name} is not a PyTorch checkpoint"
        )
        for load in (safe_torch_load, read_checkpoint, lambda p: check_resume_checkpoint(p, {})):
            with pytest.raises(FastStyleError) as info:
                load(path)
            message = str(info.value)
            assert message.startswith(expected) and len(message) < 200 and "\n" not in message, message
            assert "could run code" not in message and "Weights only" not in message
        with pytest.raises(FastStyleError) as info:
            load_backend(path)  # stylize.py's loader
        message = str(info.value)
        if not damaged:
            assert message.startswith(f"{path.name} is not a PyTorch checkpoint, ONNX, TorchScript or safetensors file")
        assert len(message) < 200 and "\n" not in message and "could run code" not in message, message


def test_files_that_are_no_checkpoint_through_both_entry_points(photos_dir, tmp_path):
    notes = write_files_that_are_no_checkpoint(tmp_path)[0]
    results = stylize_and_resume_from(notes, photos_dir, tmp_path)
    for result, hint in zip(results, ["pass ckpt=", "pass ckpt_path="], strict=True):
        line = assert_one_line_error(result, "notes.txt is not a PyTorch checkpoint", hint)
        assert len(line) < 200 + len("error: ") and result.returncode == 2


# -- atomic writes ------------------------------------------------------------------------------
def test_an_interrupted_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, target)

    def dies_halfway(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # stands in for a kill during the write

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, target)
    monkeypatch.undo()
    assert io.load_checkpoint(target)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left behind


def test_partial_files_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".last.ckpt.abc123.partial").write_bytes(b"half")
    (tmp_path / "last.ckpt").write_bytes(b"kept")
    assert [p.name for p in remove_partial_files(tmp_path)] == [".last.ckpt.abc123.partial"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


# -- what resumes -------------------------------------------------------------------------------
def test_resume_lookup(tmp_path):
    run_a, run_b = tmp_path / "style" / "a", tmp_path / "style" / "b"
    run_a.mkdir(parents=True)
    run_b.mkdir()
    assert resume_checkpoint(None, "auto", run_a) is None
    with pytest.raises(FastStyleError, match="resume=true"):
        resume_checkpoint(None, "true", run_a)
    (run_a / "last.ckpt").write_bytes(b"a")
    os.utime(run_a / "last.ckpt", (1_000, 1_000))
    (run_b / "last.ckpt").write_bytes(b"b")
    os.utime(run_b / "last.ckpt", (2_000, 2_000))
    (run_b / "hpc_ckpt_1.ckpt").write_bytes(b"slurm")  # SLURM's requeue checkpoint, newer
    assert find_run_to_resume(tmp_path / "style") == run_b
    assert resume_checkpoint(None, "true", run_b) == run_b / "hpc_ckpt_1.ckpt"
    assert resume_checkpoint(None, "false", run_b) is None
    assert resume_checkpoint(str(run_a / "last.ckpt"), "false", run_b) == run_a / "last.ckpt"


def test_resume_checkpoint_must_hold_training_state_and_match_the_model(tmp_path):
    path = tmp_path / "weights_only.ckpt"
    torch.save({"state_dict": {}, "fast_style": {"model": {"channels": 32}}}, path)
    with pytest.raises(FastStyleError, match="optimizer_states"):
        check_resume_checkpoint(path, {"channels": 32})
    torch.save(
        {
            "state_dict": {},
            "optimizer_states": [],
            "loops": {},
            "global_step": 3,
            "fast_style": {"model": {"channels": 32}},
        },
        path,
    )
    assert check_resume_checkpoint(path, {"channels": 32})["global_step"] == 3
    with pytest.raises(FastStyleError, match="model.channels=16 but the checkpoint has 32"):
        check_resume_checkpoint(path, {"channels": 16})
    # A net saved before model.output existed has a linear output: tanh cannot continue it.
    assert check_resume_checkpoint(path, {"channels": 32, "output": "linear"})["global_step"] == 3
    with pytest.raises(FastStyleError, match="model.output=tanh but the checkpoint has linear"):
        check_resume_checkpoint(path, {"channels": 32, "output": "tanh"})


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    callback = RNGState()
    torch.save(callback.state_dict(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(2))
    random.random(), np.random.rand(), torch.rand(5)  # move every stream on
    callback.load_state_dict(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert again[0] == expected[0] and again[1] == expected[1] and torch.equal(again[2], expected[2])


@pytest.mark.slow
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, needs_painting):
    """Stop at an epoch boundary, resume: weights equal the uninterrupted run's bit for bit.

    That needs the model, the Adam moments, the LR scheduler, the step and the RNG streams (data
    order, crops) all restored; without RNGState the weights differ by ~0.05.
    """
    photos = write_crops(tmp_path / "photos", ("astronaut", "coffee"), per_photo=4)  # 8 photos = 4 steps/epoch
    # total_steps pinned: the stopped run's trainer.max_steps=4 must not shorten the schedule
    scheduler = ["scheduler=cosine", "scheduler.warmup_steps=3", "scheduler.total_steps=12"]
    overrides = [*fast_overrides(photos, steps=12, every=4), *scheduler, "logger=none"]
    train(compose_train(overrides, tmp_path / "straight"))
    train(compose_train([*overrides, "trainer.max_steps=4"], tmp_path / "stopped"))
    train(compose_train([*overrides, "resume=true"], tmp_path / "stopped"))
    straight = read_checkpoint(tmp_path / "straight" / "final.ckpt")
    resumed = read_checkpoint(tmp_path / "stopped" / "final.ckpt")
    assert straight["global_step"] == resumed["global_step"] == 12
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_saves_last_ckpt_and_stops(signum, photos_dir, tmp_path, needs_painting):
    run_dir = tmp_path / "run"
    cfg = compose_train([*fast_overrides(photos_dir, steps=400), "logger=none"], run_dir)

    def signal_after_first_checkpoint():
        while not (run_dir / "last.ckpt").exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signum)  # handled in the main thread, between two steps

    handler_before = signal.getsignal(signal.SIGUSR1)
    threading.Thread(target=signal_after_first_checkpoint, daemon=True).start()
    with pytest.raises(FastStyleError, match="stopped by a signal") as info:
        train(cfg)
    step = read_checkpoint(run_dir / "last.ckpt")["global_step"]
    assert 2 <= step < 400
    assert f"at step {step}; saved {run_dir / 'last.ckpt'}" in str(info.value)
    assert not (run_dir / "final.ckpt").exists()
    assert signal.getsignal(signal.SIGUSR1) == handler_before  # our handler is gone after the run
    # ... and the run continues from there.
    cfg = compose_train([*fast_overrides(photos_dir, steps=step + 2), "logger=none", "resume=true"], run_dir)
    train(cfg)
    assert read_checkpoint(run_dir / "final.ckpt")["global_step"] == step + 2


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a CSVLogger file that hold a training loss (a killed writer may leave a torn last line)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({"global_step": float(row["global_step"]), "loss": float(row["loss/total"])})
            except (KeyError, TypeError, ValueError):
                continue
    return rows


def logged_step(out: Path) -> float:
    """The newest step in the running attempt's metrics.csv (-1 before it exists)."""
    steps = [row["global_step"] for path in out.glob("starry_night/*/logs/metrics.csv") for row in read_metrics(path)]
    return max(steps, default=-1)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(photos_dir, tmp_path, needs_painting):
    """Kill ``train.py`` three times at random moments (mid-step, mid-checkpoint-write...), resume each time.

    Every photo is the same 32x32 image, so each batch is identical and the loss is a function of
    the weights alone: it falls steadily (about 59000 at step 0, under 11000 from step 2 on), and a
    resumed step must repeat the loss the killed run logged for it.
    """
    max_steps, rng = 16, random.Random(6)
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = Image.fromarray(skimage_photo("astronaut")).resize((32, 32))
    for i in range(8):
        photo.save(photos / f"astronaut_{i}.png")
    out = tmp_path / "out"
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        *fast_overrides(photos, steps=max_steps),
        f"output_root={out}",
        "+logger.csv.flush_logs_every_n_steps=1",  # metrics of killed runs reach the disk
        # The loss curve above was measured with pytorch/examples' linear output (a bounded tanh
        # output starts lower and falls more slowly); the kills and resumes do not depend on it.
        "model.output=linear",
    ]
    resumed_from: list[int] = []
    for attempt in range(4):
        args = command if attempt == 0 else [*command, "resume=true"]
        if attempt:
            (run_dir,) = list((out / "starry_night").iterdir())  # resume=true must find this run
            resumed_from.append(safe_torch_load(run_dir / "last.ckpt")["global_step"])
        started = time.time()
        process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if attempt == 3:  # the last run finishes
            stdout, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, stderr[-3000:]
            break
        # Kill after this run has written a checkpoint of its own and logged a randomly chosen
        # step (so the kill lands mid-run however fast the machine is), at a random moment.
        low = min((resumed_from[-1] if resumed_from else 0) + 2, max_steps - 3)
        target = rng.randint(low, min(low + 3, max_steps - 3))  # leaves steps for the next attempt
        while process.poll() is None and not (
            any(p.stat().st_mtime > started for p in out.glob("starry_night/*/last.ckpt"))
            and logged_step(out) >= target
        ):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))
        process.kill()
        process.communicate(timeout=60)
    (run_dir,) = list((out / "starry_night").iterdir())
    assert stdout.strip().splitlines()[-1] == f"final checkpoint: {run_dir / 'final.ckpt'}"

    # Every resume continued from a checkpoint that moved forward; nothing restarted from 0.
    assert all(step > 0 for step in resumed_from) and resumed_from == sorted(resumed_from)
    # No checkpoint is corrupt; the periodic ones were pruned to the newest 2; no temp files remain.
    checkpoints = {p.name: safe_torch_load(p) for p in run_dir.glob("*.ckpt")}
    assert checkpoints["final.ckpt"]["global_step"] == checkpoints["last.ckpt"]["global_step"] == max_steps
    assert sorted(n for n in checkpoints if n.startswith("step_")) == ["step_000014.ckpt", "step_000016.ckpt"]
    assert not list(run_dir.glob(".*.partial"))

    # Metrics: each resumed part starts at the step of its checkpoint, with the loss the killed
    # part had reached there (not the untrained loss of step 0).
    logs = run_dir / "logs"
    parts = [read_metrics(logs / f"metrics_{i}.csv") for i in (1, 2, 3)] + [read_metrics(logs / "metrics.csv")]
    assert parts[0][0]["global_step"] == 0
    first_loss = parts[0][0]["loss"]
    for previous, part, step in zip(parts[:-1], parts[1:], resumed_from, strict=True):
        assert part[0]["global_step"] == step
        assert part[0]["loss"] < 0.25 * first_loss, (part[0], first_loss)
        before = [row["loss"] for row in previous if row["global_step"] == step]
        if before:  # the killed part got as far as logging this step
            assert part[0]["loss"] == pytest.approx(before[0], rel=0.02)
    assert parts[-1][-1]["global_step"] == max_steps - 1


def test_cached_imagenet_weights_are_verified_and_loaded_weights_only(tmp_path, monkeypatch):
    """A swapped file in $TORCH_HOME is refused; a good one is loaded with weights_only=True."""
    import hashlib

    from fast_style.model.perceptual import imagenet_state_dict

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    content = b"pretend these are VGG weights"
    prefix = hashlib.sha256(content).hexdigest()[:8]

    class FakeWeights:
        url = f"https://download.pytorch.org/models/vgg16-{prefix}.pth"
        calls: list[dict] = []

        def get_state_dict(self, **kwargs):
            self.calls.append(kwargs)
            return {"features.0.weight": torch.zeros(1)}

    cached = tmp_path / "hub" / "checkpoints" / f"vgg16-{prefix}.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(content)
    weights = FakeWeights()
    assert list(imagenet_state_dict(weights)) == ["features.0.weight"]
    assert weights.calls[-1]["weights_only"] is True and weights.calls[-1]["check_hash"] is True
    cached.write_bytes(b"something else")
    with pytest.raises(FastStyleError, match="do not match the sha256 prefix"):
        imagenet_state_dict(weights)
