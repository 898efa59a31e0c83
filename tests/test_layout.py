"""The layering: inference never loads Lightning or the training package, the config layer never
loads torch, and no module imports one that (directly or not) imports it back."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import fast_style

PACKAGE = Path(fast_style.__file__).parent


def module_names(folder: Path = PACKAGE) -> list[str]:
    return sorted(
        ".".join(("fast_style", *path.relative_to(folder).with_suffix("").parts)).removesuffix(".__init__")
        for path in folder.rglob("*.py")
    )


def loaded_after(*modules: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after importing ``modules``."""
    code = f"import importlib, json, sys\nfor m in {list(modules)!r}: importlib.import_module(m)\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=900)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_inference_never_loads_lightning_or_the_training_package():
    infer = [m for m in module_names() if m.startswith("fast_style.infer")]
    assert "fast_style.infer.stylize" in infer and "fast_style.infer.export" in infer
    loaded = loaded_after(*infer, "fast_style.checkpoint_format", "fast_style.contact_sheet")
    assert not {m for m in loaded if m.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric")}
    assert not {m for m in loaded if m.startswith("fast_style.train")}


def test_config_checks_and_the_resume_lookup_load_no_torch():
    loaded = loaded_after("fast_style.config.cli", "fast_style.config.schema", "fast_style.train.resume")
    assert "torch" not in loaded and "fast_style.train.resume" in loaded


def imports_of(module: str) -> set[str]:
    """The fast_style modules ``module`` imports anywhere in its code (lazy imports included)."""
    path = PACKAGE.joinpath(*module.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    known, found = set(module_names()), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fast_style"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found |= {name for name in names if name in known} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("fast_style")}
    # A module imports its packages' __init__ as well (they import nothing here but CONFIG_DIR).
    return {name for name in found if name in known and name != module}


def test_no_import_cycles():
    graph = {module: imports_of(module) for module in module_names()}
    assert graph["fast_style.train.data"] >= {"fast_style.train.packed", "fast_style.images"}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' -> '.join([*path, module])}"
        state[module] = "open"
        for dependency in sorted(graph[module]):
            visit(dependency, [*path, module])
        state[module] = "done"

    for module in graph:
        visit(module, [])
