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
    modules = list(net.modules())
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in modules)
    assert any(isinstance(m, nn.ReflectionPad2d) for m in modules)
    assert any(isinstance(m, nn.InstanceNorm2d) for m in modules)
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


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_instance_norm_matches_torch_and_keeps_the_layout(memory_format):
    from fast_style.networks import InstanceNorm2d

    torch.manual_seed(0)
    ours, reference = InstanceNorm2d(6), nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        for norm in (ours, reference):
            norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
            norm.bias.copy_(torch.linspace(-1.0, 1.0, 6))
    x = (torch.randn(3, 6, 9, 11) * 4 + 2).contiguous(memory_format=memory_format)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_ref = ours(x_ours), reference(x_ref)
    assert y_ours.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(y_ours, y_ref)
    grad = torch.randn_like(y_ref)
    y_ours.backward(grad)
    y_ref.backward(grad)
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad)
    torch.testing.assert_close(ours.bias.grad, reference.bias.grad)


def test_reflection_pad_stays_in_the_input_dtype_under_autocast():
    from fast_style.networks import ReflectionPad2d

    x = torch.rand(1, 4, 6, 5, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded = ReflectionPad2d(2)(x)
    assert padded.dtype == torch.bfloat16
    torch.testing.assert_close(padded, nn.ReflectionPad2d(2)(x.float()).bfloat16())


def test_channels_last_bf16_autocast_matches_fp32():
    """The training configuration (channels-last, bf16 autocast) computes the same function."""
    torch.manual_seed(0)
    net = TransformerNet(8, 2)
    x = torch.rand(2, 3, 30, 26)
    expected = net(x)
    net_cl = TransformerNet(8, 2).to(memory_format=torch.channels_last)
    net_cl.load_state_dict(net.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net_cl(x.contiguous(memory_format=torch.channels_last))
    assert y.dtype == torch.bfloat16
    assert (y.float() - expected).abs().mean() < 0.02 * expected.abs().mean()
