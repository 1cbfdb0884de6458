"""`m2vae bench latents`: one real fusion node under the latents of N peer robots sharing M objects.

Per cell (N peers x M objects) a fresh `fusion` process runs (namespace /bench_load, robot_id
receiver, fusion_frame map, the shipped model, its own ROS_HOME and ROS_DOMAIN_ID, loopback-only DDS).
Simulated peers (no simulator: m2vae_fusion/benchmarks/latent_peers.py, one helper process for up to
--peers-per-process of them, one DDS writer per peer) publish m2vae_msgs/LatentEmbedding on
/shared/latents: every peer shares every one of the same M objects, as robots working one area do,
each (peer, object) at the fusion node's own share rate latent_rate_hz (2 Hz), so the node is
offered N * M * 2 latents per second. Latents are valid: the model's model_id, modalities camera,
lidar, ir, means and log-variances of the model's subset encoder on noisy features of the object
(each peer its own noise) plus a jitter per latent, positions the object's with 1 cm of noise, at most
3 cm (objects >= 0.2 m apart, beyond the 0.1 m association gate), sequences counting up, stamps from
the wall clock. (The default foreign_rate_limit_hz of 20 would drop all but 20 of a peer's 2 * M
latents per second as `rate` from M = 10 on.)

The node's policy limits are raised so the bench measures capacity, not policy: foreign_rate_limit_hz
= 1.2 x what one peer sends and max_foreign_robots = max(16, N). publish_rate_hz = --publish-rate-hz
(20: beliefs every 50 ms; the node's default is 2); gain_samples is the node's default (8), and with
--gains-off-rerun (default on) every cell that does not keep up runs again with gain_samples 0 to
show what the gain estimates cost. --param NAME:=VALUE passes more (e.g. executor:=events).

Measured over a window of --seconds after a --warmup (both from the peers' start):
- offered: latents sent per second in the window; accepted: the node's `accepted latents` counter on
  /diagnostics (every 0.5 s) between its statuses nearest the window's edges, per second of the node's
  clock; the ratio of the two.
- latency publish -> belief: a latent's stamp (taken just before it is published) to the RMW
  reception, in this process, of the first ObjectBeliefArray that carries it. Exact: an object known
  from foreign latents only is published with the used latent's belief, so the published mean equals
  that latent's mean bit for bit (float32) and its last_update the latent's stamp (checked: `stamp
  mismatches` must be 0). It includes the wait for the node's 20 ms fusion burst and up to one publish
  period. The node publishes the newest latent of each object: one superseded before the next publish
  never shows (`seen`: latents of the window found in a belief).
- drops, whole run: sent but never received by the node (`lost`: in DDS, the node's reader history of
  50 overflowing while the node does not take them) and received but refused by the node, by reason
  (`dropped latent: <kind>`).
- CPU: utime + stime of the node's process over the window (percent of one core); how long its main
  thread waited for a CPU while runnable (/proc/<pid>/schedstat: on a shared machine, the cores others
  had); the peers' and this process's CPU.
- kept up: accepted / offered >= 0.95 and latency p99 in the last third of the window at most two
  publish periods above the first third's.

What bounds it: after each cell the node's steps are timed in this process at the cell's offered load
on the code the node runs (rclpy deserialisation and check of each latent, BeliefStore.add_latents,
SensingGains.of, the node's ObjectBelief code and serialisation), as the CPU time of one thread with
one torch thread (the node's main thread, which holds the GIL, is what bounds it), and given as
percent of one core beside the node's measured CPU (all its threads); the rest is rclpy's executor,
DDS, timers, diagnostics, snapshots and torch's second thread.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from m2vae_fusion.benchmarks.fusion import spread_positions
from m2vae_fusion.benchmarks.node_process import BenchError, NodeProcess, cpu_seconds, ros_environment

if TYPE_CHECKING:  # torch and rclpy load only when the bench runs
    from m2vae_fusion.model.perception_model import PerceptionModel

NAMESPACE = "bench_load"
RECEIVER = "receiver"
MODALITIES = ("camera", "lidar", "ir")
LATENT_RATE_HZ = 2.0  # the fusion node's default latent_rate_hz: what one robot shares per object
PUBLISH_RATE_HZ = 20.0  # default of --publish-rate-hz: beliefs every 50 ms, so latency is resolved finely
BATCH_PERIOD_S = 0.02  # the fusion node's default batch_period_s
DIAGNOSTICS_PERIOD_S = 0.5
RATE_LIMIT_MARGIN = 1.2  # foreign_rate_limit_hz over one peer's rate: a late sender's catch-up is no `rate` drop
KEEP_UP_RATIO = 0.95
GROWTH_PERIODS = 2  # latency p99, last third of the window over the first, in publish periods: more is a backlog
POSITION_NOISE_M = 0.01  # each peer's estimate of an object's position
FEATURE_NOISE = 0.1  # each peer's view of an object, in standardised feature units
JITTER = 0.02  # per latent, in z: a belief that keeps being refined; makes every latent unique
STARTUP_TIMEOUT_S = 60.0
DRAIN_MAX_S = 20.0
STOP_GRACE_S = 5.0
S = 1_000_000_000


@dataclass(frozen=True)
class Cell:
    peers: int
    objects: int
    gain_samples: int = 8

    @property
    def offered_hz(self) -> float:
        return self.peers * self.objects * LATENT_RATE_HZ

    @property
    def name(self) -> str:
        return f"N={self.peers} M={self.objects} gains={self.gain_samples}"


def make_plan(model: PerceptionModel, cell: Cell, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """What every peer says about every object: position, belief and phase of its latents. Beliefs are
    the subset encoder's of all three modalities on features the model itself decodes from a z drawn
    from the prior (what its sensors would see of such an object), plus each peer's view noise: random
    features off the model's data would give log-variances beyond the fusion node's magnitude check."""
    import torch

    n, m = cell.peers, cell.objects
    truth = spread_positions(m, rng)
    noise = np.clip(rng.normal(0.0, POSITION_NOISE_M, (n, m, 3)), -3 * POSITION_NOISE_M, 3 * POSITION_NOISE_M)
    z = torch.from_numpy(rng.standard_normal((m, model.config.fusion.latent_dim)).astype(np.float32))
    with torch.no_grad():
        features = model.fusion.reconstruct(z, list(MODALITIES))
    views = {
        mod: (features[mod].numpy()[None] + FEATURE_NOISE * rng.standard_normal((n, *features[mod].shape))).reshape(n * m, -1)
        for mod in MODALITIES
    }
    beliefs = model.belief_batch({mod: v.astype(np.float32) for mod, v in views.items()})
    return {
        "peer_ids": np.array([f"peer{p + 1:02d}" for p in range(n)]),
        "positions": truth[None] + noise,
        "means": np.stack([b.mean for b in beliefs]).reshape(n, m, -1).astype(np.float32),
        "log_vars": np.stack([b.log_var for b in beliefs]).reshape(n, m, -1).astype(np.float32),
        "phases": rng.uniform(0.0, 1.0 / LATENT_RATE_HZ, (n, m)),
        "rate_hz": np.array(LATENT_RATE_HZ),
        "jitter": np.array(JITTER),
        "model_id": np.array(model.model_id),
        "modalities": np.array(MODALITIES),
        "frame": np.array("map"),
        "topic": np.array("/shared/latents"),
    }


def fusion_command(cell: Cell, publish_rate_hz: float, model_dir: Path | None, extra: Sequence[str] = ()) -> list[str]:
    """The node's command line; `extra`: more NAME:=VALUE parameters (--param), after the bench's own."""
    parameters: dict[str, Any] = {
        "robot_id": RECEIVER,
        "fusion_frame": "map",
        "publish_rate_hz": publish_rate_hz,
        "foreign_rate_limit_hz": RATE_LIMIT_MARGIN * cell.objects * LATENT_RATE_HZ,
        "max_foreign_robots": max(16, cell.peers),
        "diagnostics_period_s": DIAGNOSTICS_PERIOD_S,
        "gain_samples": cell.gain_samples,
    }
    if model_dir is not None:
        parameters["model"] = str(model_dir)
    argv = ["fusion", "--ros-args", "-r", f"__ns:=/{NAMESPACE}"]
    for name, value in parameters.items():
        argv += ["-p", f"{name}:={value}"]
    for item in extra:
        argv += ["-p", item]
    return argv


class Observer:
    """This process's view of the node: every ObjectBeliefArray (when each latent's mean first shows in a
    belief) and the node's counters on /diagnostics."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from m2vae_fusion.ros_interface.topics import BELIEF_QOS, DIAGNOSTICS_QOS
        from m2vae_msgs.msg import ObjectBeliefArray

        self.context = rclpy.Context()
        # args=[]: not this process's command line (rcl would read `--param NAME:=VALUE` as a remap rule)
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("bench_latents", context=self.context, start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.first_seen: dict[bytes, tuple[int, int]] = {}  # float32 mean bytes -> (reception ns, last_update ns)
        self.arrays: list[tuple[int, int]] = []  # (reception ns, beliefs) per ObjectBeliefArray
        self.counts: list[tuple[int, dict[str, int]]] = []  # (status stamp ns, the node's counters)
        self.beliefs = self.node.create_subscription(ObjectBeliefArray, f"/{NAMESPACE}/beliefs", self._on_beliefs, BELIEF_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, DIAGNOSTICS_QOS)

    def _on_beliefs(self, msg: Any, info: Any) -> None:
        received = info.get("received_timestamp") or time.time_ns()  # 0 where the RMW does not fill it in
        self.arrays.append((received, len(msg.beliefs)))
        for belief in msg.beliefs:
            key = belief.mean.tobytes()
            if key not in self.first_seen:
                self.first_seen[key] = (received, belief.last_update.sec * S + belief.last_update.nanosec)

    def _on_diagnostics(self, msg: Any) -> None:
        from m2vae_fusion.ros_interface import diagnostics

        counts = diagnostics.read(msg.status).get(f"/{NAMESPACE}/fusion")
        if counts is not None:
            self.counts.append((msg.header.stamp.sec * S + msg.header.stamp.nanosec, counts))

    def spin_until(self, deadline: float, done: Callable[[], bool] = lambda: False) -> bool:
        """Take messages until `done()` or time.monotonic() reaches `deadline`; returns done()."""
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.executor.spin_once(timeout_sec=min(left, 0.1))
        return True

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


class PeerProcess:
    """One latent_peers helper: its stdout lines in a queue (read by a thread, so the bench never blocks
    on it), stderr in a temporary file for error messages."""

    def __init__(self, plan: Path, log: Path, first: int, count: int, seed: int, env: dict[str, str]) -> None:
        from m2vae_fusion.bringup import process_group

        self.log, self.first, self.count = log, first, count
        self.stderr: IO[str] = tempfile.TemporaryFile("w+")
        argv = [sys.executable, "-m", "m2vae_fusion.benchmarks.latent_peers", str(plan), str(log)]
        argv += ["--first", str(first), "--count", str(count), "--seed", str(seed)]
        self.proc = process_group.start(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = False
        self.finished: dict[str, Any] | None = None

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def poll(self) -> None:
        """Take the lines printed so far; a helper that died is an error."""
        while not self.lines.empty():
            line = self.lines.get()
            if line == "ready":
                self.ready = True
            elif line.startswith("finished "):
                self.finished = json.loads(line.split(" ", 1)[1])
        if self.proc.poll() is not None and self.finished is None:
            self.stderr.seek(0)
            raise BenchError(
                f"peer helper {self.first}..{self.first + self.count - 1} exited with {self.proc.returncode}: {self.stderr.read()[-2000:]}"
            )

    def go(self, start_ns: int, seconds: float) -> None:
        self.proc.stdin.write(f"go {start_ns} {seconds}\n")
        self.proc.stdin.flush()

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        from m2vae_fusion.bringup import process_group

        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()  # the helper's cue to end
                self.proc.wait(timeout=STOP_GRACE_S)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
        process_group.stop([self.proc], STOP_GRACE_S)
        self.stderr.close()


@dataclass(frozen=True)
class Settings:
    warmup_s: float = 3.0
    seconds: float = 20.0
    peers_per_process: int = 16
    seed: int = 0
    model_dir: Path | None = None
    costs: bool = True  # time the node's steps in this process after each cell
    node_parameters: tuple[str, ...] = ()  # NAME:=VALUE for the fusion node (--param)
    publish_rate_hz: float = PUBLISH_RATE_HZ

    @property
    def growth_limit_ms(self) -> float:
        return GROWTH_PERIODS / self.publish_rate_hz * 1e3


def wall_deadline(wall_ns: int) -> float:
    """time.monotonic() when the wall clock reads `wall_ns`."""
    return time.monotonic() + (wall_ns - time.time_ns()) / S


def run_cell(
    cell: Cell, model: PerceptionModel, settings: Settings, env: dict[str, str], log: Callable[[str], None]
) -> dict[str, Any]:
    """Start the node and the peers, measure, stop everything whatever happens; the cell's figures."""
    from m2vae_fusion.benchmarks.latent_peers import read_npz

    with tempfile.TemporaryDirectory(prefix="bench_latents_") as tmp, ros_environment(env):
        folder = Path(tmp)
        # its own ROS_HOME: the node starts without a belief snapshot and leaves none behind
        node = NodeProcess(
            fusion_command(cell, settings.publish_rate_hz, settings.model_dir, settings.node_parameters),
            {**env, "ROS_HOME": str(folder / "ros")},
        )
        observer, peers = None, []
        try:
            observer = Observer()
            started = time.monotonic()
            _wait(
                observer,
                lambda: observer.counts and observer.beliefs.get_publisher_count() > 0,
                [],
                node,
                "the fusion node to publish",
            )
            log(f"{cell.name}: fusion node up after {time.monotonic() - started:.1f} s")
            rng = np.random.default_rng([settings.seed, cell.peers, cell.objects])
            np.savez(folder / "plan.npz", **make_plan(model, cell, rng))
            per = settings.peers_per_process
            for first in range(0, cell.peers, per):
                count = min(per, cell.peers - first)
                peers.append(PeerProcess(folder / "plan.npz", folder / f"sent_{first}.npz", first, count, settings.seed, env))
            timing = _drive(observer, peers, node, settings)
            sent = [read_npz(p.log) for p in peers]
            return summarise(cell, settings, sent, observer, timing, [p.finished or {} for p in peers])
        finally:
            for p in peers:
                p.stop()
            if observer is not None:
                observer.close()
            node.stop()


def _wait(
    observer: Observer,
    done: Callable[[], Any],
    peers: list[PeerProcess],
    node: NodeProcess,
    what: str,
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> None:
    """Spin until `done()`; a node or helper that dies, or the timeout, is a BenchError naming `what`."""

    def check() -> bool:
        node.check_alive("the fusion node")
        for p in peers:
            p.poll()
        return bool(done())

    if not observer.spin_until(time.monotonic() + timeout_s, check):
        raise BenchError(f"timed out after {timeout_s:g} s waiting for {what}; the node's last output:\n{node.output()}")


def _drive(observer: Observer, peers: list[PeerProcess], node: NodeProcess, settings: Settings) -> dict[str, Any]:
    """Start the peers together, read the CPU counters at the window's edges, wait for the peers to
    finish and the node to work off what it received."""
    _wait(observer, lambda: all(p.ready for p in peers), peers, node, "the peers to match the node's subscription")
    load = os.getloadavg()[0]  # what else the machine was running as the cell began
    start_ns = time.time_ns() + S // 5
    for p in peers:
        p.go(start_ns, settings.warmup_s + settings.seconds)
    window = (start_ns + round(settings.warmup_s * S), start_ns + round((settings.warmup_s + settings.seconds) * S))
    cpu = []
    for edge in window:
        _wait(observer, lambda: time.monotonic() >= wall_deadline(edge), peers, node, "the window", settings.seconds + 60)
        peers_cpu = sum(p.cpu_seconds() for p in peers)
        cpu.append((time.monotonic(), node.cpu_seconds(), peers_cpu, time.process_time(), run_queue_s(node.pid)))
    _wait(observer, lambda: all(p.finished is not None for p in peers), peers, node, "the peers to finish", 60)
    since = time.time_ns()

    def settled() -> bool:
        # three statuses (1 s) since the peers finished with the same counts: the node has taken all it will
        recent = [_handled(counts) for stamp, counts in observer.counts if stamp >= since]
        return len(recent) >= 3 and recent[-1] == recent[-3]

    observer.spin_until(time.monotonic() + DRAIN_MAX_S, settled)
    (t0, node0, peers0, bench0, wait0), (t1, node1, peers1, bench1, wait1) = cpu
    return {
        "node_run_queue_s": wait1 - wait0,
        "load_average_1min": load,
        "start_ns": start_ns,
        "window": window,
        "wall_s": t1 - t0,
        "node_cpu_s": node1 - node0,
        "peers_cpu_s": peers1 - peers0,
        "bench_cpu_s": bench1 - bench0,
    }


def run_queue_s(pid: int) -> float:
    """Seconds the main thread of process `pid` has waited for a CPU while runnable (/proc/<pid>/schedstat):
    on a shared machine, how much of the window the node was ready to work but others had the cores."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / S


def _handled(counts: dict[str, int]) -> tuple[int, ...]:
    return counts.get("received latents", 0), counts.get("accepted latents", 0), sum(_latent_drops(counts).values())


def _latent_drops(counts: dict[str, int]) -> dict[str, int]:
    prefix = "dropped latent: "
    return {key[len(prefix) :]: n for key, n in counts.items() if key.startswith(prefix)}


def latencies(sent: dict[str, np.ndarray], window: tuple[int, int], first_seen: dict[bytes, tuple[int, int]]) -> dict[str, Any]:
    """Publish -> belief of the latents sent in `window` that showed in a belief, found by their mean;
    p99 in the first and last third of the window (by send time) tell a backlog that grows."""
    w0, w1 = window
    inside = (sent["stamp_ns"] >= w0) & (sent["stamp_ns"] < w1)
    found, mismatches = [], 0
    for stamp, mean in zip(sent["stamp_ns"][inside].tolist(), sent["mean"][inside]):
        seen = first_seen.get(mean.tobytes())
        if seen is None:
            continue
        received, last_update = seen
        if last_update != stamp:  # the mean of another latent: identification failed
            mismatches += 1
            continue
        found.append((stamp, received - stamp))
    out: dict[str, Any] = {"sent": int(inside.sum()), "seen": len(found), "stamp_mismatches": mismatches}
    if not found:
        return {
            **out,
            "p50_ms": None,
            "p99_ms": None,
            "min_ms": None,
            "max_ms": None,
            "p99_first_third_ms": None,
            "p99_last_third_ms": None,
        }
    stamps, latency = (np.array(column, np.float64) for column in zip(*found))
    ms = latency / 1e6
    third = (w1 - w0) / 3
    first, last = ms[stamps < w0 + third], ms[stamps >= w1 - third]
    return {
        **out,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "p99_first_third_ms": float(np.percentile(first, 99)) if len(first) else None,
        "p99_last_third_ms": float(np.percentile(last, 99)) if len(last) else None,
    }


def window_rates(counts: list[tuple[int, dict[str, int]]], window: tuple[int, int]) -> dict[str, Any]:
    """Per second of the node's clock, between its statuses nearest to the window's edges: latents
    received, accepted and dropped by reason."""
    stamps = np.array([stamp for stamp, _ in counts])
    a, b = (int(np.argmin(np.abs(stamps - edge))) for edge in window)
    seconds = (stamps[b] - stamps[a]) / S
    if b <= a or seconds <= 0:
        raise BenchError(f"no two /diagnostics statuses of the node span the window ({len(counts)} statuses)")
    (_, before), (_, after) = counts[a], counts[b]
    drops = Counter(_latent_drops(after))
    drops.subtract(_latent_drops(before))
    return {
        "diagnostics_span_s": float(seconds),
        "received_hz": (after.get("received latents", 0) - before.get("received latents", 0)) / seconds,
        "accepted_hz": (after.get("accepted latents", 0) - before.get("accepted latents", 0)) / seconds,
        "dropped_hz": {kind: n / seconds for kind, n in sorted(drops.items()) if n},
    }


def summarise(
    cell: Cell,
    settings: Settings,
    logs: Sequence[dict[str, np.ndarray]],
    observer: Observer,
    timing: dict[str, Any],
    senders: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The cell's figures; `logs`: what the peers sent, `senders`: their own summaries."""
    sent = {key: np.concatenate([log[key] for log in logs]) for key in ("stamp_ns", "mean", "lag_s")}
    w0, w1 = timing["window"]
    inside = (sent["stamp_ns"] >= w0) & (sent["stamp_ns"] < w1)
    offered_hz = float(inside.sum()) / settings.seconds
    rates = window_rates(observer.counts, timing["window"])
    latency = latencies(sent, timing["window"], observer.first_seen)
    final = observer.counts[-1][1]
    rejected = _latent_drops(final)
    totals = {
        "sent": len(sent["stamp_ns"]),
        "received": final.get("received latents", 0),
        "accepted": final.get("accepted latents", 0),
        "rejected": rejected,
        "ignored_own": final.get("ignored own latents", 0),
    }
    totals["lost"] = totals["sent"] - totals["received"]
    totals["unaccounted"] = totals["received"] - totals["accepted"] - sum(rejected.values()) - totals["ignored_own"]
    arrays = [n for received, n in observer.arrays if w0 <= received < w1]
    ratio = rates["accepted_hz"] / offered_hz if offered_hz else 0.0
    first, last = latency["p99_first_third_ms"], latency["p99_last_third_ms"]
    growth = None if first is None or last is None else last - first
    return {
        "peers": cell.peers,
        "objects": cell.objects,
        "gain_samples": cell.gain_samples,
        "target_hz": cell.offered_hz,
        "offered_hz": offered_hz,
        **rates,
        "accepted_ratio": ratio,
        "node_cpu_percent": 100 * timing["node_cpu_s"] / timing["wall_s"],
        "node_run_queue_percent": 100 * timing["node_run_queue_s"] / timing["wall_s"],
        "load_average_1min": timing["load_average_1min"],
        "latency": latency,
        "p99_growth_ms": growth,
        "beliefs_hz": len(arrays) / settings.seconds,
        "beliefs_per_array": float(np.mean(arrays)) if arrays else 0.0,
        "totals": totals,
        "senders": {
            "processes": len(senders),
            "cpu_percent": 100 * timing["peers_cpu_s"] / timing["wall_s"],
            "lag_p99_ms": float(np.percentile(sent["lag_s"][inside], 99) * 1e3) if inside.any() else None,
            "sent_ratio": offered_hz / cell.offered_hz,
            "helpers": list(senders),
        },
        "bench_cpu_percent": 100 * timing["bench_cpu_s"] / timing["wall_s"],
        "kept_up": bool(ratio >= KEEP_UP_RATIO and growth is not None and growth <= settings.growth_limit_ms),
    }


class NodeWork:
    """The fusion node's steps, run in this process on the code the node runs, at a cell's offered load:
    a belief store fed the cell's latents (the same plan), the node's gain estimates and its
    ObjectBelief code (which needs nothing of the node but its model)."""

    def __init__(self, model: PerceptionModel, cell: Cell, seed: int) -> None:
        from types import SimpleNamespace

        from m2vae_fusion.benchmarks.latent_peers import latent_template
        from m2vae_fusion.model.beliefs import BeliefStore, BeliefStoreConfig
        from m2vae_fusion.model.sensing_gains import SensingGains, parse_candidates
        from m2vae_fusion.nodes.fusion import PARAMETERS

        self.cell, self.rng = cell, np.random.default_rng([seed, cell.peers, cell.objects])
        self.plan = make_plan(model, cell, self.rng)
        self.pairs = sorted(np.ndindex(self.plan["phases"].shape), key=lambda po: self.plan["phases"][po])
        self.templates = {po: latent_template(self.plan, *po) for po in self.pairs}
        self.store = BeliefStore(model, RECEIVER, BeliefStoreConfig(foreign_rate_hz=1e12))  # the node's limit is raised too
        candidates = parse_candidates(PARAMETERS["gain_candidates"].default, self.store.modalities)
        self.gains = SensingGains(model, candidates, samples=cell.gain_samples) if cell.gain_samples else None
        self.node = SimpleNamespace(model=model)
        self.sent = 0
        # every (peer, object) once, as after the warm-up: the objects exist and have their gains
        self.store.add_latents([self.take(d) for d in self.wire(len(self.pairs))], 0.0)
        self.estimates()

    def wire(self, k: int) -> list[bytes]:
        """The next `k` latents in order of phase, serialised as a peer sends them."""
        from rclpy.serialization import serialize_message

        from m2vae_fusion.benchmarks.latent_peers import fill

        out = []
        means = self.plan["means"]
        for i in range(self.sent, self.sent + k):
            peer, obj = self.pairs[i % len(self.pairs)]
            mean = means[peer, obj] + (JITTER * self.rng.standard_normal(means.shape[-1])).astype(np.float32)
            fill(self.templates[peer, obj], i // len(self.pairs) + 1, mean, S + i)
            out.append(serialize_message(self.templates[peer, obj]))
        self.sent += k
        return out

    def take(self, data: bytes) -> Any:
        """What the node does with each latent it takes: deserialise, convert, check."""
        from rclpy.serialization import deserialize_message

        from m2vae_fusion.nodes.fusion import latent_from_message
        from m2vae_msgs.msg import LatentEmbedding

        latent = latent_from_message(deserialize_message(data, LatentEmbedding))
        self.store.check_latent(latent)
        return latent

    def estimates(self) -> dict[str, Any]:
        return self.gains.of(self.store.objects.values()) if self.gains is not None else {}

    def publish(self, estimates: dict[str, Any]) -> None:
        """The node's ObjectBeliefArray of every object, serialised as publishing does."""
        from rclpy.serialization import serialize_message

        from m2vae_fusion.nodes.fusion import FusionNode
        from m2vae_msgs.msg import ObjectBeliefArray

        msg = ObjectBeliefArray()
        msg.beliefs = [FusionNode._belief(self.node, obj, estimates.get(obj.object_id)) for obj in self.store.objects.values()]
        serialize_message(msg)


def node_costs(model: PerceptionModel, cell: Cell, seed: int, publish_rate_hz: float, publishes: int = 20) -> dict[str, float]:
    """Percent of one core that the node's main thread spends on each step at the cell's offered load
    over `publishes` publish periods: take (each latent: rclpy deserialisation, conversion,
    check_latent), fuse (BeliefStore.add_latents per batch_period_s burst), gains (SensingGains.of the
    beliefs changed since the last publish) and beliefs (the ObjectBeliefArray of every object, built
    and serialised); also ms per publish of the last two. Not in it: rclpy's executor, DDS, timers,
    diagnostics, snapshots. Timed as this thread's CPU time with one torch thread: the node's main
    thread holds the GIL through all of it, so that is its budget (a second torch thread adds CPU
    time, spinning, not speed; on a busy machine it multiplies the gains' CPU time)."""
    from m2vae_fusion.benchmarks.fusion import torch_threads

    with torch_threads(1):
        work = NodeWork(model, cell, seed)
        spent = _time_steps(work, cell, publish_rate_hz, publishes)
    window_ns = publishes / publish_rate_hz * S
    costs = {step: 100 * spent[step] / window_ns for step in ("take", "fuse", "gains", "beliefs")}
    costs["total"] = sum(costs.values())
    costs["gains_ms_per_publish"] = spent["gains"] / publishes / 1e6
    costs["beliefs_ms_per_publish"] = spent["beliefs"] / publishes / 1e6
    return costs


def _time_steps(work: NodeWork, cell: Cell, publish_rate_hz: float, publishes: int) -> Counter[str]:
    """ns of this thread's CPU time per step over `publishes` publish periods of the offered load."""
    spent: Counter[str] = Counter()
    burst, per_publish, due = max(1, round(cell.offered_hz * BATCH_PERIOD_S)), cell.offered_hz / publish_rate_hz, 0.0
    for k in range(publishes):
        due += per_publish
        data = work.wire(int(due))
        due -= int(due)
        t0 = time.thread_time_ns()
        latents = [work.take(d) for d in data]
        t1 = time.thread_time_ns()
        for i in range(0, len(latents), burst):
            work.store.add_latents(latents[i : i + burst], (k + 1) / publish_rate_hz)
        t2 = time.thread_time_ns()
        estimates = work.estimates()
        t3 = time.thread_time_ns()
        work.publish(estimates)
        t4 = time.thread_time_ns()
        spent.update({"take": t1 - t0, "fuse": t2 - t1, "gains": t3 - t2, "beliefs": t4 - t3})
    return spent


def bench_latents(
    peers: Sequence[int],
    objects: Sequence[int],
    settings: Settings,
    *,
    gain_samples: int = 8,
    gains_off_rerun: bool = True,
    domain_id: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every cell of peers x objects (in order of offered load), then with gain_samples 0 those that did not keep up."""
    from m2vae_fusion.benchmarks.fusion import load_model
    from m2vae_fusion.benchmarks.nodes import machine
    from m2vae_fusion.bringup.ros_env import MAX_SAFE_DOMAIN_ID, isolated_ros_env

    if not peers or min(peers) < 1 or not objects or min(objects) < 1 or gain_samples < 0:
        raise ValueError(
            f"bench latents: --peers and --objects must be >= 1 and --gain-samples >= 0, got {list(peers)}, {list(objects)}, {gain_samples}"
        )
    if not (
        settings.seconds >= 3 and settings.warmup_s >= 0 and settings.peers_per_process >= 1 and settings.publish_rate_hz > 0
    ):
        raise ValueError(
            f"bench latents: --seconds must be >= 3, --warmup >= 0, --peers-per-process >= 1 and --publish-rate-hz > 0, got "
            f"{settings.seconds}, {settings.warmup_s}, {settings.peers_per_process}, {settings.publish_rate_hz}"
        )
    if domain_id is not None and not 0 <= domain_id <= MAX_SAFE_DOMAIN_ID:
        raise ValueError(f"bench latents: --domain-id must be in 0..{MAX_SAFE_DOMAIN_ID}, got {domain_id}")
    model = load_model(settings.model_dir)
    env = isolated_ros_env(domain_id)
    results: dict[str, Any] = {
        "model_id": model.model_id,
        "domain_id": int(env["ROS_DOMAIN_ID"]),
        "settings": {
            "warmup_s": settings.warmup_s,
            "seconds": settings.seconds,
            "peers_per_process": settings.peers_per_process,
            "seed": settings.seed,
            "latent_rate_hz": LATENT_RATE_HZ,
            "publish_rate_hz": settings.publish_rate_hz,
            "foreign_rate_limit_factor": RATE_LIMIT_MARGIN,
            "keep_up_ratio": KEEP_UP_RATIO,
            "growth_limit_ms": settings.growth_limit_ms,
            "node_parameters": list(settings.node_parameters),
        },
        "machine": machine(),
        "cells": [],
    }
    cells = sorted(
        (Cell(n, m, gain_samples) for n in sorted(set(peers)) for m in sorted(set(objects))),
        key=lambda c: (c.offered_hz, c.peers),
    )
    pending = list(cells)  # the grid, then the gain-less reruns it asks for
    while pending:
        cell = pending.pop(0)
        row = run_cell(cell, model, settings, env, log)
        if settings.costs:
            row["costs_percent"] = node_costs(model, cell, settings.seed, settings.publish_rate_hz)
        log(one_line(row))
        results["cells"].append(row)
        if gains_off_rerun and not row["kept_up"] and cell.gain_samples > 0:
            pending.append(Cell(cell.peers, cell.objects, 0))
    results["verdict"] = verdict(results["cells"])
    results["machine"]["load_average_1min_end"] = os.getloadavg()[0]
    return results


def one_line(row: dict[str, Any]) -> str:
    latency = row["latency"]
    p50 = "-" if latency["p50_ms"] is None else f"{latency['p50_ms']:.0f}"
    p99 = "-" if latency["p99_ms"] is None else f"{latency['p99_ms']:.0f}"
    return (
        f"N={row['peers']} M={row['objects']} gains={row['gain_samples']}: offered {row['offered_hz']:.0f}/s, accepted "
        f"{row['accepted_hz']:.0f}/s ({row['accepted_ratio']:.2f}), node CPU {row['node_cpu_percent']:.0f} %, latency p50 {p50} / "
        f"p99 {p99} ms, lost {row['totals']['lost']}, {'kept up' if row['kept_up'] else 'did NOT keep up'}"
    )


def verdict(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """At the grid's gain_samples: the largest offered load kept up, the first cell (by offered load) that
    was not, the step that costs most there, and whether it keeps up without the gain estimates."""
    grid = [r for r in rows if r["gain_samples"] == rows[0]["gain_samples"]] if rows else []
    kept = [r for r in grid if r["kept_up"]]
    best = max(kept, key=lambda r: r["target_hz"], default=None)
    out: dict[str, Any] = {"largest_kept_up": None if best is None else {"peers": best["peers"], "objects": best["objects"]}}
    text = (
        "kept up nowhere"
        if best is None
        else f"kept up to N={best['peers']} x M={best['objects']} ({best['target_hz']:.0f} latents/s)"
    )
    failing = [r for r in grid if not r["kept_up"]]
    if not failing:
        return {**out, "stops_at": None, "text": "kept up in every cell"}
    first = failing[0]
    text += f"; stops keeping up at N={first['peers']} x M={first['objects']} ({first['target_hz']:.0f} latents/s offered)"
    costs = first.get("costs_percent")
    bound = max(("take", "fuse", "gains", "beliefs"), key=lambda step: costs[step]) if costs else None
    if bound is not None:
        text += f"; the costliest step there is {bound} ({costs[bound]:.0f} % of a core of {costs['total']:.0f} % timed)"
    key = (first["peers"], first["objects"], 0)
    rerun = next((r for r in rows if first["gain_samples"] > 0 and (r["peers"], r["objects"], r["gain_samples"]) == key), None)
    if rerun is not None:
        text += f"; with gain_samples 0 it {'keeps up' if rerun['kept_up'] else 'still does not keep up'}"
    return {
        **out,
        "stops_at": {"peers": first["peers"], "objects": first["objects"]},
        "bound": bound,
        "kept_up_without_gains": None if rerun is None else rerun["kept_up"],
        "text": text,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(results: dict[str, Any]) -> str:
    s, m = results["settings"], results["machine"]
    lines = [
        f"one fusion node under N peers x M shared objects over DDS: latents {s['latent_rate_hz']:g} Hz per (peer, object), beliefs "
        f"{s['publish_rate_hz']:g} Hz, foreign_rate_limit_hz {s['foreign_rate_limit_factor']:g} x a peer's rate; window {s['seconds']:g} s "
        f"after {s['warmup_s']:g} s, model {results['model_id']}"
        + (f", node parameters {' '.join(s['node_parameters'])}" if s["node_parameters"] else ""),
        f"machine: {m['cpu']}, {m['usable_cpus']} of {m['cpus']} CPUs usable, load {m['load_average_1min']:.1f} at the start, "
        f"{m.get('load_average_1min_end', float('nan')):.1f} at the end; latency = latent stamp -> first belief with its mean (ms)",
        *_load_rows(results["cells"]),
        "",
        "the node's steps at the offered load, timed in this process (% of one core, one thread), beside its measured CPU; how long its main",
        "thread waited for a CPU while runnable (% of the window: others had the cores), the 1-min load as the cell began and",
        "the CPU ms of one publish (gains + beliefs: scale by the publish rate)",
        *_cost_rows(results["cells"]),
        "",
        "the simulated peers (processes, their CPU, lateness against their schedule, latents sent / N * M * 2 Hz) and this process",
        *_sender_rows(results["cells"]),
        "",
    ]
    drops = sorted({kind for r in results["cells"] for kind in r["totals"]["rejected"]})
    lines.append(
        f"lost, refused: whole run; refused by reason: {', '.join(drops) if drops else 'none'}; kept up: accepted/offered >= "
        f"{s['keep_up_ratio']:g} and p99 of the window's last third at most {s['growth_limit_ms']:g} ms above its first third's"
    )
    lines.append(f"verdict: {results['verdict']['text']}")
    return "\n".join(lines)


def _row(cells: Sequence[Any], widths: Sequence[int]) -> str:
    return " | ".join(str(c).rjust(w) for c, w in zip(cells, widths))


def _load_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns = ("peers", "objects", "gains", "offered/s", "accepted/s", "acc/off", "node CPU %", "p50", "p99", "p99 growth")
    columns += ("seen", "lost", "refused", "beliefs Hz", "kept up")
    widths = (5, 7, 5, 9, 10, 7, 10, 6, 6, 10, 6, 6, 7, 10, 7)
    lines = [_row(columns, widths)]
    for r in rows:
        latency, totals = r["latency"], r["totals"]
        cells = (
            r["peers"],
            r["objects"],
            r["gain_samples"],
            f"{r['offered_hz']:.0f}",
            f"{r['accepted_hz']:.0f}",
            f"{r['accepted_ratio']:.2f}",
            f"{r['node_cpu_percent']:.0f}",
            _ms(latency["p50_ms"]),
            _ms(latency["p99_ms"]),
            _ms(r["p99_growth_ms"]),
            f"{latency['seen'] / latency['sent']:.0%}" if latency["sent"] else "-",
            totals["lost"],
            sum(totals["rejected"].values()),
            f"{r['beliefs_hz']:.1f}",
            "yes" if r["kept_up"] else "NO",
        )
        lines.append(_row(cells, widths))
    return lines


def _cost_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns = (
        "peers",
        "objects",
        "gains",
        "take",
        "fuse",
        "gains",
        "beliefs",
        "timed",
        "measured",
        "rest",
        "node waited %",
        "load",
        "ms/publish",
    )
    widths = (5, 7, 5, 5, 5, 6, 7, 6, 8, 5, 13, 5, 10)
    lines = [_row(columns, widths)]
    for r in rows:
        costs = r.get("costs_percent")
        timed = [f"{costs[k]:.0f}" for k in ("take", "fuse", "gains", "beliefs", "total")] if costs else ["-"] * 5
        rest = f"{r['node_cpu_percent'] - costs['total']:.0f}" if costs else "-"
        cells = (r["peers"], r["objects"], r["gain_samples"], *timed, f"{r['node_cpu_percent']:.0f}", rest)
        per_publish = f"{costs['gains_ms_per_publish'] + costs['beliefs_ms_per_publish']:.1f}" if costs else "-"
        lines.append(_row((*cells, f"{r['node_run_queue_percent']:.0f}", f"{r['load_average_1min']:.1f}", per_publish), widths))
    return lines


def _sender_rows(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns = ("peers", "objects", "gains", "processes", "CPU %", "send lag p99 ms", "sent/target", "bench CPU %")
    widths = (5, 7, 5, 9, 5, 15, 11, 11)
    lines = [_row(columns, widths)]
    for r in rows:
        senders = r["senders"]
        cells = (r["peers"], r["objects"], r["gain_samples"], senders["processes"], f"{senders['cpu_percent']:.0f}")
        cells += (_ms(senders["lag_p99_ms"]), f"{senders['sent_ratio']:.2f}", f"{r['bench_cpu_percent']:.0f}")
        lines.append(_row(cells, widths))
    return lines


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peers", type=int, nargs="+", default=[1, 4, 16], help="simulated peer robots N (default: 1 4 16)")
    parser.add_argument("--objects", type=int, nargs="+", default=[10, 100], help="objects M every peer shares (default: 10 100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per cell, after the warm-up (default: 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of sending before the window (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of positions, beliefs, phases and jitter (default: 0)")
    parser.add_argument(
        "--publish-rate-hz",
        type=float,
        default=PUBLISH_RATE_HZ,
        help="the node's publish_rate_hz (default: 20; the node's own default is 2): latency includes up to one period",
    )
    parser.add_argument(
        "--gain-samples", type=int, default=8, help="the node's gain_samples for the grid (default: 8, the node's)"
    )
    parser.add_argument(
        "--gains-off-rerun",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run every cell that does not keep up again with gain_samples 0 (default: on)",
    )
    parser.add_argument("--peers-per-process", type=int, default=16, help="simulated peers per sender process (default: 16)")
    parser.add_argument(
        "--costs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the node's steps in this process after each cell (default: on)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="another fusion node parameter, after the bench's (e.g. executor:=events); repeatable",
    )
    parser.add_argument("--model", type=Path, help="perception model folder (default: the shipped m2vae_fusion/weights/amiro)")
    parser.add_argument(
        "--domain-id", type=int, help="ROS_DOMAIN_ID of the measurement (default: a random one, loopback-only discovery)"
    )


def run_bench(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    settings = Settings(
        args.warmup,
        args.seconds,
        args.peers_per_process,
        args.seed,
        args.model,
        args.costs,
        tuple(args.param),
        args.publish_rate_hz,
    )
    results = bench_latents(
        args.peers,
        args.objects,
        settings,
        gain_samples=args.gain_samples,
        gains_off_rerun=args.gains_off_rerun,
        domain_id=args.domain_id,
        log=lambda text: print(text, file=sys.stderr, flush=True),
    )
    return results, table(results)
