"""The fuzz's rclpy side: publishes the adversarial messages and reads /clock, the sensors (for the
bases), the beliefs (every number must be finite) and the nodes' counters on /diagnostics."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from m2vae_fusion.robustness.cases import Scene, stamp_ns
from m2vae_fusion.robustness.probe import RclpyProbe


@dataclass
class Outcome:
    sent: Counter[str] = field(default_factory=Counter)  # case name -> messages
    expected: dict[tuple[str, str], int] = field(default_factory=dict)  # (node, key) -> must have risen by at least
    lenient: dict[str, int] = field(default_factory=dict)  # fusion node -> flood messages (rate | robots | accepted)
    outstanding: Counter[str] = field(default_factory=Counter)  # node -> fuzz messages sent to it
    beliefs_checked: int = 0
    non_finite_beliefs: list[str] = field(default_factory=list)


def belief_problems(msg: Any) -> list[str]:
    """Descriptions of every ObjectBelief in an ObjectBeliefArray with a non-finite number."""
    bad = []
    for b in msg.beliefs:
        numbers = [b.position.x, b.position.y, b.position.z, *b.mean, *b.log_var, *b.class_probabilities]
        numbers += [p for a in b.attributes for p in a.probabilities]
        if not np.all(np.isfinite(np.asarray(numbers, dtype=np.float64))):
            bad.append(f"{b.object_id}: mean {list(b.mean)}, log_var {list(b.log_var)}, p {list(b.class_probabilities)}")
    return bad


class Fuzzer(RclpyProbe):
    """rclpy in this process: publishes the adversarial messages, reads /clock, the sensors (for the
    bases), the beliefs and /diagnostics."""

    def __init__(self, domain_id: int, scene: Scene) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image, LaserScan

        from m2vae_fusion.ros_interface import diagnostics
        from m2vae_fusion.ros_interface.topics import LATENT_QOS
        from m2vae_msgs.msg import LatentEmbedding, ObjectBeliefArray

        super().__init__(domain_id, "m2vae_fuzz")
        self.scene = scene
        self.counts: dict[str, dict[str, int]] = {}  # node name -> its newest counters
        self.seen: Counter[tuple[str, str]] = Counter()  # (robot, topic) -> messages this process received, the sim's and its own
        self.outcome = Outcome()
        self.belief_frames: dict[str, str] = {}  # robot -> frame of its fusion node's latest beliefs
        self.publishers: dict[tuple[str, str], Any] = {}
        topics = {"scan": (LaserScan, "scan"), "image": (Image, "camera/image_raw"), "ir": (LaserScan, "ir/scan")}
        observer = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)  # deep: it should lose less than the nodes
        for robot in scene.robots:
            for key, (kind, name) in topics.items():
                self.publishers[(robot, key)] = self.node.create_publisher(kind, f"/{robot}/{name}", qos_profile_sensor_data)
                self.node.create_subscription(kind, f"/{robot}/{name}", self._base(robot, key), observer)
            self.node.create_subscription(
                ObjectBeliefArray,
                f"/{robot}/beliefs",
                functools.partial(self._on_beliefs, robot),
                QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE),
            )
        self.latents = self.node.create_publisher(LatentEmbedding, "/shared/latents", LATENT_QOS)
        self.node.create_subscription(
            Clock, "/clock", self._on_clock, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        )
        self.node.create_subscription(
            DiagnosticArray,
            diagnostics.TOPIC,
            self._on_diagnostics,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
        )
        self._read = diagnostics.read

    def _base(self, robot: str, key: str) -> Callable[[Any], None]:
        def take(msg: Any) -> None:
            self.seen[(robot, key)] += 1
            # the first real message only: later ones may be this fuzz's own
            if (robot, key) not in self.scene.bases and stamp_ns(msg.header.stamp) > 0:
                self.scene.bases[(robot, key)] = msg

        return take

    def _on_clock(self, msg: Any) -> None:
        self.scene.now_ns = max(self.scene.now_ns, stamp_ns(msg.clock))

    def _on_diagnostics(self, msg: Any) -> None:
        self.counts.update(self._read(msg.status))

    def _on_beliefs(self, robot: str, msg: Any) -> None:
        self.belief_frames[robot] = msg.header.frame_id
        self.outcome.beliefs_checked += len(msg.beliefs)
        self.outcome.non_finite_beliefs += belief_problems(msg)


def counted(fuzzer: Fuzzer, start: dict[str, dict[str, int]], node: str, keys: tuple[str, ...]) -> int:
    now, before = fuzzer.counts.get(node, {}), start.get(node, {})
    return sum(now.get(k, 0) - before.get(k, 0) for k in keys)
