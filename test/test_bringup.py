"""The node-graph description (m2vae_fusion.bringup.description) for 1 and 3 robots, embedded and Gazebo,
the rendering of parameters into argv that rclpy parses back, and the launch files, exercised with
minimal stand-ins for the launch packages (which are not installable here)."""

from __future__ import annotations

import importlib.util
import py_compile
import sys
import types
from pathlib import Path

import pytest
import yaml

from m2vae_fusion.bringup.description import (
    BringupError,
    NodeSpec,
    gazebo_available,
    render_value,
    sim_description,
)
from m2vae_fusion.resources import share_dir

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
ROBOT_NODES = ["sim", "camera_encoder", "lidar_encoder", "ir_encoder", "fusion", "explorer", "viz"]


@pytest.fixture(autouse=True)
def no_ros_install(monkeypatch, tmp_path):
    """A machine without rviz2 or ros_gz_sim, whatever this one has; the cache in tmp_path."""
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "no_prefix"))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros_home"))


def keys(description) -> list[str]:
    return [n.key for n in description.nodes]


def test_one_robot_embedded() -> None:
    d = sim_description(1, simulator="embedded", duration_s=180)
    assert d.world == REPO / "worlds" / "arena.sdf"
    assert [(r.namespace, r.instance) for r in d.robots] == [("robot1", "amiro")]
    assert keys(d) == [f"robot1/{n}" for n in ROBOT_NODES] + ["scoreboard"]
    assert d.notes and "rviz2 not found" in d.notes[0]

    sim = d.node("robot1/sim")
    assert sim.namespace == "/robot1" and sim.executable == "sim"
    assert sim.params_files == (CONFIG / "sim.yaml",)
    assert sim.parameters == {"world": str(REPO / "worlds" / "arena.sdf"), "robot": "amiro", "real_time_factor": 1.0}
    for name in ("camera_encoder", "lidar_encoder", "ir_encoder"):
        encoder = d.node(f"robot1/{name}")
        assert (encoder.executable, encoder.name, encoder.params_files) == ("encoder", name, (CONFIG / "encoders.yaml",))
    assert d.node("robot1/fusion").params_files == (CONFIG / "fusion.yaml",)
    assert d.node("robot1/explorer").params_files == (CONFIG / "explorer.yaml",)
    assert d.node("robot1/viz").params_files == (CONFIG / "viz.yaml",)
    # sim publishes /clock; everything else follows it
    assert all(n.parameters["use_sim_time"] is True for n in d.nodes if n.name != "sim")
    assert "use_sim_time" not in sim.parameters
    assert all(n.remaps == () for n in d.nodes)  # one robot: /clock is its own

    scoreboard = d.node("scoreboard")
    assert scoreboard.namespace == "" and scoreboard.params_files == (CONFIG / "scoreboard.yaml",)
    assert scoreboard.parameters == {"robots": ["robot1"], "duration_s": 180.0, "use_sim_time": True}
    assert [n.key for n in d.nodes if n.ends_launch] == ["scoreboard"]
    assert [n.key for n in d.nodes if n.output == "screen"] == ["scoreboard"]


def test_headless_leaves_out_viz_and_rviz(tmp_path, monkeypatch) -> None:
    fake_rviz(tmp_path, monkeypatch)
    shown = sim_description(1, simulator="embedded")
    rviz = shown.node("rviz2")
    assert (rviz.package, rviz.arguments, rviz.ends_launch) == ("rviz2", ("-d", str(CONFIG / "m2vae.rviz")), True)
    assert not shown.notes
    headless = sim_description(1, simulator="embedded", headless=True)
    assert "robot1/viz" not in keys(headless) and "rviz2" not in keys(headless)
    assert "rviz2" not in keys(sim_description(1, simulator="embedded", rviz=False))


def test_three_robots_embedded(tmp_path) -> None:
    d = sim_description(3, simulator="embedded", use_sim_time=False, cache_dir=tmp_path / "cache")
    world = tmp_path / "cache" / "worlds" / "arena_3_robots.sdf"
    assert d.world == world
    first = world.read_bytes()
    assert sim_description(3, simulator="embedded", cache_dir=tmp_path / "cache").world.read_bytes() == first  # deterministic
    assert [(r.namespace, r.instance) for r in d.robots] == [(f"robot{k}", f"amiro_{k}") for k in (1, 2, 3)]
    assert keys(d) == [f"robot{k}/{n}" for k in (1, 2, 3) for n in ROBOT_NODES] + ["scoreboard"]
    for k in (1, 2, 3):
        sim = d.node(f"robot{k}/sim")
        assert sim.parameters["robot"] == f"amiro_{k}" and sim.parameters["world"] == str(world)
        robot_nodes = [n for n in d.nodes if n.namespace == f"/robot{k}"]
        assert len(robot_nodes) == len(ROBOT_NODES)
        # robot 1 publishes the global /clock; the others run on their own simulator's clock
        expected = () if k == 1 else (("/clock", f"/robot{k}/clock"),)
        assert all(n.remaps == expected for n in robot_nodes)
    assert d.node("scoreboard").remaps == ()
    assert d.node("scoreboard").parameters["robots"] == ["robot1", "robot2", "robot3"]
    assert all(n.parameters["use_sim_time"] is False for n in d.nodes if n.name != "sim")


def test_gazebo_one_and_three_robots(tmp_path) -> None:
    assert not gazebo_available()  # the default here is the embedded simulator
    one = sim_description(1, simulator="gazebo", cache_dir=tmp_path)
    assert "robot1/sim" not in keys(one)
    gz = one.node("gz_sim")
    assert not gz.ros and gz.ends_launch and gz.command()[:3] == ["gz", "sim", "-r"]
    assert gz.env["GZ_SIM_RESOURCE_PATH"].split(":")[0] == str(REPO / "models")
    gz_world = Path(gz.arguments[-1])
    assert "model://amiro" not in gz_world.read_text() and "model://red_cube_matte" in gz_world.read_text()
    assert sim_description(1, simulator="gazebo", headless=True, cache_dir=tmp_path).node("gz_sim").arguments == ("sim", "-r", "-s", str(gz_world))

    three = sim_description(3, simulator="gazebo", cache_dir=tmp_path)
    assert not any(n.name == "sim" for n in three.nodes)
    for k, robot in enumerate(three.robots, start=1):
        ns = f"robot{k}"
        spawn = three.node(f"{ns}/spawn")
        assert (spawn.package, spawn.executable, spawn.one_shot) == ("ros_gz_sim", "create", True)
        args = dict(zip(spawn.arguments[::2], spawn.arguments[1::2]))
        assert args["-name"] == ns and args["-world"] == "arena"
        assert (float(args["-x"]), float(args["-y"]), float(args["-Y"])) == pytest.approx((robot.x, robot.y, robot.yaw), abs=1e-5)
        model = Path(args["-file"]).read_text()
        assert f"<topic>/{ns}/scan</topic>" in model and f"<child_frame_id>{ns}/base_link</child_frame_id>" in model

        bridge = three.node(f"{ns}/gz_bridge")
        assert (bridge.package, bridge.executable) == ("ros_gz_bridge", "parameter_bridge")
        entries = {e["ros_topic_name"]: e["gz_topic_name"] for e in yaml.safe_load(Path(bridge.parameters["config_file"]).read_text())}
        assert entries["scan"] == f"/{ns}/scan" and entries["cmd_vel"] == f"/{ns}/cmd_vel" and entries["/tf"] == f"/{ns}/tf"
        assert ("/clock" in entries) == (k == 1)  # one clock bridge, not three

        to_odom = three.node(f"{ns}/map_to_odom")
        assert to_odom.arguments[-4:] == ("--frame-id", "map", "--child-frame-id", f"{ns}/odom")
        optical = three.node(f"{ns}/static_tf_camera_optical_frame")
        assert optical.arguments[-3:] == (f"{ns}/camera_link", "--child-frame-id", f"{ns}/camera_optical_frame")
        assert all(n.remaps == () for n in three.nodes)  # Gazebo has one clock for everybody
    assert all(n.parameters.get("use_sim_time") is True for n in three.nodes if n.ros)


def test_given_world_robots_and_errors(tmp_path) -> None:
    two = sim_description(2, world="arena_two_robots.sdf", simulator="embedded")
    assert [r.instance for r in two.robots] == ["amiro_1", "amiro_2"]
    assert [r.instance for r in sim_description(1, world=REPO / "worlds" / "arena_two_robots.sdf", simulator="embedded").robots] == ["amiro_1"]
    with pytest.raises(BringupError, match=r"has 1 robot\(s\) \(amiro\) but 2 were asked for"):
        sim_description(2, world="arena.sdf", simulator="embedded")
    with pytest.raises(BringupError, match="no_such.sdf: no such file"):
        sim_description(1, world="no_such.sdf", simulator="embedded")
    with pytest.raises(BringupError, match="robots=9"):
        sim_description(9, simulator="embedded", cache_dir=tmp_path)
    with pytest.raises(BringupError, match="simulator must be one of"):
        sim_description(1, simulator="webots")
    with pytest.raises(BringupError, match="duration"):
        sim_description(1, simulator="embedded", duration_s=-1)


def test_graph_file_overrides_and_errors(tmp_path) -> None:
    graph = yaml.safe_load((CONFIG / "graph_sim.yaml").read_text())
    graph["robot_overrides"] = {"robot2": {"camera_encoder": {"enabled": False}, "fusion": {"parameters": {"gate": 0.1}}}}
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    (tmp_path / "fusion.yaml").write_text("")
    d = sim_description(2, simulator="embedded", graph=path)
    assert "robot1/camera_encoder" in keys(d) and "robot2/camera_encoder" not in keys(d)
    assert d.node("robot2/fusion").parameters["gate"] == 0.1 and "gate" not in d.node("robot1/fusion").parameters
    assert d.node("robot2/fusion").params_files == (tmp_path / "fusion.yaml",)  # relative to the graph file

    graph["robot_overrides"] = {"robot2": {"camera": {"enabled": False}}}
    path.write_text(yaml.safe_dump(graph))
    with pytest.raises(BringupError, match="no robot node 'camera'"):
        sim_description(2, simulator="embedded", graph=path)
    graph["robot_overrides"] = {}
    graph["robot_nodes"][0]["paramz"] = {}
    path.write_text(yaml.safe_dump(graph))
    with pytest.raises(BringupError, match=r"robot_nodes\[0\] \(sim\): unknown key\(s\) \['paramz'\]"):
        sim_description(1, simulator="embedded", graph=path)
    del graph["robot_nodes"][0]["paramz"]
    graph["robot_nodes"][0]["parameters"]["world"] = "${wrold}"
    path.write_text(yaml.safe_dump(graph))
    with pytest.raises(BringupError, match=r"unknown variable \$\{wrold\}"):
        sim_description(1, simulator="embedded", graph=path)
    with pytest.raises(BringupError, match="graph nope"):
        sim_description(1, simulator="embedded", graph="nope")


def test_command_line_of_a_node() -> None:
    spec = NodeSpec(
        name="fusion", executable="fusion", namespace="/robot2", params_files=(Path("/c/fusion.yaml"),),
        parameters={"gate": 0.1, "robots": ["a", "b"]}, remaps=(("/clock", "/robot2/clock"),),
    )
    assert spec.key == "robot2/fusion"
    assert spec.command("/bin/fusion") == [
        "/bin/fusion", "--ros-args", "-r", "__ns:=/robot2", "-r", "__node:=fusion", "--params-file", "/c/fusion.yaml",
        "-p", "gate:=0.1", "-p", "robots:=[a, b]", "-r", "/clock:=/robot2/clock",
    ]
    assert NodeSpec(name="gz", executable="gz", arguments=("sim", "-r"), ros=False).command() == ["gz", "sim", "-r"]


def test_rendered_parameters_parse_back_with_their_types(ros_env, monkeypatch) -> None:
    import rclpy

    for name in ("AMENT_PREFIX_PATH", "PATH"):  # rclpy finds its middleware through the ament index
        monkeypatch.setenv(name, ros_env[name])
    from rclpy.parameter import Parameter

    values = {
        "robots": ["robot1", "robot2"], "numbers_as_text": ["1", "true"], "duration_s": 180.0, "count": 3,
        "flag": False, "word": "true", "number_text": "0.5", "empty": "", "path": "/tmp/a b/world.sdf", "colon": "a: b",
    }
    args = ["--ros-args"] + [item for name, value in values.items() for item in ("-p", f"{name}:={render_value(value)}")]
    context = rclpy.Context()
    rclpy.init(args=args, context=context)
    try:
        node = rclpy.create_node("render_probe", context=context, automatically_declare_parameters_from_overrides=True)
        got = {name: node.get_parameter(name).value for name in values}
        assert node.get_parameter("robots").type_ == Parameter.Type.STRING_ARRAY
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in got.items()} == values
    assert type(got["duration_s"]) is float and type(got["count"]) is int
    with pytest.raises(BringupError, match="empty list"):
        render_value([])


# ---------------------------------------------------------------- launch files with stand-in launch packages


class Recorded:
    """A stand-in launch entity: remembers its constructor arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class FakeConfiguration(Recorded):
    def perform(self, context) -> str:
        return context.values[self.args[0]]


def fake_launch_modules(monkeypatch) -> None:
    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "OpaqueFunction", "ExecuteProcess", "RegisterEventHandler", "Shutdown", "LogInfo", "IncludeLaunchDescription"],
        "launch.event_handlers": ["OnProcessExit"],
        "launch.launch_description_sources": ["PythonLaunchDescriptionSource"],
        "launch.substitutions": [],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
    }
    for module_name, classes in names.items():
        module = types.ModuleType(module_name)
        for cls in classes:
            setattr(module, cls, type(cls, (Recorded,), {}))
        monkeypatch.setitem(sys.modules, module_name, module)
    sys.modules["launch.substitutions"].LaunchConfiguration = FakeConfiguration


def load_launch_file(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["sim.launch.py", "multi_robot.launch.py"])
def test_launch_files_compile(name: str, tmp_path) -> None:
    py_compile.compile(str(REPO / "launch" / name), cfile=str(tmp_path / "out.pyc"), doraise=True)
    assert (share_dir() / "launch" / name).is_file()


def test_sim_launch_file_builds_the_description(monkeypatch, tmp_path) -> None:
    fake_launch_modules(monkeypatch)
    module = load_launch_file("sim.launch.py")
    description = module.generate_launch_description()
    *declared, setup = description.args[0]
    arguments = {a.args[0]: a.kwargs["default_value"] for a in declared}
    assert arguments == {"simulator": "embedded", "world": "", "robots": "1", "rviz": "true", "use_sim_time": "true", "headless": "false", "duration": "0"}

    context = types.SimpleNamespace(values={**arguments, "robots": "3", "duration": "60", "headless": "true"})
    actions = setup.kwargs["function"](context)
    handlers = [a for a in actions if type(a).__name__ == "RegisterEventHandler"]
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    assert len(handlers) == len(nodes) == 3 * 6 + 1  # headless: no viz; no rviz here
    by_name = {(n.kwargs["namespace"], n.kwargs["name"]): n.kwargs for n in nodes}
    fusion = by_name[("/robot2", "fusion")]
    assert fusion["package"] == "m2vae_fusion" and fusion["executable"] == "fusion"
    assert fusion["parameters"] == [str(CONFIG / "fusion.yaml"), {"use_sim_time": True}]
    assert fusion["remappings"] == [("/clock", "/robot2/clock")] and fusion["output"] == "log"
    scoreboard = by_name[(None, "scoreboard")]
    assert scoreboard["parameters"][-1] == {"robots": ["robot1", "robot2", "robot3"], "duration_s": 60.0, "use_sim_time": True}
    assert scoreboard["output"] == "screen"

    # scoreboard done -> shutdown; any other exit -> the launch fails naming the node
    on_exit = {h.args[0].kwargs["target_action"].kwargs["name"]: h.args[0].kwargs["on_exit"] for h in handlers if h.args[0].kwargs["target_action"].kwargs["namespace"] in (None, "/robot1")}
    done = on_exit["scoreboard"](types.SimpleNamespace(returncode=0), context)
    assert [type(a).__name__ for a in done] == ["Shutdown"]
    with pytest.raises(module.NodeExited, match="node scoreboard exited with status 2"):
        on_exit["scoreboard"](types.SimpleNamespace(returncode=2), context)
    with pytest.raises(module.NodeExited, match="node robot1/fusion exited with status 0"):
        on_exit["fusion"](types.SimpleNamespace(returncode=0), context)

    gazebo = setup.kwargs["function"](types.SimpleNamespace(values={**arguments, "simulator": "gazebo"}))
    processes = [a for a in gazebo if type(a).__name__ == "ExecuteProcess"]
    assert [p.kwargs["cmd"][:3] for p in processes] == [["gz", "sim", "-r"]]
    spawn = next(a for a in gazebo if type(a).__name__ == "Node" and a.kwargs["executable"] == "create")
    spawn_exit = next(h for h in gazebo if type(h).__name__ == "RegisterEventHandler" and h.args[0].kwargs["target_action"] is spawn)
    assert spawn_exit.args[0].kwargs["on_exit"](types.SimpleNamespace(returncode=0), context) is None


def test_multi_robot_launch_file_includes_sim_with_two_robots(monkeypatch) -> None:
    fake_launch_modules(monkeypatch)
    declared, include = load_launch_file("multi_robot.launch.py").generate_launch_description().args[0]
    assert declared.args[0] == "robots" and declared.kwargs["default_value"] == "2"
    assert Path(include.args[0].args[0]) == REPO / "launch" / "sim.launch.py"
    assert [k for k, _ in include.kwargs["launch_arguments"]] == ["robots"]


def fake_rviz(tmp_path: Path, monkeypatch) -> None:
    prefix = tmp_path / "prefix"
    rviz = prefix / "lib" / "rviz2" / "rviz2"
    rviz.parent.mkdir(parents=True)
    rviz.write_text("#!/bin/sh\n")
    rviz.chmod(0o755)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
