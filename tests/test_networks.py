import pytest
import torch
from torch import nn

from fast_style.checkpoint_format import strip_compile_prefix
from fast_style.infer.stylizer import Stylizer
from fast_style.model import cpu_kernels
from fast_style.model.cpu_kernels import (
    FastInstanceNorm2d,
    FastReflectionPad2d,
    FewOutputsConv2d,
    _ChannelsLastInstanceNorm,
    _phase_conv,
    use_fast_kernels,
)
from fast_style.model.networks import TransformerNet

from .conftest import skimage_photo

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


def test_tanh_output_is_bounded_and_recorded_only_when_chosen():
    from fast_style.model.networks import OUTPUT_SCALE

    assert "output" not in TransformerNet(8, 1).config  # checkpoints and exports of linear nets unchanged
    net = TransformerNet(8, 1, output="tanh")
    assert net.config == {"channels": 8, "residual_blocks": 1, "output": "tanh"}
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(20)  # a linear output would go far outside [0, 1]
        y = net(torch.rand(2, 3, 24, 40))
    assert y.min() >= 0.5 - OUTPUT_SCALE - 1e-6 and y.max() <= 0.5 + OUTPUT_SCALE + 1e-6
    assert y.min() < 0.05 and y.max() > 0.95  # and still reaches black and white
    linear = TransformerNet(8, 1)
    linear.load_state_dict(net.state_dict())  # same parameters: only the last step differs
    with torch.no_grad():
        x = torch.rand(1, 3, 16, 16)
        torch.testing.assert_close(net(x), 0.5 + OUTPUT_SCALE * torch.tanh(linear(x)))
    with pytest.raises(ValueError, match="output"):
        TransformerNet(8, 1, output="sigmoid")


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_instance_norm_matches_torch_and_keeps_the_layout(memory_format, dtype):
    torch.manual_seed(0)
    ours, reference = FastInstanceNorm2d(6, affine=True), nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        for norm in (ours, reference):
            norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
            norm.bias.copy_(torch.linspace(-1.0, 1.0, 6))
    x = (torch.randn(3, 6, 9, 11) * 4 + 2).to(dtype).contiguous(memory_format=memory_format)
    x_ours = x.clone().requires_grad_()
    x_ref = x.float().contiguous().requires_grad_()  # reference: fp32 NCHW on the same values
    y_ours, y_ref = ours(x_ours), reference(x_ref)
    assert y_ours.dtype == dtype and y_ours.is_contiguous(memory_format=memory_format)
    tolerance = {} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(y_ours.float(), y_ref, **tolerance)
    grad = torch.randn_like(y_ref)
    y_ours.backward(grad.to(dtype).contiguous(memory_format=memory_format))
    y_ref.backward(grad.to(dtype).float())
    assert x_ours.grad.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(x_ours.grad.float(), x_ref.grad, **tolerance)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, **tolerance)
    torch.testing.assert_close(ours.bias.grad, reference.bias.grad, **tolerance)


@pytest.mark.parametrize("size", [(24, 30), (10, 12), (40, 18)])
def test_phase_split_convolution_equals_the_plain_convolution(size):
    """The 2x2 phase form computes the same conv and gradients (fp32, so to rounding)."""
    torch.manual_seed(0)
    weight, bias = torch.randn(3, 6, 9, 9, requires_grad=True), torch.randn(3, requires_grad=True)
    x = torch.randn(2, 6, *size)
    x_phase = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    x_plain = x.clone().requires_grad_()
    y_phase = _phase_conv(x_phase, weight, bias, 2)
    grad = torch.randn_like(y_phase)
    weight_grad, bias_grad = torch.autograd.grad(y_phase, (weight, bias), grad, retain_graph=True)
    y_phase.backward(grad)
    y_plain = torch.nn.functional.conv2d(x_plain, weight, bias)
    weight_grad_plain, bias_grad_plain = torch.autograd.grad(y_plain, (weight, bias), grad, retain_graph=True)
    y_plain.backward(grad)
    tolerance = {"rtol": 1e-4, "atol": 1e-4}
    assert y_phase.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_phase, y_plain, **tolerance)
    torch.testing.assert_close(x_phase.grad, x_plain.grad, **tolerance)
    torch.testing.assert_close(weight_grad, weight_grad_plain, **tolerance)
    torch.testing.assert_close(bias_grad, bias_grad_plain, **tolerance)


def test_few_outputs_conv_takes_the_phase_path_under_cpu_autocast(monkeypatch):
    calls = []
    original = cpu_kernels._phase_conv
    monkeypatch.setattr(cpu_kernels, "_phase_conv", lambda *args: calls.append(1) or original(*args))
    conv = FewOutputsConv2d(8, 3, 9)
    x = torch.rand(2, 8, 20, 22).contiguous(memory_format=torch.channels_last)
    plain = conv(x)  # fp32 without autocast: PyTorch's own kernel
    assert not calls
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = conv(x)
    assert calls and fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), plain, rtol=3e-2, atol=3e-2)


def test_fast_kernels_swap_in_and_out_with_plain_state_dict_keys():
    net = TransformerNet(8, 1)
    keys = list(net.state_dict())
    assert type(net.decoder[-1][1]) is nn.Conv2d and type(net.encoder[0][2]) is nn.InstanceNorm2d  # plain
    use_fast_kernels(net, True)
    assert isinstance(net.decoder[-1][1], FewOutputsConv2d)  # the 3-channel output layer
    assert isinstance(net.encoder[0][0], FastReflectionPad2d) and isinstance(net.encoder[0][2], FastInstanceNorm2d)
    assert type(net.encoder[0][1]) is nn.Conv2d  # 32 outputs: the plain convolution is as fast
    assert list(net.state_dict()) == keys and "decoder.2.1.weight" in keys and "decoder.2.1.bias" in keys
    use_fast_kernels(net, False)
    assert not any(type(m).__module__ == cpu_kernels.__name__ for m in net.modules())


def test_fast_kernels_switch_follows_the_setting_then_the_environment(monkeypatch):
    monkeypatch.delenv(cpu_kernels.ENV_VAR, raising=False)
    assert cpu_kernels.enabled() and not cpu_kernels.enabled(False)
    for off in ("0", "false", "OFF"):
        monkeypatch.setenv(cpu_kernels.ENV_VAR, off)
        assert not cpu_kernels.enabled() and cpu_kernels.enabled(True)
        assert type(use_fast_kernels(TransformerNet(8, 1)).decoder[-1][1]) is nn.Conv2d


def _output_and_gradients(net: nn.Module, x: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    net.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = net(x)
    y.float().square().mean().backward()
    return y.detach().float(), torch.cat([p.grad.flatten() for p in net.parameters()])


@pytest.mark.parametrize("private_ops", [True, False])
def test_fast_and_plain_networks_agree(monkeypatch, private_ops):
    """The whole net, channels-last on the CPU, forward and every gradient: in fp32 the fast layers
    compute what the plain ones do; in bf16 (the training configuration) they are as close to the
    fp32 result as the plain layers are. With or without the private ops."""
    monkeypatch.setattr(cpu_kernels, "PRIVATE_OPS", private_ops)
    calls = []
    original = cpu_kernels._channels_last_instance_norm
    monkeypatch.setattr(cpu_kernels, "_channels_last_instance_norm", lambda *a: calls.append(1) or original(*a))
    torch.manual_seed(0)
    reference = TransformerNet(8, 2)
    x = torch.rand(2, 3, 32, 28)
    expected = _output_and_gradients(reference, x, bf16=False)
    nets = {}
    for fast in (False, True):
        nets[fast] = use_fast_kernels(TransformerNet(8, 2), fast).to(memory_format=torch.channels_last)
        nets[fast].load_state_dict(reference.state_dict())
    x = x.contiguous(memory_format=torch.channels_last)
    for got, want in zip(_output_and_gradients(nets[True], x, False), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert not calls  # fp32 takes the plain kernels inside the fast layers
    errors = {}
    for fast, net in nets.items():
        got = _output_and_gradients(net, x, bf16=True)
        errors[fast] = [float((g - w).norm() / w.norm()) for g, w in zip(got, expected, strict=True)]
    assert bool(calls) == private_ops  # the fused kernel runs only where the private ops exist
    for fast_error, plain_error in zip(errors[True], errors[False], strict=True):
        assert fast_error <= 1.5 * plain_error + 0.005, errors


def test_channels_last_instance_norm_function_matches_torch_in_fp32():
    torch.manual_seed(0)
    weight, bias = torch.linspace(0.5, 2.0, 5).requires_grad_(), torch.linspace(-1, 1, 5).requires_grad_()
    x = (torch.randn(3, 5, 8, 7) * 4 + 2).contiguous(memory_format=torch.channels_last).requires_grad_()
    x_ref = x.detach().contiguous().requires_grad_()
    y = _ChannelsLastInstanceNorm.apply(x, weight, bias, 1e-5)
    y_ref = torch.nn.functional.instance_norm(x_ref, weight=weight, bias=bias, eps=1e-5)
    torch.testing.assert_close(y, y_ref)
    grad = torch.randn_like(y_ref)
    grads = torch.autograd.grad(y, (x, weight, bias), grad.contiguous(memory_format=torch.channels_last))
    grads_ref = torch.autograd.grad(y_ref, (x_ref, weight, bias), grad)
    assert grads[0].is_contiguous(memory_format=torch.channels_last)
    for got, expected in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, expected)


def test_reflection_pad_stays_in_the_input_dtype_under_autocast():
    x = torch.rand(1, 4, 6, 5, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded = FastReflectionPad2d(2)(x)
    assert padded.dtype == torch.bfloat16
    torch.testing.assert_close(padded, nn.ReflectionPad2d(2)(x.float()).bfloat16())


def test_channels_last_bf16_autocast_matches_fp32():
    """The training configuration (channels-last, bf16 autocast, fast kernels) computes the same function."""
    torch.manual_seed(0)
    net = TransformerNet(8, 2)
    x = torch.rand(2, 3, 30, 26)
    expected = net(x)
    net_cl = use_fast_kernels(TransformerNet(8, 2), True).to(memory_format=torch.channels_last)
    net_cl.load_state_dict(net.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net_cl(x.contiguous(memory_format=torch.channels_last))
    assert y.dtype == torch.bfloat16
    assert (y.float() - expected).abs().mean() < 0.02 * expected.abs().mean()


def _shift_error(net: TransformerNet, photo: torch.Tensor, shift: float) -> float:
    """Mean |f(move(x)) - move(f(x))| away from the borders, for a sub-pixel move (bicubic)."""
    from fast_style.model.stability import affine_positions, warp

    _, _, height, width = photo.shape
    positions = affine_positions(torch.zeros(1), torch.ones(1), torch.tensor([[shift, shift]]), height, width)
    with torch.no_grad():
        moved, _ = warp(photo, positions, mode="bicubic", padding="border")
        stylized_moved, _ = warp(net(photo), positions, mode="bicubic", padding="border")
        return float((net(moved) - stylized_moved)[..., 12:-12, 12:-12].abs().mean())


def test_antialias_keeps_the_parameters_and_follows_sub_pixel_motion_more_closely():
    """``antialias=True`` blurs before the stride-2 convs and upsamples bilinearly: the same
    state-dict keys (a plain net's weights load into it) and, with the same weights, an output that
    follows a half-pixel move of the photo more closely than the plain net's (which aliases)."""
    torch.manual_seed(0)
    plain, smooth = TransformerNet(8, 1, output="tanh"), TransformerNet(8, 1, output="tanh", antialias=True)
    assert "antialias" not in plain.config and smooth.config["antialias"] is True
    assert plain.state_dict().keys() == smooth.state_dict().keys()
    smooth.load_state_dict(plain.state_dict())
    photo = torch.from_numpy(skimage_photo("chelsea")[100:196, 150:246].copy()).permute(2, 0, 1)[None] / 255.0
    plain_error, smooth_error = (_shift_error(net.eval(), photo, 0.5) for net in (plain, smooth))
    assert smooth_error < 0.6 * plain_error, (plain_error, smooth_error)
    for size in [(5, 7), (33, 47)]:  # odd and tiny sizes as the plain net
        assert smooth(torch.rand(2, 3, *size)).shape == (2, 3, *size)
    blur = smooth.encoder[1][0]
    x = torch.rand(1, 8, 16, 16)
    assert blur(x).shape == (1, 8, 18, 18)  # pads like the ReflectionPad2d(1) it stands for
    flat = torch.full((1, 8, 6, 6), 0.3)
    torch.testing.assert_close(blur(flat), torch.full((1, 8, 8, 8), 0.3))  # a blur keeps flat areas


def test_antialiased_fast_kernels_match_the_plain_layers_under_bf16():
    torch.manual_seed(1)
    net = TransformerNet(8, 1, antialias=True)
    fast = use_fast_kernels(TransformerNet(8, 1, antialias=True), True)
    fast.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 36, 44)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fast.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got.float(), net(x), rtol=0.05, atol=0.05)


def test_native_bf16_detection_follows_the_cpu_flags(monkeypatch):
    """x86: AVX512-BF16 or AMX is native bf16, AVX2 alone is not (what the training warning uses)."""
    cpu = cpu_kernels.torch.cpu
    monkeypatch.setattr(cpu, "_is_avx2_supported", lambda: True)
    for avx512_bf16, amx, native in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert cpu_kernels.cpu_has_native_bf16() is native
