import pytest
import torch
from torch import nn

from fast_style.inference import Stylizer
from fast_style.networks import TransformerNet, strip_compile_prefix

VARIANTS = [
    dict(channels=8, residual_blocks=1),
    dict(channels=16, residual_blocks=3),
    dict(channels=32, residual_blocks=5),
]


@pytest.mark.parametrize("config", VARIANTS, ids=lambda c: f"c{c['channels']}r{c['residual_blocks']}")
@pytest.mark.parametrize("size", [(64, 64), (33, 47), (5, 7), (18, 130)])
def test_output_has_input_size(config, size):
    net = TransformerNet(**config)
    x = torch.rand(2, 3, *size)
    y = net(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_no_transposed_convolutions_and_reflection_padding():
    net = TransformerNet()
    kinds = {type(m) for m in net.modules()}
    assert nn.ConvTranspose2d not in kinds
    assert nn.ReflectionPad2d in kinds and nn.InstanceNorm2d in kinds
    assert sum(isinstance(m, nn.Upsample) for m in net.modules()) == 2


def test_config_is_recorded_and_width_changes_parameters():
    small, big = TransformerNet(8, 1), TransformerNet(32, 5)
    assert big.config == {"channels": 32, "residual_blocks": 5}
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in big.parameters())


def test_forward_leaves_input_untouched():
    x = torch.rand(1, 3, 21, 19)
    before = x.clone()
    TransformerNet(8, 1)(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (9, 31)])
def test_stylizer_handles_tiny_sizes_and_clamps(size):
    stylizer = Stylizer(TransformerNet(8, 1)).eval()
    with torch.no_grad():
        for p in stylizer.parameters():
            p.mul_(5)  # push outputs outside [0, 1]
        y = stylizer(torch.rand(1, 3, *size))
    assert y.shape == (1, 3, *size)
    assert y.min() >= 0 and y.max() <= 1


def test_strip_compile_prefix_restores_plain_keys():
    net = TransformerNet(8, 1)
    compiled_keys = {f"_orig_mod.{k}": v for k, v in net.state_dict().items()}
    restored = TransformerNet(8, 1)
    restored.load_state_dict(strip_compile_prefix(compiled_keys))
    for a, b in zip(net.state_dict().values(), restored.state_dict().values(), strict=True):
        assert torch.equal(a, b)
