"""Layers point downward (CONVENTIONS.md §12): no module imports from a layer above its own, at module
level or inside a function (a cycle broken by a deferred import is still a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "guiagent"

# types/errors → actions/config → data, envs, policy, rewards, algos → (agent) → rollout, farm, eval
# → trainer → cli/demo. The agent loop sits between: it imports envs and policy, and the farm and the
# rollouts import it (DESIGN.md, "The spine"). images and net are helpers that import no guiagent module.
LAYERS = {
    "types": 0, "errors": 0, "images": 0, "net": 0,
    "actions": 1, "config": 1,
    "data": 2, "envs": 2, "policy": 2, "rewards": 2, "algos": 2,
    "agent": 2.5,
    "rollout": 3, "farm": 3, "eval": 3,
    "trainer": 4,
    "cli": 5, "demo": 5, "schema": 5, "ui": 5, "__main__": 5,
}


def _layer(module: str) -> float:
    """The layer of a dotted module name; an area's own ``cli.py`` (its sub-command group) is CLI."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0  # the package itself: guiagent/__init__.py holds only __version__
    if parts[-1] == "cli":
        return LAYERS["cli"]
    return LAYERS[parts[1]]


def _imports(path: Path) -> list[tuple[str, int]]:
    """The guiagent modules ``path`` imports anywhere in its body, with line numbers."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
    return [(name, line) for name, line in found if name == "guiagent" or name.startswith("guiagent.")]


def test_every_area_has_a_layer():
    areas = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert areas <= set(LAYERS), f"place {sorted(areas - set(LAYERS))} in LAYERS"


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for target, line in _imports(path):
            if _layer(target) > _layer(module):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)
