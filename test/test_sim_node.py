"""The sim node: its readings as messages (no DDS), its scheduling and parameters, and the node as its
own process under /robot1, received over real DDS by rclpy in this process."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import yaml
from dds_probe import DdsProbe
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry as OdometryMsg
from rclpy.serialization import deserialize_message, serialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, LaserScan
from tf2_msgs.msg import TFMessage

from m2vae_fusion.nodes.sim import PARAMETERS, Schedule
from m2vae_fusion.perception.frames import default_frame_prefix
from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.perception.readings import CameraImage, ObjectState, Odometry, Pose2D, Scan, Transform
from m2vae_fusion.resources import config_path
from m2vae_fusion.ros_interface import reading_messages as bridge
from m2vae_fusion.ros_interface.stamps import from_seconds
from m2vae_fusion.sim.ros_bridge import labelled_objects
from m2vae_msgs.msg import LabelledObjectArray

CLASSES = default_labels().classes  # the paper's eight AMiRo classes (config/labels.yaml)


def yaw_of(q) -> float:
    return math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))


# ---------------------------------------------------------------- readings as messages (ros_interface.reading_messages), no DDS


def test_stamp_rounds_to_the_nanosecond_and_carries():
    t = from_seconds(12.25)
    assert (t.sec, t.nanosec) == (12, 250_000_000)
    t = from_seconds(1.9999999999)  # a sum of physics steps just below a whole second
    assert (t.sec, t.nanosec) == (2, 0)
    with pytest.raises(ValueError, match="stamp"):
        from_seconds(-0.1)


def test_image_is_rgb8_row_major():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = bridge.image(CameraImage(rgb, 100.0, 100.0, 1.5, 1.0, "camera_optical_frame"), 3.5, "robot1/")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (2, 3, 9, "rgb8")
    assert msg.header.frame_id == "robot1/camera_optical_frame"
    assert bytes(msg.data) == rgb.tobytes()
    # pixel (row 1, column 2) is where a consumer indexing by step finds it
    assert bytes(msg.data[1 * msg.step + 2 * 3 : 1 * msg.step + 3 * 3]) == rgb[1, 2].tobytes()
    back = deserialize_message(serialize_message(msg), Image)
    assert bytes(back.data) == rgb.tobytes()
    with pytest.raises(ValueError, match="H x W x 3"):
        bridge.image(CameraImage(rgb[..., 0], 1.0, 1.0, 0.0, 0.0, "c"), 0.0)


def test_camera_info_projects_like_the_pinhole():
    frame = CameraImage(np.zeros((240, 320, 3), np.uint8), 277.0, 270.0, 160.0, 120.0, "camera_optical_frame")
    info = bridge.camera_info(frame, 1.0)
    assert (info.width, info.height, info.distortion_model) == (320, 240, "plumb_bob")
    assert list(info.d) == [0.0] * 5
    point = np.array([0.1, -0.05, 0.5, 1.0])  # optical frame: x right, y down, z forward
    u, v, w = np.asarray(info.p).reshape(3, 4) @ point
    assert (u / w, v / w) == pytest.approx((160.0 + 277.0 * 0.2, 120.0 - 270.0 * 0.1))
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), np.asarray(info.p).reshape(3, 4)[:, :3])


def test_laser_scan_keeps_inf_and_reflectance():
    ranges = np.array([0.5, np.inf, -np.inf, 3.25], np.float32)
    intensities = np.array([0.85, 0.0, 0.0, 0.25], np.float32)
    scan = Scan(ranges, intensities, -math.pi, math.pi / 2, math.pi / 2, 0.03, 4.0, "lidar_link")
    msg = bridge.laser_scan(scan, 2.0, 10.0, "robot1/")
    assert msg.header.frame_id == "robot1/lidar_link"
    assert msg.scan_time == pytest.approx(0.1)
    assert msg.time_increment == 0.0
    np.testing.assert_array_equal(np.asarray(msg.ranges, np.float32), ranges)
    np.testing.assert_array_equal(np.asarray(msg.intensities, np.float32), intensities)
    assert (msg.range_min, msg.range_max) == pytest.approx((0.03, 4.0))
    with pytest.raises(ValueError, match="intensities"):
        bridge.laser_scan(Scan(ranges, intensities[:2], 0, 1, 1, 0, 1, "l"), 0.0, 10.0)
    with pytest.raises(ValueError, match="rate_hz"):
        bridge.laser_scan(scan, 0.0, 0.0)


def test_odometry_and_its_transforms():
    odom = Odometry(x=1.0, y=-0.5, yaw=2.5, linear=0.2, angular=-0.3)
    msg = bridge.odometry(odom, 4.0, "robot1/")
    assert (msg.header.frame_id, msg.child_frame_id) == ("robot1/odom", "robot1/base_link")
    assert (msg.pose.pose.position.x, msg.pose.pose.position.y) == (1.0, -0.5)
    assert yaw_of(msg.pose.pose.orientation) == pytest.approx(2.5)
    assert (msg.twist.twist.linear.x, msg.twist.twist.angular.z) == (0.2, -0.3)
    for covariance in (msg.pose.covariance, msg.twist.covariance):
        c = np.asarray(covariance).reshape(6, 6)
        assert np.all(np.diag(c) > 0) and np.array_equal(c, c.T)
    tf = bridge.odom_transform(odom, 4.0, "robot1/")
    assert (tf.header.frame_id, tf.child_frame_id) == ("robot1/odom", "robot1/base_link")
    assert tf.transform.translation.x == 1.0 and yaw_of(tf.transform.rotation) == pytest.approx(2.5)
    # map is the shared world frame: never prefixed
    tf = bridge.map_transform(Pose2D(0.1, 0.2, -0.4), 4.0, "robot1/")
    assert (tf.header.frame_id, tf.child_frame_id) == ("map", "robot1/odom")
    assert yaw_of(tf.transform.rotation) == pytest.approx(-0.4)


def test_static_transforms_get_the_prefix():
    optical = (-0.5, 0.5, -0.5, 0.5)
    msg = bridge.static_tf_message(
        [
            Transform("base_link", "camera_link", (0.045, 0.0, 0.06), (0.0, 0.0, 0.0, 1.0)),
            Transform("camera_link", "camera_optical_frame", (0.0, 0.0, 0.0), optical),
        ],
        0.0,
        "robot2/",
    )
    pairs = [(t.header.frame_id, t.child_frame_id) for t in msg.transforms]
    assert pairs == [("robot2/base_link", "robot2/camera_link"), ("robot2/camera_link", "robot2/camera_optical_frame")]
    r = msg.transforms[1].transform.rotation
    assert (r.x, r.y, r.z, r.w) == optical
    assert msg.transforms[0].transform.translation.z == 0.06
    assert bridge.static_tf_message([Transform("a", "b", (0, 0, 0), (0, 0, 0, 1))], 0.0).transforms[0].header.frame_id == "a"


def test_ground_truth_objects():
    states = []
    for i, label in enumerate(CLASSES):
        v = default_labels().attribute_values(label)
        states.append(ObjectState(f"{label}_2", v["colour"], v["shape"], v["surface"], i, label, i * 0.1, -1.0, 0.06, 0.3))
    msg = labelled_objects(states, 7.0)
    assert msg.header.frame_id == "map" and msg.header.stamp.sec == 7
    assert [o.label for o in msg.objects] == list(CLASSES)
    assert [o.class_id for o in msg.objects] == list(range(8))
    last = msg.objects[-1]
    assert (last.name, last.colour, last.shape, last.surface) == ("green_cube_shiny_2", "green", "cube", "shiny")
    assert (last.pose.position.x, last.pose.position.z) == pytest.approx((0.7, 0.06))
    assert yaw_of(last.pose.orientation) == pytest.approx(0.3)
    assert deserialize_message(serialize_message(msg), LabelledObjectArray) == msg


def test_clock():
    assert bridge.clock(0.01).clock.nanosec == 10_000_000


# ---------------------------------------------------------------- node logic, no DDS


def test_schedule_fires_once_per_period_without_drift():
    schedule = Schedule(10.0, 100.0)
    fired = [step for step in range(100_000) if schedule.due(step)]  # 1000 s of 100 Hz steps
    assert len(fired) == 10_000
    assert fired[:2] == [0, 10] and set(np.diff(fired)) == {10}
    # a rate that does not divide the physics rate keeps its average without skipping or doubling
    schedule = Schedule(30.0, 100.0)
    fired = [step for step in range(10_000) if schedule.due(step)]
    assert len(fired) == 3000 and set(np.diff(fired)) == {3, 4}


@pytest.mark.parametrize("namespace, prefix", [("/", ""), ("/robot1", "robot1/"), ("/team/robot1", "team/robot1/")])
def test_default_frame_prefix(namespace, prefix):
    assert default_frame_prefix(namespace) == prefix


def test_parameter_file_holds_known_valid_overrides():
    params = yaml.safe_load(config_path("sim.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) <= set(PARAMETERS), f"not parameters of sim: {set(params) - set(PARAMETERS)}"
    for name, value in params.items():
        PARAMETERS[name].validate(name, value)


def test_doctor_names_the_fix_for_a_missing_tf2_msgs(monkeypatch):
    from m2vae_fusion import doctor

    assert doctor.check_tf2_msgs().ok
    real_import = doctor.importlib.import_module

    def without_tf2(name, *args):
        if name.startswith("tf2_msgs"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(doctor.importlib, "import_module", without_tf2)
    check = doctor.check_tf2_msgs()
    assert not check.ok and "tf2_msgs" in check.detail
    assert "apt-get install ros-tf2-msgs" in check.fix and "make setup" in check.fix


# ---------------------------------------------------------------- the node over real DDS

ROBOT_TOPICS = {
    "camera/image_raw": Image,
    "camera/camera_info": CameraInfo,
    "scan": LaserScan,
    "ir/scan": LaserScan,
    "odom": OdometryMsg,
    "ground_truth/objects": LabelledObjectArray,
}


def sim_argv(*ros_args: str, params_file: bool = True) -> list[str]:
    files = ["--params-file", str(config_path("sim.yaml"))] if params_file else []
    return [sys.executable, "-m", "m2vae_fusion.nodes.sim", "--ros-args", *files, *ros_args]


class Listener(DdsProbe):
    """rclpy in this process: keeps the latest message of every sim topic."""

    def __init__(self, domain_id: int) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        super().__init__(domain_id, "test_sim_listener", "sim")
        self.latest: dict[str, object] = {}
        self.tf_pairs: set[tuple[str, str]] = set()
        self.odom: list[OdometryMsg] = []
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        qos = {"ground_truth/objects": latched, "odom": reliable}
        for topic, kind in ROBOT_TOPICS.items():
            self._subscribe(kind, f"/robot1/{topic}", qos.get(topic, qos_profile_sensor_data))
        self._subscribe(TFMessage, "/tf", reliable)
        self._subscribe(
            TFMessage,
            "/tf_static",
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL),
        )
        self._subscribe(Clock, "/clock", qos_profile_sensor_data)
        self.cmd_vel = self.node.create_publisher(Twist, "/robot1/cmd_vel", 10)

    def _subscribe(self, kind, topic: str, qos) -> None:
        def keep(msg) -> None:
            self.latest[topic] = msg
            if kind is TFMessage:
                self.tf_pairs |= {(t.header.frame_id, t.child_frame_id) for t in msg.transforms}
            if kind is OdometryMsg:
                self.odom.append(msg)

        self.node.create_subscription(kind, topic, keep, qos)


@pytest.fixture
def listener(ros_env):
    listener = Listener(int(ros_env["ROS_DOMAIN_ID"]))
    yield listener
    listener.close()


EXPECTED_STATIC = {
    ("robot1/base_link", "robot1/camera_link"),
    ("robot1/camera_link", "robot1/camera_optical_frame"),
    ("robot1/base_link", "robot1/lidar_link"),
    ("robot1/base_link", "robot1/ir_link"),
}


def test_sim_node_publishes_every_topic_and_drives(processes, listener):
    proc = processes.start(*sim_argv("-r", "__ns:=/robot1", "-p", "real_time_factor:=0", "-p", "seed:=3"))
    topics = [f"/robot1/{t}" for t in ROBOT_TOPICS] + ["/tf", "/tf_static", "/clock"]
    wanted_tf = {("robot1/odom", "robot1/base_link"), ("map", "robot1/odom")} | EXPECTED_STATIC
    listener.spin_until(lambda: set(topics) <= set(listener.latest) and wanted_tf <= listener.tf_pairs, 90, proc)
    assert set(topics) <= set(listener.latest), f"never received: {set(topics) - set(listener.latest)}"
    assert wanted_tf <= listener.tf_pairs, f"missing transforms: {wanted_tf - listener.tf_pairs}"
    got = listener.latest

    image = got["/robot1/camera/image_raw"]
    assert (image.width, image.height, image.encoding, image.step) == (320, 240, "rgb8", 960)
    assert image.header.frame_id == "robot1/camera_optical_frame"
    pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(240, 320, 3)
    assert pixels.std() > 5, "camera frame is blank"
    info = got["/robot1/camera/camera_info"]
    assert info.header.frame_id == "robot1/camera_optical_frame" and (info.width, info.height) == (320, 240)
    assert info.k[0] > 0 and info.k[2] == pytest.approx(160.0)

    scan = got["/robot1/scan"]
    assert scan.header.frame_id == "robot1/lidar_link"
    assert len(scan.ranges) == len(scan.intensities) == 360
    ranges = np.asarray(scan.ranges)
    assert np.isfinite(ranges).sum() > 100 and np.nanmax(ranges[np.isfinite(ranges)]) <= scan.range_max
    assert scan.scan_time == pytest.approx(0.1)
    ir = got["/robot1/ir/scan"]
    assert ir.header.frame_id == "robot1/ir_link" and len(ir.ranges) == len(ir.intensities) == 8
    assert ir.range_max == pytest.approx(0.25)

    odom = got["/robot1/odom"]
    assert (odom.header.frame_id, odom.child_frame_id) == ("robot1/odom", "robot1/base_link")
    truth = got["/robot1/ground_truth/objects"]
    assert truth.header.frame_id == "map"
    assert sorted(o.label for o in truth.objects) == sorted(CLASSES)
    assert all(CLASSES[o.class_id] == o.label for o in truth.objects)

    # drive: forward along the robot's x, which starts aligned with odom's x
    start = listener.odom[-1].pose.pose.position.x
    forward = Twist()
    forward.linear.x = 0.2
    listener.spin_until(
        lambda: listener.odom[-1].pose.pose.position.x > start + 0.1, 60, proc, tick=lambda: listener.cmd_vel.publish(forward)
    )
    moved = listener.odom[-1]
    assert moved.pose.pose.position.x > start + 0.1, "odom did not move forward under cmd_vel"
    assert abs(moved.pose.pose.position.y) < 0.05
    assert moved.twist.twist.linear.x == pytest.approx(0.2)
    clock = listener.latest["/clock"].clock
    assert clock.sec + clock.nanosec * 1e-9 >= 0.5, "/clock did not follow the simulation"
    # no more commands: the node stops the robot after 0.5 s of simulated time
    listener.spin_until(lambda: listener.odom[-1].twist.twist.linear.x == 0.0, 30, proc)
    assert listener.odom[-1].twist.twist.linear.x == 0.0, "robot kept driving without cmd_vel"


@pytest.mark.parametrize(
    "override, message",
    [
        ("physics_rate_hz:=0", "parameter 'physics_rate_hz' must be > 0"),
        ("real_time_factor:=-1.0", "parameter 'real_time_factor' must be >= 0"),
        ("world:=no_such_world.sdf", "parameter 'world': no_such_world.sdf is not a file"),
        ("robot:=robby", "parameters 'world' / 'robot'"),
        ("noise_scale:=loud", "parameter 'noise_scale' must be a finite number"),
        ("seed:=abc", "parameter 'seed'"),
        ("camera_rate_hz:=500", "parameter 'camera_rate_hz' (500 Hz) exceeds physics_rate_hz"),
    ],
)
def test_bad_parameter_is_named(processes, override, message):
    # without the parameter file: rcl lets a file's integer hide a `-p` string for the same name
    proc = processes.start(*sim_argv("-p", override, params_file=False))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert message in out
