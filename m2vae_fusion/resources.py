"""Where the package's data files (config/, launch/, worlds/, models/) are.

A source checkout (pip install -e, or running from the repo) uses the repository's folders
so edits take effect at once; an installed package (colcon / ament) uses share/m2vae_fusion.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = "m2vae_fusion"


def share_dir() -> Path:
    """The folder that holds config/, launch/, worlds/ and models/."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "package.xml").is_file() and (checkout / "config").is_dir():
        return checkout
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidate = Path(prefix) / "share" / PACKAGE
        if (candidate / "package.xml").is_file():
            return candidate
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} share folder: not a source checkout and not in AMENT_PREFIX_PATH "
        f"({os.environ.get('AMENT_PREFIX_PATH', 'unset')}); source env.sh or your workspace's setup.bash"
    )


def config_path(name: str) -> Path:
    """A file in config/, with an error naming it when it is missing."""
    path = share_dir() / "config" / name
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    return path


def default_model_dir() -> Path:
    """The perception model shipped for the simulated AMiRo (package data; see docs/own-robot.md, "The shipped model")."""
    return Path(__file__).resolve().parent / "weights" / "amiro"
