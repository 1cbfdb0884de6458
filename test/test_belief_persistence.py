"""Beliefs survive a crash (issue 21): the fusion node as its own process, fed encodings and /clock by
rclpy in this process over real DDS, snapshots its beliefs; killed with SIGKILL and started again, it
publishes the same objects (ids, positions, classes, sensed modalities) as before the kill, shares
them on with sequence numbers above the ones other robots already took, and gives new objects ids
the lost time cannot have used. A snapshot from another run (its clock started again) is dropped,
and its beliefs are never published."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest
from rosgraph_msgs.msg import Clock
from test_fusion_node import Peer, fusion_argv, modality_encoding
from test_fusion_node import model_dir as model_dir  # the tiny model, trained once for this module

from m2vae_fusion.model import belief_snapshot
from m2vae_fusion.model.beliefs import BeliefStore, Encoding
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.nodes.fusion import SKIPPED_IDS
from m2vae_fusion.ros_interface.stamps import from_ns as to_stamp

PERIOD_S = 0.5
OBJECTS = {(0.5, 0.0, 0.03): ("lidar",), (1.5, 0.0, 0.03): ("camera", "ir"), (2.5, 0.0, 0.03): ("camera", "lidar", "ir")}


class ClockedPeer(Peer):
    """The fusion node's peer, also publishing /clock: the node runs on simulated time here, which
    goes at the wall clock's rate from wherever `start` sets it."""

    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id)
        self.clock = self.node.create_publisher(Clock, "/clock", 10)
        self.start(0.0)

    def start(self, at_s: float) -> None:
        self._origin = time.monotonic() - at_s

    @property
    def now_s(self) -> float:
        return time.monotonic() - self._origin

    def tick(self) -> None:
        self.clock.publish(Clock(clock=to_stamp(round(self.now_s * 1e9))))


@pytest.fixture
def peer(ros_env):
    peer = ClockedPeer(int(ros_env["ROS_DOMAIN_ID"]))
    yield peer
    peer.close()


def argv(model_dir: Path, snapshot: Path) -> list[str]:
    return fusion_argv(
        "-r",
        "__ns:=/robot1",
        "-p",
        f"model:={model_dir}",
        "-p",
        "use_sim_time:=true",
        "-p",
        "fusion_frame:=odom",
        "-p",
        "publish_rate_hz:=20.0",
        "-p",
        f"snapshot_path:={snapshot}",
        "-p",
        f"snapshot_period_s:={PERIOD_S}",
    )


def objects(msg) -> dict[str, tuple]:
    """A beliefs message as object id -> (position, modalities, class probabilities)."""
    return {
        b.object_id: ((b.position.x, b.position.y, b.position.z), tuple(b.modalities), np.array(b.class_probabilities))
        for b in msg.beliefs
    }


def test_beliefs_come_back_after_sigkill(processes, peer: ClockedPeer, model_dir: Path, tmp_path: Path) -> None:
    model = PerceptionModel.load(model_dir)
    snapshot = tmp_path / "robot1.beliefs"
    proc = processes.start(*argv(model_dir, snapshot))
    peer.start(100.0)
    assert peer.spin_until(lambda: peer.encodings.get_subscription_count() >= 1, 30, proc, peer.tick), "node never subscribed"
    peer.spin_until(lambda: False, 1.0, proc, peer.tick)
    for k, (position, modalities) in enumerate(OBJECTS.items()):
        for j, modality in enumerate(modalities):
            peer.encodings.publish(modality_encoding(modality, model.model_id, position, peer.now_s, seed=10 * k + j))
    expected = {tuple(sorted(m, key=("camera", "lidar", "ir").index)) for m in OBJECTS.values()}

    def fused() -> bool:
        return bool(peer.beliefs) and {m for _, m, _ in objects(peer.beliefs[-1]).values()} == expected

    assert peer.spin_until(fused, 20, proc, peer.tick), "the node never fused every encoding"
    assert peer.spin_until(lambda: len(peer.latents) >= 3, 10, proc, peer.tick), "the node never shared its beliefs"
    before = objects(peer.beliefs[-1])

    def saved() -> bool:
        try:
            return len(belief_snapshot.load(snapshot, model, "robot1").store.objects) == 3
        except belief_snapshot.SnapshotError:
            return False

    assert peer.spin_until(saved, 10 * PERIOD_S, proc, peer.tick), "no snapshot of the three objects within ten periods"
    sequences = {m.object_id: m.sequence for _, m in peer.latents}
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    peer.beliefs.clear()
    peer.latents.clear()
    peer.start(peer.now_s + 1.0)  # the simulation went on while the node was down
    restarted = processes.start(*argv(model_dir, snapshot))
    assert peer.spin_until(lambda: bool(peer.beliefs), 30, restarted, peer.tick), "the restarted node published no beliefs"
    after = objects(peer.beliefs[-1])
    assert after.keys() == before.keys()
    for object_id, (position, modalities, classes) in before.items():
        assert after[object_id][0] == position and after[object_id][1] == modalities
        np.testing.assert_allclose(after[object_id][2], classes, atol=1e-5)

    # it shares them on, above the sequence numbers other robots took before the kill
    assert peer.spin_until(lambda: {m.object_id for _, m in peer.latents} >= sequences.keys(), 10, restarted, peer.tick)
    assert all(m.sequence > sequences[m.object_id] for _, m in peer.latents if m.object_id in sequences)
    # a new object takes an id beyond any the lost time may have given out
    peer.encodings.publish(modality_encoding("lidar", model.model_id, (4.0, 0.0, 0.03), peer.now_s, seed=99))
    assert peer.spin_until(lambda: len(peer.beliefs[-1].beliefs) == 4, 10, restarted, peer.tick)
    (new,) = objects(peer.beliefs[-1]).keys() - before.keys()
    assert int(new.split("_")[1]) > len(OBJECTS) + SKIPPED_IDS


def test_a_snapshot_of_another_run_is_dropped_unseen(processes, peer: ClockedPeer, model_dir: Path, tmp_path: Path) -> None:
    """The snapshot's newest sensing is at 100 s; the node starts on a clock at 0.5 s (a new simulation):
    nothing is published until the first encodings, stamped 1 s, show the clock started again; then
    only the new object is."""
    model = PerceptionModel.load(model_dir)
    old = BeliefStore(model, "robot1")
    d = model.config.feature_dim
    old.update(
        [
            Encoding("lidar", model.model_id, np.zeros(d, np.float32), np.array([x, 0.0, 0.03]), 100 * 10**9, "robot1")
            for x in (0.5, 1.5)
        ]
    )
    snapshot = belief_snapshot.save(tmp_path / "robot1.beliefs", old, "robot1/odom")

    peer.start(0.5)
    proc = processes.start(*argv(model_dir, snapshot))
    assert peer.spin_until(lambda: peer.encodings.get_subscription_count() >= 1, 30, proc, peer.tick), "node never subscribed"
    peer.spin_until(lambda: False, 1.5, proc, peer.tick)
    assert not peer.beliefs, "restored beliefs of another run were published before the first encodings"
    peer.encodings.publish(modality_encoding("lidar", model.model_id, (3.0, 0.0, 0.03), peer.now_s, seed=5))
    assert peer.spin_until(lambda: bool(peer.beliefs), 10, proc, peer.tick), "no beliefs after the first encoding"
    assert [(b.position.x, b.position.y) for b in peer.beliefs[-1].beliefs] == [(3.0, 0.0)]
    time.sleep(2 * PERIOD_S)
    peer.spin_until(lambda: False, 2 * PERIOD_S, proc, peer.tick)
    assert len(belief_snapshot.load(snapshot, model, "robot1").store.objects) == 1, "the dropped beliefs stayed on disk"
