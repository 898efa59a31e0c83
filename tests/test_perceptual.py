import pytest
import torch

from fast_style.errors import FastStyleError
from fast_style.model.networks import TransformerNet
from fast_style.model.perceptual import PerceptualLoss, VGGFeatures, gram_matrix, total_variation
from fast_style.model.vgg_layers import vgg_layer_names


def test_gram_matches_definition_and_is_fp32():
    f = torch.randn(2, 4, 3, 5)
    g = gram_matrix(f.to(torch.bfloat16))
    assert g.dtype == torch.float32 and g.shape == (2, 4, 4)
    flat = f.reshape(2, 4, 15)
    expected = flat @ flat.transpose(1, 2) / (4 * 15)
    torch.testing.assert_close(gram_matrix(f), expected)
    torch.testing.assert_close(g, expected, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gram_gradient_matches_autograd_of_the_definition(memory_format, dtype):
    torch.manual_seed(0)
    f64 = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    features = f64.to(dtype).contiguous(memory_format=memory_format).requires_grad_()
    target = torch.randn(2, 6, 6, dtype=torch.float64)
    (gram_matrix(features) * target).sum().backward()
    assert features.grad.dtype == dtype and features.grad.shape == features.shape
    exact = f64.to(dtype).double().requires_grad_()
    flat = exact.reshape(2, 6, 35)
    ((flat @ flat.transpose(1, 2) / (6 * 35)) * target).sum().backward()
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(features.grad.double(), exact.grad, rtol=tolerance, atol=tolerance)


def test_gram_of_large_fp16_activations_does_not_overflow():
    f = torch.full((1, 8, 64, 64), 3000.0, dtype=torch.float16)  # fp16 products would hit inf
    g = gram_matrix(f)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, torch.full((1, 8, 8), 3000.0**2 / 8), rtol=1e-3, atol=0)


def test_total_variation():
    flat = torch.full((1, 3, 16, 16), 0.5)
    assert total_variation(flat) == 0
    stripes = flat.clone()
    stripes[..., ::2] = 0
    assert total_variation(stripes) > 0.2


def test_layer_names():
    names = vgg_layer_names("vgg16")
    assert {"relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3", "pool4"} <= set(names)
    assert "relu3_4" in vgg_layer_names("vgg19") and "relu3_4" not in names
    # Unknown layers and architectures are refused by the config check (test_validation.py).


def test_vgg_is_truncated_frozen_and_stays_in_eval():
    vgg = VGGFeatures(["relu1_2", "relu2_2"], weights="random")
    assert len(vgg.layers) == 9  # conv1_1 .. relu2_2
    vgg.train()
    assert not vgg.training
    assert all(not p.requires_grad for p in vgg.parameters())


def make_loss(style=None, **kwargs):
    torch.manual_seed(0)  # the same random VGG every time
    style = torch.rand(1, 3, 48, 40) if style is None else style
    return PerceptualLoss(style, weights="random", **kwargs)


def test_each_loss_term():
    style = torch.rand(1, 3, 32, 32)
    loss = make_loss(style, content_weight=2.0, style_weight=3.0, tv_weight=0.5)
    photo = torch.rand(1, 3, 32, 32)
    same = loss(photo, photo)
    assert same["content"] == 0  # output == content
    on_style = loss(style, photo)
    assert on_style["style"] < 1e-6 * max(1.0, float(same["style"]))  # output == style image
    assert same["style"] > 0
    torch.testing.assert_close(same["tv"], 0.5 * total_variation(photo))
    torch.testing.assert_close(same["total"], same["content"] + same["style"] + same["tv"])
    weights = make_loss(style, content_weight=4.0, style_weight=6.0, tv_weight=1.0)
    other = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(weights(other, photo)["content"], 2 * loss(other, photo)["content"])
    torch.testing.assert_close(weights(other, photo)["style"], 2 * loss(other, photo)["style"])


def test_frozen_vgg_gets_no_gradient_but_the_net_does():
    loss = make_loss()
    net = TransformerNet(8, 1)
    content = torch.rand(2, 3, 32, 32)
    loss(net(content), content)["total"].backward()
    assert all(p.grad is None for p in loss.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_loss_does_not_modify_inputs():
    loss = make_loss()
    out, content = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24)
    a, b = out.clone(), content.clone()
    loss(out, content)
    assert torch.equal(out, a) and torch.equal(content, b)


def test_weights_from_file_full_or_features_only(tmp_path):
    import torchvision

    full = torchvision.models.vgg16().state_dict()
    torch.save(full, tmp_path / "full.pth")
    features_only = {k: v for k, v in full.items() if k.startswith("features.")}
    torch.save(features_only, tmp_path / "features.pth")
    for name in ("full.pth", "features.pth"):
        vgg = VGGFeatures(["relu2_2"], weights=str(tmp_path / name))
        torch.testing.assert_close(vgg.layers[0].weight, full["features.0.weight"])


def test_bad_weight_files_are_one_line_errors(tmp_path):
    # perceptual.weights=<missing file> is refused by the config check (test_validation.py).
    with pytest.raises(FastStyleError, match="could not read"):
        VGGFeatures(["relu2_2"], weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(FastStyleError, match="could not read"):
        VGGFeatures(["relu2_2"], weights=str(tmp_path / "junk.pth"))
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(FastStyleError, match="does not match"):
        VGGFeatures(["relu2_2"], weights=str(tmp_path / "wrong.pth"))


def test_imagenet_weights_unavailable_names_both_fixes(monkeypatch, tmp_path):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models.VGG16_Weights.IMAGENET1K_V1.__class__, "get_state_dict", no_network)
    with pytest.raises(FastStyleError) as info:
        VGGFeatures(["relu2_2"], weights="imagenet")
    message = str(info.value)
    assert "\n" not in message and "TORCH_HOME" in message and "perceptual.weights=" in message


def test_stand_in_weights_load(stand_in_vgg):
    vgg = VGGFeatures(["relu4_3"], weights=str(stand_in_vgg))
    out = vgg(torch.rand(1, 3, 64, 64))["relu4_3"]
    assert out.shape == (1, 512, 8, 8) and out.abs().sum() > 0


def test_normalized_content_error_ignores_activation_scale():
    loss = make_loss(normalize=True)
    a, b = torch.rand(2, 16, 8, 8), torch.rand(2, 16, 8, 8)
    torch.testing.assert_close(loss.content_error(1000 * a, 1000 * b), loss.content_error(a, b))
    raw = make_loss()
    torch.testing.assert_close(raw.content_error(10 * a, 10 * b), 100 * raw.content_error(a, b))


def test_normalized_style_layers_count_alike_with_the_stand_in(stand_in_vgg):
    """Raw Gram errors of the stand-in differ by orders of magnitude between layers; normalized ones do not."""
    torch.manual_seed(0)
    style, photo = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64).pow(2)
    per_layer = {}
    for normalize in (False, True):
        loss = PerceptualLoss(style, weights=str(stand_in_vgg), normalize=normalize)
        features = loss.vgg(photo)
        per_layer[normalize] = [
            (
                torch.nn.functional.mse_loss(gram_matrix(features[n]), loss.style_gram(n))
                / getattr(loss, f"style_scale_{n}")
            ).item()
            for n in loss.style_layers
        ]
    assert max(per_layer[False]) / min(per_layer[False]) > 1e3
    assert max(per_layer[True]) / min(per_layer[True]) < 1e2


def test_style_layer_weights_scale_each_layer_and_zero_drops_it():
    torch.manual_seed(0)
    style, output, photo = torch.rand(1, 3, 48, 48), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    layers = ("relu1_2", "relu2_2")

    def style_term(layer_weights):
        torch.manual_seed(1)  # the same random VGG each time
        loss = PerceptualLoss(style, style_layers=layers, weights="random", style_layer_weights=layer_weights)
        return loss(output, photo)["style"]

    with pytest.warns(UserWarning, match="random"):
        only_first, only_second, both = style_term([1, 0]), style_term([0, 1]), style_term([1, 1])
        torch.testing.assert_close(style_term([3, 0.5]), 3 * only_first + 0.5 * only_second)
    torch.testing.assert_close(both, only_first + only_second)
    assert only_first > 0 and only_second > 0
    with pytest.raises(FastStyleError, match="2 style layers"):
        PerceptualLoss(style, style_layers=layers, weights="random", style_layer_weights=[1, 1, 1])


def test_each_sample_meets_its_own_paintings_grams_factor_and_layer_weights():
    torch.manual_seed(0)
    paintings = [torch.rand(1, 3, 40, 40), torch.rand(1, 3, 48, 32)]
    output, photo = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    layers = ("relu1_2", "relu2_2")
    rows, factors = [[1, 0], [0.5, 2]], [3.0, 1.0]

    def loss_for(style_image, **kwargs):
        torch.manual_seed(1)  # the same random VGG each time
        return PerceptualLoss(style_image, style_layers=layers, weights="random", style_weight=1.0, **kwargs)

    with pytest.warns(UserWarning, match="random"):
        multi = loss_for(paintings, style_layer_weights=rows, style_factors=factors)
        singles = [
            loss_for(p, style_layer_weights=r, style_factors=[f])
            for p, r, f in zip(paintings, rows, factors, strict=True)
        ]
        shared = loss_for(paintings, style_layer_weights=[1, 0])  # one list: the same for every style
        unused = loss_for(paintings, style_layer_weights=[[1, 0], [2, 0]])
    # Sample 0 in style 0, sample 1 in style 1: the mean of each one's own single-style term.
    got = multi(output, photo, torch.tensor([0, 1]))["style"]
    expected = (singles[0](output[:1], photo[:1])["style"] + singles[1](output[1:], photo[1:])["style"]) / 2
    torch.testing.assert_close(got, expected)
    assert singles[0](output[:1], photo[:1])["style"] != singles[1](output[1:], photo[1:])["style"]
    assert shared.layer_weight_table.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert unused.weighted_layers == ["relu1_2"]  # a layer no style weighs is never computed
    with pytest.raises(FastStyleError, match="3 lists of style layer weights for 2 styles"):
        PerceptualLoss(paintings, style_layers=layers, weights="random", style_layer_weights=[[1, 1]] * 3)
    with pytest.raises(FastStyleError, match="3 values for 2 style layers"):
        PerceptualLoss(paintings, style_layers=layers, weights="random", style_layer_weights=[[1, 1], [1, 1, 1]])


def test_pixel_term_is_the_weighted_squared_error_to_the_photo():
    torch.manual_seed(0)
    photo = torch.rand(2, 3, 32, 32)
    output = (photo + 0.1).requires_grad_()
    with pytest.warns(UserWarning, match="random"):
        loss = PerceptualLoss(torch.rand(1, 3, 32, 32), weights="random", pixel_weight=2.0)
        plain = PerceptualLoss(torch.rand(1, 3, 32, 32), weights="random")
    terms = loss(output, photo)
    torch.testing.assert_close(terms["pixel"], torch.tensor(2.0 * 0.01))
    assert "pixel" not in plain(output, photo)  # off by default: the published recipe
    terms["pixel"].backward()
    torch.testing.assert_close(output.grad, torch.full_like(photo, 2.0 * 2 * 0.1 / photo.numel()))
