"""VGG layer names, without importing torch: the config checks use them before torch is loaded.

``VGG_CFGS`` are torchvision's VGG configurations (``torchvision.models.vgg.cfgs`` "D" and "E"):
channel counts and "M" for max-pooling. ``perceptual`` builds its VGG from the same table, and
tests/test_perceptual.py checks it against torchvision.
"""

from __future__ import annotations

VGG_CFGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
ARCHITECTURES = tuple(VGG_CFGS)


def vgg_layer_names(arch: str) -> list[str]:
    """conv1_1, relu1_1, ..., pool5: one name per module of ``arch``'s ``features`` stack."""
    names, block, index = [], 1, 1
    for item in VGG_CFGS[arch]:
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names
