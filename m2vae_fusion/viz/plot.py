"""`m2vae plot`: the viz node's views as PNG files, for users without rviz.

  m2vae plot latent [--model DIR] [--bag BAG] --out PNG    latent-space image (as on latent_image)
  m2vae plot beliefs --bag BAG --out PNG                    top-down map of the objects (as the markers)
  m2vae plot imagination --bag BAG [--out PNG]              what the model imagines per object (as on imagination)
  m2vae plot training RUN_DIR --out PNG                     loss curves of every metrics.jsonl under RUN_DIR

Beliefs come from the last m2vae_msgs/ObjectBeliefArray on a bag's beliefs topic (recorded with
`m2vae record`): the only topic of that type, or --topic.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from m2vae_fusion.core.errors import DataError

BELIEFS_TYPE = "m2vae_msgs/msg/ObjectBeliefArray"
TRUTH_TYPE = "m2vae_msgs/msg/LabelledObjectArray"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.resources import default_model_dir
    from m2vae_fusion.viz import HEATMAPS

    views = parser.add_subparsers(dest="view", metavar="VIEW", required=True)
    latent = views.add_parser(
        "latent",
        help="latent-space image: class regions, re-encoding heatmap (Fig. 5d), and a bag's beliefs",
        description="Draw the viz node's latent image to PNG: the model's latent space on its LDA plane with the class "
        "regions and the re-encoding heatmap of the paper's Fig. 5d, and, with --bag, the beliefs of the last "
        "ObjectBeliefArray in the bag (mean and 2-sigma ellipse each).",
    )
    latent.add_argument(
        "--model",
        type=Path,
        default=default_model_dir(),
        help="perception model folder or its perception_model.json (default: the shipped AMiRo model)",
    )
    latent.add_argument(
        "--bag", type=Path, help="bag (folder or .mcap) whose last beliefs to draw (default: none, the background only)"
    )
    latent.add_argument("--topic", help="beliefs topic in the bag (default: the only ObjectBeliefArray topic)")
    latent.add_argument(
        "--heatmap",
        choices=HEATMAPS,
        default="variance",
        help="sum of sigma_i^2 (Fig. 5d) or drift |mu_k - z_0| (Fig. 5c) after the re-encodings (default: variance)",
    )
    latent.add_argument("--steps", type=int, default=10, help="auto re-encodings behind the heatmap (default: 10)")
    latent.add_argument("--size", type=int, default=480, help="image width and height in pixels (default: 480)")
    latent.add_argument("--out", type=Path, required=True, help="PNG file to write")
    latent.set_defaults(plot_run=plot_latent)

    beliefs = views.add_parser(
        "beliefs",
        help="top-down map of a bag's beliefs: shape, colour, confidence, sensors (what the markers show)",
        description="Draw the last ObjectBeliefArray of a bag from above: each object in its most probable class's "
        "shape and colour at its position, opacity rising with confidence, captioned with class, confidence and "
        "the sensors fused in; the ground truth (ground_truth/objects) as outlines when the bag has it in the same frame.",
    )
    beliefs.add_argument("--bag", type=Path, required=True, help="bag (folder or .mcap) recorded with `m2vae record`")
    beliefs.add_argument("--topic", help="beliefs topic in the bag (default: the only ObjectBeliefArray topic)")
    beliefs.add_argument("--out", type=Path, required=True, help="PNG file to write")
    beliefs.set_defaults(plot_run=plot_beliefs)

    _add_imagination(views, default_model_dir())

    training = views.add_parser(
        "training",
        help="training curves of every metrics.jsonl under a run folder",
        description="Draw the loss terms per epoch of every training run under RUN_DIR (the --out of `m2vae train` "
        "or `m2vae reproduce`): one row per metrics.jsonl; columns loss, reconstruction, KL, re-encoding.",
    )
    training.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="folder searched recursively for metrics.jsonl")
    training.add_argument("--out", type=Path, required=True, help="PNG file to write")
    training.set_defaults(plot_run=plot_training)


def _add_imagination(views: Any, model: Path) -> None:
    imagination = views.add_parser(
        "imagination",
        help="what the model imagines each object of a bag's last beliefs shows to camera, LiDAR and IR",
        description="Draw the viz node's imagination image to PNG for the last ObjectBeliefArray in a bag: a row per "
        "object with the camera crop, LiDAR profile and IR readings the model decodes from the belief's latent mean. "
        "Sensors that sensed the object are framed green (held: what the belief holds), the others orange (imagined). "
        "When the bag also has the beliefs' robot's camera images, camera_info, scans, IR, /tf and /tf_static (e.g. "
        "`m2vae record` of the demo's topics), the newest real camera crop of each object (cut as training cuts it, "
        "the detection within 10 cm of the belief) is drawn beside the imagined one.",
    )
    imagination.add_argument("--bag", type=Path, required=True, help="bag (folder or .mcap) whose last beliefs to draw")
    imagination.add_argument(
        "--model",
        type=Path,
        default=model,
        help="perception model folder or its perception_model.json (default: the shipped AMiRo model); "
        "beliefs of another model_id are left out",
    )
    imagination.add_argument("--topic", help="beliefs topic in the bag (default: the only ObjectBeliefArray topic)")
    imagination.add_argument("--objects", type=int, default=8, help="rows at most, the first objects by id (default: 8)")
    imagination.add_argument("--panel", type=int, default=128, help="width and height of each panel in pixels (default: 128)")
    imagination.add_argument(
        "--no-real", action="store_true", help="do not look for real camera crops in the bag (faster for long bags)"
    )
    imagination.add_argument(
        "--out", type=Path, default=Path("imagination.png"), help="PNG file to write (default: imagination.png)"
    )
    imagination.set_defaults(plot_run=plot_imagination)


def run(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out must be a .png file, got {args.out}")
    args.plot_run(args)
    print(f"wrote {args.out}")
    return 0


# ------------------------------------------------------------ bags


def read_last(bag: Path, msgtype: str, topic: str | None) -> tuple[str, Any] | None:
    """(topic, message) of the newest message of `msgtype` in the bag (on `topic` if given), None if there is none.
    Without `topic` the bag must have at most one topic of that type."""
    from rosbags.highlevel import AnyReader

    from m2vae_fusion.data.rosbag_types import typestore

    if not bag.exists():
        raise DataError(f"bag {bag} does not exist")
    try:
        with AnyReader([bag], default_typestore=typestore()) as reader:
            connections = [c for c in reader.connections if c.msgtype == msgtype and (topic is None or c.topic == topic)]
            if topic is None and len({c.topic for c in connections}) > 1:
                raise DataError(
                    f"bag {bag} has several {msgtype} topics {sorted({c.topic for c in connections})}: choose one with --topic"
                )
            last = None
            for connection, _, raw in reader.messages(connections=connections):
                last = (connection.topic, reader.deserialize(raw, connection.msgtype))
            return last
    except DataError:
        raise
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        raise DataError(f"cannot read bag {bag}: {exc}") from exc


def last_beliefs(bag: Path, topic: str | None) -> tuple[str, Any]:
    found = read_last(bag, BELIEFS_TYPE, topic)
    if found is None:
        raise DataError(
            f"bag {bag} has no {BELIEFS_TYPE} messages{f' on {topic}' if topic else ''}; record the fusion node's beliefs topic"
        )
    return found


# ------------------------------------------------------------ views


def plot_latent(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image
    import torch

    from m2vae_fusion.data.bag_frames import stamp_seconds
    from m2vae_fusion.model.perception_model import PerceptionModel
    from m2vae_fusion.viz.latent_view import LatentView, belief_points, compute_background

    if args.steps < 1 or args.size < 160:
        raise ValueError(f"--steps must be >= 1 and --size >= 160, got {args.steps} and {args.size}")
    torch.set_num_threads(1)
    model = PerceptionModel.load(args.model)
    view = LatentView(compute_background(model, args.heatmap, args.steps), args.size)
    points, title = [], f"model {model.model_id}: class regions"
    if args.bag is not None:
        topic, msg = last_beliefs(args.bag, args.topic)
        points, left_out = belief_points(msg.beliefs, model.model_id, model.fusion.latent_dim)
        if left_out:
            print(f"not drawn (another model's or malformed latents): {', '.join(left_out)}")
        title = f"{topic} at {stamp_seconds(msg.header):.1f} s: {len(points)} objects"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(args.out, view.render(points, title))


def plot_beliefs(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, Rectangle

    from m2vae_fusion.data.bag_frames import stamp_seconds
    from m2vae_fusion.viz.markers import CUBE_SIDE, CYLINDER_DIAMETER, MarkerBook

    topic, msg = last_beliefs(args.bag, args.topic)
    objects = MarkerBook().update(msg.beliefs).objects
    frame = msg.header.frame_id or "?"
    # The simulator's ground truth in the beliefs' namespace (ground_truth/objects beside beliefs).
    truth = read_last(args.bag, TRUTH_TYPE, f"{topic.rsplit('/', 1)[0]}/ground_truth/objects")
    truth_objects = truth[1].objects if truth is not None and truth[1].header.frame_id == msg.header.frame_id else []

    figure = Figure(figsize=(7, 7), dpi=100, layout="constrained")
    ax = figure.subplots()
    for obj in truth_objects:
        x, y = obj.pose.position.x, obj.pose.position.y
        if obj.shape == "cube":
            yaw = 2 * np.arctan2(obj.pose.orientation.z, obj.pose.orientation.w)
            corner = np.array([x, y]) - _rotate(np.array([CUBE_SIDE / 2, CUBE_SIDE / 2]), yaw)
            patch = Rectangle(
                corner, CUBE_SIDE, CUBE_SIDE, angle=float(np.degrees(yaw)), fill=False, linestyle="--", edgecolor="0.3"
            )
        else:
            patch = Circle((x, y), CYLINDER_DIAMETER / 2, fill=False, linestyle="--", edgecolor="0.3")
        ax.add_patch(patch)
        ax.annotate(
            obj.label, (x, y), xytext=(0, -14), textcoords="offset points", ha="center", va="top", fontsize=6, color="0.3"
        )
    for obj in objects:
        if obj.shape == "cube":
            patch = Rectangle((obj.x - CUBE_SIDE / 2, obj.y - CUBE_SIDE / 2), CUBE_SIDE, CUBE_SIDE)
        else:
            patch = Circle((obj.x, obj.y), CYLINDER_DIAMETER / 2)
        patch.set(facecolor=(*obj.rgb, obj.alpha), edgecolor="k", linewidth=0.8)
        ax.add_patch(patch)
        ax.annotate(obj.caption, (obj.x, obj.y), xytext=(0, 14), textcoords="offset points", ha="center", va="bottom", fontsize=7)
    xy = np.array([[o.x, o.y] for o in objects] + [[o.pose.position.x, o.pose.position.y] for o in truth_objects]).reshape(-1, 2)
    centre = xy.mean(axis=0) if len(xy) else np.zeros(2)
    half = max(0.5, float(np.abs(xy - centre).max()) + 0.25) if len(xy) else 0.5
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.set_xlabel(f"x [m] ({frame})")
    ax.set_ylabel(f"y [m] ({frame})")
    note = ", ground truth dashed" if truth_objects else ""
    ax.set_title(f"{topic} at {stamp_seconds(msg.header):.1f} s: {len(objects)} objects (opacity = confidence{note})", fontsize=9)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out)


def plot_imagination(args: argparse.Namespace) -> None:
    import dataclasses

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image
    import torch

    from m2vae_fusion.data.bag_frames import stamp_seconds
    from m2vae_fusion.model.perception_model import PerceptionModel
    from m2vae_fusion.viz.imagination import draw_imagination, imagination_objects

    if args.objects < 1 or args.panel < 32:
        raise ValueError(f"--objects must be >= 1 and --panel >= 32, got {args.objects} and {args.panel}")
    torch.set_num_threads(1)
    model = PerceptionModel.load(args.model)
    topic, msg = last_beliefs(args.bag, args.topic)
    objects, left_out = imagination_objects(msg.beliefs, model.model_id, model.fusion.latent_dim)
    if left_out:
        print(f"not drawn (another model's or malformed latents): {', '.join(left_out)}")
    objects = sorted(objects, key=lambda o: o.object_id)
    if not args.no_real and objects:
        shown = {o.object_id for o in objects[: args.objects]}
        positions = {b.object_id: (b.position.x, b.position.y) for b in msg.beliefs if b.object_id in shown}
        crops = bag_crops(args.bag, topic, msg.header.frame_id, positions, model)
        objects = [dataclasses.replace(o, real_crop=crops.get(o.object_id)) for o in objects]
    title = f"{topic} at {stamp_seconds(msg.header):.1f} s: what model {model.model_id} imagines"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(args.out, draw_imagination(model, objects, args.objects, args.panel, title))


def bag_crops(bag: Path, topic: str, frame: str, positions: dict[str, tuple[float, float]], model: Any) -> dict[str, Any]:
    """The newest real camera crop per object from the bag's sensor topics of the beliefs' robot (the
    namespace of `topic`); none, with a printed reason, where the bag lacks them."""
    from m2vae_fusion.data.bag_frames import TopicNames, read_frames
    from m2vae_fusion.viz.imagination import real_crops

    if frame.lstrip("/") != "map":
        print(f"no real crops: the beliefs are in {frame or 'no frame'!r}, crops are placed in map")
        return {}
    try:
        frames = read_frames([bag], TopicNames.for_namespace(topic.rsplit("/", 1)[0]))
        crops = real_crops(frames, positions, model.config.perception)
    except DataError as exc:
        print(f"no real crops: {exc}")
        return {}
    print(f"real camera crops for {len(crops)} of {len(positions)} objects")
    return crops


def _rotate(v: Any, angle: float) -> Any:
    import numpy as np

    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def plot_training(args: argparse.Namespace) -> None:
    from m2vae_fusion.viz.curves import draw_training

    for path in draw_training(args.run_dir, args.out):
        print(f"curves: {path}")
