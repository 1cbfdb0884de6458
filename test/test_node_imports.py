"""Each node imports only what it uses at run time.

A `rosdep install` of the package on a robot gets what package.xml names, and nodes start on
robots that never read a bag or run the simulator: the bag reader (`rosbags`) must not be in any
node's import chain, nor MuJoCo in any but the embedded simulator's. Each node is imported in a
fresh interpreter, since one test process has long since imported both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a fresh interpreter importing each node, seconds each

REPO = Path(__file__).resolve().parents[1]
NODES = sorted(p.stem for p in (REPO / "m2vae_fusion" / "nodes").glob("*.py") if p.stem != "__init__")
# node -> offline-only packages it may import (the sim node runs the simulator)
ALLOWED = {"sim": {"mujoco"}}
OFFLINE_ONLY = ("rosbags", "mujoco")


def modules_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, f"importing {module} failed:\n{proc.stderr[-3000:]}"
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_every_node_is_checked():
    assert {"encoder", "explorer", "fusion", "latent_monitor", "scoreboard", "sim", "viz"} <= set(NODES)


@pytest.mark.parametrize("node", NODES)
def test_node_does_not_import_offline_tools(node: str) -> None:
    loaded = modules_after_import(f"m2vae_fusion.nodes.{node}")
    assert f"m2vae_fusion.nodes.{node}" in loaded  # the probe really imported the node
    unexpected = {name for name in OFFLINE_ONLY if name in loaded} - ALLOWED.get(node, set())
    assert not unexpected, f"m2vae_fusion.nodes.{node} imports {sorted(unexpected)} at import time"
    # the modules that would bring rosbags back in one step
    assert "m2vae_fusion.data.bag_frames" not in loaded
    assert "m2vae_fusion.training.train" not in loaded
