"""The world a simulated graph runs in and the robots in it.

Worlds: robots=1 -> worlds/arena.sdf (robot instance `amiro`), 2 -> worlds/arena_two_robots.sdf
(amiro_1, amiro_2), 3..8 -> world_gen.generate_world(GENERATED_SEED, GENERATED_OBJECTS, robots=N)
written to the cache folder (the same N gives the same file). In a given world the robots are the
models with a DiffDrive plugin, in file order; robot k drives the k-th, and fewer than N is an error.
Generated files go to the cache folder (ROS_HOME/m2vae_fusion, default ~/.ros/m2vae_fusion).
"""

from __future__ import annotations

import os
from pathlib import Path

from m2vae_fusion.bringup.description import BringupError, RobotPlacement
from m2vae_fusion.core.atomic_file import write_text_atomic
from m2vae_fusion.resources import PACKAGE, share_dir

DEFAULT_WORLDS = {1: "arena.sdf", 2: "arena_two_robots.sdf"}
GENERATED_SEED = 2  # the seed of worlds/arena_two_robots.sdf
GENERATED_OBJECTS = 8


def cache_folder() -> Path:
    return Path(os.environ.get("ROS_HOME") or "~/.ros").expanduser() / PACKAGE


def write_if_changed(path: Path, text: str) -> Path:
    # unchanged files keep their mtime and never appear half-written to a second launch reading them
    if not (path.is_file() and path.read_text() == text):
        write_text_atomic(path, text)
    return path


def resolve_world(world: str | Path | None, robots: int, cache: Path) -> Path:
    """The world file: a given path (relative names also in the package's worlds/), else the default for N robots."""
    from m2vae_fusion.sim import world_gen

    worlds = share_dir() / "worlds"
    if world is not None and str(world) != "":
        path = Path(world).expanduser()
        if path.is_file():
            return path.resolve()
        if not path.is_absolute() and (worlds / path).is_file():
            return worlds / path
        raise BringupError(f"world {world}: no such file (relative names are also looked up in {worlds})")
    if robots in DEFAULT_WORLDS:
        return worlds / DEFAULT_WORLDS[robots]
    try:
        text = world_gen.generate_world(GENERATED_SEED, GENERATED_OBJECTS, robots=robots)
    except ValueError as exc:  # ConfigError: robots out of range
        raise BringupError(f"robots={robots}: {exc}") from None
    return write_if_changed(cache / "worlds" / f"arena_{robots}_robots.sdf", text)


def world_robots(world: Path, robots: int) -> tuple[str, tuple[RobotPlacement, ...]]:
    """The world's name and its first `robots` drivable models (DiffDrive) as robots k = 1..N in
    namespaces robot1..robotN."""
    from m2vae_fusion.perception.frames import matrix_yaw
    from m2vae_fusion.sim.sdf import load_world

    try:
        loaded = load_world(world, [share_dir() / "models"])
    except (ValueError, OSError) as exc:  # SdfError names file and element
        raise BringupError(f"world {world}: {exc}") from None
    drivable = [m for m in loaded.models if m.diff_drive is not None]
    if len(drivable) < robots:
        found = ", ".join(m.name for m in drivable) or "none"
        raise BringupError(
            f"world {world} has {len(drivable)} robot(s) ({found}) but {robots} were asked for: pick a world with "
            f"more robots, e.g. `m2vae sim world --seed 0 --objects 8 --robots {robots} --out my_world.sdf`, or leave "
            "the world out to get a generated one"
        )
    return loaded.name, tuple(
        RobotPlacement(f"robot{k}", m.name, float(m.pose[0, 3]), float(m.pose[1, 3]), float(m.pose[2, 3]), matrix_yaw(m.pose))
        for k, m in enumerate(drivable[:robots], start=1)
    )
