"""ament_python package m2vae_fusion; also a plain pip-installable package (`pip install -e .`)."""
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "m2vae_fusion"
VERSION = "0.1.0"
HERE = Path(__file__).parent

# One console script per node so `ros2 run m2vae_fusion <node>` works; test/test_packaging.py
# checks this table against m2vae_fusion/nodes/ and package.xml.
NODES = {
    "encoder": "m2vae_fusion.nodes.encoder:main",
    "explorer": "m2vae_fusion.nodes.explorer:main",
    "fusion": "m2vae_fusion.nodes.fusion:main",
    "latent_monitor": "m2vae_fusion.nodes.latent_monitor:main",
    "scoreboard": "m2vae_fusion.nodes.scoreboard:main",
    "sim": "m2vae_fusion.nodes.sim:main",
    "viz": "m2vae_fusion.nodes.viz:main",
}


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
    ],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "m2vae = m2vae_fusion.cli:main",
            *(f"{name} = {target}" for name, target in NODES.items()),
        ],
    },
)
