"""The package as a colcon user builds it (docs/own-robot.md, "As a package in a colcon workspace").

colcon-core and colcon-ros come from PyPI into a venv of their own (colcon-core pins setuptools
below 80; this repository's .venv builds with a newer one). That venv sees this environment's
packages (ROS 2, torch, ...) the way the ROS 2 guide's `--system-site-packages` venv sees a system
ROS 2. The repository is built through a symlink as the workspace's only source package, once with
a plain install and once with --symlink-install, and the install is checked for what `ros2 run`,
`ros2 launch` and the documented `m2vae` commands need.

Slow-ish (two builds, one pip install of colcon: about a minute), but in the default suite. Without
PyPI it fails, not skips: the check it stands for would be gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from test_packaging import setup_py

REPO = Path(__file__).resolve().parents[1]
# colcon-core and colcon-ros with everything they pull in that the base interpreter lacks, pinned.
COLCON = [
    "colcon-core==0.21.3",
    "colcon-ros==0.5.0",
    "colcon-package-selection==0.2.10",
    "colcon-cmake==0.2.30",
    "colcon-library-path==0.2.1",
    "colcon-pkg-config==0.1.0",
    "colcon-python-setup-py==0.2.9",
    "colcon-recursive-crawl==0.2.3",
    "colcon-test-result==0.3.8",
    "catkin-pkg==1.1.1",
    "empy==4.2.1",
    "distlib==0.4.4",
    "coverage==7.17.5",
    "pytest-cov==7.1.0",
    "pytest-repeat==0.9.4",
    "pytest-rerunfailures==16.7",
    "setuptools==79.0.1",
]
pytestmark = [pytest.mark.timeout(1200), pytest.mark.slow]


@pytest.fixture(scope="module")
def colcon_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("colcon") / "venv"
    # no pip of its own: this environment's pip installs into it (saves ensurepip's half minute)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check", "-q", *COLCON],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"pip could not install colcon from PyPI:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    # A path line, not `import site; site.addsitedir(...)`: the .pth files of this environment's
    # site-packages stay unread, so its editable m2vae_fusion cannot stand in for the build under test.
    (Path(purelib.stdout.strip()) / "m2vae-host-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def environment(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.mark.parametrize("symlink", [False, True], ids=["install", "symlink-install"])
def test_colcon_build_installs_an_ament_package(colcon_python: Path, tmp_path: Path, symlink: bool) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m2vae_fusion").symlink_to(REPO, target_is_directory=True)
    command = [str(colcon_python), "-m", "colcon", "build", "--packages-select", "m2vae_fusion", "--base-paths", "src"]
    if symlink:
        command.append("--symlink-install")
    t0 = time.monotonic()
    proc = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env=environment(PATH=f"{colcon_python.parent}{os.pathsep}{os.environ['PATH']}"),
    )
    seconds = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    print(f"colcon build{' --symlink-install' if symlink else ''} of m2vae_fusion: {seconds:.1f} s")

    prefix = tmp_path / "install" / "m2vae_fusion"
    for executable in [*setup_py()["NODES"], "m2vae"]:  # where `ros2 run m2vae_fusion <node>` looks
        path = prefix / "lib" / "m2vae_fusion" / executable
        assert path.is_file() and os.access(path, os.X_OK), f"{path} missing or not executable"
    share = prefix / "share" / "m2vae_fusion"
    for item in ("package.xml", "launch/sim.launch.py", "config/fusion.yaml"):
        assert (share / item).is_file(), item
    for folder in ("worlds", "models"):
        assert any((share / folder).rglob("*.sdf")), f"no SDF under {share / folder}"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "m2vae_fusion").is_file()

    # The workspace's own setup file alone: its AMENT_PREFIX_PATH, PYTHONPATH and PATH (colcon adds
    # <prefix>/bin because it holds the m2vae launcher).
    probe = (
        ". install/setup.sh && command -v m2vae && m2vae --help && "
        'python3 -c \'import m2vae_fusion, os; print("MODULE", m2vae_fusion.__file__); print("AMENT", os.environ["AMENT_PREFIX_PATH"])\''
    )
    run = subprocess.run(
        ["bash", "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment(AMENT_PREFIX_PATH=None, COLCON_PREFIX_PATH=None, PATH=f"{colcon_python.parent}{os.pathsep}/usr/bin:/bin"),
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    lines = run.stdout.splitlines()
    assert lines[0] == str(prefix / "bin" / "m2vae"), out
    assert "usage: m2vae" in run.stdout
    module = next(line.split(" ", 1)[1] for line in lines if line.startswith("MODULE "))
    assert Path(module).is_relative_to(tmp_path), f"m2vae_fusion came from {module}, not from the workspace"
    assert str(prefix) in next(line for line in lines if line.startswith("AMENT ")).split(" ", 1)[1].split(os.pathsep)
