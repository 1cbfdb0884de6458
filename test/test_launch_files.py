"""The launch files as the real launch system reads them (upstream launch / launch_ros), without
starting anything: the arguments they declare, the actions sim.launch.py makes for the embedded
simulator and for Gazebo (which cannot run here, so this is the only test of its launch actions),
what happens when each kind of process exits, and multi_robot.launch.py's include. Running them is
test_ros2_launch.py and test_launch_graph.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml
from ros2_cli import needs_ros2

pytestmark = needs_ros2

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_ros_install(monkeypatch, tmp_path):
    """No rviz2 or ros_gz_sim on this machine, whatever it has; generated files in tmp_path."""
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "no_prefix"))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros_home"))


def load(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declared(description) -> dict[str, str]:
    from launch.actions import DeclareLaunchArgument

    from launch import LaunchContext

    context = LaunchContext()
    return {
        a.name: "".join(s.perform(context) for s in a.default_value)
        for a in description.entities
        if isinstance(a, DeclareLaunchArgument)
    }


def sim_actions(**arguments: str):
    """sim.launch.py's actions for these arguments (the rest at their defaults), and the context."""
    from launch.actions import OpaqueFunction

    from launch import LaunchContext

    module = load("sim.launch.py")
    description = module.generate_launch_description()
    context = LaunchContext()
    context.launch_configurations.update({**declared(description), **arguments})
    (setup,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    return module, setup.execute(context), context


def exited(action, code: int):
    from launch.events.process import ProcessExited

    return ProcessExited(returncode=code, action=action, name="p", cmd=["p"], cwd=None, env=None, pid=1)


def handlers(actions) -> list:
    from launch.actions import RegisterEventHandler

    return [a.event_handler for a in actions if isinstance(a, RegisterEventHandler)]


def on_exit(actions, action, code: int, context):
    """What the launch does when `action`'s process exits with `code` (the one handler watching it)."""
    event = exited(action, code)
    (handler,) = [h for h in handlers(actions) if h.matches(event)]
    return handler.handle(event, context)


def test_sim_launch_arguments_and_embedded_actions():
    from launch_ros.actions import Node

    description = load("sim.launch.py").generate_launch_description()
    assert declared(description) == {
        "simulator": "embedded",
        "world": "",
        "robots": "1",
        "rviz": "true",
        "use_sim_time": "true",
        "headless": "false",
        "duration": "0",
        "fleet_key": "",
        "model": "",
    }
    _, actions, _ = sim_actions(robots="3", headless="true", duration="60")
    nodes = [a for a in actions if isinstance(a, Node)]
    assert len(nodes) == 3 * 6 + 1  # per robot sim, 3 encoders, fusion, explorer; the scoreboard
    assert {(n.node_package, n.node_executable) for n in nodes} == {
        ("m2vae_fusion", e) for e in ("sim", "encoder", "fusion", "explorer", "scoreboard")
    }
    assert all(len([h for h in handlers(actions) if h.matches(exited(n, 0))]) == 1 for n in nodes)  # each exit is looked at


def node_parameters(node, context) -> dict:
    """The parameters a launch_ros Node sets by name, as the node reads them (its parameter files left out)."""
    import yaml

    values = {}
    for entry in node._Node__parameters:  # launch_ros keeps them normalised, as substitutions
        if isinstance(entry, dict):
            for name, value in entry.items():
                text = "".join(s.perform(context) for s in name)
                substitutions = isinstance(value, tuple) and all(hasattr(s, "perform") for s in value)
                # a string parameter is kept as the YAML text launch_ros writes into its params file
                values[text] = yaml.safe_load("".join(s.perform(context) for s in value)) if substitutions else value
    return values


def test_fleet_key_reaches_every_fusion_node(tmp_path):
    from launch_ros.actions import Node

    from m2vae_fusion.ros_interface.latent_signing import write_key_file

    path = write_key_file(tmp_path / "fleet.yaml", {"fleet-1": bytes(range(32))}, "fleet-1")
    _, actions, context = sim_actions(robots="2", headless="true", fleet_key=str(path))
    signed = {
        "".join(s.perform(context) for s in n.name): node_parameters(n, context).get("fleet_key")
        for n in actions
        if isinstance(n, Node)
    }
    assert {label: key for label, key in signed.items() if key} == {"robot1.fusion": str(path), "robot2.fusion": str(path)}
    _, actions, context = sim_actions(robots="2", headless="true")
    assert not any("fleet_key" in node_parameters(n, context) for n in actions if isinstance(n, Node))
    perception = load("perception.launch.py").generate_launch_description()
    assert declared(perception)["fleet_key"] == ""


def test_what_each_exit_does():
    """The scoreboard done, or any node stopped in order (status 0: on a terminal's Ctrl-C a node
    may end before launch handles the signal), ends the launch; any other exit before a shutdown
    fails it naming the node; during a shutdown (Ctrl-C, or after the scoreboard) every exit is expected."""
    from launch.actions import Shutdown
    from launch_ros.actions import Node

    from m2vae_fusion.bringup.launch_actions import NodeExited

    _, actions, context = sim_actions(headless="true")
    by_label = {"".join(s.perform(context) for s in n.name): n for n in actions if isinstance(n, Node)}
    scoreboard, fusion = by_label["scoreboard"], by_label["robot1.fusion"]

    assert [type(a) for a in on_exit(actions, scoreboard, 0, context)] == [Shutdown]
    with pytest.raises(NodeExited, match="node scoreboard exited with status 2"):
        on_exit(actions, scoreboard, 2, context)
    (stopped,) = on_exit(actions, fusion, 0, context)
    assert isinstance(stopped, Shutdown) and stopped.event.reason == "robot1/fusion was stopped (status 0)"
    with pytest.raises(NodeExited, match="node robot1/fusion exited with status 1"):
        on_exit(actions, fusion, 1, context)
    with pytest.raises(NodeExited, match="node robot1/fusion was killed by signal 9"):
        on_exit(actions, fusion, -9, context)

    context._set_is_shutdown(True)  # what LaunchService does when a Shutdown event comes
    for code in (0, 1, -2, -9):
        assert not on_exit(actions, fusion, code, context)


def test_gazebo_actions():
    from launch.actions import ExecuteProcess
    from launch_ros.actions import Node

    _, actions, context = sim_actions(simulator="gazebo", robots="2")
    processes = [a for a in actions if isinstance(a, ExecuteProcess) and not isinstance(a, Node)]
    assert [[s.perform(context) for s in p.cmd[0]] for p in processes][0] == ["gz"]
    nodes = [a for a in actions if isinstance(a, Node)]
    kinds = [(n.node_package, n.node_executable) for n in nodes]
    assert kinds.count(("ros_gz_sim", "create")) == 2 and kinds.count(("ros_gz_bridge", "parameter_bridge")) == 2
    assert kinds.count(("m2vae_fusion", "gz_range_adapter")) == 2 and kinds.count(("m2vae_fusion", "ground_truth")) == 2
    assert ("m2vae_fusion", "sim") not in kinds
    spawn = next(n for n in nodes if n.node_executable == "create")
    assert not on_exit(actions, spawn, 0, context)  # a spawner may finish
    # create gets the robot through its ROS parameters, with the pose as doubles
    (given,) = [p for p in spawn._Node__parameters if isinstance(p, dict)]  # launch_ros keeps them normalised
    values = {"".join(s.perform(context) for s in k): v for k, v in given.items()}
    assert yaml.safe_load("".join(s.perform(context) for s in values["name"])) == "robot1"  # launch_ros quotes strings as YAML
    assert {type(values[k]) for k in ("x", "y", "z", "Y")} == {float}


def test_multi_robot_includes_sim_with_two_robots():
    from launch.actions import IncludeLaunchDescription

    from launch import LaunchContext

    description = load("multi_robot.launch.py").generate_launch_description()
    assert declared(description) == {"robots": "2"}
    (include,) = [e for e in description.entities if isinstance(e, IncludeLaunchDescription)]
    source = include.launch_description_source
    source.get_launch_description(LaunchContext())  # expands the location
    assert Path(source.location) == REPO / "launch" / "sim.launch.py"
    assert [name for name, _ in include.launch_arguments] == ["robots"]
