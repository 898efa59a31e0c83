"""Train a few steps -> checkpoint -> stylize, through the library and through the entry points."""

import json

import torch
from PIL import Image

from fast_style.checkpoint_format import read_checkpoint
from fast_style.infer.stylizer import load_stylizer
from fast_style.train.training import train

from .conftest import assert_one_line_error, compose_train, run_script, tiny_train_overrides


def test_train_a_few_steps_then_stylize(photos_dir, tmp_path, needs_styles):
    cfg = compose_train(tiny_train_overrides(photos_dir, steps=3), tmp_path / "run")
    loss = train(cfg)
    final = tmp_path / "run" / "final.ckpt"
    assert final.is_file() and (tmp_path / "run" / "last.ckpt").is_file()
    assert loss == loss and loss > 0  # finite, not NaN
    checkpoint = read_checkpoint(final)
    assert checkpoint["global_step"] == 3
    assert checkpoint["fast_style"]["model"] == {"channels": 32, "residual_blocks": 5, "output": "tanh"}
    assert checkpoint["fast_style"]["style"] == "starry_night"
    assert all(k.startswith("net.") for k in checkpoint["state_dict"])  # no VGG inside
    assert list((tmp_path / "run" / "samples").glob("step_*.png"))
    metrics = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()[0]
    for term in ("loss/content", "loss/style", "loss/tv", "loss/total"):
        assert term in metrics
    # The final model is measured like scripts/evaluate.py does, for sweeps to rank by numbers.
    for figure in ("eval/style_gain", "eval/structure", "eval/artifact_share", "eval/style_gain_relu1_2"):
        assert figure in metrics
    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert evaluation["photos"] == 2 and -1 <= evaluation["structure"] <= 1
    stylizer = load_stylizer(final)
    out = stylizer(torch.rand(1, 3, 37, 51))
    assert out.shape == (1, 3, 37, 51)


def test_entry_points_end_to_end(photos_dir, tmp_path, needs_styles):
    run_dir = tmp_path / "run"
    result = run_script("train.py", *tiny_train_overrides(photos_dir, steps=2), f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line == f"final checkpoint: {run_dir / 'final.ckpt'}"
    photo = tmp_path / "odd size.jpg"
    Image.new("RGB", (67, 45), (120, 80, 200)).save(photo)
    out = tmp_path / "out" / "art.png"
    result = run_script("stylize.py", f"ckpt={run_dir / 'final.ckpt'}", f"input={photo}", f"output={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert Image.open(out).size == (67, 45)
    # a folder maps to a folder with the same names
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, size in enumerate([(30, 20), (41, 77)]):
        Image.new("RGB", size, (i * 100, 50, 50)).save(folder / f"p{i}.jpg")
    result = run_script(
        "stylize.py", f"ckpt={run_dir / 'final.ckpt'}", f"input={folder}", f"output={tmp_path / 'styled'}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert Image.open(tmp_path / "styled" / "p1.jpg").size == (41, 77)


def test_bad_training_input(photos_dir, tmp_path):
    base = tiny_train_overrides(photos_dir, steps=1)
    unknown = run_script("train.py", "style=mona_lisa")
    assert_one_line_error(unknown, "mona_lisa", "starry_night")
    missing_data = run_script("train.py", *base, f"data.root={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'r1'}")
    assert_one_line_error(missing_data, "data.root")
    missing_style = run_script(
        "train.py", *base, f"style.image={tmp_path / 'nope.jpg'}", f"hydra.run.dir={tmp_path / 'r2'}"
    )
    assert_one_line_error(missing_style, "nope.jpg")
    painting = tmp_path / "painting.png"
    Image.new("RGB", (64, 64), "red").save(painting)
    bad_sha = run_script(
        "train.py", *base, f"style.image={painting}", "style.sha256=" + "0" * 64, f"hydra.run.dir={tmp_path / 'r3'}"
    )
    assert_one_line_error(bad_sha, "sha256")
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):  # three photos, batches of 4: whole batches only, so 0 steps
        Image.new("RGB", (40, 40), (80 * i, 90, 20)).save(few / f"p{i}.png")
    too_few = run_script("train.py", *base, f"data.root={few}", "data.batch_size=4", f"hydra.run.dir={tmp_path / 'r4'}")
    assert_one_line_error(too_few, "3 photos", "data.batch_size=4")
    for run in ("r1", "r2", "r3", "r4"):
        assert not list((tmp_path / run).glob("*.ckpt"))


def test_bad_stylize_input(tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (20, 20)).save(photo)
    missing_ckpt = run_script(
        "stylize.py", f"ckpt={tmp_path / 'none.ckpt'}", f"input={photo}", f"output={tmp_path / 'o.png'}"
    )
    assert_one_line_error(missing_ckpt, "none.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"garbage" * 100)
    unreadable = run_script("stylize.py", f"ckpt={junk}", f"input={photo}", f"output={tmp_path / 'o.png'}")
    assert_one_line_error(unreadable, "junk.ckpt")
    missing_input = run_script(
        "stylize.py", f"ckpt={junk}", f"input={tmp_path / 'nope.jpg'}", f"output={tmp_path / 'o.png'}"
    )
    assert_one_line_error(missing_input, "nope.jpg")
    assert not (tmp_path / "o.png").exists()


def test_bf16_on_a_cpu_that_only_emulates_it_gets_a_one_line_warning(monkeypatch):
    """An AVX2-only CPU emulates bf16 (a training step about 14x slower than fp32): training keeps
    the precision asked for but says so and names the fix; native-bf16 CPUs and fp32 get nothing."""
    from fast_style.train import training

    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: False)
    warning = training.slow_precision_warning("bf16-mixed", "auto")
    assert warning is not None and "trainer.precision=32" in warning and "\n" not in warning
    assert training.slow_precision_warning("bf16-mixed", "cpu") == warning
    assert training.slow_precision_warning("32", "auto") is None
    monkeypatch.setattr(training.torch.cuda, "is_available", lambda: True)
    assert training.slow_precision_warning("bf16-mixed", "auto") is None  # trains on the GPU
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: True)
    assert training.slow_precision_warning("bf16-mixed", "cpu") is None
