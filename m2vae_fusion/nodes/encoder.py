"""encoder: one sensor's beta-VAE preprocessor as a ROS 2 node. One node type, one process per sensor,
configured by its node name in config/encoders.yaml:

  encoder --ros-args -r __node:=camera_encoder --params-file config/encoders.yaml
  encoder --ros-args -r __node:=lidar_encoder --params-file config/encoders.yaml
  encoder --ros-args -r __node:=ir_encoder --params-file config/encoders.yaml
  (add `-r __ns:=/robot1` for a namespaced robot; `ros2 run m2vae_fusion encoder ...` alike)

Every node finds object candidates by clustering the LiDAR `scan` (m2vae_fusion.perception.observe);
the camera node pairs each scan with the image nearest in time (within sync_tolerance_s), the IR node
with the IR reading, the LiDAR node needs the scan only. The views of the nearest `max_objects`
candidates its sensor sees go through the model's beta-VAE; each becomes one
m2vae_msgs/ModalityEncoding on `encodings`: stamp of the encoded sensor message, the object centre in
`<prefix>odom` (odom -> base_link from /tf, the latest at or before the scan's stamp; a scan newer than
the newest transform waits up to TF_WAIT_S for it), standardised features and log-variances, and the
detection's confidence (`detection_confidence`). Crop sizes and detection settings come from the model's
own perception config, so deployment cuts the views training cut.

Subscribes (sensor-data QoS): scan, camera/image_raw + camera/camera_info (camera), ir/scan (IR);
/tf (reliable), /tf_static (transient local). Publishes `encodings` (reliable, depth 50). Names and
QoS: m2vae_fusion.ros_interface.topics; transforms: m2vae_fusion.ros_interface.transforms. With
image_transport:=compressed the camera node takes camera/image_raw/compressed instead
(sensor_msgs/CompressedImage, JPEG or PNG: what real robots and their bags mostly carry), decoded by
m2vae_fusion.perception.compressed_images.

Messages the node cannot read are dropped with a warning naming the problem (at most one per
DROP_LOG_PERIOD_S per kind of message and reason, with a count of those in between:
m2vae_fusion.ros_interface.drop_log), never a crash (the checks: m2vae_fusion.ros_interface.sensor_input):
images of an unsupported encoding, of zero size, of more than MAX_IMAGE_PIXELS, or whose step/size
disagree with width/height/data or camera_info; compressed images that are empty, not JPEG / PNG (by
the format field or the data), corrupt, or of more than MAX_IMAGE_PIXELS by their header; scans that
are empty, longer than MAX_BEAMS, whose intensities or angle span disagree with the number of ranges,
with non-finite geometry, NaN ranges (REP-117: an invalid measurement), negative finite ranges or
non-finite intensities. +-inf ranges are valid (REP-117: no return / too close); finite ranges outside
[range_min, range_max] are kept and ignored by the object detection (clipped, as LaserScan.msg asks).
Then the header: a frame that /tf_static does not connect to base_link (once /tf_static has arrived),
a stamp before that of the previous accepted message of the same input (out of order), or one more
than future_tolerance_s ahead of both the node's clock (/clock with use_sim_time) and the newest
odom -> base_link (from the future) drop the message too. Inputs that have not arrived yet
(camera_info, transforms) are reported the same way at info level: usual while starting. Every
message taken and every drop, by reason, is counted and published on /diagnostics
(m2vae_fusion.ros_interface.diagnostics) every diagnostics_period_s.

Parameters: PARAMETERS below (defaults, types and ranges; docs/parameters.md lists them), each node's
modality in config/encoders.yaml. A model that does not fit the
parameters (no such file, modality not in the model, other model_id) is fatal: exit status 2 with the
reason.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, LaserScan
from tf2_msgs.msg import TFMessage

from m2vae_fusion.core.errors import CheckpointError
from m2vae_fusion.model.config import MODALITIES
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.model.views import view_vector
from m2vae_fusion.perception import frames
from m2vae_fusion.perception.features import observe
from m2vae_fusion.perception.lidar_objects import Candidate
from m2vae_fusion.perception.readings import CameraImage, Scan
from m2vae_fusion.perception.ros_messages import stamp_seconds
from m2vae_fusion.resources import default_model_dir
from m2vae_fusion.ros_interface import diagnostics, stamps, topics
from m2vae_fusion.ros_interface.drop_log import DropLog, Dropped
from m2vae_fusion.ros_interface.parameters import Parameters, integer, number, text
from m2vae_fusion.ros_interface.runtime import (
    ParameterError,
    declare,
    declare_executor,
    executor_parameter,
    run_node,
)
from m2vae_fusion.ros_interface.sensor_input import (
    camera_reading,
    compressed_camera_reading,
    image_bridge,
    scan_reading,
)
from m2vae_fusion.ros_interface.topics import ENCODING_QOS, SENSOR_QOS, TF_QOS, TF_STATIC_QOS
from m2vae_fusion.ros_interface.transforms import TransformBuffer, TransformException
from m2vae_msgs.msg import ModalityEncoding

DEFAULT_MODEL = default_model_dir()
TF_HISTORY_S = 5.0  # of message time: odom -> base_link samples kept for at-or-before lookups
TF_WAIT_S = 0.5  # wall seconds an encoded scan waits for an odom -> base_link at or after its stamp
PARTNERS = 5  # images / IR readings kept for pairing; scans waiting for one

PARAMETERS: Parameters = {
    "modality": text("", "the sensor this node encodes: camera | lidar | ir"),
    "model": text(
        "",
        f"perception model folder (with perception_model.json); empty: the package's {DEFAULT_MODEL.parent.name}/{DEFAULT_MODEL.name}",
    ),
    "model_id": text("", "if set, refuse a model with any other model_id"),
    "scan_topic": text(topics.SCAN.name, "LiDAR scan (sensor_msgs/LaserScan): object candidates for every modality"),
    "image_topic": text(topics.IMAGE.name, "camera image (sensor_msgs/Image), camera node only"),
    "image_transport": text(
        "raw",
        "raw: image_topic itself; compressed: image_topic + '/compressed' (sensor_msgs/CompressedImage, JPEG or PNG, as image_transport names it), camera node only",
    ),
    "camera_info_topic": text(topics.CAMERA_INFO.name, "camera intrinsics (sensor_msgs/CameraInfo), camera node only"),
    "ir_topic": text(topics.IR.name, "IR ring reading (sensor_msgs/LaserScan), IR node only"),
    "rate_limit_hz": number(
        0.0, "encode at most this many scans per wall-clock second (each up to max_objects encodings); 0: unlimited"
    ),
    "max_objects": integer(3, "encode the nearest N object candidates the sensor sees in one scan", minimum=1),
    "min_distance": number(0.1, "encode only objects at least this far from the LiDAR [m]"),
    "max_distance": number(
        0.5,
        "encode only objects at most this far from the LiDAR [m]: keep it within the distances the model was trained at (the shipped one: 0.16-0.5 m) and where the sensor still tells something (config/encoders.yaml: LiDAR and IR 0.3 m); farther views are out of its distribution",
    ),
    "max_bearing": number(
        0.35,
        "encode only objects within this angle of the LiDAR's forward axis [rad]: the model was trained on objects ahead (+-0.1 rad); pi: all around",
    ),
    "sync_tolerance_s": number(0.1, "pair a scan with the image / IR reading nearest in time within this many seconds"),
    "frame_prefix": text(None, "robot frame prefix (default: the namespace without its leading '/', plus '/')"),
    "threads": integer(1, "torch threads (one per process is fastest for these small networks)", minimum=1),
    "future_tolerance_s": number(
        1.0, "drop sensor messages stamped more than this many seconds ahead of the node's clock and the newest odometry"
    ),
    "diagnostics_period_s": number(
        1.0, "publish the counts of messages taken and dropped (by reason) on /diagnostics this often [s]", positive=True
    ),
    "executor": executor_parameter("events"),
}


def detection_confidence(candidate: Candidate, scan: Scan, object_radius: float) -> float:
    """How completely the LiDAR saw a candidate: its beams over those an object of `object_radius` at its
    distance spans, at most 1. Clear views score ~1 (cubes seen across a corner exceed it), partly hidden
    objects less."""
    expected = 2 * math.asin(min(1.0, object_radius / candidate.distance)) / abs(scan.angle_increment)
    return min(1.0, candidate.beams / max(expected, 1.0))


@dataclass(frozen=True)
class Reading:
    """A converted sensor message with its header (stamp, frame)."""

    header: Any
    data: Scan | CameraImage

    @property
    def stamp(self) -> float:
        return stamp_seconds(self.header)


@dataclass
class Pending:
    """Encodings of one scan waiting for odom -> base_link at the scan's stamp."""

    scan_ns: int
    since: float  # wall clock, time.monotonic()
    messages: list[ModalityEncoding]
    positions: np.ndarray  # (N, 3) in base_link


# ------------------------------------------------------------ the node


class EncoderNode(Node):
    def __init__(self, **node_options: Any) -> None:
        """`node_options`: rclpy Node keyword arguments (context, parameter_overrides, ...)."""
        super().__init__("encoder", **node_options)
        self.modality = self._declare("modality")
        if self.modality not in MODALITIES:
            raise ParameterError(f"parameter 'modality' must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        self.model = self._load_model(self._declare("model"), self._declare("model_id"))
        rate = self._number("rate_limit_hz")
        self.min_period = 1.0 / rate if rate > 0 else 0.0
        self.max_objects = self._declare("max_objects")
        self.tolerance = self._number("sync_tolerance_s")
        self.distances = (self._number("min_distance"), self._number("max_distance"))
        self.max_bearing = self._number("max_bearing")
        if self.distances[0] >= self.distances[1]:
            raise ParameterError(
                f"parameter 'min_distance' ({self.distances[0]}) must be smaller than 'max_distance' ({self.distances[1]})"
            )
        threads = self._declare("threads")
        torch.set_num_threads(threads)
        prefix = self._declare("frame_prefix", frames.default_frame_prefix(self.get_namespace())).strip("/")
        prefix = prefix + "/" if prefix else ""
        self.base_frame, self.odom_frame = prefix + "base_link", prefix + "odom"

        declare_executor(self, PARAMETERS)  # run_node spins the node on it
        self.future_tolerance = self._number("future_tolerance_s")
        diagnostics_period = self._number("diagnostics_period_s")

        self.counters = diagnostics.Counters()
        self.drops = DropLog(self.get_logger().warning, self.get_logger().info, counters=self.counters)
        self.newest: dict[str, float] = {}  # input -> stamp of its newest accepted message
        self.tf = TransformBuffer(cache_time_s=TF_HISTORY_S)  # odom -> base_link and /tf_static
        self.pending: deque[Pending] = deque()
        self.scans: deque[Reading] = deque(maxlen=PARTNERS)  # waiting for a partner
        self.partners: deque[Reading] = deque(maxlen=PARTNERS)  # camera images or IR readings
        self.camera_info: CameraInfo | None = None
        self.last_encoded = -math.inf

        self.publisher = self.create_publisher(ModalityEncoding, topics.ENCODINGS.name, ENCODING_QOS)
        # Transforms first: the executor takes ready subscriptions in creation order, so the odometry of a
        # scan's stamp is in before the scan that needs it (else its encodings wait a callback round).
        self.create_subscription(TFMessage, topics.TF.name, self._on_tf, TF_QOS)
        self.create_subscription(TFMessage, topics.TF_STATIC.name, self._on_tf_static, TF_STATIC_QOS)
        inputs = self._subscribe_inputs()
        self.create_timer(0.1, self._flush_pending, clock=Clock(clock_type=ClockType.STEADY_TIME))
        diagnostics.attach(self, self.counters, diagnostics_period)
        self._log_start(inputs, rate)

    def _subscribe_inputs(self) -> list[str]:
        """Subscribe to the scan and the modality's partner (image + camera_info, or IR); their topics."""
        scan_topic = self._declare("scan_topic")
        self.create_subscription(LaserScan, scan_topic, self._on_scan, SENSOR_QOS)
        inputs = [scan_topic]
        self.read_image = camera_reading
        if self.modality == "camera":
            transport = self._declare("image_transport")
            if transport not in ("raw", "compressed"):
                raise ParameterError(f"parameter 'image_transport' must be raw or compressed, got {transport!r}")
            image_topic = self._declare("image_topic")
            image_type = Image
            if transport == "compressed":  # image_transport's topic name for the compressed stream of image_topic
                image_topic, image_type, self.read_image = (
                    image_topic.rstrip("/") + "/compressed",
                    CompressedImage,
                    compressed_camera_reading,
                )
            inputs += [image_topic, self._declare("camera_info_topic")]
            self.create_subscription(image_type, inputs[1], self._on_partner, SENSOR_QOS)
            self.create_subscription(CameraInfo, inputs[2], self._on_camera_info, SENSOR_QOS)
        elif self.modality == "ir":
            inputs.append(self._declare("ir_topic"))
            self.create_subscription(LaserScan, inputs[1], self._on_partner, SENSOR_QOS)
        return inputs

    def _log_start(self, inputs: list[str], rate: float) -> None:
        bridge, bridge_problem = image_bridge() if self.modality == "camera" and self.read_image is camera_reading else (None, "")
        if bridge_problem:
            self.get_logger().warning(
                f"cv_bridge cannot be used ({bridge_problem}): converting images with m2vae_fusion.perception.image_encodings instead"
            )
        self.get_logger().info(
            f"encoding {self.modality} with model {self.model.model_id} (feature_dim {self.model.config.feature_dim}) from "
            f"{', '.join(self.resolve_topic_name(t) for t in inputs)} to {self.resolve_topic_name(topics.ENCODINGS.name)} in {self.odom_frame}; "
            f"nearest {self.max_objects} objects at {self.distances[0]:g}-{self.distances[1]:g} m within {self.max_bearing:g} rad of ahead, rate limit {rate:g} Hz{' (none)' if rate == 0 else ''}"
            + (
                f", images converted by {'cv_bridge' if bridge is not None else 'm2vae_fusion.perception.image_encodings'}"
                if self.modality == "camera" and self.read_image is camera_reading
                else ""
            )
            + (", JPEG / PNG images decoded by OpenCV" if self.read_image is compressed_camera_reading else "")
        )

    # ------------------------------------------------------------ parameters

    def _declare(self, name: str, default: Any = None) -> Any:
        return declare(self, PARAMETERS, name, default)

    def _number(self, name: str) -> float:
        return declare(self, PARAMETERS, name)

    def _load_model(self, path: str, expected_id: str) -> PerceptionModel:
        if not path:
            if not DEFAULT_MODEL.is_dir():
                raise ParameterError(
                    f"parameter 'model' is empty and the default model {DEFAULT_MODEL} does not exist: "
                    "set model:=FOLDER to a model from `m2vae train --bag ...`"
                )
            path = str(DEFAULT_MODEL)
        try:
            model = PerceptionModel.load(Path(path).expanduser())
        except CheckpointError as exc:
            raise ParameterError(f"parameter 'model': {exc}") from None
        known = model.manifest.get("modalities", list(model.preprocessors))
        if self.modality not in known or self.modality not in model.preprocessors:
            raise ParameterError(
                f"parameter 'modality': model {model.model_id} ({path}) has no {self.modality!r} encoder, only {known}"
            )
        if expected_id and model.model_id != expected_id:
            raise ParameterError(f"parameter 'model_id' is {expected_id!r} but {path} holds model {model.model_id!r}")
        return model

    # ------------------------------------------------------------ inputs

    def _on_tf_static(self, msg: TFMessage) -> None:
        for t in msg.transforms:
            self.tf.set_transform_static(t)

    def _on_tf(self, msg: TFMessage) -> None:
        fresh = False
        for t in msg.transforms:
            if (t.header.frame_id, t.child_frame_id) == (self.odom_frame, self.base_frame):
                try:
                    jumped = self.tf.set_transform(t)
                except ValueError as exc:
                    self.drops.report(Dropped("transform", str(exc), kind="malformed"))
                    continue
                if jumped:
                    self.newest.clear()  # time jumped back: a new run, whose messages are not out of order
                fresh = True
        if fresh:
            self._flush_pending()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.counters.add("received camera_info")
        self.camera_info = msg

    def _check_header(self, what: str, header: Any) -> None:
        """Dropped when the frame is unknown, the stamp is out of order or from the future; else the
        stamp becomes the input's newest. Content checks come first, so a bad message never moves it."""
        frame = header.frame_id
        if self.tf.has_static:  # before /tf_static arrives every frame is unknown: _observe reports that as waiting
            try:
                self._mounting(frame)
            except Dropped as exc:
                raise Dropped(
                    what, f"frame {frame!r} is not connected to {self.base_frame} ({exc.reason})", kind="unknown_frame"
                ) from None
        stamp = stamp_seconds(header)
        newest = self.newest.get(what)
        if newest is not None and stamp < newest:
            raise Dropped(what, f"stamp {stamp:.3f} s is before the previous {what}'s {newest:.3f} s", kind="out_of_order")
        now = self.get_clock().now().nanoseconds * 1e-9  # 0 while use_sim_time waits for /clock
        newest_odom = self.tf.newest_ns(self.odom_frame, self.base_frame)
        reference = max(now, newest_odom * 1e-9 if newest_odom is not None else 0.0)
        if reference > 0 and stamp > reference + self.future_tolerance:
            raise Dropped(
                what,
                f"stamp {stamp:.3f} s is more than {self.future_tolerance:g} s ahead of the clock and odometry ({reference:.3f} s)",
                kind="future",
            )
        self.newest[what] = stamp

    def _on_scan(self, msg: LaserScan) -> None:
        self.counters.add("received scan")
        try:
            scan = Reading(msg.header, scan_reading(msg))
            self._check_header("scan", msg.header)
        except Dropped as exc:
            self.drops.report(exc)
            return
        if self.modality == "lidar":
            self._encode(scan, None)
            return
        self.scans.append(scan)
        self._pair()

    def _on_partner(self, msg: Image | CompressedImage | LaserScan) -> None:
        what = "image" if self.modality == "camera" else "IR reading"
        self.counters.add(f"received {what}")
        try:
            data = self.read_image(msg, self.camera_info) if self.modality == "camera" else scan_reading(msg, what)
            self._check_header(what, msg.header)
        except Dropped as exc:
            self.drops.report(exc)
            return
        self.partners.append(Reading(msg.header, data))
        self._pair()

    def _pair(self) -> None:
        """Encode each waiting scan with the partner nearest in time within the tolerance, once one at or
        after its stamp has arrived: partners arrive in order, so no nearer one can come after that."""
        newest = max((p.stamp for p in self.partners), default=-math.inf)
        while self.scans and self.scans[0].stamp <= newest:
            scan = self.scans.popleft()
            gap, partner = min(((abs(p.stamp - scan.stamp), p) for p in self.partners), key=lambda item: item[0])
            if gap <= self.tolerance:
                self._encode(scan, partner)
            else:
                self.counters.add(
                    f"skipped scans: no {'image' if self.modality == 'camera' else 'IR reading'} within sync_tolerance_s"
                )

    # ------------------------------------------------------------ encoding

    def _encode(self, scan: Reading, partner: Reading | None) -> None:
        now = time.monotonic()
        if now - self.last_encoded < self.min_period:
            self.counters.add("skipped scans: rate_limit_hz")
            return
        self.last_encoded = now
        try:
            messages, positions = self._observe(scan, partner)
        except Dropped as exc:
            self.drops.report(exc)
            return
        if messages:
            self.pending.append(Pending(stamps.to_ns(scan.header.stamp), now, messages, positions))
            self._flush_pending()

    def _observe(self, scan: Reading, partner: Reading | None) -> tuple[list[ModalityEncoding], np.ndarray]:
        sensor = partner or scan
        # observe() takes every mounting but uses only those of the readings it gets
        mounting = {"lidar": self._mounting(scan.header.frame_id), "ir": np.eye(4), "camera": np.eye(4)}
        mounting[self.modality] = self._mounting(sensor.header.frame_id)
        image = sensor.data if self.modality == "camera" else None
        ir = sensor.data if self.modality == "ir" else None
        observations = observe(
            image, scan.data, ir, mounting["lidar"], mounting["ir"], mounting["camera"], self.model.config.perception
        )
        near, far = self.distances
        seen = [
            o
            for o in observations
            if getattr(o, self.modality) is not None
            and near <= o.candidate.distance <= far
            and abs(o.candidate.bearing) <= self.max_bearing
        ][: self.max_objects]
        if not seen:
            return [], np.zeros((0, 3))
        features, log_var = self.model.encode_views(
            self.modality, np.stack([view_vector(self.modality, getattr(o, self.modality)) for o in seen])
        )
        radius = self.model.config.perception.detection.object_radius
        messages = []
        for o, mean, lv in zip(seen, features, log_var):
            msg = ModalityEncoding(
                modality=self.modality,
                model_id=self.model.model_id,
                confidence=detection_confidence(o.candidate, scan.data, radius),
            )
            msg.header.stamp = sensor.header.stamp
            msg.header.frame_id = self.odom_frame
            msg.mean = mean.astype(np.float32).tolist()
            msg.log_var = lv.astype(np.float32).tolist()
            messages.append(msg)
        return messages, np.stack([o.position for o in seen])

    def _mounting(self, sensor_frame: str) -> np.ndarray:
        """base_link -> sensor from /tf_static."""
        try:
            return self.tf.lookup_matrix(self.base_frame, sensor_frame, Time())
        except TransformException as exc:
            raise Dropped("transform", f"/tf_static: {exc.args[0]}", waiting=True, kind="tf_static") from None

    def _flush_pending(self) -> None:
        """Publish encodings once odom -> base_link is known at their scan's stamp, or after TF_WAIT_S with the latest before it."""
        now = time.monotonic()
        while self.pending:
            item = self.pending[0]
            newest = self.tf.newest_ns(self.odom_frame, self.base_frame)
            if (newest is None or newest < item.scan_ns) and now - item.since < TF_WAIT_S:
                return
            self.pending.popleft()
            try:
                odom_to_base = self.tf.lookup_matrix(self.odom_frame, self.base_frame, Time(nanoseconds=item.scan_ns))
            except TransformException:
                self.drops.report(
                    Dropped(
                        "transform",
                        f"no {self.odom_frame} -> {self.base_frame} on /tf at or before {item.scan_ns * 1e-9:.3f} s",
                        waiting=True,
                        kind="odom",
                    )
                )
                continue
            for msg, position in zip(item.messages, frames.apply(odom_to_base, item.positions)):
                msg.position.x, msg.position.y, msg.position.z = (float(v) for v in position)
                self.publisher.publish(msg)
            self.counters.add("published encodings", len(item.messages))


def main(args: list[str] | None = None) -> None:
    run_node("encoder", EncoderNode, args)


if __name__ == "__main__":
    main()
