"""One fuzz run against the live graph: start it, wait until every node reports, send the scheduled
messages under flow control, wait for the last counts, stop the graph and gather the results."""

from __future__ import annotations

import json
import os
import platform
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m2vae_fusion.resources import default_model_dir
from m2vae_fusion.robustness.cases import ACCEPTED, ENCODERS, Case, Scene, schedule
from m2vae_fusion.robustness.graph import FAST_DIAGNOSTICS_S, Graph
from m2vae_fusion.robustness.observer import Fuzzer, counted
from m2vae_fusion.robustness.report import all_counted_but_lost, count_rows, lost_in_transport
from m2vae_fusion.ros_interface.latent_signing import FleetKey, write_key_file

WINDOW = {"sensor": 2, "latent": 20}  # uncounted messages per node; sensor queues hold 5 (the sim's share them), latents 50
STARTUP_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 15.0  # after the last message, for the last counts
STALL_TIMEOUT_S = 10.0  # waiting on one node's counts before sending anyway (and failing the count goal)
ENV_KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")


@dataclass
class Baseline:
    """The nodes' counters once the graph is up, and per node the counters its fuzz messages may raise:
    every rise is measured from here."""

    counts: dict[str, dict[str, int]]
    seen: Counter[tuple[str, str]]
    keys: dict[str, set[str]]

    def rise(self, fuzzer: Fuzzer, node: str) -> int:
        return counted(fuzzer, self.counts, node, tuple(self.keys[node]))


def node_names(robots: tuple[str, ...]) -> dict[str, list[str]]:
    """node name in a robot namespace (camera_encoder, fusion) -> full names, one per robot."""
    return {name: [f"/{r}/{name}" for r in robots] for name in (*(f"{m}_encoder" for m in ENCODERS), "fusion")}


def fleet_keys(log_dir: Path) -> tuple[Path, FleetKey, FleetKey]:
    """A fresh fleet key file for the graph (in the log folder, owner-only: a throwaway key of this
    run), the key the fuzz signs with, and an intruder's key that file does not list."""
    path = write_key_file(log_dir / "fleet_key.yaml", {"fuzz-fleet": secrets.token_bytes(32)}, "fuzz-fleet")
    intruder = FleetKey(Path("(the fuzz's intruder)"), "intruder", {"intruder": secrets.token_bytes(32)})
    return path, FleetKey.load(path), intruder


def run_fuzz(
    messages: int,
    seed: int,
    robots: int,
    log_dir: Path,
    progress: Callable[[str], None] = print,
    fleet_key: bool = True,
) -> dict[str, Any]:
    """Start the graph (`fleet_key`: its fusion nodes sign and verify latents with a fresh fleet key),
    fuzz it with `messages` messages, stop it; the results (see robustness.command)."""
    from m2vae_fusion.bringup.ros_env import isolated_ros_env

    if messages < 1 or robots < 1:
        raise ValueError(f"--messages and --robots must be >= 1, got {messages} and {robots}")
    env = isolated_ros_env()
    for key in ENV_KEYS:
        os.environ[key] = env[key]  # this process's rclpy must join the graph's domain the same way
    manifest = json.loads((default_model_dir() / "perception_model.json").read_text())
    namespaces = tuple(f"robot{k}" for k in range(1, robots + 1))
    scene = Scene(namespaces, manifest["model_id"], int(manifest["config"]["fusion"]["latent_dim"]))
    key_file = None
    if fleet_key:
        key_file, scene.signer, scene.intruder = fleet_keys(log_dir)
    plan = schedule(messages, seed, namespaces, signed=fleet_key)
    names = node_names(namespaces)

    started = time.monotonic()
    graph = Graph(robots, env, log_dir, key_file)
    fuzzer = None
    try:
        fuzzer = Fuzzer(int(env["ROS_DOMAIN_ID"]), scene)
        progress(
            f"m2vae fuzz: {len(graph.procs)} nodes on ROS_DOMAIN_ID {env['ROS_DOMAIN_ID']}, logs in {log_dir}; waiting for the graph"
        )
        wait_for_graph(fuzzer, graph, names)
        timing = {"startup_s": time.monotonic() - started}
        baseline = take_baseline(fuzzer, names)
        signing = "signed with a fresh fleet key" if fleet_key else "unsigned (no fleet key)"
        progress(
            f"m2vae fuzz: graph up after {timing['startup_s']:.0f} s; sending {messages} messages (seed {seed}), latents {signing}"
        )
        fuzz_start = time.monotonic()
        stalls = send_all(fuzzer, plan, names, baseline, np.random.default_rng(seed + 1), progress)
        timing["fuzz_s"] = time.monotonic() - fuzz_start
        settle(fuzzer, baseline)
        crashed = graph.exited()
        found = gather(fuzzer, baseline, names)
    finally:
        try:
            if fuzzer is not None:
                fuzzer.close()
        finally:
            graph.stop()  # also on Ctrl-C or an error: no node outlives the run
    return results(messages, seed, robots, graph, fuzzer, timing, stalls, crashed, found, log_dir)


def wait_for_graph(fuzzer: Fuzzer, graph: Graph, names: dict[str, list[str]]) -> None:
    """Spin until every node reports on /diagnostics, each fusion node publishes beliefs in map and
    every robot's sensors have sent a base message; RuntimeError naming what is missing otherwise."""
    scene = fuzzer.scene
    watched = [n for full in names.values() for n in full]
    needed = [(r, t) for r in scene.robots for t in ("scan", "image", "ir")]

    def ready() -> bool:
        reported = all(
            fuzzer.counts.get(n, {}).get("received scan", 0) > 0 for full in names.values() for n in full if "encoder" in n
        )
        # latents are taken in map only: before a fusion node has map -> odom it would drop them all as "frame"
        in_map = all(fuzzer.belief_frames.get(r) == "map" for r in scene.robots)
        return (
            reported
            and in_map
            and all(n in fuzzer.counts for n in watched)
            and all(k in scene.bases for k in needed)
            and scene.now_ns > 2e9
        )

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready():
        if graph.exited() or time.monotonic() > deadline:
            missing = [n for n in watched if n not in fuzzer.counts] + [
                f"/{r}/{t}" for r, t in needed if (r, t) not in scene.bases
            ]
            missing += [f"/{r}/beliefs in map" for r in scene.robots if fuzzer.belief_frames.get(r) != "map"]
            raise RuntimeError(
                f"the graph did not come up (exited: {graph.exited() or 'none'}; not heard from: {missing or 'none'})"
            )
        fuzzer.spin(0.1)
    fuzzer.spin(2 * FAST_DIAGNOSTICS_S)  # every node's counters from after the bases


def take_baseline(fuzzer: Fuzzer, names: dict[str, list[str]]) -> Baseline:
    """The counters to measure from; beliefs seen while the graph came up do not count."""
    baseline = Baseline(
        {n: dict(c) for n, c in fuzzer.counts.items()}, Counter(fuzzer.seen), {n: set() for full in names.values() for n in full}
    )
    fuzzer.outcome.beliefs_checked, fuzzer.outcome.non_finite_beliefs = 0, []
    return baseline


def send_all(
    fuzzer: Fuzzer,
    plan: list[tuple[Case, str]],
    names: dict[str, list[str]],
    baseline: Baseline,
    rng: np.random.Generator,
    progress: Callable[[str], None],
) -> int:
    """Send every planned message; the number of times flow control gave up waiting for a node."""
    stalls = 0
    for k, (case, robot) in enumerate(plan):
        # sensor messages go to one robot's encoders, latents to every robot's fusion node
        targets = [n for name in case.nodes for n in names[name] if case.topic == "latent" or n.startswith(f"/{robot}/")]
        for node in targets:
            baseline.keys[node].add(case.key)
            if case.may_accept:
                baseline.keys[node].add(ACCEPTED)
        if not wait_for_room(fuzzer, baseline, targets, WINDOW["latent" if case.topic == "latent" else "sensor"]):
            stalls += 1
        send_one(fuzzer, case, robot, targets, rng)
        if case.name == "latent_flood" and fuzzer.outcome.sent[case.name] == 1:
            # the replays copy this one: let it be accepted before anything else goes out
            wait_until = time.monotonic() + STALL_TIMEOUT_S
            while (
                any(counted(fuzzer, baseline.counts, n, (ACCEPTED, "dropped latent: rate")) < 1 for n in targets)
                and time.monotonic() < wait_until
            ):
                fuzzer.spin(0.005)
        if (k + 1) % max(1, len(plan) // 10) == 0:
            progress(f"m2vae fuzz: {k + 1} / {len(plan)} sent")
        fuzzer.spin(0.0)
    return stalls


def wait_for_room(fuzzer: Fuzzer, baseline: Baseline, targets: list[str], window: int) -> bool:
    """Spin until every target has fewer than `window` fuzz messages not yet counted; False after STALL_TIMEOUT_S."""
    outstanding = fuzzer.outcome.outstanding
    wait_until = time.monotonic() + STALL_TIMEOUT_S
    while not all(outstanding[n] - baseline.rise(fuzzer, n) < window for n in targets):
        if time.monotonic() > wait_until:
            return False
        fuzzer.spin(0.005)
    return True


def send_one(fuzzer: Fuzzer, case: Case, robot: str, targets: list[str], rng: np.random.Generator) -> None:
    """Make and publish one message of `case` and book what its targets must count for it."""
    outcome = fuzzer.outcome
    msg = case.make(fuzzer.scene, rng, robot)
    (fuzzer.latents if case.topic == "latent" else fuzzer.publishers[(robot, case.topic)]).publish(msg)
    outcome.sent[case.name] += 1
    for node in targets:
        outcome.outstanding[node] += 1
        if case.may_accept:
            outcome.lenient[node] = outcome.lenient.get(node, 0) + 1
        else:
            outcome.expected[(node, case.key)] = outcome.expected.get((node, case.key), 0) + 1


def settle(fuzzer: Fuzzer, baseline: Baseline) -> None:
    """Spin until every node has counted every fuzz message sent to it, for SETTLE_TIMEOUT_S at most."""

    def all_counted() -> bool:
        return all(fuzzer.outcome.outstanding[n] - baseline.rise(fuzzer, n) <= 0 for n in baseline.keys)

    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not all_counted() and time.monotonic() < deadline:
        fuzzer.spin(0.05)
    fuzzer.spin(2 * FAST_DIAGNOSTICS_S)


def gather(fuzzer: Fuzzer, baseline: Baseline, names: dict[str, list[str]]) -> dict[str, Any]:
    """The counts against what was sent, inputs received and lost on the way, other drops and fusions."""
    start, keys = baseline.counts, baseline.keys
    rows = count_rows(fuzzer.outcome, fuzzer, start)
    received = {
        node: {k: n - start.get(node, {}).get(k, 0) for k, n in fuzzer.counts.get(node, {}).items() if k.startswith("received ")}
        for node in keys
    }
    lost = lost_in_transport(received, fuzzer.seen - baseline.seen, fuzzer.scene.robots)
    unexpected = {
        f"{node} {key}": n - start.get(node, {}).get(key, 0)
        for node, counts in fuzzer.counts.items()
        if node in keys
        for key, n in counts.items()
        if key.startswith("dropped ") and key not in keys[node] and n - start.get(node, {}).get(key, 0) > 0
    }
    fused = {
        node: sum(v - start.get(node, {}).get(k, 0) for k, v in fuzzer.counts.get(node, {}).items() if k.startswith("fused "))
        for node in names["fusion"]
    }
    return {
        "counts": rows,
        "unexpected_drops": unexpected,
        "received": received,
        "lost_in_transport": lost,
        "encodings_fused_during_run": fused,
    }


def results(
    messages: int,
    seed: int,
    robots: int,
    graph: Graph,
    fuzzer: Fuzzer,
    timing: dict[str, float],
    stalls: int,
    crashed: dict[str, int],
    found: dict[str, Any],
    log_dir: Path,
) -> dict[str, Any]:
    """The run's results and whether each goal was met (see robustness.command)."""
    outcome = fuzzer.outcome
    goals = {
        "crashes": not crashed,
        "non-finite beliefs": not outcome.non_finite_beliefs,
        "every rejection counted": all_counted_but_lost(found["counts"], found["lost_in_transport"]),
    }
    return {
        "messages": messages,
        "seed": seed,
        "robots": robots,
        "fleet_key": fuzzer.scene.signer is not None,
        "nodes": len(graph.procs),
        "startup_s": round(timing["startup_s"], 1),
        "fuzz_s": round(timing["fuzz_s"], 1),
        "messages_per_s": round(messages / timing["fuzz_s"], 1),
        "flow_control_stalls": stalls,
        "crashes": crashed,
        "crash_logs": {key: graph.tail(key) for key in crashed},
        "beliefs_checked": outcome.beliefs_checked,
        "non_finite_beliefs": len(outcome.non_finite_beliefs),
        "non_finite_examples": outcome.non_finite_beliefs[:5],
        "sent": dict(sorted(outcome.sent.items())),
        "counts": found["counts"],
        "unexpected_drops": found["unexpected_drops"],
        "received": found["received"],
        "lost_in_transport": found["lost_in_transport"],
        "encodings_fused_during_run": found["encodings_fused_during_run"],
        "goals": goals,
        "met": all(goals.values()),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()})",
        "logs": str(log_dir),
    }
