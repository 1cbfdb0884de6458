"""`m2vae sim sheet`: one picture of what every sensor sees of each of the 8 classes — the camera
frame, the LiDAR range and intensity profile ahead, and the 8 IR readings — from the same viewpoint,
so a person can check at a glance that the classes need all three sensors."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.sim.simulator import SimConfig, Simulator
from m2vae_fusion.sim.viewpoints import look_at


def draw_contact_sheet(world: Path, out: Path, distance: float = 0.2, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        3,
        len(default_labels().classes),
        figsize=(2.4 * len(default_labels().classes), 5.4),
        gridspec_kw={"height_ratios": [1.4, 1.2, 1]},
    )
    with Simulator(SimConfig(world=world, seed=seed)) as sim:
        by_label = {o.label: o for o in sim.objects}
        missing = [label for label in default_labels().classes if label not in by_label]
        if missing:
            raise ValueError(f"world {world} lacks {', '.join(missing)}")
        for column, label in enumerate(default_labels().classes):
            target = by_label[label]
            # look from outside, along the line from the world origin through the object
            pose = look_at(target, distance, math.atan2(target.y, target.x) if (target.x or target.y) else 0.0)
            sim.set_robot_pose(pose.x, pose.y, pose.yaw)
            image, scan, ir = sim.camera(), sim.lidar(), sim.ir()
            axes[0, column].imshow(image.rgb)
            axes[0, column].set_title(label.replace("_", "\n"), fontsize=9)
            axes[0, column].axis("off")
            angles = np.degrees(scan.angle_min + scan.angle_increment * np.arange(len(scan.ranges)))
            ahead = (np.abs(angles) <= 20) & (scan.ranges < distance + 0.05)  # the object, not the walls behind it
            ax = axes[1, column]
            ax.plot(angles[ahead], scan.ranges[ahead], ".", ms=3, color="tab:blue")
            ax.set_ylim(distance - 0.06, distance + 0.04)
            ax.set_xlabel("beam (deg)", fontsize=7)
            twin = ax.twinx()
            twin.plot(angles[ahead], scan.intensities[ahead], ".", ms=3, color="tab:orange")
            twin.set_ylim(0, 1)
            ax.tick_params(labelsize=6)
            twin.tick_params(labelsize=6)
            if column == 0:
                ax.set_ylabel("LiDAR range (m)", fontsize=7, color="tab:blue")
            if column == len(default_labels().classes) - 1:
                twin.set_ylabel("intensity", fontsize=7, color="tab:orange")
            ax = axes[2, column]
            ax.bar(
                np.degrees(ir.angle_min + ir.angle_increment * np.arange(8)).astype(int).astype(str),
                ir.intensities,
                color="tab:red",
            )
            ax.set_ylim(0, 0.3)
            ax.tick_params(labelsize=6, axis="x", rotation=90)
            ax.tick_params(labelsize=6, axis="y")
            if column == 0:
                ax.set_ylabel("IR reading", fontsize=7)
    fig.suptitle(f"What the AMiRo senses of each class at {distance:.2f} m (embedded simulator, {world.name})", fontsize=11)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("sim_contact_sheet.png"), help="PNG to write (default: %(default)s)")
    parser.add_argument("--world", type=Path, help="world SDF with all 8 classes (default: the package's worlds/arena.sdf)")
    parser.add_argument("--distance", type=float, default=0.2, help="robot-to-object distance in m (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sensor noise seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from m2vae_fusion.resources import share_dir

    if not 0.08 < args.distance < 2.0:
        raise ValueError(f"--distance must be between 0.08 and 2 m, got {args.distance}")
    path = draw_contact_sheet(args.world or share_dir() / "worlds" / "arena.sdf", args.out, args.distance, args.seed)
    print(f"figure: {path}")
    return 0
