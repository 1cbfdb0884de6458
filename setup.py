"""ament_python package m2vae_fusion; also a plain pip-installable package (`pip install -e .`)."""

import sys
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "m2vae_fusion"
VERSION = "0.1.0"
HERE = Path(__file__).parent

# One console script per node so `ros2 run m2vae_fusion <node>` works, each running
# m2vae_fusion.nodes.<node>.main through m2vae_fusion.ros_interface.entry (which takes SIGINT/SIGTERM over
# before the node's seconds of imports); test/test_packaging.py checks this list against
# m2vae_fusion/nodes/ and ros_interface/entry.py.
NODES = ("encoder", "explorer", "fusion", "ground_truth", "gz_range_adapter", "latent_monitor", "scoreboard", "sim", "viz")


# colcon (ament_python) runs `setup.py install` / `develop`, and setup.cfg sends the console scripts to
# lib/m2vae_fusion for `ros2 run`; colcon's setup files put only <prefix>/bin on PATH
# (colcon-core: colcon_core/environment/path.py), so bin gets a launcher of lib's `m2vae`. A wheel
# (pip install, editable or not) gets none: pip writes the console scripts into bin itself.
BIN_LAUNCHER = [] if {"bdist_wheel", "editable_wheel"} & set(sys.argv) else [("bin", ["scripts/m2vae"])]


def tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries installing `folder` recursively under share/<package>/."""
    entries = []
    for directory in sorted(p for p in (HERE / folder).rglob("*") if p.is_dir()) + [HERE / folder]:
        files = [str(f.relative_to(HERE)) for f in sorted(directory.iterdir()) if f.is_file()]
        if files:
            entries.append((f"share/{PACKAGE}/{directory.relative_to(HERE)}", files))
    return entries


setup(
    name=PACKAGE,
    version=VERSION,
    description="Multi-modal object perception for ROS 2 with a jointly trained multi-modal VAE (M2VAE)",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    # the shipped perception model (m2vae_fusion/weights/<name>/: manifest + checkpoints)
    package_data={PACKAGE: ["weights/*/*.json", "weights/*/*/*.pt", "weights/*/*/*/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *tree("launch"),
        *tree("config"),
        *tree("worlds"),
        *tree("models"),
        *BIN_LAUNCHER,
    ],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "m2vae = m2vae_fusion.cli:main",
            *(f"{name} = m2vae_fusion.ros_interface.entry:{name}" for name in NODES),
        ],
    },
)
