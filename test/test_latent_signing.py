"""The fleet key (m2vae_fusion.ros_interface.latent_signing), no DDS: a signed latent verifies, and
after any one field that matters changes it no longer does; rotation with two keys; unsigned and
unknown-key latents are named; a replayed signed latent is a duplicate for the belief store and a
replay with a bumped sequence fails the signature; every fault of a key file is named with the file."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from m2vae_fusion.model.beliefs import BeliefStore
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.nodes.fusion import latent_from_message
from m2vae_fusion.resources import default_model_dir
from m2vae_fusion.ros_interface import stamps
from m2vae_fusion.ros_interface.latent_signing import (
    MAX_KEY_ID_CHARS,
    SIGNATURE_BYTES,
    FleetKey,
    FleetKeyError,
    signed_bytes,
    write_key_file,
)
from m2vae_msgs.msg import LatentEmbedding

A, B = bytes(range(32)), bytes(range(100, 140))  # two fleet secrets (32 and 40 bytes)


def latent(robot_id: str = "robot2", sequence: int = 3, t_s: float = 5.0) -> LatentEmbedding:
    msg = LatentEmbedding()
    msg.header.stamp, msg.header.frame_id = stamps.from_ns(round(t_s * 1e9)), "map"
    msg.robot_id, msg.object_id, msg.model_id, msg.sequence = robot_id, "object_4", "m2vae-100bd3074f3b", sequence
    msg.modalities, msg.contributors = ["camera", "lidar"], [robot_id]
    msg.mean = np.linspace(-1, 1, 10, dtype=np.float32).tolist()
    msg.log_var = [-2.0] * 10
    msg.position.x, msg.position.y, msg.position.z = 1.5, -2.25, 0.03
    return msg


def key(tmp_path: Path, secrets: dict[str, bytes], sign_with: str, name: str = "fleet.yaml") -> FleetKey:
    return FleetKey.load(write_key_file(tmp_path / name, secrets, sign_with))


def flip_first_mean_byte(m) -> None:
    raw = bytearray(np.asarray(m.mean, np.float32).tobytes())
    raw[0] ^= 0x01  # the lowest mantissa bit: a change no magnitude check could see
    m.mean = np.frombuffer(bytes(raw), np.float32).tolist()


# every field the signature covers, each changed in a way the other checks might let through
TAMPERING: dict[str, Callable[[LatentEmbedding], None]] = {
    "stamp sec": lambda m: setattr(m.header.stamp, "sec", m.header.stamp.sec + 1),
    "stamp nanosec": lambda m: setattr(m.header.stamp, "nanosec", m.header.stamp.nanosec + 1),
    "frame_id": lambda m: setattr(m.header, "frame_id", "odom"),
    "robot_id": lambda m: setattr(m, "robot_id", "robot3"),
    "object_id": lambda m: setattr(m, "object_id", "object_5"),
    "model_id": lambda m: setattr(m, "model_id", "m2vae-000000000000"),
    "sequence": lambda m: setattr(m, "sequence", m.sequence + 1),
    "modalities": lambda m: setattr(m, "modalities", ["camera", "lidar", "ir"]),
    "modalities order": lambda m: setattr(m, "modalities", ["lidar", "camera"]),
    "contributors": lambda m: setattr(m, "contributors", [*m.contributors, "robot9"]),
    "mean (one bit)": flip_first_mean_byte,
    "log_var": lambda m: m.log_var.__setitem__(9, -1.0),
    "mean and log_var swapped": lambda m: (lambda mean, lv: (setattr(m, "mean", lv), setattr(m, "log_var", mean)))(
        list(m.mean), list(m.log_var)
    ),
    "position x": lambda m: setattr(m.position, "x", m.position.x + 1e-9),
    "position z": lambda m: setattr(m.position, "z", 0.0),
    "key_id": lambda m: setattr(m, "key_id", "b"),  # a key the file lists, but not the one that signed
    "signature byte": lambda m: setattr(m, "signature", bytes([m.signature[0] ^ 0x80, *m.signature[1:]])),
    "signature truncated": lambda m: setattr(m, "signature", bytes(m.signature[:16])),
}


def test_a_signed_latent_verifies_and_survives_serialization(tmp_path: Path) -> None:
    from rclpy.serialization import deserialize_message, serialize_message

    fleet = key(tmp_path, {"a": A}, "a")
    msg = fleet.sign(latent())
    assert msg.key_id == "a" and len(msg.signature) == SIGNATURE_BYTES
    assert fleet.verify(msg) is None
    received = deserialize_message(serialize_message(msg), LatentEmbedding)  # what a receiver holds
    assert fleet.verify(received) is None and bytes(received.signature) == bytes(msg.signature)


@pytest.mark.parametrize("field", list(TAMPERING))
def test_changing_any_signed_field_fails_the_signature(tmp_path: Path, field: str) -> None:
    fleet = key(tmp_path, {"a": A, "b": B}, "a")
    msg = fleet.sign(latent())
    TAMPERING[field](msg)
    refusal = fleet.verify(msg)
    assert refusal is not None and refusal.kind == "signature", (field, refusal)


def test_the_encoding_is_unambiguous() -> None:
    # moving characters between neighbouring strings or lists changes the bytes signed
    one, other = latent(), latent()
    one.robot_id, one.object_id = "robot2", "object_4"
    other.robot_id, other.object_id = "robot2o", "bject_4"
    assert signed_bytes(one) != signed_bytes(other)
    one.modalities, other.modalities = ["camera", "lidar"], ["cameralidar"]
    assert signed_bytes(one) != signed_bytes(other)
    one.modalities, one.contributors = ["camera"], ["robot2"]
    other.modalities, other.contributors = ["camera", "robot2"], []
    assert signed_bytes(one) != signed_bytes(other)


def test_unsigned_and_unknown_keys_are_named(tmp_path: Path) -> None:
    fleet = key(tmp_path, {"a": A}, "a")
    assert fleet.verify(latent()).kind == "unsigned"
    outsider = key(tmp_path, {"intruder": bytes(32)}, "intruder", "outsider.yaml")
    refusal = fleet.verify(outsider.sign(latent()))
    assert refusal.kind == "unknown_key" and "'intruder'" in refusal.reason
    same_secret_other_id = key(tmp_path, {"z": A}, "z", "renamed.yaml")  # the id is signed too
    assert fleet.verify(same_secret_other_id.sign(latent())).kind == "unknown_key"
    no_id = fleet.sign(latent())
    no_id.key_id = ""
    assert fleet.verify(no_id).kind == "unknown_key"


def test_rotation_two_keys_in_the_file(tmp_path: Path) -> None:
    """A fleet moving from key a to key b: robots already on b sign with b and still take a's
    latents, robots still on a take b's; once a is retired from a file, a's latents are refused."""
    old = key(tmp_path, {"a": A, "b": B}, "a", "old.yaml")
    new = key(tmp_path, {"a": A, "b": B}, "b", "new.yaml")
    retired = key(tmp_path, {"b": B}, "b", "retired.yaml")
    by_old, by_new = old.sign(latent()), new.sign(latent())
    assert (by_old.key_id, by_new.key_id) == ("a", "b") and bytes(by_old.signature) != bytes(by_new.signature)
    assert all(k.verify(m) is None for k in (old, new) for m in (by_old, by_new))
    assert retired.verify(by_new) is None and retired.verify(by_old).kind == "unknown_key"


def test_a_replayed_signed_latent_is_a_duplicate_and_a_resequenced_one_fails_the_signature(tmp_path: Path) -> None:
    """Sequence and stamp are signed: a copy verifies and the store's replay checks refuse it; a copy
    given a higher sequence (to pass those checks) no longer verifies."""
    model = PerceptionModel.load(default_model_dir())
    fleet = key(tmp_path, {"a": A}, "a")
    store = BeliefStore(model, "robot1")

    original = latent()
    original.model_id = model.model_id
    original = fleet.sign(original)
    assert fleet.verify(original) is None and not store.add_latents([latent_from_message(original)], 0.0).rejected
    replay = copy.deepcopy(original)
    assert fleet.verify(replay) is None  # a copy is validly signed ...
    (rejection,) = store.add_latents([latent_from_message(replay)], 1.0).rejected
    assert rejection.kind == "duplicate"  # ... and the store's sequence record refuses it
    resequenced = copy.deepcopy(original)
    resequenced.sequence += 1
    assert fleet.verify(resequenced).kind == "signature"
    restamped = copy.deepcopy(original)
    restamped.header.stamp.sec += 10
    assert fleet.verify(restamped).kind == "signature"


def test_the_log_line_names_key_ids_never_secrets(tmp_path: Path) -> None:
    fleet = key(tmp_path, {"a": A, "b": B}, "b")
    text = f"{fleet.describe()} {fleet!r}"
    assert "'b'" in text and "'a'" in text and A.hex() not in text and B.hex() not in text and str(list(A)) not in text


BAD_FILES = {  # file content -> what the error says
    f"keys: {{a: '{'ab' * 32}'}}": "sign_with None is not one of its keys (a)",
    f"sign_with: a\nkeys: {{a: '{'ab' * 31}'}}": "key 'a': the secret has 31 bytes, at least 32",
    f"sign_with: a\nkeys: {{a: '{'zz' * 32}'}}": "key 'a': the secret is not hex",
    "sign_with: a\nkeys: {a: 12345}": "key 'a': the secret must be a quoted hex string, got int",
    f"sign_with: b\nkeys: {{a: '{'ab' * 32}'}}": "sign_with 'b' is not one of its keys (a)",
    f"sign_with: a\nkeys: {{{'k' * 13}: '{'ab' * 32}'}}": f"key id '{'k' * 13}' must be 1 to {MAX_KEY_ID_CHARS} characters",
    f"sign_with: a\nkeys: {{'a b': '{'ab' * 32}'}}": "key id 'a b' must be",
    f"sign_with: a\nkeys: {{2026: '{'ab' * 32}'}}": "key id 2026 must be",
    "sign_with: a\nkeys: {}": "`keys` must map each key id to its secret as hex",
    f"sign_with: a\nkeys: {{a: '{'ab' * 32}'}}\nextra: 1": "unknown entries ['extra']",
    "- a\n- b": "expected a mapping with sign_with and keys",
    "sign_with: [a": "not valid YAML",
}


@pytest.mark.parametrize("content", list(BAD_FILES))
def test_every_fault_of_a_key_file_is_named_with_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(FleetKeyError) as caught:
        FleetKey.load(path)
    assert str(caught.value).startswith(f"fleet key {path}: ") and BAD_FILES[content] in str(caught.value), caught.value
    assert "ab" * 32 not in str(caught.value)  # a secret never goes into the message


def test_a_missing_or_readable_by_others_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FleetKeyError, match=f"fleet key {tmp_path / 'none.yaml'}: No such file"):
        FleetKey.load(tmp_path / "none.yaml")
    path = write_key_file(tmp_path / "fleet.yaml", {"a": A}, "a")
    assert os.stat(path).st_mode & 0o777 == 0o600  # written for its owner only
    for mode in (0o640, 0o604, 0o660):
        path.chmod(mode)
        with pytest.raises(FleetKeyError, match=f"permissions 0{mode:o} open it to other users; chmod 600 {path}"):
            FleetKey.load(path)
    path.chmod(0o400)
    assert FleetKey.load(path).sign_with == "a"


def test_the_longest_key_id_and_numeric_ids_are_accepted(tmp_path: Path) -> None:
    longest = "k" * MAX_KEY_ID_CHARS
    fleet = key(tmp_path, {longest: A, "2026": B}, longest)
    assert fleet.verify(fleet.sign(latent())) is None
    numeric = key(tmp_path, {"2026": B}, "2026", "numeric.yaml")  # written quoted: YAML keeps it a string
    assert fleet.verify(numeric.sign(latent())) is None
