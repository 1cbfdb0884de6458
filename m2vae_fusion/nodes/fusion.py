"""fusion: one latent belief per object from the sensor encoder nodes' encodings, fused in place
(paper Sec. III-B, Eq. 18), combined with the latents other robots share, and classified into the
classes of the model's label space with each attribute's marginals (for the shipped model: the 8
AMiRo classes, colour / shape / surface). The rules (association gate, repeats,
bursts, forgetting, which foreign latent is used and how, the checks on foreign latents) are
m2vae_fusion.model.beliefs'; this node converts messages and frames around it.

Subscribes: encodings (m2vae_msgs/ModalityEncoding, reliable), /tf and /tf_static (map -> odom; not
  with fusion_frame odom), shared_topic (m2vae_msgs/LatentEmbedding of other robots; with fuse_foreign).
Publishes: beliefs (m2vae_msgs/ObjectBeliefArray, every 1/publish_rate_hz, all current objects,
  each with the foreign latent it uses fused in, its class entropy and, unless gain_samples is 0, the
  class-entropy reduction and KL the model's imagination expects of each sensing in gain_candidates,
  re-estimated only for beliefs that changed: m2vae_fusion.model.sensing_gains), shared_topic (with share_latents: the belief from
  this robot's own sensing only, contributors [robot_id]; per object when it changed, at once the
  first time and then at most latent_rate_hz; sequence counting per object).

Encodings are buffered and fused in bursts every batch_period_s. An encoding is dropped, with a
warning naming the reason (at most one per reason every 5 s, with a count of those left unsaid),
when its model_id is not this node's model's, its modality is unknown, its features have the
wrong size or contain NaN/inf, it is stamped more than future_tolerance_s ahead (see Time below),
or its position cannot be put into the fusion frame. The M2VAE takes the beta-VAE means only: an
encoding's log_var and confidence are not used.

Counted: every encoding and latent taken, every drop by reason (`dropped encoding: <kind>`,
`dropped latent: <kind>`), the encodings fused per modality and the latents accepted, published on
/diagnostics (m2vae_fusion.ros_interface.diagnostics) every diagnostics_period_s. The node's own
latents, back from the shared topic, count as `ignored own latents`.

Frames: with fusion_frame auto, positions go into `map` as soon as /tf has a map -> <encoding
frame> transform (at or before the encoding's stamp) or /tf_static has one (a localisation that
publishes a fixed map -> odom, as the Gazebo launch does), and stay in the encodings' odom frame until
then; objects held in odom move to map when the transform first appears. fusion_frame map drops
encodings until that transform is known; fusion_frame odom never uses /tf or /tf_static. Beliefs and latents
carry the fusion frame (so latents are in odom while no map is known, and receivers can tell).

Time: stamps are the sensors'. The data clock is the newest stamp fused so far plus the wall time
since that stamp arrived, so it works on simulated, recorded and live data alike without
use_sim_time. An object is forgotten when its newest sensing is forget_after_s older than the data
clock; encodings and latents more than future_tolerance_s ahead of both it and the node's clock
(/clock with use_sim_time) are dropped (one message from the future would otherwise move the data
clock and forget every object).

Several robots (issue 8): each robot runs its own nodes in its own namespace, and every fusion
node publishes on and listens to the one shared topic. It never re-fuses its own information: it
ignores latents with its own robot_id, rejects those listing it among their contributors, and only
shares what it sensed itself. Foreign latents are buffered like encodings and fused in the same
bursts; one is dropped, with a warning as for encodings (same rate limit, counted by kind in
BeliefStore.latent_rejections), when BeliefStore.check_latent rejects it (model id, sizes,
NaN/inf, magnitudes, modalities, echo, duplicate or stale sequence/stamp, more than
foreign_rate_limit_hz from one robot), when it is stamped more than future_tolerance_s ahead (see
Time), when it comes from a robot beyond the first max_foreign_robots this node hears from (a
robot's slot frees after forget_after_s without a latent that passed the checks: made-up robot
ids cannot grow the per-robot state without bound) or when its frame is not the fusion frame:
positions from other robots are only comparable in a common frame, so the node takes foreign latents in map (or
in exactly its own fusion frame) and transforms none. Before its first own encoding, a node that
waits for map (fusion_frame map, or auto once /tf or /tf_static has any map transform) takes map as its frame
from a foreign latent, so a robot learns objects it has never sensed. Robots are assumed to stamp
in one time base (synchronised clocks or one simulation); the forgetting clock follows own
sensings, and foreign stamps only while there has been no own sensing.

Fleet key (fleet_key, off by default; m2vae_fusion.ros_interface.latent_signing): every latent the
node shares is signed (HMAC-SHA256 under the key file's sign_with key, over every field that matters,
sequence and stamp included), and every latent it receives is verified first, before even its robot
id is looked at: one unsigned, signed with a key the file does not list, or whose signature does not
match is dropped as `unsigned`, `unknown_key` or `signature` (counted like the other drops); a
verified one then goes through the checks above, where a replayed copy is a `duplicate` or `stale`.

Snapshots (issue 21): every snapshot_period_s, when they changed, and at shutdown the beliefs are
written atomically to snapshot_path (m2vae_fusion.model.belief_snapshot); on start a snapshot of
this model and robot id is restored, whole or not at all, with object ids and sequence numbers
skipping what the time since it may have given out (SKIPPED_IDS, two periods of latents). Its
beliefs are published and shared only once the node's clock has reached the snapshot's newest
sensing; the first own encodings stamped well before it mean the clock started again (another run),
and the restored objects are dropped. An own belief unchanged for reshare_after_s is shared again
(at most a quarter of foreign_rate_limit_hz such latents per second), so a robot that missed it -
cut off for a while, or restarted from an older snapshot - gets it within that time.

Parameters: PARAMETERS below (defaults, types and ranges; docs/parameters.md lists them).

Usage: ros2 run m2vae_fusion fusion --ros-args -r __ns:=/robot1 --params-file config/fusion.yaml
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import Point
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.time import Time
from tf2_msgs.msg import TFMessage

from m2vae_fusion.core.errors import CheckpointError, ConfigError
from m2vae_fusion.model import belief_snapshot
from m2vae_fusion.model.beliefs import BeliefStore, BeliefStoreConfig, Encoding, Latent, TrackedObject
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.model.sensing_gains import ObjectGains, SensingGains, class_entropy, parse_candidates
from m2vae_fusion.perception import frames
from m2vae_fusion.resources import default_model_dir
from m2vae_fusion.ros_interface import diagnostics, stamps, topics
from m2vae_fusion.ros_interface.drop_log import DropLog, Dropped
from m2vae_fusion.ros_interface.latent_signing import FleetKey, FleetKeyError
from m2vae_fusion.ros_interface.parameters import Parameters, default_robot_id, flag, integer, number, strings, text
from m2vae_fusion.ros_interface.runtime import (
    ParameterError,
    declare,
    declare_executor,
    executor_parameter,
    run_node,
)
from m2vae_fusion.ros_interface.topics import BELIEF_QOS, ENCODING_QOS, LATENT_QOS, SHARED_LATENTS, TF_QOS, TF_STATIC_QOS
from m2vae_fusion.ros_interface.transforms import TransformBuffer, TransformException
from m2vae_msgs.msg import (
    AttributeProbabilities,
    LatentEmbedding,
    ModalityEncoding,
    ObjectBelief,
    ObjectBeliefArray,
    SensingGain,
)

DEFAULT_MODEL = default_model_dir()
MAP = "map"
FUSION_FRAMES = ("auto", MAP, "odom")
TF_HISTORY_S = 10.0  # of message time, map -> odom samples kept: 200 of the sim's 20 Hz /tf

STORE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(BeliefStoreConfig)}  # one source for the store's values

PARAMETERS: Parameters = {
    "model": text(
        None,
        f"perception model folder or its perception_model.json (default: the package's {DEFAULT_MODEL.parent.name}/{DEFAULT_MODEL.name})",
    ),
    "gate": number(
        STORE_DEFAULTS["gate"],
        "association gate [m]: an encoding within this distance (in the plane) of an object's position belongs to it",
        positive=True,
    ),
    "forget_after_s": number(
        STORE_DEFAULTS["forget_after_s"], "drop objects whose newest sensing is older than this [s]", positive=True
    ),
    "publish_rate_hz": number(2.0, "beliefs messages per second", positive=True),
    "batch_period_s": number(0.02, "encodings are buffered and fused in one go this often [s]", positive=True),
    "robot_id": text(None, "this robot's id in latents and beliefs (default: the namespace without '/', else the host name)"),
    "fusion_frame": text(
        "auto", "auto: map once /tf or /tf_static has map -> odom, odom before; map: wait for map; odom: the encodings' frame"
    ),
    "share_latents": flag(True, "publish the belief from own sensing on shared_topic for other robots"),
    "fuse_foreign": flag(True, "fuse the latents other robots publish on shared_topic"),
    "latent_rate_hz": number(
        STORE_DEFAULTS["latent_rate_hz"], "own latents per object per second, at most (the first one goes at once)", positive=True
    ),
    "foreign_rate_limit_hz": number(
        STORE_DEFAULTS["foreign_rate_hz"],
        "foreign latents accepted per foreign robot per second, at most (one second's burst)",
        positive=True,
    ),
    "reshare_after_s": number(
        STORE_DEFAULTS["reshare_after_s"],
        "share an unchanged own belief again after this long, so a robot that missed it (cut off, restarted) gets it; at most a quarter of foreign_rate_limit_hz such latents per second",
        positive=True,
    ),
    "shared_topic": text(SHARED_LATENTS.name, "the topic all robots share latents on"),
    "fleet_key": text(
        "",
        "fleet key file (YAML: sign_with, keys {id: hex secret}; docs/robustness.md): sign every shared latent and drop "
        "foreign ones not signed with one of its keys; empty: latents go unsigned and none is verified",
    ),
    "future_tolerance_s": number(
        1.0,
        "drop encodings and latents stamped more than this many seconds ahead of the data clock and the node's clock",
        positive=True,
    ),
    "max_foreign_robots": integer(
        16,
        "fuse latents of at most this many other robots at a time; a robot's slot frees after forget_after_s without a valid latent",
        minimum=1,
    ),
    "diagnostics_period_s": number(
        1.0, "publish the counts of messages taken and dropped (by reason) on /diagnostics this often [s]", positive=True
    ),
    "gain_candidates": strings(
        ["camera+lidar+ir", "camera"],
        "sensings whose expected gain each belief carries (modalities joined by '+'): what the active explorer weighs (its looks from near, every sensor, and from afar, the camera)",
    ),
    "gain_samples": integer(
        8, "samples of each belief per gain estimate (the model's imagination, docs/active-perception.md); 0: no gains", minimum=0
    ),
    "snapshot_path": text(
        "",
        "file the beliefs are snapshotted to and restored from at start-up (default: $ROS_HOME/m2vae_fusion/beliefs/<robot_id>.beliefs, ROS_HOME defaulting to ~/.ros)",
    ),
    "snapshot_period_s": number(
        5.0,
        "write the beliefs to snapshot_path this often when they changed, and at shutdown [s]; 0: neither snapshots nor restoring",
    ),
    "executor": executor_parameter("single_threaded"),
}
# After a restore, object ids and latent sequence numbers skip what the lost time since the snapshot
# may have given out (other robots keep both): ids, far more objects than a period ever creates;
# sequences, two periods' worth at the share rate (a late timer stretches a period).
SKIPPED_IDS = 1000


class FusionNode(Node):
    def __init__(self, **node_options: Any) -> None:
        """`node_options`: rclpy Node keyword arguments (context, parameter_overrides, ...)."""
        super().__init__("fusion", **node_options)
        model_path = Path(self._declare("model", str(DEFAULT_MODEL))).expanduser()
        self.model = self._load_model(model_path)
        config = self._store_config()
        publish_period = 1.0 / self._number("publish_rate_hz")
        batch_period = self._number("batch_period_s")
        self.robot_id = self._declare("robot_id", default_robot_id(self.get_namespace()))
        if not self.robot_id:
            raise ParameterError("parameter 'robot_id' must not be empty")
        self.fusion_frame_mode = self._declare("fusion_frame")
        if self.fusion_frame_mode not in FUSION_FRAMES:
            raise ParameterError(f"parameter 'fusion_frame' must be one of {list(FUSION_FRAMES)}, got {self.fusion_frame_mode!r}")
        self.share_latents = self._declare("share_latents")
        fuse_foreign = self._declare("fuse_foreign")
        shared_topic = self._declare("shared_topic")
        if not shared_topic:
            raise ParameterError("parameter 'shared_topic' must not be empty")
        self.fleet_key = self._fleet_key()
        self.future_tolerance_ns = round(self._number("future_tolerance_s") * 1e9)
        self.max_foreign_robots = self._declare("max_foreign_robots")
        diagnostics_period = self._number("diagnostics_period_s")
        declare_executor(self, PARAMETERS)  # run_node spins the node on it
        self.store = BeliefStore(self.model, self.robot_id, config)
        self.frame = ""  # the store's frame: decided by the first encoding (or foreign latent), map once known
        self._start_snapshots(config)
        self.gains = self._sensing_gains()
        self.add_on_set_parameters_callback(
            lambda _: SetParametersResult(successful=False, reason="fusion reads its parameters at start-up only: restart it")
        )
        self.tf = TransformBuffer(
            TF_HISTORY_S, clamp_to_oldest=True
        )  # an encoding just before the first map -> odom is placed, not dropped
        self.pending: list[ModalityEncoding] = []
        self.pending_latents: list[LatentEmbedding] = []
        self._data_time: tuple[int, int] | None = None  # (newest stamp fused, monotonic ns when it came)
        self._own_data = False  # whether _data_time comes from an own sensing
        self._next_reshare_s = 0.0  # monotonic s of the next look for beliefs to share again
        self._robots: dict[str, float] = {}  # foreign robot id -> monotonic s of its last latent that passed the checks
        self.counters = diagnostics.Counters()
        self.drops = DropLog(self.get_logger().warning, self.get_logger().info, counters=self.counters)

        self.create_subscription(ModalityEncoding, topics.ENCODINGS.name, self._on_encoding, ENCODING_QOS)
        if self.fusion_frame_mode != "odom":
            self.create_subscription(TFMessage, topics.TF.name, self._on_tf, TF_QOS)
            self.create_subscription(TFMessage, topics.TF_STATIC.name, self._on_tf_static, TF_STATIC_QOS)
        if fuse_foreign:
            self.create_subscription(LatentEmbedding, shared_topic, self._on_latent, LATENT_QOS)
        self.beliefs_pub = self.create_publisher(ObjectBeliefArray, topics.BELIEFS.name, BELIEF_QOS)
        self.latents_pub = self.create_publisher(LatentEmbedding, shared_topic, LATENT_QOS) if self.share_latents else None
        self.create_timer(batch_period, self._on_batch)
        self.create_timer(publish_period, self._on_publish)
        diagnostics.attach(self, self.counters, diagnostics_period)
        self._log_start(model_path, config, shared_topic, fuse_foreign)

    def _log_start(self, model_path: Path, config: BeliefStoreConfig, shared_topic: str, fuse_foreign: bool) -> None:
        sharing = (
            f"sharing on {self.resolve_topic_name(shared_topic)} at most {config.latent_rate_hz:g} Hz per object"
            if self.share_latents
            else "not sharing"
        )
        foreign = (
            f"fusing other robots' latents (at most {config.foreign_rate_hz:g} Hz per robot)"
            if fuse_foreign
            else "not fusing other robots' latents"
        )
        signing = (
            f"latents signed and verified: {self.fleet_key.describe()}"
            if self.fleet_key is not None
            else "latents not signed (no fleet_key)"
        )
        self.get_logger().info(
            f"fusing {', '.join(self.store.modalities)} encodings from {self.resolve_topic_name(topics.ENCODINGS.name)} with model "
            f"{self.model.model_id} ({model_path}) as robot {self.robot_id!r}: gate {config.gate:g} m, forget after "
            f"{config.forget_after_s:g} s, fusion frame {self.fusion_frame_mode}; {sharing}; {foreign}; {signing}"
        )

    # ------------------------------------------------------------ snapshots

    def _start_snapshots(self, config: BeliefStoreConfig) -> None:
        """Restore the beliefs of the last snapshot (if it fits) and write one every snapshot_period_s."""
        self.snapshot_period = self._number("snapshot_period_s")
        self.snapshot_path = Path(self._declare("snapshot_path") or default_snapshot_path(self.robot_id)).expanduser()
        self._snapshot_dirty = False  # the beliefs changed since the last snapshot
        # While a restored snapshot's time base is unconfirmed: its newest stamp (see _confirm_restored)
        self._restored_newest_ns: int | None = None
        if self.snapshot_period > 0:
            self._restore(config)
            self.create_timer(self.snapshot_period, self._snapshot)

    def _restore(self, config: BeliefStoreConfig) -> None:
        """Take the beliefs of the snapshot at snapshot_path if it is this model's and this robot's,
        whole and in a frame this node can use; else say why and start empty."""
        try:
            snapshot = belief_snapshot.load(self.snapshot_path, self.model, self.robot_id, config)
        except belief_snapshot.SnapshotError as exc:
            missing = not self.snapshot_path.exists()
            (self.get_logger().info if missing else self.get_logger().warning)(f"starting with no beliefs: {exc}")
            return
        if self.fusion_frame_mode == "odom" and snapshot.frame == MAP:
            self.get_logger().warning(
                f"starting with no beliefs: the snapshot {self.snapshot_path} holds them in map, this node fuses in odom"
            )
            return
        snapshot.store.skip_ahead(SKIPPED_IDS, max(2, 2 * math.ceil(self.snapshot_period * config.latent_rate_hz)))
        self.store, self.frame = snapshot.store, snapshot.frame
        self._restored_newest_ns = snapshot.newest_ns
        own = sum(obj.belief is not None for obj in self.store.objects.values())
        self.get_logger().info(
            f"restored {len(self.store.objects)} objects ({own} with own sensing) in {self.frame or '(no frame yet)'} from "
            f"{self.snapshot_path}, written {time.time() - snapshot.saved_unix_s:.1f} s ago"
        )

    def _confirm_restored(self, messages: list[ModalityEncoding]) -> None:
        """Whether a restored snapshot belongs to this run, decided before its beliefs are published or
        shared: yes once the node's clock has reached its newest sensing (a restart within a run, on
        wall time or with the simulation going on), no when the first own encodings are stamped well
        before it: their clock started again (a new simulation, a bag played once more), and the
        snapshot knows nothing about its objects."""
        restored_ns = self._restored_newest_ns
        if restored_ns is None:
            return
        if messages:
            newest_ns = max(stamps.to_ns(msg.header.stamp) for msg in messages)
        else:
            newest_ns = self.get_clock().now().nanoseconds
            if newest_ns + self.future_tolerance_ns < restored_ns:
                return  # undecided: wait for the clock or the first encodings
        self._restored_newest_ns = None
        if newest_ns + self.future_tolerance_ns >= restored_ns:
            return
        self.get_logger().warning(
            f"dropping the {len(self.store.objects)} restored objects: the first encodings are stamped {newest_ns * 1e-9:.3f} s, "
            f"before the snapshot's newest sensing at {restored_ns * 1e-9:.3f} s (the clock started again: another run)"
        )
        self.store = BeliefStore(self.model, self.robot_id, self.store.config)
        self.frame = ""
        self._snapshot_dirty = True

    def _snapshot(self) -> None:
        """Write the beliefs if they changed since the last snapshot."""
        if not self._snapshot_dirty:
            return
        start = time.perf_counter()
        try:
            belief_snapshot.save(self.snapshot_path, self.store, self.frame)
        except OSError as exc:
            self.drops.report(Dropped("snapshot", f"cannot write {self.snapshot_path}: {exc}", kind="write"))
            return
        self._snapshot_dirty = False
        self.counters.add("snapshots written")
        self.get_logger().debug(
            f"snapshot of {len(self.store.objects)} objects to {self.snapshot_path} in {(time.perf_counter() - start) * 1e3:.1f} ms"
        )

    def close(self) -> None:
        """A last snapshot, then the node goes (run_node's close)."""
        if self.snapshot_period > 0:
            self._snapshot()
        self.destroy_node()

    # ------------------------------------------------------------ parameters

    @staticmethod
    def _load_model(path: Path) -> PerceptionModel:
        try:
            return PerceptionModel.load(path)
        except (CheckpointError, ConfigError) as exc:
            raise ParameterError(f"parameter 'model': {exc}") from None

    def _declare(self, name: str, default: Any = None) -> Any:
        return declare(self, PARAMETERS, name, default)

    def _store_config(self) -> BeliefStoreConfig:
        try:
            return BeliefStoreConfig(
                gate=self._number("gate"),
                forget_after_s=self._number("forget_after_s"),
                latent_rate_hz=self._number("latent_rate_hz"),
                foreign_rate_hz=self._number("foreign_rate_limit_hz"),
                reshare_after_s=self._number("reshare_after_s"),
            )
        except ConfigError as exc:
            raise ParameterError(f"parameter {exc}") from None

    def _fleet_key(self) -> FleetKey | None:
        """The fleet key the fleet_key parameter names, or None (signing off)."""
        path = self._declare("fleet_key")
        if not path:
            return None
        try:
            return FleetKey.load(path)
        except FleetKeyError as exc:
            raise ParameterError(f"parameter 'fleet_key': {exc}") from None

    def _sensing_gains(self) -> SensingGains | None:
        samples = self._declare("gain_samples")
        candidates = self._declare("gain_candidates")
        if samples == 0:
            return None
        try:
            return SensingGains(self.model, parse_candidates(candidates, self.store.modalities), samples=samples)
        except ConfigError as exc:
            raise ParameterError(f"parameter 'gain_candidates': {exc}") from None

    def _number(self, name: str) -> float:
        return declare(self, PARAMETERS, name)

    # ------------------------------------------------------------ inputs

    def _on_tf(self, msg: TFMessage) -> None:
        """Keeps map -> child transforms; a malformed one must not replace a good one."""
        for t in msg.transforms:
            if t.header.frame_id.lstrip("/") == MAP:
                try:
                    self.tf.set_transform(t)
                except ValueError:
                    continue

    def _on_tf_static(self, msg: TFMessage) -> None:
        """Keeps every static transform: map -> odom may be a chain (map -> world -> odom)."""
        for t in msg.transforms:
            self.tf.set_transform_static(t)

    def _to_map(self, frame: str, at_ns: int | None = None) -> np.ndarray | None:
        """map -> frame at or before `at_ns` (None: the newest), or None when neither /tf nor /tf_static has it."""
        try:
            return self.tf.lookup_matrix(MAP, frame, Time() if at_ns is None else Time(nanoseconds=at_ns))
        except TransformException:
            return None

    def _on_encoding(self, msg: ModalityEncoding) -> None:
        self.counters.add("received encodings")
        self.pending.append(msg)

    def _on_latent(self, msg: LatentEmbedding) -> None:
        self.counters.add("received latents")
        # before anything else: nothing of an unauthenticated message, not even its robot id, is believed
        refusal = self.fleet_key.verify(msg) if self.fleet_key is not None else None
        if refusal is not None:
            self.store.latent_rejections[refusal.kind] += 1
            at_ns = stamps.to_ns(msg.header.stamp)
            self._drop("latent", refusal.kind, latent_name(msg.robot_id, msg.object_id, msg.sequence), at_ns, refusal.reason)
        elif msg.robot_id == self.robot_id:  # its own, back from the shared topic: not even a rejection
            self.counters.add("ignored own latents")
        else:
            self.pending_latents.append(msg)

    def _on_batch(self) -> None:
        self._confirm_restored(self.pending)
        if self.pending:
            self._fuse_encodings()
        if self.pending_latents:
            self._fuse_latents()
        if self.latents_pub is not None and self._restored_newest_ns is None:
            now = time.monotonic()
            if now >= self._next_reshare_s:
                # once a second, a quarter of what a receiver takes from one robot: the changed beliefs keep the rest
                self._next_reshare_s = now + 1.0
                self.store.reshare(now, max(1, int(self.store.config.foreign_rate_hz / 4)))
            for obj in self.store.due_latents(time.monotonic()):
                self._snapshot_dirty = True  # its sequence advanced
                msg = latent_message(obj, self.robot_id, self.model.model_id, self.frame)
                self.latents_pub.publish(msg if self.fleet_key is None else self.fleet_key.sign(msg))

    def _fuse_encodings(self) -> None:
        messages = self.pending[:]
        self.pending.clear()
        encodings = []
        for msg in messages:
            at_ns = stamps.to_ns(msg.header.stamp)
            future = self._future(at_ns)
            converted = future or self._encoding(msg)
            if isinstance(converted, str):
                self._drop("encoding", "future" if future else "frame", f"a {msg.modality!r} encoding", at_ns, converted)
            else:
                encodings.append(converted)
        start = time.perf_counter()
        result = self.store.update(encodings)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        for rejection in result.rejected:
            self._drop(
                "encoding", rejection.kind, f"a {rejection.item.modality!r} encoding", rejection.item.stamp_ns, rejection.reason
            )
        rejected = {id(rejection.item) for rejection in result.rejected}
        for e in encodings:
            if id(e) not in rejected:
                self.counters.add(f"fused {e.modality}")
        for object_id in result.created:
            self.get_logger().info(
                f"new object {object_id} at {np.round(self.store.objects[object_id].position, 3).tolist()} in {self.frame}"
            )
        if result.updated:
            self._snapshot_dirty = True
            self._advance_data_time(max(obj.own_update_ns for obj in result.updated), own=True)
            fused = len(encodings) - len(result.rejected)
            self.get_logger().debug(f"fused {fused} encodings into {len(result.updated)} objects in {elapsed_ms:.1f} ms")

    def _fuse_latents(self) -> None:
        messages = self.pending_latents[:]
        self.pending_latents.clear()
        now = time.monotonic()
        self._robots = {robot: seen for robot, seen in self._robots.items() if now - seen < self.store.config.forget_after_s}
        latents = []
        for msg in messages:
            at_ns = stamps.to_ns(msg.header.stamp)
            converted = self._foreign(msg)
            kind = "frame"
            if not isinstance(converted, str) and self.store.check_latent(converted) is None:
                # only latents the store would take are checked against the clock and may take a robot's slot
                if why := self._future(at_ns):
                    kind, converted = "future", why
                elif why := self._admit_robot(msg.robot_id, now):
                    kind, converted = "robots", why
            if isinstance(converted, str):
                self.store.latent_rejections[kind] += 1
                self._drop("latent", kind, latent_name(msg.robot_id, msg.object_id, msg.sequence), at_ns, converted)
            else:
                latents.append(converted)
        result = self.store.add_latents(latents, now)
        for rejection in result.rejected:
            x = rejection.item
            self._drop("latent", rejection.kind, latent_name(x.robot_id, x.object_id, x.sequence), x.stamp_ns, rejection.reason)
        rejected = {id(rejection.item) for rejection in result.rejected}
        for x in latents:
            if id(x) not in rejected:
                self.counters.add("accepted latents")
        for object_id in result.created:
            obj = self.store.objects[object_id]
            self.get_logger().info(
                f"new object {object_id} at {np.round(obj.position, 3).tolist()} in {self.frame} from robot {obj.used.robot_id}'s "
                f"{obj.used.object_id} ({', '.join(obj.sensed)})"
            )
        if result.updated:
            self._snapshot_dirty = True
            self._advance_data_time(max(obj.last_update_ns for obj in result.updated), own=False)

    def _future(self, at_ns: int) -> str:
        """Why a stamp is from the future (more than future_tolerance_s ahead of both the data clock and
        the node's clock), or "". Both: the data clock runs on wall time, so data faster than real time
        (a simulation or bag at more than 1x) would outrun it, while the node's clock (/clock with
        use_sim_time) follows such data; one clock or the other is then far ahead and no stamp is refused."""
        clock_ns = self.get_clock().now().nanoseconds  # 0 while use_sim_time waits for /clock
        if self._data_time is not None:
            newest, arrived = self._data_time
            clock_ns = max(clock_ns, newest + time.monotonic_ns() - arrived)
        if clock_ns == 0 or at_ns <= clock_ns + self.future_tolerance_ns:
            return ""
        return f"stamp {at_ns * 1e-9:.3f} s is more than {self.future_tolerance_ns * 1e-9:g} s ahead of the data clock and the node's clock ({clock_ns * 1e-9:.3f} s)"

    def _admit_robot(self, robot_id: str, now: float) -> str:
        """Give `robot_id` one of the max_foreign_robots slots (or keep its own), or say why there is none."""
        if robot_id not in self._robots and len(self._robots) >= self.max_foreign_robots:
            return (
                f"robot {robot_id!r} would be more than max_foreign_robots = {self.max_foreign_robots} other robots "
                f"with a latent accepted in the last {self.store.config.forget_after_s:g} s"
            )
        self._robots[robot_id] = now
        return ""

    def _advance_data_time(self, newest_ns: int, own: bool) -> None:
        """The forgetting clock follows own sensings; foreign stamps only until the first of them
        (another robot's clock must not make this one forget what it sensed)."""
        if own and not self._own_data:
            self._data_time, self._own_data = (newest_ns, time.monotonic_ns()), True
        elif (own or not self._own_data) and (self._data_time is None or newest_ns > self._data_time[0]):
            self._data_time = (newest_ns, time.monotonic_ns())

    def _encoding(self, msg: ModalityEncoding) -> Encoding | str:
        """The message with its position in the fusion frame, or why that cannot be done."""
        at_ns = stamps.to_ns(msg.header.stamp)
        frame = msg.header.frame_id.lstrip("/")
        position = np.array([msg.position.x, msg.position.y, msg.position.z])
        if self.fusion_frame_mode != "odom":
            self._switch_to_map()
            to_map = np.eye(4) if frame == MAP else self._to_map(frame, at_ns)
            if to_map is not None and self.frame in ("", MAP):
                self.frame = MAP
                position = frames.apply(to_map, position)
                frame = MAP
            elif self.fusion_frame_mode == MAP or self.frame == MAP:
                return f"no map -> {frame} transform on /tf or /tf_static yet"
        if not self.frame:
            self.frame = frame
        if frame != self.frame:
            return f"its frame {frame!r} is not the fusion frame {self.frame!r}"
        return Encoding(msg.modality, msg.model_id, np.asarray(msg.mean, np.float32), position, at_ns, self.robot_id)

    def _foreign(self, msg: LatentEmbedding) -> Latent | str:
        """The message as the store takes it, or why its position is not in the fusion frame."""
        frame = msg.header.frame_id.lstrip("/")
        if self.fusion_frame_mode != "odom":
            self._switch_to_map()
            if not self.frame and frame == MAP and (self.fusion_frame_mode == MAP or bool(self.tf.children(MAP))):
                self.frame = MAP
        if frame != self.frame:
            return f"its frame {frame!r} is not the fusion frame {self.frame or '(none yet)'!r}"
        return latent_from_message(msg)

    def _switch_to_map(self) -> None:
        """Objects held in odom move to map once /tf or /tf_static has map -> odom."""
        if self.frame in ("", MAP):
            return
        to_map = self._to_map(self.frame)
        if to_map is None:
            return
        self.store.transform(to_map)
        self._snapshot_dirty = True
        self.get_logger().info(f"map -> {self.frame} known: {len(self.store.objects)} objects move from {self.frame} to map")
        self.frame = MAP

    def _drop(self, source: str, kind: str, what: str, at_ns: int, reason: str) -> None:
        """Count a dropped `source` (encoding | latent) by `kind`; warn at most once per kind every DROP_LOG_PERIOD_S."""
        self.drops.report(Dropped(source, reason, kind=kind, subject=f"{what} (stamp {at_ns * 1e-9:.3f} s)"))

    # ------------------------------------------------------------ output

    def _on_publish(self) -> None:
        if self._restored_newest_ns is not None:
            return  # restored beliefs of perhaps another run: nothing to show until _confirm_restored says
        if self.fusion_frame_mode != "odom":
            self._switch_to_map()
        if self._data_time is not None:
            newest, arrived = self._data_time
            for object_id in self.store.forget(newest + time.monotonic_ns() - arrived):
                self._snapshot_dirty = True
                self.get_logger().info(f"forgot {object_id}: not sensed for {self.store.config.forget_after_s:g} s")
        msg = ObjectBeliefArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame
        gains = self.gains.of(self.store.objects.values()) if self.gains is not None else {}
        msg.beliefs = [self._belief(obj, gains.get(obj.object_id)) for obj in self.store.objects.values()]
        self.beliefs_pub.publish(msg)

    def _belief(self, obj: TrackedObject, gains: ObjectGains | None) -> ObjectBelief:
        msg = ObjectBelief()
        msg.object_id = obj.object_id
        msg.position = Point(x=float(obj.position[0]), y=float(obj.position[1]), z=float(obj.position[2]))
        msg.modalities = list(obj.sensed)  # own and from the used foreign latent
        msg.class_names = list(self.model.labels.classes)
        msg.class_probabilities = obj.class_probabilities.tolist()
        marginals = self.model.labels.marginals(obj.class_probabilities)
        msg.attributes = [
            AttributeProbabilities(name=name, values=list(values), probabilities=marginals[name].tolist())
            for name, values in self.model.labels.attributes
        ]
        msg.class_entropy = class_entropy(obj.class_probabilities)
        if gains is not None:
            msg.expected_gains = [
                SensingGain(modalities=list(g.modalities), class_entropy_reduction=g.entropy_reduction, kl=g.kl)
                for g in gains.gains
            ]
        msg.model_id = self.model.model_id
        msg.mean = obj.fused.mean.tolist()
        msg.log_var = obj.fused.log_var.tolist()
        msg.last_update = stamps.from_ns(obj.last_update_ns)
        msg.contributing_robots = list(obj.contributing_robots)
        return msg


def latent_message(obj: TrackedObject, robot_id: str, model_id: str, frame: str) -> LatentEmbedding:
    """The LatentEmbedding this robot shares of `obj`: its belief from own sensing only (no echo)."""
    if obj.belief is None:
        raise ValueError(f"{obj.object_id} has no own sensing to share")
    msg = LatentEmbedding()
    msg.header.stamp = stamps.from_ns(obj.own_update_ns)
    msg.header.frame_id = frame
    msg.robot_id = robot_id
    msg.object_id = obj.object_id
    msg.model_id = model_id
    msg.sequence = obj.sequence
    msg.modalities = list(obj.own_sensed)
    msg.contributors = list(obj.contributors)
    msg.mean = obj.belief.mean.tolist()
    msg.log_var = obj.belief.log_var.tolist()
    msg.position = Point(x=float(obj.position[0]), y=float(obj.position[1]), z=float(obj.position[2]))
    return msg


def latent_from_message(msg: LatentEmbedding) -> Latent:
    """A LatentEmbedding as the belief store takes it (its frame is the caller's to check)."""
    return Latent(
        msg.robot_id,
        msg.object_id,
        msg.model_id,
        msg.sequence,
        tuple(msg.modalities),
        tuple(msg.contributors),
        np.asarray(msg.mean, np.float32),
        np.asarray(msg.log_var, np.float32),
        np.array([msg.position.x, msg.position.y, msg.position.z]),
        stamps.to_ns(msg.header.stamp),
    )


def latent_name(robot_id: str, object_id: str, sequence: int) -> str:
    return f"latent {robot_id}/{object_id} #{sequence}"


def default_snapshot_path(robot_id: str) -> Path:
    return Path(os.environ.get("ROS_HOME") or "~/.ros").expanduser() / "m2vae_fusion" / "beliefs" / f"{robot_id}.beliefs"


def main(args: list[str] | None = None) -> None:
    run_node("fusion", FusionNode, args, close=FusionNode.close)


if __name__ == "__main__":
    main()
