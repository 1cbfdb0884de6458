"""Ground truth of a world: its labelled objects, read from the SDF alone (no physics, no MuJoCo), so the
embedded simulator and the ground_truth node beside Gazebo report the same objects for the same world."""

from __future__ import annotations

from m2vae_fusion.perception.frames import matrix_yaw
from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.perception.readings import ObjectState
from m2vae_fusion.sim.sdf import World

# ground_truth/objects messages per simulated second, wherever they come from (sim node, ground_truth node)
GROUND_TRUTH_RATE_HZ = 1.0


def world_objects(world: World) -> list[ObjectState]:
    """The world's objects: its models named after a class of the label space (config/labels.yaml), in
    world order; every other model (robots, walls, floor) is scenery. Poses are the SDF's: the objects are static."""
    labels, states = default_labels(), []
    for model in world.models:
        if model.source not in labels.classes:
            continue
        v, p = labels.attribute_values(model.source), model.pose
        states.append(
            ObjectState(
                model.name,
                v["colour"],
                v["shape"],
                v["surface"],
                labels.index(model.source),
                model.source,
                float(p[0, 3]),
                float(p[1, 3]),
                float(p[2, 3]),
                matrix_yaw(p),
            )
        )
    return states
