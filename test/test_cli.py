"""The `m2vae` command: help for every sub-command, and `m2vae doctor` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from m2vae_fusion.cli import COMMANDS, build_parser


def run(*argv, env=None, timeout=180):
    return subprocess.run(["m2vae", *argv], capture_output=True, text=True, env=env, timeout=timeout)


def test_top_level_help_lists_every_command():
    proc = run("--help")
    assert proc.returncode == 0
    for name, *_ in COMMANDS:
        assert name in proc.stdout


@pytest.mark.parametrize("name", [c[0] for c in COMMANDS])
def test_sub_command_help(name):
    proc = run(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"usage: m2vae {name}" in proc.stdout


# What `m2vae --help` must not load: each costs seconds of imports, rclpy a working ROS 2 as well.
HEAVY_PACKAGES = {"torch", "rclpy", "rosbags", "mujoco", "matplotlib", "sklearn"}


@pytest.mark.parametrize("command", ["", *(c[0] for c in COMMANDS)], ids=lambda command: command or "m2vae")
def test_help_imports_no_heavy_package(command):
    """`m2vae [COMMAND] --help` in a fresh interpreter, whose -X importtime lists every module imported."""
    words = ["m2vae", *command.split()]
    argv = [sys.executable, "-X", "importtime", "-m", "m2vae_fusion.cli", *words[1:], "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f"usage: {' '.join(words)} "), proc.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    assert "argparse" in imported, f"no -X importtime report in stderr: {proc.stderr[-3000:]}"
    assert not imported & HEAVY_PACKAGES, f"{' '.join(words)} --help imports {sorted(imported & HEAVY_PACKAGES)}"


def test_unknown_command_fails_with_usage():
    proc = run("no-such-command")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_parser_requires_a_command():
    with pytest.raises(SystemExit):
        build_parser().parse_args([])


def test_doctor_passes(ros_env):
    proc = run("doctor", env=ros_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\u2717" not in proc.stdout
    assert proc.stdout.count("\u2714") >= 10


def test_doctor_reports_a_missing_piece_with_its_fix(ros_env):
    # an OpenGL backend this machine does not have (unset, the simulator would fall back to egl)
    proc = run("doctor", env={**ros_env, "MUJOCO_GL": "wgl", "PYOPENGL_PLATFORM": "wgl"})
    assert proc.returncode == 1
    assert "\u2717 mujoco offscreen" in proc.stdout and "MUJOCO_GL=wgl" in proc.stdout
    assert "fix: apt-get install libegl1" in proc.stdout


def test_doctor_probes_the_simulator_s_default_gl_when_unset(ros_env):
    proc = run("doctor", env={k: v for k, v in ros_env.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")})
    assert "\u2714 mujoco offscreen" in proc.stdout and "MUJOCO_GL=egl" in proc.stdout, proc.stdout


BOOTSTRAP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "bootstrap.sh")


def test_bootstrap_knows_it_is_up_to_date():
    """`make test` has just run set-up, so a second run has nothing to do."""
    proc = subprocess.run(["bash", BOOTSTRAP, "--check"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"set-up is stale (run make setup): {proc.stderr}"


def test_bootstrap_sees_a_changed_input(tmp_path):
    """The stamp covers the inputs: another venv path without a stamp needs set-up."""
    env = dict(os.environ, M2VAE_VENV=str(tmp_path / "venv"))
    proc = subprocess.run(["bash", BOOTSTRAP, "--check"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert "set-up needed" in proc.stderr
