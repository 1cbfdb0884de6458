"""`m2vae bench scale`: the fusion node's work per burst with 10 to 10 000 tracked objects and 1 to 16
robots sharing latents, and the size of a shared latent on the wire.

Burst (what the fusion node does every batch_period_s): BeliefStore.update with a few own encodings
of distinct objects (each a repeat of a modality its object has sensed, so every object keeps its
state and every burst does the same work), add_latents with one new latent from each of the R - 1
other robots about those objects (every other robot has shared a latent of every object before),
and due_latents. The stores of all
object counts are held at once and take their bursts in turn, so the growth ratio (largest / smallest
object count at p50) compares figures measured side by side. Goal: growth <= 1.5 from 10 to 10 000.
Objects lie on a jittered lattice, >= 0.2 m apart (world_gen keeps 0.15 m). The foreign rate limit
is set out of the way (its check still runs): the bench times the work, not the refusals. The burst
clock advances 0.1 s per burst (it only drives the sharing rate).

Publish (every 1 / publish_rate_hz): BeliefStore.forget, the expected gains of the beliefs the bursts changed
(model.sensing_gains, as the node keeps them), and building (the fusion node's own code)
and serialising the ObjectBeliefArray of all objects: O(N) by nature, reported beside.

Wire: the bytes of one LatentEmbedding as the fusion node builds it (nodes.fusion.latent_message,
robot1/object_1234, all three modalities, frame map), serialised by rclpy. Goal: <= 256 with D_z = 10.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from m2vae_fusion.benchmarks.fusion import measure_with_model, own_encoding, percentiles_us, spread_positions, timed

if TYPE_CHECKING:  # torch and rclpy load only when a benchmark runs, not for `m2vae --help`
    from m2vae_fusion.model.beliefs import Latent
    from m2vae_fusion.model.perception_model import PerceptionModel

BURST_PERIOD_S = 0.1
S = 1_000_000_000  # ns per second


class Scene:
    """One store with `n` own objects and the other robots' latents of all of them, and the bursts it takes."""

    def __init__(self, model: PerceptionModel, n: int, rng: np.random.Generator) -> None:
        from m2vae_fusion.model.beliefs import BeliefStore, BeliefStoreConfig

        self.model, self.rng = model, rng
        self.store: BeliefStore = BeliefStore(model, "robot1", BeliefStoreConfig(forget_after_s=1e6, foreign_rate_hz=1e12))
        self.modalities = self.store.modalities
        self.stamp_ns = S
        self.now_s = 0.0
        self.gains: Any = None  # SensingGains, made by the first publish_costs and kept, as the node keeps its estimates
        self.robots: list[str] = []
        self.sequence: dict[tuple[str, str], int] = {}
        self.foreign_modalities: dict[tuple[str, str], tuple[str, ...]] = {}
        # each object sensed by one or two own sensors, so that other robots' latents fill the rest
        subsets = [c for k in (1, 2) for c in itertools.combinations(self.modalities, k)]
        burst = []
        for position in spread_positions(n, rng):
            for modality in subsets[rng.integers(len(subsets))]:
                burst.append(self._encoding(modality, position))
        created = self.store.update(burst).created
        if len(created) != n:
            raise RuntimeError(f"bench scale: {n} objects were laid out, the store made {len(created)}")
        self.ids = list(self.store.objects)
        self.store.due_latents(self.now_s)

    def _encoding(self, modality: str, position: np.ndarray):
        self.stamp_ns += 1000
        return own_encoding(
            self.model,
            modality,
            self.rng.standard_normal(self.store.feature_dim),
            position + self.rng.normal(0, 0.005, 3),
            self.stamp_ns,
        )

    def _latent(self, robot_id: str, object_id: str) -> Latent:
        from m2vae_fusion.model.beliefs import Latent

        key = (robot_id, object_id)
        if key not in self.foreign_modalities:
            subsets = [c for k in (1, 2, 3) for c in itertools.combinations(self.modalities, k)]
            self.foreign_modalities[key] = subsets[self.rng.integers(len(subsets))]
        self.sequence[key] = self.sequence.get(key, 0) + 1
        self.stamp_ns += 1000
        obj = self.store.objects[object_id]
        dim = self.store.latent_dim
        return Latent(
            robot_id,
            object_id,
            self.model.model_id,
            self.sequence[key],
            self.foreign_modalities[key],
            (robot_id,),
            self.rng.standard_normal(dim).astype(np.float32),
            self.rng.normal(-2.0, 0.3, dim).astype(np.float32),
            obj.position + self.rng.normal(0, 0.01, 3),
            self.stamp_ns,
        )

    def add_robots(self, robots: int) -> None:
        """Other robots up to `robots` in all, each sharing a latent of every object."""
        new = [f"robot{k}" for k in range(len(self.robots) + 2, robots + 1)]
        latents = [self._latent(robot_id, object_id) for robot_id in new for object_id in self.ids]
        result = self.store.add_latents(latents, self.now_s)
        if result.rejected or result.created:
            raise RuntimeError(
                f"bench scale: setting up robots {new}: {len(result.rejected)} latents rejected, {len(result.created)} objects made"
            )
        self.robots += new

    def burst(self, encodings: int) -> dict[str, int]:
        """One batch period's store work; ns per step."""
        self.now_s += BURST_PERIOD_S
        picked = self.rng.choice(len(self.ids), size=min(encodings, len(self.ids)), replace=False)
        own = []
        for k in picked:
            obj = self.store.objects[self.ids[k]]
            sensed = obj.own_sensed
            own.append(self._encoding(sensed[self.rng.integers(len(sensed))], obj.position))
        # the other robots share latents of the objects seen here: the same number of objects touched for any object count
        foreign = [self._latent(robot_id, self.ids[picked[k % len(picked)]]) for k, robot_id in enumerate(self.robots)]
        return {
            "update": timed(lambda: self.store.update(own)),
            "add_latents": timed(lambda: self.store.add_latents(foreign, self.now_s)),
            "due_latents": timed(lambda: self.store.due_latents(self.now_s)),
        }


def publish_costs(scene: Scene) -> dict[str, int]:
    """ns to forget (nothing is due) and to build and serialise the ObjectBeliefArray of every object, and its bytes."""
    from rclpy.serialization import serialize_message

    from m2vae_fusion.model.sensing_gains import SensingGains
    from m2vae_fusion.nodes.fusion import FusionNode
    from m2vae_msgs.msg import ObjectBeliefArray

    store = scene.store
    # the node's own message code; it needs nothing of the node but its model
    node = SimpleNamespace(model=scene.model)
    msg = ObjectBeliefArray()
    msg.header.frame_id = "map"
    out: dict[str, int] = {"forget": timed(lambda: store.forget(scene.stamp_ns))}
    if scene.gains is None:  # the node's default gain_candidates and gain_samples, kept across publishes as in the node
        scene.gains = SensingGains(scene.model, [tuple(scene.modalities)])
    # the beliefs the bursts since the last publish changed are estimated again (the first publish: all of them)
    out["gains"] = timed(lambda: scene.gains.of(store.objects.values()))
    gains = scene.gains.of(store.objects.values())
    out["beliefs_build"] = timed(
        lambda: setattr(msg, "beliefs", [FusionNode._belief(node, obj, gains[obj.object_id]) for obj in store.objects.values()])
    )
    data = b""

    def serialise() -> None:
        nonlocal data
        data = serialize_message(msg)

    out["beliefs_serialize"] = timed(serialise)
    out["beliefs_bytes"] = len(data)
    return out


def latent_wire_bytes(model: PerceptionModel) -> dict[str, Any]:
    """The serialised LatentEmbedding of an object sensed by every sensor, as the fusion node sends it."""
    from rclpy.serialization import serialize_message

    from m2vae_fusion.model.beliefs import BeliefStore
    from m2vae_fusion.nodes.fusion import latent_message

    store = BeliefStore(model, "robot1")
    rng = np.random.default_rng(0)
    position = np.array([12.345, -6.789, 0.03])
    (obj,) = store.update(
        [own_encoding(model, m, rng.standard_normal(store.feature_dim), position, 5 * S) for m in store.modalities]
    ).updated
    (obj,) = store.due_latents(0.0)
    msg = latent_message(dataclasses.replace(obj, object_id="object_1234", sequence=123_456), "robot1", model.model_id, "map")
    start = time.perf_counter_ns()
    data = serialize_message(msg)
    return {
        "bytes": len(data),
        "serialize_us": (time.perf_counter_ns() - start) / 1e3,
        "latent_dim": len(msg.mean),
        "modalities": list(msg.modalities),
        "robot_id": msg.robot_id,
        "object_id": msg.object_id,
        "model_id": msg.model_id,
    }


def bench_scale(
    model: PerceptionModel,
    objects: tuple[int, ...] = (10, 1000, 10_000),
    robots: tuple[int, ...] = (1, 4, 16),
    bursts: int = 200,
    encodings: int = 3,
    publishes: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    if not objects or min(objects) < 1 or not robots or min(robots) < 1 or bursts < 1 or encodings < 1 or publishes < 1:
        raise ValueError(
            f"bench scale: --objects, --robots, --bursts, --encodings and --publishes must be >= 1, got {list(objects)}, {list(robots)}, "
            f"{bursts}, {encodings}, {publishes}"
        )
    objects, robots = tuple(sorted(set(objects))), tuple(sorted(set(robots)))
    rng = np.random.default_rng(seed)
    scenes = {n: Scene(model, n, rng) for n in objects}
    burst: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    publish: dict[str, dict[str, dict[str, Any]]] = {}
    growth: dict[str, dict[str, float]] = {}
    steps = ("update", "add_latents", "due_latents", "total")
    for r in robots:
        samples = {n: {step: [] for step in steps} for n in objects}
        published = {
            n: {"forget": [], "gains": [], "beliefs_build": [], "beliefs_serialize": [], "beliefs_bytes": []} for n in objects
        }
        for scene in scenes.values():
            scene.add_robots(r)
        for _ in range(bursts):  # the object counts in turn: side by side
            for n, scene in scenes.items():
                times = scene.burst(encodings)
                times["total"] = sum(times.values())
                for step, ns in times.items():
                    samples[n][step].append(ns)
        for _ in range(publishes):
            for n, scene in scenes.items():
                for key, value in publish_costs(scene).items():
                    published[n][key].append(value)
        burst[str(r)] = {str(n): {step: percentiles_us(samples[n][step]) for step in steps} for n in objects}
        publish[str(r)] = {
            str(n): {
                **{key: percentiles_us(values) for key, values in published[n].items() if key != "beliefs_bytes"},
                "beliefs_bytes": published[n]["beliefs_bytes"][-1],
            }
            for n in objects
        }
        low, high = burst[str(r)][str(objects[0])], burst[str(r)][str(objects[-1])]
        growth[str(r)] = {step: high[step]["p50_us"] / low[step]["p50_us"] for step in ("update", "total")}
    return {
        "model_id": model.model_id,
        "objects": list(objects),
        "robots": list(robots),
        "bursts": bursts,
        "encodings_per_burst": encodings,
        "burst": burst,
        "growth_p50": growth,
        "goal_growth": 1.5,
        "publish": publish,
        "latent_embedding": latent_wire_bytes(model),
        "goal_latent_bytes": 256,
    }


def table(results: dict[str, Any]) -> str:
    objects = results["objects"]
    rows = [
        f"fusion node work per burst ({results['encodings_per_burst']} own encodings + one latent from each other robot), "
        f"{results['bursts']} bursts per row, object counts in turn, model {results['model_id']}",
        f"{'robots':>6} {'objects':>8} {'update p50/p99 us':>19} {'add_latents p50 us':>19} {'due p50 us':>11} {'burst p50/p99 us':>18}",
    ]
    for r, per_n in results["burst"].items():
        for n, row in per_n.items():
            update, total = row["update"], row["total"]
            rows.append(
                f"{r:>6} {n:>8} {update['p50_us']:>9.0f} /{update['p99_us']:>7.0f} {row['add_latents']['p50_us']:>19.0f} "
                f"{row['due_latents']['p50_us']:>11.1f} {total['p50_us']:>9.0f} /{total['p99_us']:>6.0f}"
            )
    rows.append(f"growth {objects[0]} -> {objects[-1]} objects at p50 (goal <= {results['goal_growth']:g}):")
    for r, growth in results["growth_p50"].items():
        rows.append(f"  {r:>2} robot(s): update {growth['update']:.2f}, whole burst {growth['total']:.2f}")
    rows.append("")
    rows.append(
        "every publish period, O(N) by nature: forget, the expected gains of the beliefs changed since, and the ObjectBeliefArray of all objects (the node's code)"
    )
    rows.append(
        f"{'robots':>6} {'objects':>8} {'forget p50 ms':>14} {'gains p50 ms':>13} {'build p50 ms':>13} {'serialise p50 ms':>17} {'bytes':>10}"
    )
    for r, per_n in results["publish"].items():
        for n, row in per_n.items():
            rows.append(
                f"{r:>6} {n:>8} {row['forget']['p50_us'] / 1e3:>14.2f} {row['gains']['p50_us'] / 1e3:>13.2f} {row['beliefs_build']['p50_us'] / 1e3:>13.2f} "
                f"{row['beliefs_serialize']['p50_us'] / 1e3:>17.2f} {row['beliefs_bytes']:>10}"
            )
    latent = results["latent_embedding"]
    rows.append("")
    rows.append(
        f"LatentEmbedding on the wire: {latent['bytes']} bytes (goal <= {results['goal_latent_bytes']}), D_z = {latent['latent_dim']}, "
        f"{latent['robot_id']}/{latent['object_id']}, {len(latent['modalities'])} modalities, model id {latent['model_id']}"
    )
    return "\n".join(rows)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="perception model folder (default: the shipped m2vae_fusion/weights/amiro)")
    parser.add_argument(
        "--objects", type=int, nargs="+", default=[10, 1000, 10_000], help="tracked object counts (default: 10 1000 10000)"
    )
    parser.add_argument(
        "--robots", type=int, nargs="+", default=[1, 4, 16], help="robots sharing latents, this one included (default: 1 4 16)"
    )
    parser.add_argument("--bursts", type=int, default=200, help="bursts measured per object count and robot count (default: 200)")
    parser.add_argument("--encodings", type=int, default=3, help="own encodings per burst (default: 3)")
    parser.add_argument(
        "--publishes", type=int, default=10, help="publish periods measured per object count and robot count (default: 10)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")


def run_bench(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    results = measure_with_model(
        args,
        "scale",
        lambda model: bench_scale(model, tuple(args.objects), tuple(args.robots), args.bursts, args.encodings, args.publishes),
    )
    return results, table(results)
