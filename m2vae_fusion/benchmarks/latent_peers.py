"""Simulated peer robots for `m2vae bench latents`: one process publishing the LatentEmbedding messages
of a slice of the plan's peers on the shared topic, on schedule, and logging every latent it sent.

Run by the bench as `python -m m2vae_fusion.benchmarks.latent_peers PLAN LOG --first I --count K`.
Protocol on stdin / stdout, one line each: it prints `ready` once every peer's publisher has matched
a subscriber (the fusion node), reads `go START_NS SECONDS` (START_NS: wall-clock ns to begin at),
sends for SECONDS, writes LOG (.npz: stamp_ns, peer, object, sequence, mean, lag_s of every latent
sent) and prints `finished {json}` (sent, lag percentiles, CPU seconds); then it keeps its
publishers until stdin closes, so reliable DDS can still deliver its last samples.

Each (peer, object) sends every 1 / rate_hz seconds at its own phase, as a fusion node shares an
object it keeps sensing. A latent's stamp is the wall clock just before it is published (the
common clock of the fleet), so the receiver's latency is measured from that stamp; its mean is the
plan's mean of (peer, object) plus fresh jitter, so every latent sent is unique and can be found
again, bit for bit, in a belief. No torch here: the process starts quickly and stays light.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MATCH_TIMEOUT_S = 30.0
SLEEP_MIN_S = 2e-4  # below this a latent goes out at once: a sleep that short costs more than it keeps


class Peers:
    """The publishers of a slice of the plan's peers, one rclpy node (one DDS writer) per peer."""

    def __init__(self, plan: dict[str, np.ndarray], first: int, count: int) -> None:
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        from m2vae_fusion.ros_interface.topics import LATENT_QOS
        from m2vae_msgs.msg import LatentEmbedding

        self.plan = plan
        self.peers = range(first, first + count)
        self.context = rclpy.Context()
        # args=[]: its own arguments are not ROS arguments
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.nodes, self.publishers = [], []
        for p in self.peers:
            node = rclpy.create_node(
                f"peer_{p}", context=self.context, start_parameter_services=False, enable_rosout=False
            )  # a fleet robot's other entities are not what is measured
            self.nodes.append(node)
            self.publishers.append(node.create_publisher(LatentEmbedding, str(plan["topic"]), LATENT_QOS))
        self.messages = [[latent_template(plan, p, o) for o in range(plan["positions"].shape[1])] for p in self.peers]

    def matched(self) -> bool:
        return all(pub.get_subscription_count() > 0 for pub in self.publishers)

    def close(self) -> None:
        for node in self.nodes:
            node.destroy_node()
        self.context.try_shutdown()


def latent_template(plan: dict[str, np.ndarray], peer: int, obj: int) -> Any:
    """(peer, obj)'s LatentEmbedding with the fields that do not change from one latent to the next."""
    from m2vae_msgs.msg import LatentEmbedding

    msg = LatentEmbedding()
    msg.header.frame_id = str(plan["frame"])
    msg.robot_id = str(plan["peer_ids"][peer])
    msg.object_id = f"object_{obj + 1}"
    msg.model_id = str(plan["model_id"])
    msg.modalities = [str(m) for m in plan["modalities"]]
    msg.contributors = [msg.robot_id]
    msg.log_var = plan["log_vars"][peer, obj].tolist()
    x, y, z = plan["positions"][peer, obj].tolist()
    msg.position.x, msg.position.y, msg.position.z = x, y, z
    return msg


def fill(msg: Any, sequence: int, mean: np.ndarray, stamp_ns: int) -> None:
    """The fields of one latent: its sequence, mean and stamp."""
    msg.sequence = sequence
    msg.mean = mean.tolist()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)


def send(peers: Peers, start_ns: int, seconds: float, seed: int) -> dict[str, np.ndarray]:
    """Publish every (peer, object) of `peers` at rate_hz from `start_ns` (wall clock) for `seconds`;
    the log of what went out. Behind schedule, the late latents go out at once (a burst), and their lag
    is logged: the bench reports whether the senders kept the offered rate."""
    plan = peers.plan
    period = 1.0 / float(plan["rate_hz"])
    phases = plan["phases"][peers.peers.start : peers.peers.stop]
    order = sorted(np.ndindex(phases.shape), key=lambda po: phases[po])  # (local peer, object), in order of phase
    rounds = math.ceil(seconds / period)
    capacity = rounds * len(order)
    rng = np.random.default_rng([seed, peers.peers.start])
    means = plan["means"][peers.peers.start : peers.peers.stop]
    jitter = (float(plan["jitter"]) * rng.standard_normal((capacity, means.shape[-1]))).astype(np.float32)
    log = {
        "stamp_ns": np.zeros(capacity, np.int64),
        "peer": np.zeros(capacity, np.int32),
        "object": np.zeros(capacity, np.int32),
        "sequence": np.zeros(capacity, np.int64),
        "mean": np.zeros((capacity, means.shape[-1]), np.float32),
        "lag_s": np.zeros(capacity, np.float64),
    }
    start = time.monotonic() + (start_ns - time.time_ns()) * 1e-9
    n = 0
    for k in range(rounds):
        for p, o in order:
            target = start + k * period + phases[p, o]
            if target >= start + seconds:
                continue
            if (wait := target - time.monotonic()) > SLEEP_MIN_S:
                time.sleep(wait)
            mean = means[p, o] + jitter[n]
            stamp = time.time_ns()
            fill(peers.messages[p][o], k + 1, mean, stamp)
            peers.publishers[p].publish(peers.messages[p][o])
            lag = time.monotonic() - target
            for key, value in (("stamp_ns", stamp), ("peer", p + peers.peers.start), ("object", o), ("sequence", k + 1)):
                log[key][n] = value
            log["mean"][n], log["lag_s"][n] = mean, lag
            n += 1
    return {key: value[:n] for key, value in log.items()}


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file (the plan, a log of what was sent)."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m m2vae_fusion.benchmarks.latent_peers")
    parser.add_argument("plan", type=Path)
    parser.add_argument("log", type=Path)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    peers = Peers(read_npz(args.plan), args.first, args.count)
    try:
        deadline = time.monotonic() + MATCH_TIMEOUT_S
        while not peers.matched():
            if time.monotonic() > deadline:
                print(f"no subscriber on {peers.plan['topic']} within {MATCH_TIMEOUT_S:g} s", file=sys.stderr)
                return 1
            time.sleep(0.05)
        print("ready", flush=True)
        word, start_ns, seconds = sys.stdin.readline().split()
        if word != "go":
            raise ValueError(f"expected 'go START_NS SECONDS', got {word!r}")
        cpu0 = time.process_time()
        log = send(peers, int(start_ns), float(seconds), args.seed)
        cpu_s = time.process_time() - cpu0
        np.savez(args.log, **log)
        lag_ms = np.percentile(log["lag_s"], [50, 99]) * 1e3 if len(log["lag_s"]) else [math.nan, math.nan]
        summary = {"sent": len(log["stamp_ns"]), "lag_p50_ms": float(lag_ms[0]), "lag_p99_ms": float(lag_ms[1]), "cpu_s": cpu_s}
        print(f"finished {json.dumps(summary)}", flush=True)
        sys.stdin.read()  # until the bench closes stdin: the publishers stay while DDS delivers
        return 0
    finally:
        peers.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
