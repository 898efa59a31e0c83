import re
from pathlib import Path

import pytest
from hydra.utils import instantiate

from fast_style.config import CONFIG_DIR
from fast_style.model.networks import TransformerNet

from .conftest import SHARED, compose_train

STYLES = sorted(p.stem for p in (CONFIG_DIR / "style").glob("*.yaml") if p.stem != "custom")


def test_the_five_styles_exist():
    assert {"starry_night", "the_scream", "wave", "udnie", "composition_vii"} <= set(STYLES)


@pytest.mark.parametrize("style", STYLES)
def test_every_style_composes_with_its_own_image_and_weights(style, tmp_path):
    cfg = compose_train([f"style={style}"], tmp_path)
    assert cfg.style.name == style
    assert cfg.style.url.startswith("https://") and cfg.style.url.endswith(".jpg")
    assert re.fullmatch(r"[0-9a-f]{64}", cfg.style.sha256)
    assert cfg.style.size > 0 and cfg.loss.style_weight > 0 and cfg.loss.content_weight > 0
    sources = SHARED / "styles" / "SOURCES.md"
    if sources.is_file():  # the config's sha256 is the one published for that painting
        row = next(line for line in sources.read_text().splitlines() if line.startswith(f"| {style}.jpg"))
        assert cfg.style.sha256 in row


def test_defaults_follow_the_paper(tmp_path):
    cfg = compose_train([], tmp_path)
    assert cfg.trainer.max_steps == 40000 and cfg.data.batch_size == 4 and cfg.data.image_size == 256
    assert cfg.optimizer.lr == 1e-3 and cfg.perceptual.arch == "vgg16" and cfg.perceptual.weights == "imagenet"
    assert list(cfg.perceptual.content_layers) == ["relu2_2"]
    assert list(cfg.perceptual.style_layers) == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    assert cfg.data.source == "hub" and cfg.data.path == "detection-datasets/coco"
    net = instantiate(cfg.model)
    assert isinstance(net, TransformerNet) and net.config == {"channels": 32, "residual_blocks": 5, "output": "tanh"}
    # The published ImageNet recipe stays the default loss.
    assert cfg.loss.content_weight == 1e5 and cfg.loss.style_weight == 1e10 and cfg.loss.tv_weight == 0
    assert cfg.loss.normalize is False and cfg.loss.style_layer_weights is None and cfg.loss.pixel_weight == 0


def test_loss_group_holds_the_recipes_and_styles_only_a_factor(tmp_path):
    standin = compose_train(["loss=standin"], tmp_path)
    assert standin.loss.normalize is True
    assert len(standin.loss.style_layer_weights) == len(standin.perceptual.style_layers)
    udnie = compose_train(["style=udnie", "loss=standin"], tmp_path)
    assert udnie.loss == standin.loss and udnie.style.style_weight_factor == 5  # udnie: 5e10 in the paper's recipe
    assert compose_train(["style=wave"], tmp_path).style.style_weight_factor == 1


def test_overrides_reach_the_objects(tmp_path):
    cfg = compose_train(["model=small", "model.channels=8", "perceptual=vgg19", "loss.style_weight=7"], tmp_path)
    assert instantiate(cfg.model).config["channels"] == 8
    assert cfg.perceptual.arch == "vgg19" and cfg.loss.style_weight == 7
    assert (
        instantiate(cfg.optimizer)([__import__("torch").nn.Parameter(__import__("torch").zeros(1))]).defaults["lr"]
        == 1e-3
    )


def test_custom_style_is_named_after_its_image(tmp_path):
    cfg = compose_train(["style=custom", "style.image=/paintings/my_sunset.jpg"], tmp_path)
    assert cfg.style.name == "my_sunset"


def test_every_config_file_is_valid_yaml():
    import yaml

    for path in Path(CONFIG_DIR).rglob("*.yaml"):
        yaml.safe_load(path.read_text())
