"""Belief snapshots without ROS (model.belief_snapshot, BeliefStore.state / from_state): a restored
store is the saved one, whatever is damaged or foreign is refused with its reason and nothing is
loaded half, and a writer killed with SIGKILL mid-write leaves the previous snapshot loadable."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from m2vae_fusion.model import belief_snapshot
from m2vae_fusion.model.belief_snapshot import SnapshotError
from m2vae_fusion.model.beliefs import BeliefStore, Encoding, Latent
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.resources import default_model_dir


@pytest.fixture(scope="module")
def model() -> PerceptionModel:
    return PerceptionModel.load(default_model_dir())


def encoding(model: PerceptionModel, modality: str, x: float, stamp_s: float, seed: int) -> Encoding:
    features = np.random.default_rng(seed).normal(size=model.config.feature_dim).astype(np.float32)
    return Encoding(modality, model.model_id, features, np.array([x, 0.5, 0.03]), round(stamp_s * 1e9), "robot1")


def latent(model: PerceptionModel, x: float, sequence: int, stamp_s: float) -> Latent:
    rng = np.random.default_rng(sequence)
    d = model.config.fusion.latent_dim
    return Latent(
        "robot2",
        "object_9",
        model.model_id,
        sequence,
        ("camera",),
        ("robot2",),
        rng.normal(size=d).astype(np.float32),
        rng.normal(-2.0, 0.1, size=d).astype(np.float32),
        np.array([x, 0.5, 0.03]),
        round(stamp_s * 1e9),
    )


def busy_store(model: PerceptionModel) -> BeliefStore:
    """Own sensing of three objects (one sensed twice by the LiDAR), one of them also from robot2, an
    object known from robot2 alone, and latents shared (sequences advanced)."""
    store = BeliefStore(model, "robot1")
    store.update(
        [encoding(model, "camera", 0.0, 1.0, 1), encoding(model, "lidar", 1.0, 1.1, 2), encoding(model, "ir", 2.0, 1.2, 3)]
    )
    store.update([encoding(model, "lidar", 1.01, 2.0, 4), encoding(model, "lidar", 0.99, 2.1, 5)])
    store.add_latents([latent(model, 1.0, 3, 2.5)], now_s=10.0)
    store.add_latents([replace(latent(model, 3.0, 1, 2.6), object_id="object_4")], now_s=10.0)
    store.due_latents(now_s=11.0)
    return store


def test_a_restored_store_is_the_saved_one(model: PerceptionModel, tmp_path: Path) -> None:
    store = busy_store(model)
    assert len(store.objects) == 4 and any(obj.belief is None for obj in store.objects.values())
    path = belief_snapshot.save(tmp_path / "robot1.beliefs", store, "map")
    snapshot = belief_snapshot.load(path, model, "robot1")
    restored = snapshot.store
    assert snapshot.frame == "map"
    assert snapshot.newest_ns == max(obj.last_update_ns for obj in store.objects.values())
    assert list(restored.objects) == list(store.objects)
    for object_id, obj in store.objects.items():
        back = restored.objects[object_id]
        np.testing.assert_array_equal(back.position, obj.position)
        assert back.sensed == obj.sensed and back.own_sensed == obj.own_sensed
        assert (back.sequence, back.contributors, back.own_update_ns, back.last_update_ns, back.position_count) == (
            obj.sequence,
            obj.contributors,
            obj.own_update_ns,
            obj.last_update_ns,
            obj.position_count,
        )
        assert (back.used and back.used.key) == (obj.used and obj.used.key)
        np.testing.assert_allclose(back.fused.mean, obj.fused.mean, atol=1e-6)
        np.testing.assert_allclose(back.class_probabilities, obj.class_probabilities, atol=1e-6)
        if obj.belief is not None:
            np.testing.assert_array_equal(back.belief.mean, obj.belief.mean)
        for modality, evidence in obj.evidence.items():
            np.testing.assert_array_equal(back.evidence[modality].mean, evidence.mean)
            assert back.evidence[modality].count == evidence.count
    # the records that refuse replays came back, and new objects take new ids
    assert restored.add_latents([latent(model, 1.0, 3, 2.5)], now_s=20.0).rejected[0].kind == "duplicate"
    created = restored.update([encoding(model, "camera", 5.0, 3.0, 6)]).created
    assert created == [store._new_id()]
    # a restored store shares every own belief once more
    assert {obj.object_id for obj in restored.due_latents(now_s=30.0)} == {
        *created,
        *(o for o, obj in store.objects.items() if obj.belief),
    }


def test_skip_ahead_gives_out_no_id_or_sequence_again(model: PerceptionModel) -> None:
    store = busy_store(model)
    sequences = {o: obj.sequence for o, obj in store.objects.items()}
    next_id = store._new_id()
    store.skip_ahead(ids=1000, sequences=12)
    assert all(store.objects[o].sequence == s + 12 for o, s in sequences.items() if store.objects[o].belief is not None)
    assert store._new_id() == f"object_{int(next_id.split('_')[1]) + 1001}"


def damaged(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flipped":
        at = len(data) // 2
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :])
    elif how == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"\x00\xff PK not json\n{}")


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("flipped", "damaged"),
        ("truncated", "damaged"),
        ("empty", "not a belief snapshot"),
        ("garbage", "not a belief snapshot"),
    ],
)
def test_a_damaged_snapshot_is_refused_with_its_reason(model: PerceptionModel, tmp_path: Path, how: str, reason: str) -> None:
    path = belief_snapshot.save(tmp_path / "robot1.beliefs", busy_store(model), "map")
    damaged(path, how)
    with pytest.raises(SnapshotError, match=reason) as caught:
        belief_snapshot.load(path, model, "robot1")
    assert str(path) in str(caught.value)


def rewritten(path: Path, change) -> None:
    """`path` with its body changed by `change(content)` and a header that fits it again."""
    body = json.loads(path.read_bytes().partition(b"\n")[2])
    change(body)
    data = json.dumps(body).encode()
    header = {"format": belief_snapshot.FORMAT, "version": belief_snapshot.VERSION, "bytes": len(data)}
    header["sha256"] = hashlib.sha256(data).hexdigest()
    path.write_bytes(json.dumps(header).encode() + b"\n" + data)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda b: b.update(model_id="m2vae-000000000000"), "beliefs of model 'm2vae-000000000000'"),
        (lambda b: b.update(robot_id="robot7"), "beliefs of robot 'robot7', this node is robot 'robot1'"),
        (lambda b: b["store"]["objects"][0]["belief"].update(mean=[0.0] * 3), "does not fit the model"),
        (lambda b: b["store"]["objects"][1].update(position=[1.0, "x"]), "does not fit the model"),
        (lambda b: b["store"]["objects"][0]["evidence"].update(sonar={}), "unknown modality 'sonar'"),
        (lambda b: b["store"].pop("accepted"), "does not fit the model"),
    ],
)
def test_a_snapshot_of_another_model_or_robot_or_shape_is_refused(
    model: PerceptionModel, tmp_path: Path, change, reason: str
) -> None:
    path = belief_snapshot.save(tmp_path / "robot1.beliefs", busy_store(model), "map")
    rewritten(path, change)
    with pytest.raises(SnapshotError, match=reason):
        belief_snapshot.load(path, model, "robot1")


def test_another_format_version_is_named(model: PerceptionModel, tmp_path: Path) -> None:
    path = belief_snapshot.save(tmp_path / "robot1.beliefs", busy_store(model), "map")
    header, _, body = path.read_bytes().partition(b"\n")
    path.write_bytes(header.replace(b'"version": 1', b'"version": 99') + b"\n" + body)
    with pytest.raises(SnapshotError, match="format version 99"):
        belief_snapshot.load(path, model, "robot1")


def test_a_missing_snapshot_is_named(model: PerceptionModel, tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no snapshot"):
        belief_snapshot.load(tmp_path / "nothing.beliefs", model, "robot1")


WRITER = """
import sys
import numpy as np
from m2vae_fusion.model import belief_snapshot
from m2vae_fusion.model.beliefs import BeliefStore, Encoding
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.resources import default_model_dir

model = PerceptionModel.load(default_model_dir())
store = BeliefStore(model, "robot1")
rng = np.random.default_rng(0)
features = rng.normal(size=(2000, model.config.feature_dim)).astype(np.float32)
store.update([Encoding("lidar", model.model_id, f, np.array([0.5 * k, 0.0, 0.0]), k, "robot1") for k, f in enumerate(features[:1000])])
generation = 0
while True:
    generation += 1
    store.update([Encoding("lidar", model.model_id, features[1000 + generation % 1000], np.array([-0.5 * generation, 9.0, 0.0]), 10**6 + generation, "robot1")])
    belief_snapshot.save(sys.argv[1], store, "map")
    print(generation, flush=True)
"""


@pytest.mark.slow
def test_sigkill_mid_write_leaves_the_previous_snapshot_loadable(model: PerceptionModel, tmp_path: Path) -> None:
    """A real process writes snapshots of a 1000-object store back to back (each a few hundred kB,
    one object more each time) and is killed with SIGKILL at random moments, mostly mid-write: the
    file always loads whole, as the last generation reported done or the one after it."""
    path = tmp_path / "robot1.beliefs"
    rng = np.random.default_rng(1)
    for _ in range(4):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            done = int(writer.stdout.readline())  # the first snapshot is written
            time.sleep(rng.uniform(0.2, 1.0))
        finally:
            writer.send_signal(signal.SIGKILL)
            output = writer.communicate()[0]
        done = max([done, *(int(line) for line in output.split())])
        restored = belief_snapshot.load(path, model, "robot1").store
        assert len(restored.objects) - 1000 in (done, done + 1)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != path.name]
    assert all(name.startswith(".robot1.beliefs.") and name.endswith(".tmp") for name in leftovers), leftovers
