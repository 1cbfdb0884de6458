"""Authenticated latent sharing: an optional fleet key with which every robot signs the
m2vae_msgs/LatentEmbedding it shares (HMAC-SHA256) and verifies those it receives. It works on any
middleware (it rides inside the message), unlike SROS2; docs/robustness.md says what it stops.

The key file (YAML, readable by its owner only, like an ssh key):

    sign_with: fleet-2612                # the key this robot signs with
    keys:                                # every key it accepts: old and new while a fleet rotates
      fleet-2612: "3f9a...64 hex..."     # >= 32 random bytes as hex, quoted; ids up to 12 characters
      fleet-2606: "81c0..."

What is signed (`signed_bytes`): a domain tag with a version, then every field of the message that a
receiver acts on, each length-prefixed so no two different messages encode alike: header stamp and
frame_id, robot_id, object_id, model_id, sequence, modalities, contributors, mean and log_var (as the
float32 the wire carries), position (float64) and key_id. Replays of a validly signed latent are not
this module's business: sequence and stamp are signed, so a copy is refused by the fusion node's
`duplicate` / `stale` checks (model.beliefs), and a copy with a new sequence or stamp fails here.

Verdicts (`FleetKey.verify`), the fusion node's `dropped latent: <kind>` counters: `unsigned` (no
signature), `unknown_key` (no key id, or one the file does not list: a robot of another fleet, or a
key retired here), `signature` (not 32 bytes, or not the HMAC of the message: forged or tampered)."""

from __future__ import annotations

import hashlib
import hmac
import re
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from m2vae_fusion.core.atomic_file import write_text_atomic

DOMAIN_TAG = b"m2vae_fusion/LatentEmbedding/hmac-sha256/v1"  # another message or a later encoding never verifies as this
SIGNATURE_BYTES = 32  # HMAC-SHA256, untruncated
MIN_SECRET_BYTES = 32  # the hash's own size: a shorter HMAC key is weaker than the MAC
# 32 signature bytes plus a key id of up to 12 characters keep a shared latent at most 300 bytes on the
# wire (CDR; test/test_latent_sharing.py measures it); ASCII so characters are bytes
MAX_KEY_ID_CHARS = 12
KEY_ID = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_KEY_ID_CHARS}}}")
FILE_KEYS = ("sign_with", "keys")
REJECTIONS = ("unsigned", "unknown_key", "signature")


class FleetKeyError(ValueError):
    """A fleet key file that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Refusal:
    """Why a received latent is not taken: `kind` one of REJECTIONS, `reason` for the log."""

    kind: str
    reason: str


@dataclass(frozen=True)
class FleetKey:
    """The keys of a fleet key file: `sign_with` signs, every one of `secrets` verifies."""

    path: Path
    sign_with: str
    secrets: Mapping[str, bytes] = field(repr=False)  # never in a log line or a traceback

    @classmethod
    def load(cls, path: str | Path) -> FleetKey:
        """Read and check a key file (see the module docstring); FleetKeyError naming it otherwise."""
        path = Path(path).expanduser()
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FleetKeyError(f"fleet key {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise FleetKeyError(f"fleet key {path}: not a text file") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # like ssh with a private key: a secret others on the machine can read is no secret
            raise FleetKeyError(
                f"fleet key {path}: permissions {stat.S_IMODE(mode):04o} open it to other users; chmod 600 {path}"
            )
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FleetKeyError(f"fleet key {path}: not valid YAML: {exc}") from None
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: Any, path: Path) -> FleetKey:
        """The key file's content, checked: FleetKeyError naming `path` and the key id at fault."""
        where = f"fleet key {path}"
        if not isinstance(data, Mapping):
            raise FleetKeyError(f"{where}: expected a mapping with {' and '.join(FILE_KEYS)}")
        unknown = sorted(str(k) for k in data if k not in FILE_KEYS)
        if unknown:
            raise FleetKeyError(f"{where}: unknown entries {unknown} (known: {', '.join(FILE_KEYS)})")
        keys = data.get("keys")
        if not isinstance(keys, Mapping) or not keys:
            raise FleetKeyError(f"{where}: `keys` must map each key id to its secret as hex")
        secrets = {_key_id(key_id, where): _secret(key_id, secret, where) for key_id, secret in keys.items()}
        sign_with = data.get("sign_with")
        if not isinstance(sign_with, str) or sign_with not in secrets:
            raise FleetKeyError(f"{where}: sign_with {sign_with!r} is not one of its keys ({', '.join(secrets)})")
        return cls(path, sign_with, secrets)

    def sign(self, msg: Any) -> Any:
        """Set `msg.key_id` to sign_with and `msg.signature` to the HMAC of the message; returns `msg`."""
        msg.key_id = self.sign_with
        msg.signature = _mac(self.secrets[self.sign_with], msg)
        return msg

    def verify(self, msg: Any) -> Refusal | None:
        """None when `msg` is signed with one of the keys and unchanged since; else why not."""
        signature = bytes(msg.signature)
        if not signature:
            return Refusal("unsigned", f"it carries no signature (key id {msg.key_id!r})" if msg.key_id else "it is not signed")
        secret = self.secrets.get(msg.key_id)
        if secret is None:
            return Refusal("unknown_key", f"key id {msg.key_id!r} is not one of the fleet key's ({', '.join(self.secrets)})")
        if len(signature) != SIGNATURE_BYTES:
            return Refusal("signature", f"its signature has {len(signature)} bytes, not {SIGNATURE_BYTES}")
        if not hmac.compare_digest(signature, _mac(secret, msg)):  # constant time: no byte-by-byte guessing
            return Refusal("signature", f"its signature does not match its content under key {msg.key_id!r}")
        return None

    def describe(self) -> str:
        """What a log line may say of it: the key ids, never a secret."""
        others = [k for k in self.secrets if k != self.sign_with]
        accepted = f", also accepting {', '.join(repr(k) for k in others)}" if others else ""
        return f"signing with key {self.sign_with!r} of {self.path}{accepted}"


def _key_id(key_id: Any, where: str) -> str:
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise FleetKeyError(
            f"{where}: key id {key_id!r} must be 1 to {MAX_KEY_ID_CHARS} characters of A-Z a-z 0-9 . _ - "
            f"(a shared latent must stay within 300 bytes; quote ids that YAML reads as numbers or dates)"
        )
    return key_id


def _secret(key_id: str, secret: Any, where: str) -> bytes:
    if not isinstance(secret, str):
        raise FleetKeyError(f"{where}: key {key_id!r}: the secret must be a quoted hex string, got {type(secret).__name__}")
    try:
        value = bytes.fromhex(secret)
    except ValueError:
        raise FleetKeyError(f"{where}: key {key_id!r}: the secret is not hex") from None
    if len(value) < MIN_SECRET_BYTES:
        raise FleetKeyError(
            f"{where}: key {key_id!r}: the secret has {len(value)} bytes, at least {MIN_SECRET_BYTES} are needed "
            "(python3 -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return value


def _mac(secret: bytes, msg: Any) -> bytes:
    return hmac.new(secret, signed_bytes(msg), hashlib.sha256).digest()


def signed_bytes(msg: Any) -> bytes:
    """The canonical encoding of what a LatentEmbedding's signature covers (module docstring): little
    endian, every string and list prefixed by its length, so field boundaries cannot shift."""
    stamp = msg.header.stamp
    parts = [
        _length_prefixed(DOMAIN_TAG),
        struct.pack("<iI", stamp.sec, stamp.nanosec),
        *(_text(s) for s in (msg.header.frame_id, msg.robot_id, msg.object_id, msg.model_id)),
        struct.pack("<I", msg.sequence),
        _texts(msg.modalities),
        _texts(msg.contributors),
        _floats(msg.mean, "<f4"),
        _floats(msg.log_var, "<f4"),
        struct.pack("<3d", msg.position.x, msg.position.y, msg.position.z),
        _text(msg.key_id),
    ]
    return b"".join(parts)


def _length_prefixed(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


def _text(value: str) -> bytes:
    # surrogatepass: any str encodes, and one way only, so a hostile string cannot raise here
    return _length_prefixed(value.encode("utf-8", "surrogatepass"))


def _texts(values: Any) -> bytes:
    values = list(values)
    return struct.pack("<I", len(values)) + b"".join(_text(v) for v in values)


def _floats(values: Any, dtype: str) -> bytes:
    array = np.asarray(values, dtype)  # the wire's float32: exact for what a message holds
    return struct.pack("<I", array.size) + array.tobytes()


def write_key_file(path: str | Path, secrets: Mapping[str, bytes], sign_with: str) -> Path:
    """Write a key file for `secrets` (key id -> secret), readable by its owner only (the atomic
    write's temp file is created 0600); checked as load() checks it."""
    path = Path(path)
    FleetKey.parse({"sign_with": sign_with, "keys": {k: v.hex() for k, v in secrets.items()}}, path)
    # ids quoted: one like 2026 must stay a string (KEY_ID leaves nothing that needs escaping)
    lines = [f'sign_with: "{sign_with}"', "keys:", *(f'  "{k}": "{v.hex()}"' for k, v in secrets.items())]
    return write_text_atomic(path, "\n".join(lines) + "\n")
