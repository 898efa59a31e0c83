"""Bad configs and bad command lines: one line naming key, value and what is allowed; no traceback."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from fast_style.config.schema import StylizeConfig
from fast_style.config.validate import validate
from fast_style.errors import FastStyleError
from fast_style.model.vgg_layers import VGG_CFGS, vgg_layer_names

from .conftest import ROOT, assert_one_line_error, compose_train, tiny_train_overrides


@pytest.mark.parametrize(("arch", "cfg"), [("vgg16", "D"), ("vgg19", "E")])
def test_layer_table_matches_torchvision(arch, cfg):
    import torchvision
    from torch import nn

    assert VGG_CFGS[arch] == torchvision.models.vgg.cfgs[cfg]
    kinds = {nn.Conv2d: "conv", nn.ReLU: "relu", nn.MaxPool2d: "pool"}
    features = getattr(torchvision.models, arch)().features
    assert [kinds[type(m)] for m in features] == [name.rstrip("_0123456789") for name in vgg_layer_names(arch)]


def test_the_default_and_tiny_configs_pass(photos_dir, tmp_path):
    validate(compose_train([], tmp_path))
    validate(compose_train(tiny_train_overrides(photos_dir), tmp_path))


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("loss.content_weight=-1", ["loss.content_weight=-1", ">= 0"]),
        ("loss.style_weight=0", ["loss.style_weight=0", "> 0"]),
        ("loss.tv_weight=abc", ["loss.tv_weight='abc'", "number"]),
        ("loss.style_weight=true", ["loss.style_weight=True", "number"]),
        ("optimizer.lr=0", ["optimizer.lr=0", "> 0"]),
        ("data.image_size=50", ["data.image_size=50", "multiple of 4"]),
        ("data.image_size=28", ["data.image_size=28", ">= 32"]),
        ("data.image_size=64.0", ["data.image_size=64.0", "integer"]),
        ("data.batch_size=0", ["data.batch_size=0", ">= 1"]),
        ("data.num_workers=-2", ["data.num_workers=-2", ">= 0"]),
        ("perceptual.content_layers=[relu2_9]", ["perceptual.content_layers", "'relu2_9'", "relu2_2"]),
        ("perceptual.style_layers=[]", ["perceptual.style_layers", "non-empty"]),
        ("perceptual.arch=resnet50", ["perceptual.arch='resnet50'", "vgg16, vgg19"]),
        ("trainer.precision=8-mixed", ["trainer.precision='8-mixed'", "bf16-mixed"]),
        ("trainer.max_steps=0", ["trainer.max_steps=0", "> 0"]),
        ("checkpoint.every_n_steps=0", ["checkpoint.every_n_steps=0", ">= 1"]),
        ("checkpoint.keep=0", ["checkpoint.keep=0", ">= 1"]),
        ("resume=yes", ["resume='yes'", "auto"]),
        ("style.sha256=abc", ["style.sha256='abc'", "64"]),
        ("seed=1.5", ["seed=1.5", "integer"]),
        ("loss.pixel_weight=-1", ["loss.pixel_weight=-1", ">= 0"]),
        ("loss.style_layer_weights=[1,2]", ["loss.style_layer_weights=[1.0, 2.0]", "4 numbers", "relu4_3"]),
        ("loss.style_layer_weights=[0,0,0,0]", ["loss.style_layer_weights", "not all 0"]),
        ("loss.style_layer_weights=[1,a,1,1]", ["loss.style_layer_weights[1]='a'", "Float"]),
        ("style.style_weight_factor=0", ["style.style_weight_factor=0", "> 0"]),
        ("evaluate.size=8", ["evaluate.size=8", ">= 16"]),
        ("model.output=sigmoid", ["model.output='sigmoid'", "linear, tanh"]),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(override, fragments, photos_dir, tmp_path):
    # Wrong types fail while composing (the schema types every key), bad values in validate().
    with pytest.raises(FastStyleError) as info:
        validate(compose_train([*tiny_train_overrides(photos_dir), override], tmp_path))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_paths_are_named(photos_dir, tmp_path):
    base = tiny_train_overrides(photos_dir)
    cases = {
        f"data.root={tmp_path / 'no_photos'}": "no_photos.* not a folder",
        f"perceptual.weights={tmp_path / 'vgg.pth'}": "vgg.pth",
        f"ckpt_path={tmp_path / 'gone.ckpt'}": "gone.ckpt",
        f"evaluate.photos={tmp_path / 'held_out'}": "held_out",
    }
    for override, fragment in cases.items():
        with pytest.raises(FastStyleError, match=fragment):
            validate(compose_train([*base, override], tmp_path))
    with pytest.raises(FastStyleError, match="style.image.*does not exist"):
        validate(compose_train([*base, "style=custom", f"style.image={tmp_path / 'p.jpg'}"], tmp_path))


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("style.url=null", "style.image is required"),  # neither a local painting nor a URL
        ("style.sha256=null", "style.sha256 is required"),  # a URL whose download cannot be verified
        ("perceptual.style_layers=[relu9_9]", "relu9_9"),
        ("perceptual.arch=resnet50", "vgg16, vgg19"),
    ],
)
def test_rules_across_keys(override, fragment, photos_dir, tmp_path):
    with pytest.raises(FastStyleError, match=fragment):
        validate(compose_train([*tiny_train_overrides(photos_dir), override], tmp_path))


def test_loss_keys_of_the_schema(photos_dir, tmp_path):
    base = tiny_train_overrides(photos_dir)
    cfg = validate(compose_train([*base, "loss.style_layer_weights=[1,0.5,0.5,2]"], tmp_path))
    assert cfg.loss.style_layer_weights == [1.0, 0.5, 0.5, 2.0] and cfg.loss.pixel_weight == 0
    assert cfg.style.style_weight_factor == 1.0
    with pytest.raises(FastStyleError, match=r"loss.style_layer_weights=\[1.0, 2.0\].*4 numbers >= 0"):
        validate(compose_train([*base, "loss.style_layer_weights=[1,2]"], tmp_path))
    with pytest.raises(FastStyleError, match="not all 0"):
        validate(compose_train([*base, "loss.style_layer_weights=[0,0,0,0]"], tmp_path))
    with pytest.raises(FastStyleError, match="loss.pixel_weight=-1.0 is not allowed: use a number >= 0"):
        validate(compose_train([*base, "loss.pixel_weight=-1"], tmp_path))
    with pytest.raises(FastStyleError, match="style.style_weight_factor=0.0 is not allowed"):
        validate(compose_train([*base, "style.style_weight_factor=0"], tmp_path))


def test_stylize_config_checks(tmp_path):
    ckpt = tmp_path / "a.ckpt"
    ckpt.write_bytes(b"x")
    good = {"ckpt": str(ckpt), "input": "in.jpg", "output": "out.jpg", "device": "cuda:1"}
    validate(OmegaConf.create(good), StylizeConfig)
    with pytest.raises(FastStyleError, match="device='tpu'"):
        validate(OmegaConf.create({**good, "device": "tpu"}), StylizeConfig)
    # gpu is OpenVINO's device name: without backend=openvino the error says which one was meant.
    with pytest.raises(FastStyleError, match="backend=openvino.*device=cuda"):
        validate(OmegaConf.create({**good, "device": "gpu"}), StylizeConfig)
    with pytest.raises(FastStyleError, match="missing.ckpt"):
        validate(OmegaConf.create({**good, "ckpt": str(tmp_path / "missing.ckpt")}), StylizeConfig)
    with pytest.raises(FastStyleError, match="batch_size='many' is not allowed: use an integer >= 1"):
        validate(OmegaConf.create({**good, "batch_size": "many"}), StylizeConfig)


def _run_all(commands: list[list[str]], cwd) -> list[subprocess.CompletedProcess]:
    """Run the CLIs side by side: each fails in its argument check, before torch is imported."""

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(run, commands))


def test_bad_invocations_fail_with_one_line(photos_dir, tmp_path):
    out = tmp_path / "out"
    base = [*tiny_train_overrides(photos_dir), f"output_root={out}"]
    photo = tmp_path / "photo.png"
    Image.new("RGB", (20, 20)).save(photo)
    train_cases = {
        "unknown style": (["style=mona_lisa"], ["mona_lisa", "starry_night"]),
        "unknown key": (["foo=1"], ["'foo'", "+foo=1"]),
        "unknown nested key": (["data.bacth_size=2"], ["'data.bacth_size'", "batch_size"]),
        "wrong type": (["data.batch_size=abc"], ["data.batch_size='abc'", "integer"]),
        "unparsable": (["data.batch_size=[1"], ["data.batch_size=[1"]),
        "missing data": ([f"data.root={tmp_path / 'nope'}"], ["data.root", "nope"]),
        "missing data root": (["data.root=???"], ["data.root"]),
        "negative weight": (["loss.content_weight=-5"], ["loss.content_weight=-5", ">= 0"]),
        "zero style weight": (["loss.style_weight=0"], ["loss.style_weight=0"]),
        "bad layer": (["perceptual.style_layers=[relu1_2,conv9_1]"], ["conv9_1", "relu1_1"]),
        "bad precision": (["trainer.precision=fp8"], ["trainer.precision='fp8'", "bf16-mixed"]),
        "size not multiple of 4": (["data.image_size=66"], ["data.image_size=66", "multiple of 4"]),
        "negative lr": (["optimizer.lr=-0.1"], ["optimizer.lr=-0.1"]),
        "missing ckpt": ([f"ckpt_path={tmp_path / 'gone.ckpt'}"], ["gone.ckpt"]),
        "missing vgg weights": ([f"perceptual.weights={tmp_path / 'vgg.pth'}"], ["perceptual.weights", "vgg.pth"]),
        "missing style image": (["style=custom", f"style.image={tmp_path / 'p.jpg'}"], ["style.image", "p.jpg"]),
        "custom style without image": (["style=custom"], ["style.image"]),
        "nothing to resume": (["resume=true"], ["resume=true", str(out)]),
        "zero steps": (["trainer.max_steps=0"], ["trainer.max_steps=0"]),
    }
    stylize_cases = {
        "stylize missing ckpt": (
            [f"ckpt={tmp_path / 'none.ckpt'}", f"input={photo}", f"output={tmp_path / 'o.png'}"],
            ["none.ckpt"],
        ),
        "stylize unknown key": (["ckpt=x", "input=y", "output=z", "colour=red"], ["'colour'"]),
        "stylize bad device": ([f"ckpt={photo}", "input=y", "output=z", "device=tpu"], ["device='tpu'"]),
    }
    commands = [[str(ROOT / "train.py"), *base, *args] for args, _ in train_cases.values()]
    commands += [[str(ROOT / "stylize.py"), *args] for args, _ in stylize_cases.values()]
    results = _run_all(commands, cwd=tmp_path)
    assert len(results) >= 15
    for (name, (_, fragments)), result in zip([*train_cases.items(), *stylize_cases.items()], results, strict=True):
        line = assert_one_line_error(result, *fragments)
        assert result.returncode == 2, (name, line)
    assert not out.exists()  # rejected before Hydra created a run folder
    assert not (tmp_path / "o.png").exists()


def test_cosine_schedule_follows_max_steps_and_refuses_epoch_training(photos_dir, tmp_path):
    base = [*tiny_train_overrides(photos_dir), "scheduler=cosine"]
    cfg = validate(compose_train([*base, "trainer.max_steps=300", "scheduler.warmup_steps=20"], tmp_path))
    schedule = instantiate(cfg.scheduler)(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0))
    factors = [schedule.lr_lambdas[0](step) for step in (0, 19, 20, 160, 300, 400)]
    assert factors[0] < factors[1] == factors[2] == 1.0  # warm-up, then the full LR
    assert factors[2] > factors[3] > factors[4] == pytest.approx(cfg.scheduler.min_ratio) == factors[5]
    with pytest.raises(FastStyleError, match="total_steps=-1 must exceed warmup_steps=100.*trainer.max_steps"):
        validate(compose_train([*base, "trainer.max_steps=-1", "trainer.max_epochs=2"], tmp_path))
