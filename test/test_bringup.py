"""The node graphs (m2vae_fusion.bringup.graph): the simulated demo for 1 and 3 robots, embedded and
Gazebo, per-robot overrides, a real robot's perception graph; and the rendering of parameters into
argv that rclpy parses back. The launch files built from these graphs are tested under the real
launch system in test_launch_files.py, test_ros2_launch.py and test_launch_graph.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from m2vae_fusion.bringup.description import BringupError, NodeSpec, gazebo_available, render_value
from m2vae_fusion.bringup.graph import MODALITIES, load_overrides, perception_description, sim_description
from m2vae_fusion.bringup.graph import ROBOT_NODES as OVERRIDABLE
from m2vae_fusion.nodes import encoder, fusion, viz
from m2vae_fusion.ros_interface.latent_signing import write_key_file

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
    assert sim_description(1, simulator="gazebo", headless=True, cache_dir=tmp_path).node("gz_sim").arguments == (
        "sim",
        "-r",
        "-s",
        "--headless-rendering",  # the camera and gpu_lidar render without a display
        str(gz_world),
    )

    three = sim_description(3, simulator="gazebo", cache_dir=tmp_path)
    assert not any(n.name == "sim" for n in three.nodes)
    for k, robot in enumerate(three.robots, start=1):
        ns = f"robot{k}"
        spawn = three.node(f"{ns}/spawn")
        assert (spawn.package, spawn.executable, spawn.one_shot, spawn.arguments) == ("ros_gz_sim", "create", True, ())
        args = spawn.parameters  # create's ROS parameters, not its gflags
        assert args["name"] == ns and args["world"] == "arena"
        assert all(isinstance(args[k], float) for k in ("x", "y", "z", "Y"))  # create declares them double
        assert (args["x"], args["y"], args["Y"]) == pytest.approx((robot.x, robot.y, robot.yaw), abs=1e-5)
        model = Path(args["file"]).read_text()
        assert f"<topic>/{ns}/scan</topic>" in model and f"<child_frame_id>{ns}/base_link</child_frame_id>" in model
        truth = three.node(f"{ns}/ground_truth")
        assert truth.executable == "ground_truth" and truth.parameters["world"] == str(three.world)
        assert three.node(f"{ns}/gz_range_adapter").params_files[0].name == "gz_range_adapter.yaml"

        bridge = three.node(f"{ns}/gz_bridge")
        assert (bridge.package, bridge.executable) == ("ros_gz_bridge", "parameter_bridge")
        entries = {
            e["ros_topic_name"]: e["gz_topic_name"] for e in yaml.safe_load(Path(bridge.parameters["config_file"]).read_text())
        }
        assert entries["gz/scan"] == f"/{ns}/scan" and entries["cmd_vel"] == f"/{ns}/cmd_vel" and entries["/tf"] == f"/{ns}/tf"
        assert entries["gz/ir/scan"] == f"/{ns}/ir/scan"  # raw, for the range adapter
        assert ("/clock" in entries) == (k == 1)  # one clock bridge, not three

        to_odom = three.node(f"{ns}/map_to_odom")
        assert to_odom.arguments[-4:] == ("--frame-id", "map", "--child-frame-id", f"{ns}/odom")
        # odom is the world frame (OdometryPublisher's true pose): map -> odom is the identity
        numbers = dict(zip(to_odom.arguments[:14:2], map(float, to_odom.arguments[1:14:2])))
        assert numbers == {"--x": 0, "--y": 0, "--z": 0, "--qx": 0, "--qy": 0, "--qz": 0, "--qw": 1}
        optical = three.node(f"{ns}/static_tf_camera_optical_frame")
        assert optical.arguments[-3:] == (f"{ns}/camera_link", "--child-frame-id", f"{ns}/camera_optical_frame")
        assert all(n.remaps == () for n in three.nodes)  # Gazebo has one clock for everybody
    assert all(n.parameters.get("use_sim_time") is True for n in three.nodes if n.ros)


def _robot_model(description, ns: str):
    import xml.etree.ElementTree as ET

    return ET.parse(description.node(f"{ns}/spawn").parameters["file"]).getroot().find("model")


def test_gazebo_robots_get_their_own_ir_self_mask_and_true_odometry(tmp_path) -> None:
    """Each robot's IR ring hides its own shell only (so it sees the other robots, as in the embedded
    sim), on bits gz-rendering leaves free; odometry comes from OdometryPublisher (the true pose) and
    DiffDrive's wheel odometry moves off the bridged topics."""
    three = sim_description(3, simulator="gazebo", cache_dir=tmp_path)
    flags, masks = {}, {}
    for k in range(1, 4):
        ns = f"robot{k}"
        model = _robot_model(three, ns)
        (flags[ns],) = {int(e.text) for e in model.iter("visibility_flags")}
        (masks[ns],) = {int(e.text) for e in model.iter("visibility_mask")}
        assert flags[ns] & 0b11 == 0 and flags[ns] < 0x10000000  # not GZ_VISIBILITY_GUI / _SELECTABLE, within _ALL
        plugins = {p.get("name"): p for p in model.findall("plugin")}
        odometry = plugins["gz::sim::systems::OdometryPublisher"]
        assert odometry.get("filename") == "gz-sim-odometry-publisher-system"
        assert {c.tag: c.text for c in odometry} == {
            "odom_frame": f"{ns}/odom",
            "robot_base_frame": f"{ns}/base_link",
            "odom_topic": f"/{ns}/odom",
            "tf_topic": f"/{ns}/tf",
            "dimensions": "2",
            "odom_publish_frequency": "20",
        }
        drive = plugins["gz::sim::systems::DiffDrive"]
        assert (drive.findtext("odom_topic"), drive.findtext("tf_topic")) == (f"/{ns}/odom_wheels", f"/{ns}/tf_wheels")
        assert drive.findtext("topic") == f"/{ns}/cmd_vel"
    for ns, mask in masks.items():
        assert flags[ns] & mask == 0  # its own shell: hidden
        assert all(flags[other] & mask for other in flags if other != ns)  # the others' shells: seen
        assert 0x0FFFFFFF & mask  # objects keep gz's default flags (GZ_VISIBILITY_ALL): seen
    assert len(set(flags.values())) == 3


def test_rviz_shows_every_robot(tmp_path, monkeypatch) -> None:
    """One robot: the shipped config. More: a generated one with robot1's displays repeated per robot
    in a group, only robot1's images on; the map-wide displays once."""
    fake_rviz(tmp_path, monkeypatch)
    assert sim_description(1, simulator="embedded").node("rviz2").arguments == ("-d", str(CONFIG / "m2vae.rviz"))
    for simulator in ("embedded", "gazebo"):
        rviz = sim_description(3, simulator=simulator, cache_dir=tmp_path).node("rviz2")
        config = yaml.safe_load(Path(rviz.arguments[1]).read_text())
        displays = config["Visualization Manager"]["Displays"]
        shipped = yaml.safe_load((CONFIG / "m2vae.rviz").read_text())["Visualization Manager"]["Displays"]
        robot1 = [d for d in shipped if d.get("Topic", {}).get("Value", "").startswith("/robot1/")]
        assert [d["Class"] for d in displays if "Displays" not in d] == [d["Class"] for d in shipped if d not in robot1]
        groups = {d["Name"]: d["Displays"] for d in displays if d["Class"] == "rviz_common/Group"}
        assert list(groups) == ["robot1", "robot2", "robot3"]
        for ns, group in groups.items():
            assert [d["Topic"]["Value"] for d in group] == [d["Topic"]["Value"].replace("/robot1/", f"/{ns}/") for d in robot1]
            images = [d["Enabled"] for d in group if d["Class"] == "rviz_default_plugins/Image"]
            assert images and all(on == (ns == "robot1") for on in images)
        assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"


def test_one_model_for_every_robots_perception(tmp_path) -> None:
    """model:= (say, trained on Gazebo's own recordings) reaches every encoder, fusion and viz node, as
    an absolute path; the explorer and the simulator take no model."""
    d = sim_description(2, simulator="gazebo", cache_dir=tmp_path, model="~/models/gazebo")
    wanted = str(Path("~/models/gazebo").expanduser())
    given = {n.key: n.parameters.get("model") for n in d.nodes if n.ros}
    takers = {f"robot{k}/{name}" for k in (1, 2) for name in (*(f"{m}_encoder" for m in MODALITIES), "fusion", "viz")}
    assert {key for key, value in given.items() if value == wanted} == takers
    assert all(value is None for key, value in given.items() if key not in takers)
    assert all("model" not in n.parameters for n in sim_description(1, simulator="embedded").nodes)


def test_given_world_robots_and_errors(tmp_path) -> None:
    two = sim_description(2, world="arena_two_robots.sdf", simulator="embedded")
    assert [r.instance for r in two.robots] == ["amiro_1", "amiro_2"]
    assert [
        r.instance for r in sim_description(1, world=REPO / "worlds" / "arena_two_robots.sdf", simulator="embedded").robots
    ] == ["amiro_1"]
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


def test_overrides_switch_nodes_off_and_merge_parameters(tmp_path) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text(
        "robot2:\n  camera_encoder: {enabled: false}\n  fusion: {parameters: {gate: 0.05}}\nrobot7: {viz: {enabled: false}}\n"
    )
    d = sim_description(2, simulator="embedded", overrides=load_overrides(path))
    assert "robot1/camera_encoder" in keys(d) and "robot2/camera_encoder" not in keys(d)
    snapshot = d.node("robot2/fusion").parameters["snapshot_path"]
    assert d.node("robot2/fusion").parameters == {"use_sim_time": True, "snapshot_path": snapshot, "gate": 0.05}
    assert "gate" not in d.node("robot1/fusion").parameters
    assert d.node("robot2/fusion").remaps == (("/clock", "/robot2/clock"),)  # the rest of the node is unchanged
    # a robot the run does not have (robot7) is no error: one file serves runs with any number of robots
    assert len(d.nodes) == len(sim_description(2, simulator="embedded").nodes) - 1


def test_each_simulated_run_keeps_its_belief_snapshots_apart(tmp_path) -> None:
    """A fusion node restarted within a run finds its robot's snapshot; the next run starts empty."""
    first = sim_description(2, simulator="embedded", cache_dir=tmp_path)
    paths = [Path(first.node(f"robot{k}/fusion").parameters["snapshot_path"]) for k in (1, 2)]
    assert [p.name for p in paths] == ["robot1.beliefs", "robot2.beliefs"] and paths[0].parent == paths[1].parent
    assert paths[0].parent.parent == tmp_path / "beliefs" / "sim"
    old = tmp_path / "beliefs" / "sim" / "20260101-000000-1"
    old.mkdir()
    os.utime(old, (0, 0))
    second = sim_description(2, simulator="embedded", cache_dir=tmp_path)
    assert Path(second.node("robot1/fusion").parameters["snapshot_path"]).parent != paths[0].parent
    assert not old.exists(), "a week-old run's snapshots stayed"


def test_one_fleet_key_reaches_every_robots_fusion_node(tmp_path, monkeypatch) -> None:
    """fleet_key:=FILE once (launch argument, `m2vae launch --fleet-key`) signs for the whole fleet:
    every fusion node gets the file's absolute path, no other node does; a file the nodes would refuse
    stops the graph before anything starts, naming the file."""
    monkeypatch.chdir(tmp_path)
    write_key_file(tmp_path / "fleet.yaml", {"fleet-1": bytes(range(32))}, "fleet-1")
    d = sim_description(2, simulator="embedded", headless=True, fleet_key="fleet.yaml")
    assert {n.key: n.parameters["fleet_key"] for n in d.nodes if "fleet_key" in n.parameters} == {
        "robot1/fusion": str(tmp_path / "fleet.yaml"),
        "robot2/fusion": str(tmp_path / "fleet.yaml"),
    }
    assert "-p fleet_key:=" + str(tmp_path / "fleet.yaml") in " ".join(d.node("robot2/fusion").command())
    assert not any("fleet_key" in n.parameters for n in sim_description(2, simulator="embedded", fleet_key="").nodes)
    real = perception_description("robot1", fleet_key=tmp_path / "fleet.yaml", headless=True)
    assert real.node("robot1/fusion").parameters["fleet_key"] == str(tmp_path / "fleet.yaml")
    assert not any("fleet_key" in n.parameters for n in real.nodes if n.name != "fusion")
    (tmp_path / "fleet.yaml").chmod(0o644)
    with pytest.raises(BringupError, match=f"fleet key {tmp_path / 'fleet.yaml'}: permissions 0644"):
        sim_description(2, simulator="embedded", fleet_key=tmp_path / "fleet.yaml")
    with pytest.raises(BringupError, match=f"fleet key {tmp_path / 'none.yaml'}: No such file"):
        perception_description("robot1", fleet_key="none.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("robot2: {camera: {enabled: false}}", "robot2: no robot node 'camera'"),
        ("robto2: {fusion: {enabled: false}}", "'robto2' is not a robot namespace"),
        ("robot2: {fusion: {enable: false}}", r"robot2.fusion: unknown key\(s\) \['enable'\]"),
        ("robot2: {fusion: {enabled: 'no'}}", "`enabled` must be true or false"),
        ("robot2: {fusion: {parameters: [gate]}}", "`parameters` a mapping"),
        ("robot2: [fusion]", "robot2: expected NODE"),
        ("[robot2]", "expected NAMESPACE -> NODE"),
        ("robot2: {fusion: {", "not valid YAML"),
    ],
)
def test_bad_overrides_are_named(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text(text)
    with pytest.raises(BringupError, match=message):
        load_overrides(path)
    with pytest.raises(BringupError, match="no_such.yaml"):
        load_overrides(tmp_path / "no_such.yaml")


def test_every_robot_node_can_be_overridden(tmp_path, monkeypatch) -> None:
    """check_overrides knows every node a robot gets, whatever the simulator and display."""
    fake_rviz(tmp_path, monkeypatch)
    built = {
        n.name
        for sim in ("embedded", "gazebo")
        for n in sim_description(2, simulator=sim, cache_dir=tmp_path).nodes
        if n.namespace == "/robot2"
    }
    built -= {n for n in built if n == "map_to_odom" or n.startswith("static_tf_")}  # Gazebo's transforms, from the robot's SDF
    assert built == set(OVERRIDABLE)
    off = {name: {"enabled": False} for name in OVERRIDABLE}
    assert not any(
        n.namespace == "/robot2" and n.name in OVERRIDABLE
        for n in sim_description(2, simulator="gazebo", cache_dir=tmp_path, overrides={"robot2": off}).nodes
    )


def test_perception_graph_for_a_real_robot(tmp_path, monkeypatch) -> None:
    d = perception_description(
        "robot3",
        image_topic="/front/image",
        image_transport="compressed",
        camera_info_topic="/front/info",
        scan_topic="/base_scan",
        ir_topic="ir",
        frame_prefix="amiro3/",
        model="~/models/amiro",
        robot_id="amiro3",
        share_latents=False,
        headless=True,
    )
    assert keys(d) == ["robot3/camera_encoder", "robot3/lidar_encoder", "robot3/ir_encoder", "robot3/fusion"]
    assert d.simulator is None and d.robots == () and not d.notes  # headless: rviz2 not asked for
    model = str(Path("~/models/amiro").expanduser())
    shared = {"scan_topic": "/base_scan", "frame_prefix": "amiro3/", "model": model, "use_sim_time": False}
    camera = d.node("robot3/camera_encoder")
    assert camera.parameters == {
        **shared,
        "image_topic": "/front/image",
        "image_transport": "compressed",
        "camera_info_topic": "/front/info",
    }
    assert camera.params_files == (CONFIG / "encoders.yaml",) and camera.remaps == ()
    assert d.node("robot3/lidar_encoder").parameters == shared
    assert d.node("robot3/ir_encoder").parameters == {**shared, "ir_topic": "ir"}
    assert d.node("robot3/fusion").parameters == {
        "model": model,
        "robot_id": "amiro3",
        "share_latents": False,
        "fuse_foreign": False,
        "use_sim_time": False,
    }
    assert not any(n.ends_launch or n.one_shot for n in d.nodes)  # every exit is a failure
    # every parameter set is one the node declares
    for node, table in ((camera, encoder.PARAMETERS), (d.node("robot3/fusion"), fusion.PARAMETERS)):
        assert set(node.parameters) - {"use_sim_time"} <= set(table)

    # nothing given: every value from the params files, so the graph follows config/*.yaml
    plain = perception_description("/robot1")
    assert all(set(n.parameters) == {"use_sim_time"} for n in plain.nodes)
    assert keys(plain) == ["robot1/camera_encoder", "robot1/lidar_encoder", "robot1/ir_encoder", "robot1/fusion", "robot1/viz"]
    assert plain.notes and "rviz2 not found" in plain.notes[0]
    assert (
        set(perception_description("", model="/m").node("viz").parameters) - {"use_sim_time"} == {"model"} <= set(viz.PARAMETERS)
    )


def test_perception_graph_points_rviz_at_its_robot(tmp_path, monkeypatch) -> None:
    fake_rviz(tmp_path, monkeypatch)
    rviz = perception_description("robot1").node("robot1/rviz2")
    assert rviz.remaps == () and rviz.ends_launch  # config/m2vae.rviz shows robot1 with the default topics
    moved = perception_description("amiro", scan_topic="/base_scan", image_topic="front/image", use_sim_time=True).node(
        "amiro/rviz2"
    )
    assert moved.remaps == (
        ("/robot1/scan", "/base_scan"),
        ("/robot1/camera/image_raw", "/amiro/front/image"),
        ("/robot1/markers", "/amiro/markers"),
        ("/robot1/latent_image", "/amiro/latent_image"),
        ("/robot1/imagination", "/amiro/imagination"),
    )
    assert moved.parameters == {"use_sim_time": True}
    rviz_topics = {
        line.split("Value:")[1].strip() for line in (CONFIG / "m2vae.rviz").read_text().splitlines() if "Value: /robot1/" in line
    }
    assert rviz_topics == {source for source, _ in moved.remaps}


def test_command_line_of_a_node() -> None:
    spec = NodeSpec(
        name="fusion",
        executable="fusion",
        namespace="/robot2",
        params_files=(Path("/c/fusion.yaml"),),
        parameters={"gate": 0.1, "robots": ["a", "b"]},
        remaps=(("/clock", "/robot2/clock"),),
    )
    assert spec.key == "robot2/fusion"
    assert spec.command("/bin/fusion") == [
        "/bin/fusion",
        "--ros-args",
        "-r",
        "__ns:=/robot2",
        "-r",
        "__node:=fusion",
        "--params-file",
        "/c/fusion.yaml",
        "-p",
        "gate:=0.1",
        "-p",
        "robots:=[a, b]",
        "-r",
        "/clock:=/robot2/clock",
    ]
    assert NodeSpec(name="gz", executable="gz", arguments=("sim", "-r"), ros=False).command() == ["gz", "sim", "-r"]


def test_rendered_parameters_parse_back_with_their_types(ros_env, monkeypatch) -> None:
    import rclpy

    for name in ("AMENT_PREFIX_PATH", "PATH"):  # rclpy finds its middleware through the ament index
        monkeypatch.setenv(name, ros_env[name])
    from rclpy.parameter import Parameter

    values = {
        "robots": ["robot1", "robot2"],
        "numbers_as_text": ["1", "true"],
        "duration_s": 180.0,
        "count": 3,
        "flag": False,
        "word": "true",
        "number_text": "0.5",
        "empty": "",
        "path": "/tmp/a b/world.sdf",
        "colon": "a: b",
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


def fake_rviz(tmp_path: Path, monkeypatch) -> None:
    prefix = tmp_path / "prefix"
    rviz = prefix / "lib" / "rviz2" / "rviz2"
    rviz.parent.mkdir(parents=True)
    rviz.write_text("#!/bin/sh\n")
    rviz.chmod(0o755)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
