"""viz: the fusion node's beliefs for rviz: object markers, an image of the latent space and one of what the
model imagines each object looks like to each sensor.

Subscribes: beliefs (m2vae_msgs/ObjectBeliefArray, reliable; the fusion node's in the same namespace).
Publishes:
  markers (visualization_msgs/MarkerArray, on every beliefs message): per object a CYLINDER or CUBE of
    the primitives' size in the most probable class's shape and colour, standing on the floor at the
    belief's position, opacity rising with that class's probability (namespace "objects"), and a
    TEXT_VIEW_FACING caption above it: id, class, confidence, the sensors fused in and, when several,
    the robots (namespace "captions"). Ids stay the same per object; an object missing from a beliefs
    message gets DELETE markers in both namespaces. Frame: the beliefs' (map when empty).
  latent_image (sensor_msgs/Image rgb8, image_size x image_size, every 1/image_rate_hz): the
    m2vae_fusion.viz.latent_view image: every belief's mean and 2-sigma ellipse on the LDA plane of the
    model's latent space over its class regions and the re-encoding heatmap of the paper's Fig. 5d
    (reencode_steps auto re-encodings, `heatmap` variance or drift). The background is computed once
    at start-up; the image is redrawn after each new beliefs message and republished as is otherwise.
    Beliefs of another model (model_id) are left out of the image with a warning: its plane is this model's.
  imagination (sensor_msgs/Image rgb8, every 1/imagination_rate_hz): the m2vae_fusion.viz.imagination
    picture: a row per object (the first imagination_max_objects by id) with the camera crop, LiDAR profile
    and IR readings that the model decodes from the belief's latent mean, each imagination_panel_px square.
    A sensor that has sensed the object is framed green, "held" (what the belief holds of it), one that
    has not yet orange, "imagined". Redrawn when the beliefs' ids, means, sensed sensors or classes change,
    at most once per period, and republished as is otherwise. Beliefs of another model are left out.

Parameters: PARAMETERS below (defaults, types and ranges; docs/parameters.md lists them).

Usage: ros2 run m2vae_fusion viz --ros-args -r __ns:=/robot1 --params-file config/viz.yaml
"""

from __future__ import annotations

import array
import time
from pathlib import Path
from typing import Any

import torch
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from m2vae_fusion.core.errors import CheckpointError, ConfigError
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.resources import default_model_dir
from m2vae_fusion.ros_interface import topics
from m2vae_fusion.ros_interface.parameters import Parameters, integer, number, text
from m2vae_fusion.ros_interface.runtime import ParameterError, declare, run_node
from m2vae_fusion.ros_interface.topics import BELIEF_QOS, IMAGE_QOS, MARKER_QOS
from m2vae_fusion.viz import HEATMAPS
from m2vae_fusion.viz.imagination import ImaginedObject, draw_imagination, imagination_objects
from m2vae_fusion.viz.latent_view import LatentView, belief_points, compute_background
from m2vae_fusion.viz.markers import CAPTION_GAP, HEIGHT, MarkerBook, ObjectMarker
from m2vae_msgs.msg import ObjectBeliefArray

DEFAULT_MODEL = default_model_dir()
DEFAULT_FRAME = "map"
BODY_NS, CAPTION_NS = "objects", "captions"
CAPTION_HEIGHT = 0.025  # m, of a line of caption text
MIN_IMAGE_SIZE = 160  # px: below this the axes and labels of the latent image do not fit

# None: worked out at start-up (see the description)
PARAMETERS: Parameters = {
    "model": text(
        None,
        f"perception model folder or its perception_model.json (default: the package's {DEFAULT_MODEL.parent.name}/{DEFAULT_MODEL.name})",
    ),
    "image_rate_hz": number(1.0, "latent_image messages per second", positive=True),
    "image_size": integer(480, "latent_image width and height [px]", minimum=MIN_IMAGE_SIZE),
    "heatmap": text("variance", f"latent_image background: one of {list(HEATMAPS)} after the re-encodings (paper Fig. 5d / 5c)"),
    "reencode_steps": integer(10, "auto re-encodings (z -> x' -> z) behind the heatmap", minimum=1),
    "imagination_rate_hz": number(1.0, "imagination messages per second (and redraws at most)", positive=True),
    "imagination_max_objects": integer(8, "objects (rows) in the imagination image, the first by id", minimum=1),
    "imagination_panel_px": integer(128, "width and height of each panel of the imagination image [px]", minimum=32),
}


class VizNode(Node):
    def __init__(self) -> None:
        super().__init__("viz")
        model_path = Path(self._declare("model", str(DEFAULT_MODEL))).expanduser()
        try:
            self.model = PerceptionModel.load(model_path)
        except (CheckpointError, ConfigError) as exc:
            raise ParameterError(f"parameter 'model': {exc}") from None
        period = 1.0 / self._declare("image_rate_hz")
        size = self._declare("image_size")
        quantity = self._declare("heatmap")
        if quantity not in HEATMAPS:
            raise ParameterError(f"parameter 'heatmap' must be one of {list(HEATMAPS)}, got {quantity!r}")
        steps = self._declare("reencode_steps")
        imagination_period = 1.0 / self._declare("imagination_rate_hz")
        self.imagination_max = self._declare("imagination_max_objects")
        self.imagination_panel = self._declare("imagination_panel_px")
        self.add_on_set_parameters_callback(
            lambda _: SetParametersResult(successful=False, reason="viz reads its parameters at start-up only: restart it")
        )

        start = time.perf_counter()
        torch.set_num_threads(1)  # small networks: one thread is faster and leaves the other cores to the pipeline
        self.view = LatentView(compute_background(self.model, quantity, steps), size)
        self.get_logger().info(
            f"latent view of model {self.model.model_id} ({model_path}): {quantity} after {steps} re-encodings, "
            f"{size}x{size} px, ready in {time.perf_counter() - start:.1f} s"
        )
        self.book = MarkerBook()
        self.latest: ObjectBeliefArray | None = None
        self.image: Image | None = None  # the last rendering, republished while beliefs stay the same
        self._left_out: set[str] = set()  # objects not drawn in the image, warned about once
        self.imagination: Image | None = None
        self._imagined: tuple | None = None  # what the last imagination image shows, to redraw only on a change

        self.create_subscription(ObjectBeliefArray, topics.BELIEFS.name, self._on_beliefs, BELIEF_QOS)
        self.markers_pub = self.create_publisher(MarkerArray, topics.MARKERS.name, MARKER_QOS)
        self.image_pub = self.create_publisher(Image, topics.LATENT_IMAGE.name, IMAGE_QOS)
        self.imagination_pub = self.create_publisher(Image, topics.IMAGINATION.name, IMAGE_QOS)
        self.create_timer(period, self._on_image_timer)
        self.create_timer(imagination_period, self._on_imagination_timer)
        self.get_logger().info(
            f"drawing {self.resolve_topic_name(topics.BELIEFS.name)} on {self.resolve_topic_name(topics.MARKERS.name)}, "
            f"{self.resolve_topic_name(topics.LATENT_IMAGE.name)} and {self.resolve_topic_name(topics.IMAGINATION.name)}"
        )

    def _declare(self, name: str, default: Any = None) -> Any:
        return declare(self, PARAMETERS, name, default)

    # ------------------------------------------------------------ markers

    def _on_beliefs(self, msg: ObjectBeliefArray) -> None:
        try:
            update = self.book.update(msg.beliefs)
        except ValueError as exc:
            self.get_logger().warning(f"dropped a beliefs message: {exc}")
            return
        header = Header(stamp=msg.header.stamp, frame_id=msg.header.frame_id or DEFAULT_FRAME)
        markers = MarkerArray()
        for obj in update.objects:
            markers.markers += [body_marker(obj, header), caption_marker(obj, header)]
        for marker_id in update.deleted:
            markers.markers += [Marker(header=header, ns=ns, id=marker_id, action=Marker.DELETE) for ns in (BODY_NS, CAPTION_NS)]
        self.markers_pub.publish(markers)
        self.latest = msg
        self.image = None

    # ------------------------------------------------------------ latent image

    def _on_image_timer(self) -> None:
        if self.image is None:
            self.image = self._render()
        self.image_pub.publish(self.image)

    def _render(self) -> Image:
        beliefs = self.latest.beliefs if self.latest is not None else []
        points, left_out = belief_points(beliefs, self.model.model_id, self.model.fusion.latent_dim)
        if left_out and set(left_out) != self._left_out:
            self.get_logger().warning(
                f"objects {left_out} are not in the latent image: their latents are malformed or of another model "
                f"than {self.model.model_id!r}"
            )
        self._left_out = set(left_out)
        namespace = self.get_namespace().strip("/")
        title = f"{namespace + ': ' if namespace else ''}{len(points)} object{'s' if len(points) != 1 else ''} in latent space"
        return self._image(self.view.render(points, title))

    def _image(self, rgb) -> Image:
        """An (H, W, 3) uint8 array as an rgb8 Image stamped with the beliefs it shows."""
        msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=3 * rgb.shape[1])
        msg.header.stamp = self.latest.header.stamp if self.latest is not None else self.get_clock().now().to_msg()
        msg.data = array.array("B", rgb.tobytes())  # rclpy's setter checks a numpy array element by element
        return msg

    # ------------------------------------------------------------ imagination

    def _on_imagination_timer(self) -> None:
        beliefs = self.latest.beliefs if self.latest is not None else []
        # Another model's beliefs are warned about by the latent image, which leaves out the same ones.
        objects, _ = imagination_objects(beliefs, self.model.model_id, self.model.fusion.latent_dim)
        objects.sort(key=lambda o: o.object_id)  # stable rows: the fusion node's order may change
        shown = imagination_key(objects)
        if self.imagination is None or shown != self._imagined:
            namespace = self.get_namespace().strip("/")
            title = f"{namespace + ': ' if namespace else ''}what model {self.model.model_id} imagines of {len(objects)} objects"
            rgb = draw_imagination(self.model, objects, self.imagination_max, self.imagination_panel, title)
            self.imagination, self._imagined = self._image(rgb), shown
        self.imagination_pub.publish(self.imagination)


def imagination_key(objects: list[ImaginedObject]) -> tuple:
    """What the imagination image depends on: a new beliefs message with the same key needs no redraw."""
    return tuple((o.object_id, o.mean.tobytes(), o.sensed, o.label, o.confidence) for o in objects)


def body_marker(obj: ObjectMarker, header: Header) -> Marker:
    """The object's body standing on the floor."""
    marker = Marker(header=header, ns=BODY_NS, id=obj.marker_id, action=Marker.ADD)
    marker.type = Marker.CUBE if obj.shape == "cube" else Marker.CYLINDER
    marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = obj.x, obj.y, HEIGHT / 2
    marker.pose.orientation.w = 1.0
    marker.scale.x, marker.scale.y, marker.scale.z = obj.size
    marker.color.r, marker.color.g, marker.color.b = obj.rgb
    marker.color.a = obj.alpha
    return marker


def caption_marker(obj: ObjectMarker, header: Header) -> Marker:
    """The object's caption above it."""
    marker = Marker(header=header, ns=CAPTION_NS, id=obj.marker_id, action=Marker.ADD, type=Marker.TEXT_VIEW_FACING)
    marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = obj.x, obj.y, HEIGHT + CAPTION_GAP
    marker.pose.orientation.w = 1.0
    marker.scale.z = CAPTION_HEIGHT
    marker.color.r = marker.color.g = marker.color.b = marker.color.a = 1.0
    marker.text = obj.caption
    return marker


def main(args: list[str] | None = None) -> None:
    run_node("viz", VizNode, args)


if __name__ == "__main__":
    main()
