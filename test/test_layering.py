"""The package's layering, read from the imports of every module: core -> perception -> data ->
model -> training / viz -> evaluation -> ros_interface -> nodes / sim -> bringup -> reproductions /
doctor -> benchmarks (which time what the reproductions run) / robustness -> cli. No module imports a package of a higher layer, and the
simulator is a leaf that only the sim and ground_truth nodes, bringup, collection and the benchmarks use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "m2vae_fusion"

# Each top-level package or module of m2vae_fusion and its layer; a module may import its own
# package and any package of a lower layer. Packages in one layer do not import each other.
LAYERS: dict[str, int] = {
    "core": 0,
    "resources": 0,
    "perception": 1,
    "data": 2,
    "model": 3,
    "behaviour": 3,
    "training": 4,
    "viz": 4,
    "evaluation": 5,
    "ros_interface": 6,
    "nodes": 7,
    "sim": 7,
    "bringup": 8,
    "reproductions": 9,
    "doctor": 9,
    "benchmarks": 10,
    "robustness": 10,
    "cli": 11,
}
# Who may use the simulator (a leaf of the graph, not a layer below anything): the sim node, the
# bringup (worlds, Gazebo files), the reproduction that collects its data, the benchmarks, the
# doctor's rendering probe and the command line. Of the nodes, the sim node and the ground_truth node,
# which publishes the world's labelled objects beside Gazebo from the same SDF reader (sim.sdf, sim.truth).
SIM_USERS = {"sim", "bringup", "reproductions", "benchmarks", "doctor", "cli"}
SIM_NODES = {"nodes/sim.py", "nodes/ground_truth.py"}


def top(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "m2vae_fusion" and len(parts) > 1 else None


def imports(path: Path) -> set[str]:
    """Every m2vae_fusion package a module imports, at any depth of the file (lazy imports count)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {t for alias in node.names if (t := top(alias.name))}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "m2vae_fusion":
                found |= {alias.name for alias in node.names}
            elif t := top(node.module):
                found.add(t)
    return found


def owner(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if owner(p) != "__init__")


def test_every_package_has_a_layer():
    assert {owner(p) for p in MODULES} - set(LAYERS) == set(), "add new packages to LAYERS, at their level"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_upwards(path: Path):
    mine = owner(path)
    wrong = []
    for target in imports(path) - {mine, "__version__"}:
        if target == "sim":
            if mine not in SIM_USERS and str(path.relative_to(PACKAGE)) not in SIM_NODES:
                wrong.append(f"{target} (the simulator is a leaf; only {sorted(SIM_USERS)} and {sorted(SIM_NODES)} use it)")
        elif LAYERS[target] >= LAYERS[mine]:
            wrong.append(f"{target} (layer {LAYERS[target]}, this is {mine}, layer {LAYERS[mine]})")
    assert not wrong, f"{path.relative_to(PACKAGE)} imports upwards or sideways: " + "; ".join(sorted(wrong))


def test_the_check_sees_lazy_imports(tmp_path: Path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from m2vae_fusion.nodes import fusion\n    import m2vae_fusion.cli\n")
    assert imports(module) == {"nodes", "cli"}
