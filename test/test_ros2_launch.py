"""The launch files under the real `ros2 launch` (upstream launch / launch_ros, see ros2_cli.py), as a
user runs them in a terminal: the demo ends by itself with status 0, Ctrl-C stops it with status 0,
and a node that dies fails the launch with one message naming it while the rest shut down. Every
run is headless with the embedded simulator (Gazebo and rviz2 cannot run here). The ros2 CLI against
a running graph is in test_launch_graph.py (launch_testing). A signal while a node still imports is
tested on the node itself (test_node_runtime.py), where its timing is under control: through ros2
launch on two loaded cores it raced the interpreter's own start-up."""

from __future__ import annotations

import os
import signal

import pytest
from ros2_cli import LaunchRun, needs_ros2

pytestmark = [needs_ros2, pytest.mark.timeout(400)]

ROBOT_ROLES = ("sim", "camera_encoder", "lidar_encoder", "ir_encoder", "fusion", "explorer")
RUNNING = r"\[robot{k}\.fusion-\d+\] .*fusing camera, lidar, ir encodings"  # a fusion node up and spinning


def labels(run: LaunchRun) -> set[str]:
    return {label.rsplit("-", 1)[0] for label in run.pids()}


def test_sim_launch_runs_to_the_end(processes):
    """One robot until the scoreboard's duration: status 0, each process labelled by its role."""
    run = LaunchRun(processes, "m2vae_fusion", "sim.launch.py", "headless:=true", "simulator:=embedded", "duration:=10")
    run.assert_ended_well(run.finish(timeout_s=300))
    assert labels(run) == {f"robot1.{role}" for role in ROBOT_ROLES} | {"scoreboard"}
    assert "[launch]: process[scoreboard" in run.output  # the scoreboard ended it, not a timeout


def test_multi_robot_launch_runs_to_the_end(processes):
    run = LaunchRun(processes, "m2vae_fusion", "multi_robot.launch.py", "headless:=true", "simulator:=embedded", "duration:=10")
    run.assert_ended_well(run.finish(timeout_s=300))
    assert labels(run) == {f"robot{k}.{role}" for k in (1, 2) for role in ROBOT_ROLES} | {"scoreboard"}


def test_ctrl_c_mid_run_ends_with_status_0(processes):
    """Ctrl-C once both robots' nodes run: every node stops on the SIGINTs (the terminal's and
    launch's own), nothing is escalated to SIGTERM, nothing is left."""
    run = LaunchRun(processes, "m2vae_fusion", "multi_robot.launch.py", "headless:=true", "simulator:=embedded")
    for k in (1, 2):
        run.wait_for(RUNNING.format(k=k))
    run.ctrl_c()
    run.assert_ended_well(run.finish(timeout_s=60))


def test_a_killed_node_fails_the_launch_naming_it(processes):
    run = LaunchRun(processes, "m2vae_fusion", "sim.launch.py", "headless:=true", "simulator:=embedded")
    run.wait_for(RUNNING.format(k=1))
    os.kill(run.pid_of("robot1.fusion"), signal.SIGKILL)
    code = run.finish(timeout_s=60)
    assert code != 0, run.output
    named = [line for line in run.lines if "node robot1/fusion was killed by signal 9" in line]
    assert len(named) == 1, run.output
    others = set(run.pids()) - {label for label in run.pids() if label.startswith("robot1.fusion-")}
    clean = {line.split("]")[1].lstrip(" [") for line in run.lines if "process has finished cleanly" in line}
    assert others == clean, f"the other nodes should shut down cleanly:\n{run.output}"
    assert not run.group_alive()
