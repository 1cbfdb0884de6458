"""`m2vae sim collect`: a labelled tri-modal data set as a ROS 2 bag, recorded like the paper's
(Sec. IV): each observation shows one object from a random distance and bearing, classes in equal
numbers; half of them (by default) from beyond the IR's reach, where only camera and LiDAR see it.
The robot is placed (teleported) for each observation; every sensor fires at that instant.

Topics (all stamped with the simulated time of the observation):
  /camera/image_raw, /camera/camera_info, /scan, /ir/scan, /odom, /tf (map->odom, odom->base_link),
  /tf_static (once), /ground_truth/objects (every object, GROUND TRUTH), and
  /ground_truth/observed (the one object this observation looks at, GROUND TRUTH).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.sim.simulator import SimConfig, Simulator
from m2vae_fusion.sim.viewpoints import ViewpointRange, sample_viewpoint


@dataclass(frozen=True)
class CollectionReport:
    path: Path
    samples: int
    per_class: dict[str, int]
    seconds: float  # the observation loop, without loading the world
    setup_seconds: float
    topics: dict[str, int]

    @property
    def rate(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


def balanced_targets(sim: Simulator, samples: int, rng: np.random.Generator) -> list:
    """Targets for `samples` observations: the 8 classes in shuffled rounds, so counts differ by at
    most one; a random instance when a class appears more than once in the world."""
    by_class: dict[int, list] = {}
    for obj in sim.objects:
        by_class.setdefault(obj.class_id, []).append(obj)
    missing = [default_labels().classes[c] for c in range(len(default_labels().classes)) if c not in by_class]
    if missing:
        raise ValueError(
            f"world {sim.config.world} lacks objects of class {', '.join(missing)}; every class is needed for a balanced data set"
        )
    targets = []
    while len(targets) < samples:
        for class_id in rng.permutation(len(default_labels().classes)):
            instances = by_class[int(class_id)]
            targets.append(instances[int(rng.integers(len(instances)))])
    return targets[:samples]


def collect(
    out: Path,
    samples: int,
    seed: int = 0,
    world: Path | None = None,
    views: ViewpointRange = ViewpointRange(),
    period: float = 0.1,
    noise_scale: float = 1.0,
    progress: bool = False,
) -> CollectionReport:
    """Write `samples` labelled observations to the mcap bag `out` (a folder, as ros2 bag makes)."""
    from m2vae_fusion.data.bags import BagWriter
    from m2vae_fusion.resources import share_dir
    from m2vae_fusion.ros_interface import reading_messages as messages
    from m2vae_fusion.sim.ros_bridge import labelled_objects

    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if period <= 0:
        raise ValueError(f"period must be > 0, got {period}")
    world = world or share_dir() / "worlds" / "arena.sdf"
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with Simulator(SimConfig(world=world, seed=seed, noise_scale=noise_scale)) as sim, BagWriter(out) as bag:
        targets = balanced_targets(sim, samples, rng)
        loop_start = time.perf_counter()
        rates = {kind: spec.rate_hz for kind, spec in sim.sensors.items()}
        bag.write("/tf_static", int(period * 1e9), messages.static_tf_message(sim.static_transforms(), period))
        bar = _progress(samples) if progress else None
        for k, target in enumerate(targets):
            stamp = (k + 1) * period
            ns = int(round(stamp * 1e9))
            pose = sample_viewpoint(sim, target, rng, views)
            sim.set_robot_pose(pose.x, pose.y, pose.yaw)
            image = sim.camera()
            bag.write("/camera/image_raw", ns, messages.image(image, stamp))
            bag.write("/camera/camera_info", ns, messages.camera_info(image, stamp))
            bag.write("/scan", ns, messages.laser_scan(sim.lidar(), stamp, rates["lidar"]))
            bag.write("/ir/scan", ns, messages.laser_scan(sim.ir(), stamp, rates["ir"]))
            odom = sim.odometry()
            bag.write("/odom", ns, messages.odometry(odom, stamp))
            bag.write(
                "/tf",
                ns,
                messages.tf_message([messages.map_transform(sim.map_to_odom(), stamp), messages.odom_transform(odom, stamp)]),
            )
            bag.write("/ground_truth/objects", ns, labelled_objects(sim.objects, stamp))
            bag.write("/ground_truth/observed", ns, labelled_objects([target], stamp))
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        topics = dict(bag.counts)
    end = time.perf_counter()
    return CollectionReport(out, samples, dict(Counter(t.label for t in targets)), end - loop_start, loop_start - start, topics)


def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="obs", desc="collecting", file=sys.stderr)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="bag folder to create (mcap storage); must not exist")
    parser.add_argument("--samples", type=int, required=True, help="number of labelled observations")
    parser.add_argument("--seed", type=int, default=0, help="seed for viewpoints and sensor noise (default: 0)")
    parser.add_argument("--world", type=Path, help="world SDF with every class in it (default: the package's worlds/arena.sdf)")
    for name, text in (
        ("min_distance", "nearest robot-to-object distance in m"),
        ("max_distance", "farthest robot-to-object distance in m of the near views, which every sensor sees"),
        ("heading_jitter", "largest turn off the line of sight in rad"),
        ("far_distance", "farthest distance of the far views in m, beyond the IR's reach: camera and LiDAR only"),
        (
            "far_fraction",
            "fraction of the observations taken from beyond --max-distance out to --far-distance; 0: near views only",
        ),
    ):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=float, default=getattr(ViewpointRange, name), help=f"{text} (default: %(default)s)")
    parser.add_argument("--noise-scale", type=float, default=1.0, help="scale every sensor's noise (0 = noise-free; default: 1)")


def run(args: argparse.Namespace) -> int:
    views = ViewpointRange(args.min_distance, args.max_distance, args.heading_jitter, args.far_distance, args.far_fraction)
    report = collect(
        args.out, args.samples, args.seed, args.world, views, noise_scale=args.noise_scale, progress=sys.stderr.isatty()
    )
    print(
        f"wrote {report.samples} labelled observations to {report.path} in {report.seconds:.1f} s "
        f"({report.rate:.0f} obs/s, plus {report.setup_seconds:.1f} s loading the world)"
    )
    print("per class: " + ", ".join(f"{label} {report.per_class.get(label, 0)}" for label in default_labels().classes))
    print("topics: " + ", ".join(f"{topic} ({n})" for topic, n in sorted(report.topics.items())))
    return 0
