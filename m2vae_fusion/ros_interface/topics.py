"""Every topic the nodes publish or take, with its message type and QoS: one table, so a publisher and
its subscribers (and `m2vae bench`, `m2vae fuzz`, the tests) cannot drift apart.

Relative names resolve in the node's namespace (`__ns:=/robot1`); names of nodes' `*_topic`
parameters take their defaults from here. Where the publisher offers other QoS than the subscribers
ask for (/tf_static: the simulator keeps only its one latest message, subscribers a deep queue), the
entry says both; the two are compatible (reliable, transient local).
"""

from __future__ import annotations

from dataclasses import dataclass

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

SENSOR_QOS = qos_profile_sensor_data  # best effort: what camera and LiDAR drivers offer
ENCODING_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
BELIEF_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATENT_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TRUTH_QOS = LATCHED_QOS
ODOM_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
CMD_VEL_QOS = QoSProfile(depth=10)  # rclpy's default profile, what `ros2 topic pub` and teleop use
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)  # what rclpy's use_sim_time subscribes with
MARKER_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)  # the latent-space and imagination images
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # diagnostic_updater's
TARGET_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@dataclass(frozen=True)
class Topic:
    """A topic's default name, its type ('pkg/msg/Name', as `ros2 topic list -t` writes it) and QoS."""

    name: str
    msgtype: str
    qos: QoSProfile  # what subscribers ask for, and publishers offer unless `offered` says otherwise
    offered: QoSProfile | None = None

    @property
    def publisher_qos(self) -> QoSProfile:
        return self.offered or self.qos


SCAN = Topic("scan", "sensor_msgs/msg/LaserScan", SENSOR_QOS)
IMAGE = Topic("camera/image_raw", "sensor_msgs/msg/Image", SENSOR_QOS)
COMPRESSED_IMAGE = Topic("camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage", SENSOR_QOS)
CAMERA_INFO = Topic("camera/camera_info", "sensor_msgs/msg/CameraInfo", SENSOR_QOS)
IR = Topic("ir/scan", "sensor_msgs/msg/LaserScan", SENSOR_QOS)
ODOM = Topic("odom", "nav_msgs/msg/Odometry", ODOM_QOS)
CMD_VEL = Topic("cmd_vel", "geometry_msgs/msg/Twist", CMD_VEL_QOS)
TF = Topic("/tf", "tf2_msgs/msg/TFMessage", TF_QOS)
TF_STATIC = Topic("/tf_static", "tf2_msgs/msg/TFMessage", TF_STATIC_QOS, offered=LATCHED_QOS)
CLOCK = Topic("/clock", "rosgraph_msgs/msg/Clock", CLOCK_QOS)
GROUND_TRUTH = Topic("ground_truth/objects", "m2vae_msgs/msg/LabelledObjectArray", TRUTH_QOS)
ENCODINGS = Topic("encodings", "m2vae_msgs/msg/ModalityEncoding", ENCODING_QOS)
BELIEFS = Topic("beliefs", "m2vae_msgs/msg/ObjectBeliefArray", BELIEF_QOS)
SHARED_LATENTS = Topic("/shared/latents", "m2vae_msgs/msg/LatentEmbedding", LATENT_QOS)
# every robot's explorer target, republished once a second (a robot that starts late hears it soon)
EXPLORER_TARGETS = Topic("/shared/explorer_targets", "m2vae_msgs/msg/ExplorerTarget", TARGET_QOS)
MARKERS = Topic("markers", "visualization_msgs/msg/MarkerArray", MARKER_QOS)
LATENT_IMAGE = Topic("latent_image", "sensor_msgs/msg/Image", IMAGE_QOS)
IMAGINATION = Topic("imagination", "sensor_msgs/msg/Image", IMAGE_QOS)
DIAGNOSTICS = Topic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", DIAGNOSTICS_QOS)

TOPICS: tuple[Topic, ...] = (
    SCAN,
    IMAGE,
    COMPRESSED_IMAGE,
    CAMERA_INFO,
    IR,
    ODOM,
    CMD_VEL,
    TF,
    TF_STATIC,
    CLOCK,
    GROUND_TRUTH,
    ENCODINGS,
    BELIEFS,
    SHARED_LATENTS,
    EXPLORER_TARGETS,
    MARKERS,
    LATENT_IMAGE,
    IMAGINATION,
    DIAGNOSTICS,
)
