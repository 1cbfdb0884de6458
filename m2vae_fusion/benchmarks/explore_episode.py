"""One exploration episode of `m2vae bench explore`: N robots in the embedded simulator, each with the
demo's perception path and behaviour in one process, without DDS.

Per robot, as the demo's nodes do it: the sensors fire at 10 Hz (the SDF's rates); the LiDAR's object
candidates and returns go to the explorer; perception.observe cuts every sensor's view of each object,
each encoder's gates (nodes.encoder PARAMETERS with config/encoders.yaml's values: distance, bearing,
nearest N) pick what it encodes, and the encodings, positioned in map (the simulator's true map -> odom,
as the sim node publishes it), are fused by a BeliefStore. Once a second the belief-driven policies get
their Assessments (class entropy of each fused belief, and the class-entropy reduction each of the
fusion node's default gain_candidates is expected to bring, PerceptionModel.expected_gains) and, with
several robots, the objects the others
are heading to (the plan they would share on a topic); the gains come from model.sensing_gains, as
in the fusion node. Own latents go to the other robots' stores at
the stores' rate limit, as over /shared/latents. Each simulated second every robot's fused beliefs are
scored against the world's ground truth (evaluation.scoreboard, match radius 0.1 m).

What this leaves out of the node graph: DDS and its delays, wall-clock rate limits, and other robots
moving in a robot's own simulator (each robot has its own, where the others stand at their start,
as in the demo's multi-robot launch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m2vae_fusion.behaviour.explorer import Assessment, Explorer, ExplorerConfig
from m2vae_fusion.evaluation.scoreboard import BeliefRow, TrueObject, accuracy, match
from m2vae_fusion.model.beliefs import BeliefStore, Encoding, Latent
from m2vae_fusion.model.config import MODALITIES
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.model.sensing_gains import SensingGains, parse_candidates
from m2vae_fusion.model.views import view_vector
from m2vae_fusion.perception import frames
from m2vae_fusion.perception.features import observe
from m2vae_fusion.perception.lidar_objects import Candidate, detect_objects

DT = 0.05  # s, control period (the explorer node's 20 Hz)
SENSE_EVERY = 2  # control periods per sensing (the sensors' 10 Hz)
ASSESS_EVERY = 20  # control periods per assessment (1 Hz)
MATCH_RADIUS = 0.1  # m, the scoreboard's default
NS = 1_000_000_000


@dataclass(frozen=True)
class EncoderGates:
    """Which objects an encoder encodes: the encoder node's defaults, so the bench sees what the demo sees."""

    min_distance: float
    max_distance: float
    max_bearing: float
    max_objects: int

    def admits(self, candidate: Candidate) -> bool:
        return self.min_distance <= candidate.distance <= self.max_distance and abs(candidate.bearing) <= self.max_bearing

    @classmethod
    def of(cls, modality: str) -> EncoderGates:
        """The demo's gates of one modality's encoder: the node's defaults with config/encoders.yaml's values."""
        import yaml

        from m2vae_fusion.nodes.encoder import PARAMETERS
        from m2vae_fusion.resources import config_path

        names = ("min_distance", "max_distance", "max_bearing", "max_objects")
        overrides = yaml.safe_load(config_path("encoders.yaml").read_text())[f"/**/{modality}_encoder"]["ros__parameters"]
        return cls(*(overrides.get(n, PARAMETERS[n].default) for n in names))


@dataclass
class Trace:
    """What one robot did and knew, once per simulated second."""

    accuracy: list[float] = field(default_factory=list)
    path_m: list[float] = field(default_factory=list)
    encodings: list[int] = field(default_factory=list)
    views: list[int] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)  # at the last record: objects not classified right


class RobotRun:
    """One robot: its simulator, perception path, belief store and explorer."""

    def __init__(self, world: Path, instance: str, robot_id: str, model: PerceptionModel, config: ExplorerConfig, seed: int):
        from m2vae_fusion.sim.simulator import SimConfig, Simulator

        self.sim = Simulator(SimConfig(world=world, robot=instance, seed=seed))
        static = self.sim.static_transforms()
        base = self.sim.base_frame
        self.mount = {name: frames.lookup(static, base, child) for name, child in MOUNTS.items()}
        self.model, self.robot_id = model, robot_id
        self.store = BeliefStore(model, robot_id)
        self.explorer = Explorer(config)
        self.truth = [TrueObject(o.name, o.label, o.x, o.y) for o in self.sim.objects]
        self.trace = Trace()
        self.path_m = 0.0
        self.encodings = 0

    def map_from_odom(self) -> np.ndarray:
        offset = self.sim.map_to_odom()
        return frames.pose_matrix(offset.x, offset.y, 0.0, 0.0, 0.0, offset.yaw)

    def sense(self, now_s: float, gates: dict[str, EncoderGates]) -> None:
        """One firing of every sensor: the explorer's scan, then the three encoders into the store."""
        from m2vae_fusion.nodes.explorer import scan_returns

        odom = self.sim.odometry()
        scan = self.sim.lidar()
        detected = detect_objects(scan)  # the explorer node's call
        candidates = [frames.apply(self.mount["lidar"], [c.x, c.y, 0.0])[:2] for c in detected]
        self.explorer.observe(
            odom.x, odom.y, odom.yaw, np.array(candidates).reshape(-1, 2), scan_returns(scan, self.mount["lidar"])
        )
        if not any(g.admits(c) for c in detected for g in gates.values()):
            return  # no encoder would encode anything: spare the renders (only the noise draws that follow shift)
        image, ir = self.sim.camera(), self.sim.ir()
        seen = observe(image, scan, ir, self.mount["lidar"], self.mount["ir"], self.mount["camera"], self.model.config.perception)
        map_from_base = self.map_from_odom() @ frames.pose_matrix(odom.x, odom.y, 0.0, 0.0, 0.0, odom.yaw)
        encodings = []
        for modality in MODALITIES:
            gate = gates[modality]
            chosen = [o for o in seen if getattr(o, modality) is not None and gate.admits(o.candidate)][: gate.max_objects]
            if not chosen:
                continue
            features = self.model.features(modality, np.stack([view_vector(modality, getattr(o, modality)) for o in chosen]))
            encodings += [
                Encoding(
                    modality, self.model.model_id, f, frames.apply(map_from_base, o.position), int(now_s * NS), self.robot_id
                )
                for o, f in zip(chosen, features, strict=True)
            ]
        self.store.update(encodings)
        self.encodings += len(encodings)

    def assess(self, gains: SensingGains) -> None:
        """The fused beliefs, moved into odom, with their class entropy and the gain of one more look."""
        objects = list(self.store.objects.values())
        odom_from_map = frames.inverse(self.map_from_odom())
        estimates = gains.of(objects)
        assessments = [
            Assessment(
                frames.apply(odom_from_map, o.position)[:2],
                estimates[o.object_id].class_entropy,
                {frozenset(g.modalities): g.entropy_reduction for g in estimates[o.object_id].gains},
            )
            for o in objects
        ]
        self.explorer.assess(assessments, len(self.model.labels.classes))

    def target_in_map(self) -> np.ndarray | None:
        target = self.explorer.target
        return None if target is None else frames.apply(self.map_from_odom(), [*target, 0.0])[:2]

    def claim(self, positions_map: list[np.ndarray]) -> None:
        odom_from_map = frames.inverse(self.map_from_odom())
        self.explorer.claim([frames.apply(odom_from_map, [*p, 0.0])[:2] for p in positions_map])

    def drive(self, now_s: float) -> None:
        odom = self.sim.odometry()
        linear, angular = self.explorer.step(odom.x, odom.y, odom.yaw, now_s)
        before = self.sim.robot_pose
        self.sim.set_cmd_vel(linear, angular)
        self.sim.step(DT)
        after = self.sim.robot_pose
        self.path_m += math.hypot(after.x - before.x, after.y - before.y)

    def latents(self, now_s: float) -> list[Latent]:
        """Own beliefs due for sharing, as the other robots' stores receive them."""
        return [
            Latent(
                self.robot_id,
                o.object_id,
                self.model.model_id,
                o.sequence,
                o.own_sensed,
                o.contributors,
                o.belief.mean,
                o.belief.log_var,
                o.position,
                o.own_update_ns,
            )  # fmt: skip
            for o in self.store.due_latents(now_s)
            if o.belief is not None
        ]

    def record(self) -> None:
        rows = [
            BeliefRow(
                o.object_id,
                float(o.position[0]),
                float(o.position[1]),
                self.model.labels.classes[int(np.argmax(o.class_probabilities))],
                float(np.max(o.class_probabilities)),
                o.sensed,
                o.contributors,
            )  # fmt: skip
            for o in self.store.objects.values()
        ]
        matches = match(self.truth, rows, MATCH_RADIUS)
        self.trace.accuracy.append(accuracy(matches))
        # the newest second's misses, to tell objects never found from objects classified wrong
        self.trace.misses = [
            {
                "object": m.truth.label,
                "belief": m.belief.label if m.belief else None,
                "confidence": m.belief.confidence if m.belief else None,
            }
            for m in matches
            if not m.correct
        ]
        self.trace.path_m.append(self.path_m)
        self.trace.encodings.append(self.encodings)
        self.trace.views.append(self.explorer.views_taken)

    def close(self) -> None:
        self.sim.close()


MOUNTS = {"lidar": "lidar_link", "ir": "ir_link", "camera": "camera_optical_frame"}


def run_episode(
    world: Path, robots: int, policy: str, budget_s: float, model_dir: Path, seed: int = 0, samples: int = 8
) -> dict[str, Any]:
    """Run `robots` robots with `policy` for `budget_s` simulated seconds; per robot and second the
    accuracy of its fused beliefs, its path length, encodings fused and views taken."""
    import torch

    from m2vae_fusion.bringup.worlds import world_robots
    from m2vae_fusion.nodes.fusion import PARAMETERS as FUSION_PARAMETERS

    torch.set_num_threads(1)
    model = PerceptionModel.load(model_dir)
    gates = {m: EncoderGates.of(m) for m in MODALITIES}
    _, placements = world_robots(world, robots)
    config = ExplorerConfig(policy=policy, **_explorer_overrides())
    runs = [RobotRun(world, p.instance, p.namespace, model, config, seed + k) for k, p in enumerate(placements)]
    candidates = parse_candidates(FUSION_PARAMETERS["gain_candidates"].default, MODALITIES)
    gains = {run.robot_id: SensingGains(model, candidates, samples=samples) for run in runs}
    try:
        for k in range(round(budget_s / DT)):
            now = k * DT
            if k % SENSE_EVERY == 0:
                for run in runs:
                    run.sense(now, gates)
                _share(runs, now)
            if k % ASSESS_EVERY == 0:
                _coordinate(runs, gains, policy)
            for run in runs:
                run.drive(now)
            if (k + 1) % round(1.0 / DT) == 0:
                for run in runs:
                    run.record()
    finally:
        for run in runs:
            run.close()
    first_look = next(iter(gains.values())).first_look.best.entropy_reduction
    return {
        "robots": {run.robot_id: vars(run.trace) for run in runs},
        "objects": len(runs[0].truth),
        "first_look_gain": first_look,
    }


def _share(runs: list[RobotRun], now: float) -> None:
    for run in runs:
        latents = run.latents(now)
        for other in runs:
            if other is not run and latents:
                other.store.add_latents(latents, now)


def _coordinate(runs: list[RobotRun], gains: dict[str, SensingGains], policy: str) -> None:
    if policy == "tour":  # the tour reads no beliefs: spare the gain estimates
        return
    targets = {run.robot_id: run.target_in_map() for run in runs}
    for run in runs:
        run.assess(gains[run.robot_id])
        run.claim([t for robot, t in targets.items() if robot != run.robot_id and t is not None])


def _explorer_overrides() -> dict[str, Any]:
    """config/explorer.yaml's values, as the demo's explorer node gets them."""
    import yaml

    from m2vae_fusion.resources import config_path

    return dict(yaml.safe_load(config_path("explorer.yaml").read_text())["/**"]["ros__parameters"])
