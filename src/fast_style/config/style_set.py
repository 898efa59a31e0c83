"""Multi-style training: ``styles=[starry_night,wave,/path/to/painting.jpg]`` -> one style config each.

Each entry is the name of a built-in style (``configs/style/<name>.yaml``, composed exactly as
``style=<name>`` would be: URL, sha256, size, ``style_weight_factor``) or the path of any painting
(named after its file, like ``style=custom``). No torch: these checks run before it is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from fast_style.config import CONFIG_DIR
from fast_style.errors import FastStyleError


def builtin_styles() -> list[str]:
    """Names of ``configs/style/*.yaml`` that stand for one painting (``custom`` needs an image)."""
    return sorted(p.stem for p in (CONFIG_DIR / "style").glob("*.yaml") if p.stem != "custom")


def style_entry(entry: str, schema: type) -> dict[str, Any]:
    """One ``styles`` entry -> a plain style config dict with the keys and defaults of ``schema``
    (``config.schema.StyleConfig``, passed in: schema.py imports this module)."""
    entry = str(entry).strip()
    base = OmegaConf.structured(schema)
    if entry in builtin_styles():
        node = OmegaConf.load(CONFIG_DIR / "style" / f"{entry}.yaml").style
    elif Path(entry).expanduser().is_file():
        node = {"name": Path(entry).stem, "image": str(Path(entry).expanduser()), "url": None, "sha256": None}
    else:
        raise FastStyleError(
            f"styles entry {entry!r} is neither a style nor an image file: use names of {', '.join(builtin_styles())} "
            "or paths of paintings"
        )
    return OmegaConf.to_container(OmegaConf.merge(base, node), resolve=True)


def style_set(entries: list[str] | None, schema: type, factors: list[Any] | None = None) -> list[dict[str, Any]]:
    """Every entry's style config (``schema``: ``StyleConfig``), in order; names must differ
    (they label the styles). ``factors`` (``style_weight_factors``: one number > 0 per entry)
    replace the styles' own ``style_weight_factor``, so a built-in style can take another weight
    in one multi-style net without a config file of its own."""
    configs = [style_entry(e, schema) for e in entries or ()]
    names = [c["name"] for c in configs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise FastStyleError(f"styles names {', '.join(repeated)} more than once: list each style once")
    if factors is None:
        return configs
    if not configs:
        raise FastStyleError(
            "style_weight_factors is for styles=[...]: drop it, and weigh one style with style.style_weight_factor="
        )
    if len(factors) != len(configs) or not all(f > 0 for f in factors):  # numbers: the schema types them
        shown = "[" + ",".join(map(str, factors)) + "]"
        raise FastStyleError(
            f"style_weight_factors={shown} is not allowed: use {len(configs)} numbers > 0, one per styles entry "
            f"({', '.join(names)})"
        )
    for config, factor in zip(configs, factors, strict=True):
        config["style_weight_factor"] = float(factor)
    return configs


def run_name(style_name: Any, styles: Any) -> str:
    """Folder under ``output_root`` for a run: the style's name, or for several styles their
    names joined by ``+`` (``starry_night+wave``)."""
    if not styles:
        return str(style_name)
    return "+".join(Path(str(e)).stem if Path(str(e)).suffix else str(e) for e in styles)
