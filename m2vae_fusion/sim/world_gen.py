"""Arena worlds in SDF: the layout of worlds/*.sdf and `m2vae sim world`, which randomises it.

A world is the arena of the spec (ground, walls at +-1.5 m, a sun, the gz-sim system plugins), one
or more AMiRo robots and the primitive objects as `model://` includes. Generated worlds draw the
object positions, yaws and the sun from `random.Random(seed)`, so a seed always gives the same
text. worlds/arena_cluttered.sdf is `generate_world(seed=1, objects=16)` verbatim.
"""

from __future__ import annotations

import argparse
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from m2vae_fusion.core.atomic_file import write_text_atomic
from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.perception.labels import default_labels

ARENA_HALF = 1.5  # wall centre lines, m
WALL_THICKNESS = 0.02
WALL_HEIGHT = 0.15
WALL_RETRO = 0.5
# Object centres stay within +-PLACEMENT_HALF: the widest object (the cube's half diagonal,
# 0.038 m) then keeps a gap of 5 cm to the walls' inner faces, enough for the IR ring to see both.
PLACEMENT_HALF = 1.4
MIN_ROBOT_CLEARANCE = 0.25  # object centre to robot start, m
MIN_OBJECT_SPACING = 0.15  # object centre to object centre, m
ROBOT_RING_RADIUS = 0.6  # start circle of multi-robot worlds, m
MAX_ROBOTS = 8
MAX_OBJECTS = 100
# Rejection sampling gives up after this many draws for one object; far above what a feasible
# layout needs (at MAX_OBJECTS with 8 robots an object takes about 2.5 draws on average).
MAX_DRAWS_PER_OBJECT = 5000
# Sane outdoor-ish light: the sun stays 35-80 deg above the horizon at 0.7-1.1 intensity.
SUN_ELEVATION_DEG = (35.0, 80.0)
SUN_INTENSITY = (0.7, 1.1)

ROBOT_MODEL = "amiro"
DECIMALS = 4  # poses in the file: 0.1 mm, 0.0001 rad
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\Z")


@dataclass(frozen=True)
class Placement:
    """One `<include>`: the model folder, its instance name and its pose on the floor."""

    model: str
    name: str
    x: float
    y: float
    yaw: float


@dataclass(frozen=True)
class Sun:
    direction: tuple[float, float, float]
    intensity: float


DEFAULT_SUN = Sun(direction=(-0.5, 0.1, -0.9), intensity=1.0)


def robot_starts(robots: int) -> list[Placement]:
    """Robot start poses: one robot `amiro` at the origin; several, `amiro_1..R` on a ring, facing out."""
    if isinstance(robots, bool) or not isinstance(robots, int) or not 1 <= robots <= MAX_ROBOTS:
        raise ConfigError(f"robots must be an integer in 1..{MAX_ROBOTS}, got {robots!r}")
    if robots == 1:
        return [Placement(ROBOT_MODEL, ROBOT_MODEL, 0.0, 0.0, 0.0)]
    starts = []
    for k in range(robots):
        angle = 2.0 * math.pi * k / robots
        starts.append(
            Placement(
                ROBOT_MODEL,
                f"{ROBOT_MODEL}_{k + 1}",
                round(ROBOT_RING_RADIUS * math.cos(angle), DECIMALS),
                round(ROBOT_RING_RADIUS * math.sin(angle), DECIMALS),
                round(_wrap(angle), DECIMALS),
            )
        )
    return starts


def instance_names(models: Sequence[str]) -> list[str]:
    """Unique include names: the model name for the first copy, then `_2`, `_3`, ..."""
    seen: Counter[str] = Counter()
    names = []
    for model in models:
        seen[model] += 1
        names.append(model if seen[model] == 1 else f"{model}_{seen[model]}")
    return names


def place_objects(rng: random.Random, objects: int, robots: Sequence[Placement]) -> list[Placement]:
    """Draw non-overlapping object poses, classes cycled evenly through a shuffled class order."""
    order = list(default_labels().classes)
    rng.shuffle(order)
    models = [order[i % len(order)] for i in range(objects)]
    placed: list[Placement] = []
    for model, name in zip(models, instance_names(models)):
        for _ in range(MAX_DRAWS_PER_OBJECT):
            # Rounded as written to the file, so the file itself keeps the spacing rules.
            x = round(rng.uniform(-PLACEMENT_HALF, PLACEMENT_HALF), DECIMALS)
            y = round(rng.uniform(-PLACEMENT_HALF, PLACEMENT_HALF), DECIMALS)
            if all(math.hypot(x - r.x, y - r.y) >= MIN_ROBOT_CLEARANCE for r in robots) and all(
                math.hypot(x - o.x, y - o.y) >= MIN_OBJECT_SPACING for o in placed
            ):
                break
        else:
            raise ConfigError(
                f"cannot fit {objects} objects beside {len(robots)} robot(s): object {len(placed) + 1} "
                f"found no free spot {MIN_OBJECT_SPACING} m from the others and "
                f"{MIN_ROBOT_CLEARANCE} m from every robot; ask for fewer objects"
            )
        placed.append(Placement(model, name, x, y, round(rng.uniform(-math.pi, math.pi), DECIMALS)))
    return placed


def random_sun(rng: random.Random) -> Sun:
    elevation = math.radians(rng.uniform(*SUN_ELEVATION_DEG))
    azimuth = rng.uniform(-math.pi, math.pi)
    direction = (
        -math.cos(elevation) * math.cos(azimuth),
        -math.cos(elevation) * math.sin(azimuth),
        -math.sin(elevation),
    )
    return Sun(direction=direction, intensity=rng.uniform(*SUN_INTENSITY))


def generate_world(seed: int, objects: int, robots: int = 1, name: str | None = None) -> str:
    """The SDF text of a random arena; the same arguments always give the same text."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(objects, bool) or not isinstance(objects, int) or not 1 <= objects <= MAX_OBJECTS:
        raise ConfigError(f"objects must be an integer in 1..{MAX_OBJECTS}, got {objects!r}")
    starts = robot_starts(robots)
    rng = random.Random(seed)
    placed = place_objects(rng, objects, starts)
    sun = random_sun(rng)
    call = f"seed={seed}, objects={objects}" + (f", robots={robots}" if robots != 1 else "")
    return render_world(
        name or "arena",
        starts,
        placed,
        sun,
        description=f"Generated by world_gen.generate_world({call}); regenerate, do not edit.",
    )


def write_world(path: str | Path, seed: int, objects: int, robots: int = 1, name: str | None = None) -> Path:
    """Generate a world and write it atomically to `path`."""
    return write_text_atomic(path, generate_world(seed, objects, robots=robots, name=name))


def render_world(
    name: str,
    robots: Sequence[Placement],
    objects: Sequence[Placement],
    sun: Sun = DEFAULT_SUN,
    description: str = "",
) -> str:
    """The SDF text of an arena world holding `robots` and `objects` (the layout of worlds/*.sdf)."""
    if not _NAME_RE.match(name):
        raise ConfigError(f"world name {name!r} is not a valid name (letters, digits, '_', '-')")
    if "--" in description:
        raise ConfigError("world description: '--' cannot appear inside an XML comment")
    names = [p.name for p in (*robots, *objects)]
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ConfigError(f"world {name!r}: include names must be unique, repeated: {duplicates}")
    dx, dy, dz = (v / math.sqrt(sum(c * c for c in sun.direction)) for v in sun.direction)
    includes = "\n".join(_include(p) for p in (*robots, *objects))
    return _WORLD_TEMPLATE.format(
        description=f"\n  {description}" if description else "",
        name=name,
        sun_intensity=_f(sun.intensity, 3),
        sun_direction=f"{_f(dx)} {_f(dy)} {_f(dz)}",
        walls=_walls(),
        includes=includes,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `m2vae sim world`."""
    parser.add_argument("--seed", type=int, required=True, help="random seed (same seed, same world)")
    parser.add_argument("--objects", type=int, required=True, help=f"number of objects, 1..{MAX_OBJECTS}")
    parser.add_argument("--robots", type=int, default=1, help=f"number of robots, 1..{MAX_ROBOTS} (default 1)")
    parser.add_argument("--name", default=None, help="world name (default: arena)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output SDF (default: worlds/generated/world_<seed>.sdf in the current directory)",
    )


def run(args: argparse.Namespace) -> int:
    """`m2vae sim world`: write the world and print its path."""
    out = args.out if args.out is not None else Path("worlds") / "generated" / f"world_{args.seed}.sdf"
    path = write_world(out, args.seed, args.objects, robots=args.robots, name=args.name)
    print(path)
    return 0


def _f(value: float, digits: int = DECIMALS) -> str:
    """Fixed-point text without a negative zero, so equal worlds give equal bytes."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def _wrap(angle: float) -> float:
    return math.atan2(math.sin(angle), math.cos(angle))


def _include(p: Placement) -> str:
    return (
        "    <include>\n"
        f"      <uri>model://{p.model}</uri>\n"
        f"      <name>{p.name}</name>\n"
        f"      <pose>{_f(p.x)} {_f(p.y)} 0 0 0 {_f(p.yaw)}</pose>\n"
        "    </include>"
    )


def _walls() -> str:
    length = 2 * ARENA_HALF + WALL_THICKNESS  # overlap at the corners closes the square
    sides = {
        "north": (0.0, ARENA_HALF, length, WALL_THICKNESS),
        "south": (0.0, -ARENA_HALF, length, WALL_THICKNESS),
        "east": (ARENA_HALF, 0.0, WALL_THICKNESS, length),
        "west": (-ARENA_HALF, 0.0, WALL_THICKNESS, length),
    }
    parts = []
    for side, (x, y, sx, sy) in sides.items():
        pose = f"{_f(x, 3)} {_f(y, 3)} {_f(WALL_HEIGHT / 2, 3)} 0 0 0"
        size = f"{_f(sx, 3)} {_f(sy, 3)} {_f(WALL_HEIGHT, 3)}"
        parts.append(_WALL_TEMPLATE.format(side=side, pose=pose, size=size, retro=_f(WALL_RETRO, 2)))
    return "\n".join(parts)


_WALL_TEMPLATE = """\
        <collision name="{side}_collision">
          <pose>{pose}</pose>
          <geometry>
            <box>
              <size>{size}</size>
            </box>
          </geometry>
          <laser_retro>{retro}</laser_retro>
        </collision>
        <visual name="{side}_visual">
          <pose>{pose}</pose>
          <geometry>
            <box>
              <size>{size}</size>
            </box>
          </geometry>
          <material>
            <ambient>0.8 0.8 0.8 1</ambient>
            <diffuse>0.8 0.8 0.8 1</diffuse>
            <specular>0.1 0.1 0.1 1</specular>
          </material>
          <laser_retro>{retro}</laser_retro>
        </visual>"""

_WORLD_TEMPLATE = """\
<?xml version="1.0"?>
<!--
  Arena world of m2vae_fusion: ground, a square wall enclosure at +-1.5 m, the AMiRo robot(s)
  and the primitive objects (class = included model name <colour>_<shape>_<surface>).{description}
-->
<sdf version="1.9">
  <world name="{name}">
    <physics name="1ms" type="ignored">
      <max_step_size>0.001</max_step_size>
      <real_time_factor>1</real_time_factor>
    </physics>
    <plugin filename="gz-sim-physics-system" name="gz::sim::systems::Physics"/>
    <plugin filename="gz-sim-user-commands-system" name="gz::sim::systems::UserCommands"/>
    <plugin filename="gz-sim-scene-broadcaster-system" name="gz::sim::systems::SceneBroadcaster"/>
    <plugin filename="gz-sim-sensors-system" name="gz::sim::systems::Sensors">
      <render_engine>ogre2</render_engine>
    </plugin>
    <gravity>0 0 -9.8</gravity>
    <scene>
      <ambient>0.4 0.4 0.4 1</ambient>
      <background>0.7 0.7 0.7 1</background>
      <shadows>false</shadows>
    </scene>

    <light type="directional" name="sun">
      <cast_shadows>false</cast_shadows>
      <pose>0 0 10 0 0 0</pose>
      <diffuse>0.8 0.8 0.8 1</diffuse>
      <specular>0.2 0.2 0.2 1</specular>
      <intensity>{sun_intensity}</intensity>
      <direction>{sun_direction}</direction>
    </light>

    <model name="ground_plane">
      <static>true</static>
      <link name="link">
        <collision name="collision">
          <geometry>
            <plane>
              <normal>0 0 1</normal>
              <size>4 4</size>
            </plane>
          </geometry>
        </collision>
        <visual name="visual">
          <geometry>
            <plane>
              <normal>0 0 1</normal>
              <size>4 4</size>
            </plane>
          </geometry>
          <material>
            <ambient>0.5 0.5 0.5 1</ambient>
            <diffuse>0.5 0.5 0.5 1</diffuse>
            <specular>0.1 0.1 0.1 1</specular>
          </material>
        </visual>
      </link>
    </model>

    <model name="walls">
      <static>true</static>
      <link name="link">
{walls}
      </link>
    </model>

{includes}
  </world>
</sdf>
"""
