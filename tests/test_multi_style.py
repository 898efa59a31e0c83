"""Several styles in one net (conditional instance norm): conditioning, blends, old checkpoints,
exports with ``style_weights``, multi-style training and adding a style with norms only."""

import pytest
import torch

from fast_style.checkpoint_format import read_checkpoint
from fast_style.config.cli import load_config
from fast_style.errors import FastStyleError
from fast_style.infer.backends import load_backend
from fast_style.infer.export import export_stylizer
from fast_style.infer.stylizer import Stylizer, style_mixes
from fast_style.model.networks import ConditionalInstanceNorm2d, TransformerNet
from fast_style.train.training import train

from .conftest import compose_train, tiny_train_overrides


def styled_net(num_styles: int, seed: int = 0) -> TransformerNet:
    """A tiny multi-style net whose styles differ (untrained norms would all be 1 and 0)."""
    torch.manual_seed(seed)
    net = TransformerNet(4, 1, num_styles=num_styles)
    for name in net.norm_parameter_names():
        net.get_parameter(name).data.normal_(1.0 if name.endswith("weight") else 0.0, 0.5)
    return net.eval()


def test_single_style_net_is_todays_network():
    net = TransformerNet(8, 1)
    assert net.config == {"channels": 8, "residual_blocks": 1}  # no num_styles key: files unchanged
    assert not any(isinstance(m, ConditionalInstanceNorm2d) for m in net.modules())
    assert net.state_dict()["encoder.0.2.weight"].shape == (8,)
    multi = TransformerNet(8, 1, num_styles=3)
    assert multi.config["num_styles"] == 3
    # Same state-dict keys; the per-style parameters gain a leading style dimension.
    assert list(multi.state_dict()) == list(net.state_dict())
    assert multi.state_dict()["encoder.0.2.weight"].shape == (3, 8)
    with pytest.raises(ValueError, match="style_weights"):
        multi(torch.rand(1, 3, 16, 16))


def test_todays_single_style_checkpoint_loads_and_stylizes_unchanged(tmp_path):
    # A checkpoint as train.py wrote it before multi-style existed: (C,) norms, no num_styles, no styles.
    torch.manual_seed(1)
    old = TransformerNet(8, 1)
    for p in old.parameters():
        p.data.normal_(0, 0.2)
    checkpoint = {
        "state_dict": {f"net.{k}": v for k, v in old.state_dict().items()},
        "fast_style": {"format_version": 1, "model": {"channels": 8, "residual_blocks": 1}, "style": "wave"},
    }
    torch.save(checkpoint, tmp_path / "old.ckpt")
    backend = load_backend(tmp_path / "old.ckpt")
    assert backend.styles == []
    x = torch.rand(2, 3, 23, 30)
    with torch.no_grad():
        expected = Stylizer(old).eval()(x)
    assert torch.equal(backend(x), expected)


def test_each_sample_of_a_batch_gets_its_own_style():
    net = styled_net(3)
    x = torch.rand(1, 3, 24, 28).expand(2, -1, -1, -1)  # the same photo twice
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        both = net(x, weights)
        first = net(x[:1], weights[:1])
        last = net(x[1:], weights[1:])
    torch.testing.assert_close(both[0], first[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(both[1], last[0], atol=1e-5, rtol=0)
    assert (both[0] - both[1]).abs().max() > 0.05  # two styles, two different pictures


def test_blend_with_weight_one_is_the_pure_style_and_blends_are_normalized():
    names = ["starry_night", "wave", "udnie"]
    net = styled_net(3)
    x = torch.rand(1, 3, 20, 20)
    [(label, pure)] = style_mixes("wave", names)
    [(_, weight_one)] = style_mixes(["wave:1", "udnie:0"], names)
    [(_, blend)] = style_mixes("starry_night:0.7,wave:0.3", names)
    [(_, unnormalized)] = style_mixes(["starry_night:7", "wave:3"], names)
    assert label == "wave" and torch.equal(pure, torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(weight_one, pure)
    torch.testing.assert_close(blend, torch.tensor([0.7, 0.3, 0.0]))
    torch.testing.assert_close(unnormalized, blend)
    assert [label for label, _ in style_mixes("all", names)] == names
    with torch.no_grad():
        torch.testing.assert_close(net(x, weight_one[None]), net(x, pure[None]), atol=0, rtol=0)
        # Baking a blend into a single-style net is exact (what exports and tiling use).
        baked = net.baked(blend)
        assert baked.num_styles == 1 and "num_styles" not in baked.config
        torch.testing.assert_close(baked(x), net(x, blend[None]), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [("mona_lisa", "unknown style 'mona_lisa': this model has starry_night, wave"), ("wave:-1", "wave:-1"),
     ("wave:0", "every style weight 0"), (None, "holds 2 styles (starry_night, wave)")],
)  # fmt: skip
def test_a_wrong_style_is_one_line_listing_the_styles(spec, fragment):
    with pytest.raises(FastStyleError) as info:
        style_mixes(spec, ["starry_night", "wave"])
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_exports_take_style_weights_and_pass_parity(tmp_path):
    net = styled_net(2)
    lines: list[str] = []
    written = export_stylizer(
        Stylizer(net), tmp_path, "multi", ["onnx", "torchscript", "safetensors"], styles=["a", "b"], log=lines.append
    )
    assert len(lines) == 3 and all("ok" in line for line in lines)
    x = torch.rand(2, 3, 19, 26)
    for fmt, path in written.items():
        backend = load_backend(path)
        assert backend.styles == ["a", "b"], fmt
        if fmt == "onnx":
            assert [i.name for i in backend.session.get_inputs()] == ["images", "style_weights"]
        with pytest.raises(FastStyleError, match="holds 2 styles"):
            backend(x)
        mix = torch.tensor([0.25, 0.75])
        backend.select_style(mix)
        with torch.no_grad():
            expected = Stylizer(net).eval()(x, mix[None].expand(2, -1))
        assert (backend(x) - expected).abs().max() <= 1e-3, fmt


def test_styles_key_is_checked_before_torch(photos_dir, tmp_path):
    base = tiny_train_overrides(photos_dir)
    with pytest.raises(FastStyleError, match="neither a style nor an image file"):
        load_config("train", [*base, "styles=[wave,mona_lisa]"])
    with pytest.raises(FastStyleError, match="more than once"):
        load_config("train", [*base, "styles=[wave,wave]"])
    with pytest.raises(FastStyleError, match="train_only=norms adds styles"):
        load_config("train", [*base, "train_only=norms"])
    cfg = load_config("train", [*base, "styles=[wave,udnie]"])
    assert list(cfg.styles) == ["wave", "udnie"]
    with pytest.raises(FastStyleError, match=r"use 2 numbers > 0, one per styles entry \(wave, udnie\)"):
        load_config("train", [*base, "styles=[wave,udnie]", "style_weight_factors=[0.5]"])
    with pytest.raises(FastStyleError, match="use 2 numbers > 0"):
        load_config("train", [*base, "styles=[wave,udnie]", "style_weight_factors=[0.5,0]"])
    with pytest.raises(FastStyleError, match="style_weight_factors is for styles=.*style.style_weight_factor="):
        load_config("train", [*base, "style_weight_factors=[2]"])


def test_style_weight_factors_replace_each_styles_own_factor(photos_dir, tmp_path, needs_styles):
    from fast_style.train.training import build_module

    overrides = [*tiny_train_overrides(photos_dir), "model.channels=4", "model.residual_blocks=1"]
    # udnie's config has style_weight_factor 5, wave's 1
    own = build_module(compose_train([*overrides, "styles=[wave,udnie]"], tmp_path))
    assert own.loss.style_factors.tolist() == [1.0, 5.0]
    given = build_module(compose_train([*overrides, "styles=[wave,udnie]", "style_weight_factors=[2,0.5]"], tmp_path))
    assert given.loss.style_factors.tolist() == [2.0, 0.5]
    assert given.loss.style_weight == own.loss.style_weight  # the factors scale per style, not the whole term


def test_per_style_layer_weights_are_checked_before_torch(photos_dir):
    base = [*tiny_train_overrides(photos_dir), "styles=[wave,udnie]"]
    with pytest.raises(FastStyleError, match="per_style_layer_weights is for styles=.*loss.style_layer_weights="):
        load_config("train", [*tiny_train_overrides(photos_dir), "per_style_layer_weights=[[1,1,1,1]]"])
    for bad in (
        "[[1,1,1,1]]",
        "[[1,1,1,1],[1,1]]",
        "[[1,1,1,1],[0,0,0,0]]",
        "[[1,1,1,1],[1,-1,1,1]]",
        "[[1,1,1,1],[1,a,1,1]]",
    ):
        with pytest.raises(
            FastStyleError, match=r"per_style_layer_weights=.*use 2 entries, one per styles entry \(wave, udnie\)"
        ):
            load_config("train", [*base, f"per_style_layer_weights={bad}"])
    cfg = load_config("train", [*base, "per_style_layer_weights=[[8,1,0.5,0.25],null]"])
    assert list(cfg.per_style_layer_weights[0]) == [8, 1, 0.5, 0.25] and cfg.per_style_layer_weights[1] is None


def test_per_style_layer_weights_give_each_style_its_own_row(photos_dir, tmp_path, needs_styles):
    from fast_style.train.training import build_module

    overrides = [
        *tiny_train_overrides(photos_dir),
        "model.channels=4",
        "model.residual_blocks=1",
        "styles=[wave,udnie]",
    ]
    shared = build_module(compose_train([*overrides, "loss.style_layer_weights=[4,3,2,1]"], tmp_path))
    assert shared.loss.layer_weight_table.tolist() == [[4, 3, 2, 1], [4, 3, 2, 1]]
    own = build_module(
        compose_train(
            [*overrides, "loss.style_layer_weights=[4,3,2,1]", "per_style_layer_weights=[null,[8,1,0.5,0]]"], tmp_path
        )
    )
    assert own.loss.layer_weight_table.tolist() == [[4, 3, 2, 1], [8, 1, 0.5, 0]]  # null: the shared list


def test_train_two_styles_then_add_a_third_with_norms_only(photos_dir, tmp_path, needs_styles):
    first = tmp_path / "two"
    overrides = [*tiny_train_overrides(photos_dir, steps=2, size=32), "model.channels=4", "model.residual_blocks=1"]
    train(compose_train([*overrides, "styles=[wave,udnie]"], first))
    checkpoint = read_checkpoint(first / "final.ckpt")
    assert checkpoint["fast_style"]["styles"] == ["wave", "udnie"]
    assert checkpoint["fast_style"]["model"]["num_styles"] == 2
    assert list((first / "samples").glob("step_*.png"))
    old = {k: v.clone() for k, v in checkpoint["state_dict"].items()}

    second = tmp_path / "three"
    train(
        compose_train(
            [*overrides, "styles=[wave,udnie,the_scream]", f"init_from={first / 'final.ckpt'}", "train_only=norms"],
            second,
        )
    )
    new = read_checkpoint(second / "final.ckpt")
    assert new["fast_style"]["styles"] == ["wave", "udnie", "the_scream"]
    changed = 0
    for key, value in new["state_dict"].items():
        if value.dim() == 2 and value.shape[0] == 3:  # a per-style norm parameter (S, C)
            assert torch.equal(value[:2], old[key]), key  # the old styles: bit-identical
            changed += not torch.equal(value[2], old[key].mean(0))
        else:
            assert torch.equal(value, old[key]), key  # shared convolutions: untouched
    assert changed > 0  # the new style's scales and shifts did train
    backend = load_backend(second / "final.ckpt")
    backend.select_style(style_mixes("the_scream", backend.styles)[0][1])
    assert backend(torch.rand(1, 3, 21, 17)).shape == (1, 3, 21, 17)
    # The same weights behind another output layer would change every old style: refused.
    wrong = [*overrides, "model.output=linear", "styles=[wave,udnie]", f"init_from={first / 'final.ckpt'}"]
    with pytest.raises(FastStyleError, match="model.output=tanh, this model has linear: pass model.output=tanh"):
        train(compose_train(wrong, tmp_path / "wrong"))


def save_multi_checkpoint(path, net: TransformerNet, names: list[str]):
    checkpoint = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "fast_style": {"format_version": 1, "model": dict(net.config), "style": "+".join(names), "styles": names},
    }
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize(
    ("value", "expected"),
    [("wave", "wave"), ("all", "all"), ("[starry_night:0.7,wave:0.3]", ["starry_night:0.7", "wave:0.3"]),
     ("starry_night:0.7,wave:0.3", ["starry_night:0.7", "wave:0.3"])],
)  # fmt: skip
def test_style_key_of_stylize_and_export_is_not_a_config_group(value, expected):
    for command, extra in (("stylize", ["input=a.jpg", "output=b.jpg"]), ("export", [])):
        cfg = load_config(command, ["ckpt=README.md", *extra, f"style={value}"])
        assert (list(cfg.style) if not isinstance(cfg.style, str) else cfg.style) == expected


def test_stylize_picks_blends_and_writes_every_style(tmp_path):
    from fast_style.images import load_image, save_image
    from fast_style.infer.stylize import stylize

    net = styled_net(2)
    ckpt = save_multi_checkpoint(tmp_path / "multi.ckpt", net, ["starry_night", "wave"])
    photo = save_image(torch.rand(3, 20, 28), tmp_path / "photo.png")
    base = [f"ckpt={ckpt}", f"input={photo}", "device=cpu"]
    written = stylize(load_config("stylize", [*base, f"output={tmp_path / 'all'}", "style=all"]))
    assert sorted(p.name for p in written) == ["photo_starry_night.png", "photo_wave.png"]
    [wave] = stylize(load_config("stylize", [*base, f"output={tmp_path / 'wave.png'}", "style=wave"]))
    assert torch.equal(load_image(wave), load_image(tmp_path / "all" / "photo_wave.png"))
    [blend] = stylize(load_config("stylize", [*base, f"output={tmp_path / 'b.png'}", "style=wave:1,starry_night:0"]))
    assert torch.equal(load_image(blend), load_image(wave))  # weight 1 is the pure style
    with pytest.raises(FastStyleError, match="unknown style 'mona': this model has starry_night, wave"):
        stylize(load_config("stylize", [*base, f"output={tmp_path / 'x.png'}", "style=mona"]))
    assert not (tmp_path / "x.png").exists()


class RecordingLoss(torch.nn.Module):
    """A stand-in perceptual loss: records the style indices it is given, total = mean output."""

    def forward(self, stylized, content, style_index=None):
        self.style_index = style_index
        return {"total": stylized.float().mean()}


def test_stability_term_runs_each_moved_copy_in_its_photos_style():
    from fast_style.model.stability import StabilityLoss
    from fast_style.train.module import StyleTransferModule

    net = styled_net(3)
    # No motion and no noise: the moved copies are the photos, so each output pair agrees exactly
    # when both images of a pair got the same style, and differs a lot otherwise.
    still = StabilityLoss(weight=1.0, shift=0, rotation=0, zoom=0, flow=0, noise=0)
    module = StyleTransferModule(net, RecordingLoss(), channels_last=False, stability=still)
    seen = []
    net.register_forward_hook(lambda _module, args, _out: seen.append(args))
    content = torch.rand(4, 3, 24, 28, generator=torch.Generator().manual_seed(3))
    index = torch.tensor([0, 2, 1, 2])
    one_hot = torch.nn.functional.one_hot(index, 3).float()
    with torch.no_grad():
        terms = module._terms_with_stability(content, one_hot, index)
    [(images, weights)] = seen  # one net call for the photos and their moved copies together
    assert images.shape == (8, 3, 24, 28) and torch.equal(weights, torch.cat([one_hot, one_hot]))
    assert torch.equal(module.loss.style_index, index)  # the style loss sees each photo's style
    assert float(terms["stability"]) < 1e-4
    with torch.no_grad():
        alone = net(content, one_hot).mean()  # instance norm is per image: the batch does not matter
    torch.testing.assert_close(terms["total"], alone + terms["stability"], atol=1e-5, rtol=0)
    # The same call with the moved copies in other styles would show up in the term.
    with torch.no_grad():
        both = net(torch.cat([content, content]), torch.cat([one_hot, one_hot.roll(1, 0)]))
    moved, positions = still.perturb(content)
    assert float(still(both[:4], both[4:], positions)) > 1e-2


def test_short_multi_style_run_with_the_stability_term(photos_dir, tmp_path, needs_styles):
    overrides = [*tiny_train_overrides(photos_dir, steps=2, size=32), "model.channels=4", "model.residual_blocks=1"]
    run_dir = tmp_path / "run"
    overrides += ["styles=[wave,udnie]", "loss.stability_weight=10", "samples.count=0"]
    loss = train(compose_train(overrides, run_dir))
    assert loss == loss and loss > 0  # finite and positive
    header, *rows = (run_dir / "logs" / "metrics.csv").read_text().splitlines()
    column = header.split(",").index("loss/stability")
    values = [float(row.split(",")[column]) for row in rows if row.split(",")[column]]
    assert len(values) == 2 and all(0 < v < float("inf") for v in values)
    assert read_checkpoint(run_dir / "final.ckpt")["fast_style"]["styles"] == ["wave", "udnie"]


def test_multi_style_onnx_graph_is_plain_with_two_dynamic_inputs(tmp_path):
    import onnx

    net = styled_net(2)
    written = export_stylizer(Stylizer(net), tmp_path, "multi", ["onnx"], styles=["a", "b"], log=lambda line: None)
    model = onnx.load(str(written["onnx"]))
    ops = {node.op_type for node in model.graph.node}
    assert not {"Constant", "Expand", "CastLike"} & ops, sorted(ops)  # the graph cleanup ran
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input]
    assert dims == [["batch", 3, "height", "width"], ["batch", 2]]
    assert "style_weights: float32 (B, S)" in model.doc_string
    # The per-style norm parameters keep their PyTorch names (tiling rebuilds the eager net from them).
    names = {t.name for t in model.graph.initializer}
    assert {f"net.{n}" for n in net.norm_parameter_names()} <= names
    # The eager net rebuilt from the file (what tiling runs) is the chosen style, baked.
    backend = load_backend(written["onnx"])
    mix = torch.tensor([0.3, 0.7])
    backend.select_style(mix)
    x = torch.rand(1, 3, 18, 22)
    with torch.no_grad():
        torch.testing.assert_close(backend.run_eager(x), Stylizer(net.baked(mix)).eval()(x), atol=1e-5, rtol=0)


def test_evaluate_measures_each_style_against_its_own_painting(tmp_path, stand_in_vgg):
    from fast_style.config.schema import StyleConfig
    from fast_style.config.style_set import style_entry
    from fast_style.evaluation import evaluate
    from fast_style.images import save_image

    paintings = []
    for name, colour in (("reds", (0.9, 0.2, 0.1)), ("blues", (0.1, 0.3, 0.9))):
        stripes = torch.tensor(colour)[:, None, None] * (0.6 + 0.4 * (torch.arange(48) % 6 < 3).float())[None, :, None]
        paintings.append(save_image(stripes.expand(3, 48, 48).clone(), tmp_path / f"{name}.png"))
    photos = tmp_path / "photos"
    photos.mkdir()
    save_image(torch.rand(3, 24, 32), photos / "noise.png")
    net = styled_net(2)
    entries = [str(p) for p in paintings]
    multi = save_multi_checkpoint(tmp_path / "multi.ckpt", net, ["reds", "blues"])
    checkpoint = torch.load(multi, weights_only=False)
    checkpoint["fast_style"]["config"] = {"styles": entries, "perceptual": {"weights": str(stand_in_vgg)}}
    torch.save(checkpoint, multi)
    # The same net baked to its second style, saved as a single-style model of that painting.
    single = tmp_path / "blues.ckpt"
    baked = net.baked(torch.tensor([0.0, 1.0]))
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in baked.state_dict().items()},
            "fast_style": {
                "format_version": 1,
                "model": dict(baked.config),
                "style": "blues",
                "config": {"style": style_entry(entries[1], StyleConfig), "perceptual": {"weights": str(stand_in_vgg)}},
            },
        },
        single,
    )
    reports, _ = evaluate([multi, single], photos, flicker_frames=0)
    assert [(r.name, r.style) for r in reports] == [
        ("multi.ckpt:reds", "reds"),
        ("multi.ckpt:blues", "blues"),
        ("blues.ckpt", "blues"),
    ]
    reds, blues, reference = (r.mean for r in reports)
    for figure in ("style_gain", "structure", "palette_distance"):
        assert blues[figure] == pytest.approx(reference[figure], abs=1e-4), figure
    assert reds["palette_distance"] != pytest.approx(blues["palette_distance"], abs=1e-3)
    [only] = evaluate([multi], photos, style="reds", flicker_frames=0)[0]
    assert only.name == "multi.ckpt:reds" and only.mean["style_gain"] == pytest.approx(reds["style_gain"], abs=1e-6)
    with pytest.raises(FastStyleError, match="holds the styles reds, blues: pass style=<one of them>"):
        evaluate([multi], photos, style="wave", flicker_frames=0)


def test_blend_strip_goes_from_one_style_to_the_other(tmp_path):
    """scripts/blend_strip.py: the photo, then the blends in equal steps; the ends are the pure styles."""
    import numpy as np
    from PIL import Image

    from fast_style.images import load_image, save_image

    from .conftest import assert_one_line_error, run_script

    net = styled_net(3)
    ckpt = save_multi_checkpoint(tmp_path / "multi.ckpt", net, ["starry_night", "wave", "udnie"])
    photo = save_image(torch.rand(3, 24, 32), tmp_path / "photo.png")
    out = tmp_path / "strip.png"
    result = run_script(
        "scripts/blend_strip.py", f"ckpt={ckpt}", "styles=[wave,udnie]", f"photo={photo}", "size=32", f"out={out}"
    )
    assert result.returncode == 0, result.stderr
    strip = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    label_height = strip.shape[0] - 24
    assert strip.shape[1] == 6 * 32 and label_height > 0  # the photo and five blends
    cells = [strip[label_height:, i * 32 : (i + 1) * 32] for i in range(6)]
    photo_pixels = (load_image(photo).permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(cells[0] - photo_pixels).max() <= 1
    with torch.inference_mode():
        pure = {
            name: (Stylizer(net.baked(torch.eye(3)[i])).eval()(load_image(photo)[None])[0].permute(1, 2, 0) * 255)
            .round()
            .numpy()
            for i, name in ((1, "wave"), (2, "udnie"))
        }
    assert np.abs(cells[1] - pure["wave"]).max() <= 1 and np.abs(cells[5] - pure["udnie"]).max() <= 1
    steps = [np.abs(cells[i + 1] - cells[i]).mean() for i in range(1, 5)]
    assert all(step > 0 for step in steps)  # every cell differs from the last
    result = run_script("scripts/blend_strip.py", f"ckpt={ckpt}", "styles=[wave,mona]", f"photo={photo}")
    assert_one_line_error(result, "unknown style 'mona'", "starry_night, wave, udnie")


def test_contact_sheet_gives_a_multi_style_model_one_row_per_style(tmp_path):
    """The gallery row of a multi-style net: scripts/contact_sheet.py shows each style on its own row."""
    import numpy as np
    from PIL import Image

    from fast_style.contact_sheet import load_runs, make_contact_sheet, run_labels

    from .conftest import run_script

    net = styled_net(3)
    ckpt = save_multi_checkpoint(tmp_path / "multi.ckpt", net, ["starry_night", "wave", "udnie"])
    rows = load_runs(ckpt)
    runs, stylizers = [r for r, _ in rows], [s for _, s in rows]
    assert [r.style for r in runs] == ["starry_night", "wave", "udnie"]
    assert run_labels(runs) == [["style=starry_night"], ["style=wave"], ["style=udnie"]]
    tiles = [torch.rand(3, 32, 32) for _ in range(2)]
    sheet = make_contact_sheet(runs, stylizers, tiles, pad=8, font_size=12)
    assert (sheet.rows, sheet.cols) == (4, 2)
    with torch.inference_mode():
        wave = Stylizer(net, margin=8).eval()(torch.stack(tiles), torch.eye(3)[[1, 1]])[1]
    cell = np.asarray(sheet.image.crop(sheet.cells[2][1]), dtype=np.float32) / 255
    assert np.abs(cell - wave.clamp(0, 1).permute(1, 2, 0).numpy()).max() <= 1 / 255 + 1e-6
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (200, 90, 40)).save(photo)
    out = tmp_path / "sheet.png"
    result = run_script("scripts/contact_sheet.py", f"runs=[{ckpt}]", f"photos=[{photo}]", "size=32", f"out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"contact sheet (3 runs x 1 photo): {out}"
