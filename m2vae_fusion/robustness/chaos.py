"""`m2vae chaos`: the simulated robots' headless node graph under induced faults, seeded.

Starts the graph of two simulated robots (bringup.graph.sim_description, each node its own process)
on a fresh ROS_DOMAIN_ID with loopback-only DDS and, once every robot publishes beliefs, runs it for
--duration seconds of simulated time twice: without faults (the baseline, unless --no-baseline),
then with them. The faults, drawn from --seed:

- kills: every --fault-every seconds (jittered by half either way) one node, SIGKILLed as an OOM kill
  or a power cut would end it, and started again --down seconds later with the same command. The
  nodes are drawn without replacement from every robot's encoders, fusion node and explorer, so
  each is hit before any is hit twice. The embedded simulator is not among them: it cannot resume a
  run (a new process starts its world and clock from zero).
- a cut: one robot, drawn, is off the shared latent topic for --cut seconds from a third of the run:
  neither hears the others' latents nor is heard. How: that robot's fusion node shares on a topic of
  its own (`/robotK/latent_link`, in both runs) that this process relays to and from /shared/latents,
  and the relay stops for the cut (DDS offers no per-topic cut from outside, and a firewall rule would
  need root and cut the robot's whole traffic).

Measured from /clock (robot1's simulator), the ground truth and every robot's beliefs:
- unplanned crashes: a node process that exits without being killed here (restarted, and counted);
- beliefs lost: at each fusion kill, the objects of the last beliefs before it, of the snapshot on
  disk (the node's snapshot_path) and of the first beliefs after its restart: objects of the snapshot
  missing after the restart are lost beyond the last snapshot (target 0); objects published before
  the kill but not yet in the snapshot are lost within one snapshot period (allowed);
- recovery: each robot's accuracy (evaluation.scoreboard: true objects whose nearest belief within
  10 cm has the right class; 0 while its fusion node publishes nothing) sampled every SAMPLE_S; per
  fault, the pre-fault accuracy of the robot hit (for a cut, each robot) and the simulated seconds
  from the fault until the first sample, once the node is back or the cut is over, at or above it;
- final accuracy: correct objects per robot at the end, against the baseline run.

Targets, checked and printed (exit status 1 when one is missed): no unplanned crash, no belief lost
beyond the last snapshot, median recovery under 10 s of simulated time, final accuracy within 1
object of the baseline for every robot.
"""

from __future__ import annotations

import functools
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m2vae_fusion.robustness.probe import RclpyProbe

KILLABLE = ("camera_encoder", "lidar_encoder", "ir_encoder", "fusion", "explorer")
SAMPLE_S = 0.5  # simulated seconds between accuracy samples
SILENT_S = 1.5  # a robot whose fusion node published nothing for this long knows nothing (it publishes at 2 Hz)
MATCH_M = 0.1  # as the scoreboard's match_distance
TARGET_RECOVERY_S = 10.0
TARGET_OBJECTS = 1
ENV_KEYS = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION", "ROS_HOME")


@dataclass(frozen=True)
class Fault:
    at_s: float  # simulated seconds after the run started
    kind: str  # kill | cut
    target: str  # a node key (robot1/fusion) for a kill, a robot for a cut
    down_s: float  # until the node is started again / the robot is reconnected


def schedule(
    seed: int, robots: tuple[str, ...], duration_s: float, every_s: float, down_s: float, cut_s: float
) -> tuple[list[Fault], str]:
    """The faults of a run, in time order, and the robot that is cut off (also in the baseline's wiring)."""
    rng = random.Random(seed)
    cut_robot = rng.choice(robots)
    faults = [Fault(duration_s / 3, "cut", cut_robot, cut_s)] if cut_s > 0 else []
    pool: list[str] = []
    at = every_s
    # the last fault leaves room for a recovery before the end
    while at + down_s + TARGET_RECOVERY_S <= duration_s:
        if not pool:
            pool = [f"{r}/{n}" for r in robots for n in KILLABLE]
            rng.shuffle(pool)
        faults.append(Fault(round(at, 2), "kill", pool.pop(), down_s))
        at += every_s * rng.uniform(0.5, 1.5)
    return sorted(faults, key=lambda f: f.at_s), cut_robot


@dataclass
class Sample:
    at_s: float
    accuracy: dict[str, float]  # robot -> fraction of true objects classified correctly
    correct: dict[str, int]


@dataclass
class RestartCheck:
    """One fusion kill: which objects were where."""

    robot: str
    at_s: float
    published: set[str]  # in the last beliefs before the kill
    snapshot: set[str]  # in the snapshot file at the kill
    restored: set[str] | None = None  # in the first beliefs after the restart
    restart_s: float = 0.0  # wall clock (monotonic) of the restart


@dataclass
class RunLog:
    samples: list[Sample] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    restarts: list[RestartCheck] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    objects: int = 0
    relayed: int = 0
    held_back: int = 0


class Watch(RclpyProbe):
    """rclpy in this process: /clock, the ground truth, every robot's beliefs, and the relay between
    the cut robot's own latent topic and /shared/latents."""

    def __init__(self, domain_id: int, robots: tuple[str, ...], cut_robot: str) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        from m2vae_fusion.ros_interface.topics import BELIEF_QOS, GROUND_TRUTH, LATENT_QOS, SHARED_LATENTS, TRUTH_QOS
        from m2vae_msgs.msg import LabelledObjectArray, LatentEmbedding, ObjectBeliefArray

        super().__init__(domain_id, "m2vae_chaos")
        self.now_s = 0.0
        self.truth: list[Any] = []
        self.beliefs: dict[str, tuple[float, float, Any]] = {}  # robot -> (sim s, monotonic s, newest message)
        self.cut = False
        self.cut_robot = cut_robot
        self.relayed = 0  # latents passed between the cut robot and the others
        self.held_back = 0  # latents the cut kept from passing
        self.node.create_subscription(
            Clock, "/clock", self._on_clock, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        )
        self.node.create_subscription(LabelledObjectArray, f"/robot1/{GROUND_TRUTH.name}", self._on_truth, TRUTH_QOS)
        for robot in robots:
            self.node.create_subscription(
                ObjectBeliefArray, f"/{robot}/beliefs", functools.partial(self._on_beliefs, robot), BELIEF_QOS
            )
        self.to_shared = self.node.create_publisher(LatentEmbedding, SHARED_LATENTS.name, LATENT_QOS)
        self.to_link = self.node.create_publisher(LatentEmbedding, link_topic(cut_robot), LATENT_QOS)
        self.node.create_subscription(LatentEmbedding, SHARED_LATENTS.name, self._from_shared, LATENT_QOS)
        self.node.create_subscription(LatentEmbedding, link_topic(cut_robot), self._from_link, LATENT_QOS)

    def _on_clock(self, msg: Any) -> None:
        self.now_s = max(self.now_s, msg.clock.sec + msg.clock.nanosec * 1e-9)

    def _on_truth(self, msg: Any) -> None:
        self.truth = list(msg.objects)

    def _on_beliefs(self, robot: str, msg: Any) -> None:
        self.beliefs[robot] = (self.now_s, time.monotonic(), msg)

    def _from_shared(self, msg: Any) -> None:
        if msg.robot_id != self.cut_robot:
            self._relay(self.to_link, msg)

    def _from_link(self, msg: Any) -> None:
        if msg.robot_id == self.cut_robot:  # the others' latents, relayed here, come back too
            self._relay(self.to_shared, msg)

    def _relay(self, publisher: Any, msg: Any) -> None:
        if self.cut:
            self.held_back += 1
        else:
            self.relayed += 1
            publisher.publish(msg)

    def drain(self, most: int = 200) -> None:
        """Take every message already waiting: after this process was starved of CPU, a newer /clock
        taken before the beliefs queued behind it would make a robot look silent."""
        for _ in range(most):  # a wait with no timeout costs tens of microseconds when nothing is ready
            self.executor.spin_once(timeout_sec=0.0)

    def object_ids(self, robot: str, after_monotonic_s: float = 0.0) -> set[str] | None:
        """Object ids of `robot`'s newest beliefs if they came after `after_monotonic_s`, else None."""
        newest = self.beliefs.get(robot)
        if newest is None or newest[1] <= after_monotonic_s:
            return None
        return {b.object_id for b in newest[2].beliefs}

    def score(self, robot: str) -> tuple[float, int]:
        """`robot`'s accuracy and correct objects now: 0 while its fusion node is silent."""
        from m2vae_fusion.evaluation.scoreboard import BeliefRow, TrueObject, match

        newest = self.beliefs.get(robot)
        if not self.truth or newest is None or self.now_s - newest[0] > SILENT_S:
            return 0.0, 0
        truth = [TrueObject(o.name, o.label, o.pose.position.x, o.pose.position.y) for o in self.truth]
        rows = []
        for b in newest[2].beliefs:
            if b.class_probabilities:
                best = max(range(len(b.class_probabilities)), key=b.class_probabilities.__getitem__)
                rows.append(BeliefRow(b.object_id, b.position.x, b.position.y, b.class_names[best], 0.0, (), ()))
        correct = sum(m.correct for m in match(truth, rows, MATCH_M))
        return correct / len(truth), correct


def link_topic(robot: str) -> str:
    return f"/{robot}/latent_link"


@dataclass(frozen=True)
class Settings:
    seed: int = 0
    duration_s: float = 120.0
    every_s: float = 8.0
    down_s: float = 2.0
    cut_s: float = 20.0
    robots: int = 2
    startup_timeout_s: float = 120.0


def run_graph(settings: Settings, faults: list[Fault], cut_robot: str, log_dir: Path, progress: Callable[[str], None]) -> RunLog:
    """Start the graph, run it for settings.duration_s of simulated time with `faults`, stop it."""
    from m2vae_fusion.bringup.ros_env import isolated_ros_env
    from m2vae_fusion.robustness.graph import Graph

    robots = tuple(f"robot{k}" for k in range(1, settings.robots + 1))
    env = isolated_ros_env()
    env["ROS_HOME"] = str(log_dir / "ros_home")  # the run's belief snapshots and node logs stay with it
    for key in ENV_KEYS:
        os.environ[key] = env[key]  # this process's rclpy joins the graph's domain the same way
    overrides = {cut_robot: {"fusion": {"parameters": {"shared_topic": link_topic(cut_robot)}}}}
    graph = Graph(settings.robots, env, log_dir, overrides=overrides)
    watch = Watch(int(env["ROS_DOMAIN_ID"]), robots, cut_robot)
    try:
        wait_until_up(watch, graph, robots, settings.startup_timeout_s)
        progress(f"graph up (simulated {watch.now_s:.1f} s); running {settings.duration_s:g} s with {len(faults)} faults")
        return Chaos(settings, graph, watch, robots, faults, progress).run()
    finally:
        watch.close()
        graph.stop()


def wait_until_up(watch: Watch, graph: Any, robots: tuple[str, ...], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (watch.truth and all(r in watch.beliefs for r in robots)):
        if exited := graph.exited():
            raise RuntimeError(f"nodes exited while starting: {exited}; last log lines:\n{graph.tail(next(iter(exited)))}")
        if time.monotonic() > deadline:
            missing = [r for r in robots if r not in watch.beliefs]
            raise RuntimeError(f"the graph did not come up in {timeout_s:g} s (no beliefs from {missing} or no ground truth)")
        watch.spin(0.1)


class Chaos:
    """One run: the faults applied on simulated time, crashes restarted, accuracy sampled."""

    def __init__(
        self,
        settings: Settings,
        graph: Any,
        watch: Watch,
        robots: tuple[str, ...],
        faults: list[Fault],
        progress: Callable[[str], None],
    ) -> None:
        self.settings, self.graph, self.watch, self.robots, self.progress = settings, graph, watch, robots, progress
        self.pending = list(faults)
        self.down: dict[str, float] = {}  # node key -> simulated s when it is started again
        self.cut_until: float | None = None
        self.log = RunLog(faults=list(faults))
        self.start_s = watch.now_s

    def run(self) -> RunLog:
        end_s = self.start_s + self.settings.duration_s
        next_sample = self.start_s
        while self.watch.now_s < end_s:
            self.watch.spin(0.02)
            now = self.watch.now_s - self.start_s
            self._restart_crashed(now)
            self._apply_due(now)
            self._end_due(now)
            self._check_restores()
            if self.watch.now_s >= next_sample:
                next_sample += SAMPLE_S
                self.watch.drain()
                scores = {r: self.watch.score(r) for r in self.robots}
                self.log.samples.append(
                    Sample(now, {r: a for r, (a, _) in scores.items()}, {r: c for r, (_, c) in scores.items()})
                )
        self._finish_restore_checks()
        self.log.objects = len(self.watch.truth)
        self.log.relayed, self.log.held_back = self.watch.relayed, self.watch.held_back
        return self.log

    def _finish_restore_checks(self, timeout_s: float = 60.0) -> None:
        """A fusion node killed near the end may not have published yet: wait for it (or time out,
        leaving the check open, which the goals count as a miss)."""
        for key, _ in list(self.down.items()):
            del self.down[key]
            self.graph.start(key)
            self._mark_restarted(key)
        deadline = time.monotonic() + timeout_s
        while any(c.restored is None for c in self.log.restarts) and time.monotonic() < deadline:
            self.watch.spin(0.05)
            self._check_restores()

    def _restart_crashed(self, now: float) -> None:
        for key, code in self.graph.exited().items():
            if key in self.down or key.endswith("/sim"):
                continue
            self.log.crashes.append({"at_s": round(now, 1), "node": key, "status": code, "log": self.graph.tail(key)})
            self.progress(f"{now:6.1f} s  UNPLANNED: {key} exited with status {code}; starting it again")
            self.graph.start(key)

    def _apply_due(self, now: float) -> None:
        while self.pending and self.pending[0].at_s <= now:
            fault = self.pending.pop(0)
            if fault.kind == "cut":
                self.watch.cut, self.cut_until = True, now + fault.down_s
                self.progress(f"{now:6.1f} s  cut {fault.target} off the shared latents for {fault.down_s:g} s")
                continue
            robot, name = fault.target.split("/")
            if name == "fusion":
                self.log.restarts.append(self._before_fusion_kill(robot, now))
            self.graph.kill(fault.target)
            self.down[fault.target] = now + fault.down_s
            self.progress(f"{now:6.1f} s  SIGKILL {fault.target}; back in {fault.down_s:g} s")

    def _before_fusion_kill(self, robot: str, now: float) -> RestartCheck:
        from m2vae_fusion.model.belief_snapshot import snapshot_object_ids  # no torch: no stall mid-run

        spec = next(n for n in self.graph.description.nodes if n.key == f"{robot}/fusion")
        published = self.watch.object_ids(robot) or set()
        return RestartCheck(robot, now, published, snapshot_object_ids(Path(spec.parameters["snapshot_path"])))

    def _end_due(self, now: float) -> None:
        for key, until in list(self.down.items()):
            if now >= until:
                del self.down[key]
                self.graph.start(key)
                self._mark_restarted(key)
        if self.cut_until is not None and now >= self.cut_until:
            self.watch.cut, self.cut_until = False, None
            self.progress(f"{now:6.1f} s  reconnected")

    def _mark_restarted(self, key: str) -> None:
        for check in self.log.restarts:
            if key == f"{check.robot}/fusion" and check.restored is None and not check.restart_s:
                check.restart_s = time.monotonic()

    def _check_restores(self) -> None:
        for check in self.log.restarts:
            if check.restored is None and check.restart_s:
                check.restored = self.watch.object_ids(check.robot, after_monotonic_s=check.restart_s)


# ---------------------------------------------------------------- figures


def recoveries(log: RunLog) -> list[dict[str, Any]]:
    """Per fault and robot it hit: the pre-fault accuracy and the simulated seconds until it was back."""
    rows = []
    for fault in log.faults:
        robots = sorted(log.samples[0].accuracy) if fault.kind == "cut" else [fault.target.split("/")[0]]
        before = [s for s in log.samples if s.at_s <= fault.at_s]
        for robot in robots:
            pre = before[-1].accuracy[robot] if before else 0.0
            back = next((s for s in log.samples if s.at_s >= fault.at_s + fault.down_s and s.accuracy[robot] >= pre), None)
            rows.append(
                {
                    "at_s": fault.at_s,
                    "fault": f"{fault.kind} {fault.target}",
                    "robot": robot,
                    "pre_fault_accuracy": pre,
                    "recovery_s": None if back is None else round(back.at_s - fault.at_s, 2),
                    "after_end_s": None if back is None else round(back.at_s - fault.at_s - fault.down_s, 2),
                }
            )
    return rows


def restart_figures(log: RunLog) -> list[dict[str, Any]]:
    return [
        {
            "robot": c.robot,
            "at_s": round(c.at_s, 1),
            "published": len(c.published),
            "in_snapshot": len(c.snapshot),
            "restored": None if c.restored is None else len(c.restored),
            "lost_beyond_snapshot": None if c.restored is None else sorted(c.snapshot - c.restored),
            "lost_within_period": sorted(c.published - c.snapshot),
        }
        for c in log.restarts
    ]


def final_correct(log: RunLog) -> dict[str, int]:
    return dict(log.samples[-1].correct) if log.samples else {}


def figures(chaos: RunLog, baseline: RunLog | None) -> dict[str, Any]:
    """The measured figures and the targets' verdicts."""
    recovery = recoveries(chaos)
    times = [r["recovery_s"] if r["recovery_s"] is not None else float("inf") for r in recovery]
    median = statistics.median(times) if times else 0.0
    restarts = restart_figures(chaos)
    lost = sum(len(r["lost_beyond_snapshot"] or []) for r in restarts)
    unchecked = sum(r["restored"] is None for r in restarts)
    final, base = final_correct(chaos), final_correct(baseline) if baseline else None
    goals = {
        "no unplanned crash": not chaos.crashes,
        "no belief lost beyond the last snapshot": lost == 0 and unchecked == 0,
        f"median recovery under {TARGET_RECOVERY_S:g} s": median < TARGET_RECOVERY_S,
    }
    if base is not None:
        goals[f"final accuracy within {TARGET_OBJECTS} object of the baseline"] = all(
            final.get(r, 0) >= base[r] - TARGET_OBJECTS for r in base
        )
    return {
        "objects": chaos.objects,
        "faults": len(chaos.faults),
        "unplanned_crashes": chaos.crashes,
        "latents_relayed": chaos.relayed,
        "latents_held_back_by_the_cut": chaos.held_back,
        "restarts": restarts,
        "recoveries": recovery,
        "median_recovery_s": median,
        "final_correct": final,
        "samples": [{"at_s": s.at_s, **{f"{r}_accuracy": a for r, a in s.accuracy.items()}} for s in chaos.samples],
        "baseline_final_correct": base,
        "goals": goals,
        "met": all(goals.values()),
    }
