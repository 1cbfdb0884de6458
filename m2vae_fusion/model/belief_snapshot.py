"""The fusion node's beliefs on disk, so that a crash (kill -9, an OOM kill, a power cut) and a
restart resume from the last snapshot instead of from nothing (issue 21).

A snapshot is one file, written atomically (core.atomic_file: a reader sees the previous snapshot
or the new one, never half of one): a first line of JSON naming the format, its version, the body's
length and SHA-256, then the body, JSON of `BeliefStore.state()` with the model id, robot id and
frame it belongs to. `load` checks all of it before anything is built, and builds the store apart
from the running one: a torn, truncated or corrupted file, another model's or another robot's
snapshot raises SnapshotError with the reason and leaves nothing half loaded.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from m2vae_fusion.core.atomic_file import write_atomic
from m2vae_fusion.core.errors import M2VAEError

if TYPE_CHECKING:  # torch comes with them: `snapshot_object_ids` serves callers that do without
    from m2vae_fusion.model.beliefs import BeliefStore, BeliefStoreConfig
    from m2vae_fusion.model.perception_model import PerceptionModel

FORMAT = "m2vae-fusion-beliefs"
VERSION = 1


class SnapshotError(M2VAEError):
    """A belief snapshot is missing, damaged, or belongs to another model or robot."""


@dataclass(frozen=True)
class Snapshot:
    store: BeliefStore
    frame: str  # the frame of every position in it ("" before the first encoding)
    saved_unix_s: float

    @property
    def newest_ns(self) -> int:
        """The newest sensing stamp in it, own or foreign (0 when empty)."""
        objects = self.store.objects.values()
        return max((max(obj.own_update_ns, obj.last_update_ns) for obj in objects), default=0)


def save(path: str | Path, store: BeliefStore, frame: str) -> Path:
    """Write `store`'s beliefs (positions in `frame`) to `path` atomically."""
    body = json.dumps(
        {
            "model_id": store.model.model_id,
            "robot_id": store.robot_id,
            "frame": frame,
            "saved_unix_s": time.time(),
            "store": store.state(),
        },
        separators=(",", ":"),
    ).encode()
    header = json.dumps({"format": FORMAT, "version": VERSION, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
    return write_atomic(path, lambda f: f.write(header.encode() + b"\n" + body))


def load(path: str | Path, model: PerceptionModel, robot_id: str, config: BeliefStoreConfig | None = None) -> Snapshot:
    """The snapshot at `path` as a new store for `model` and `robot_id`; SnapshotError says why not."""
    from m2vae_fusion.model.beliefs import BeliefStore

    path = Path(path)
    body = _checked_body(path)
    try:
        content = json.loads(body)
        found = {"model": content["model_id"], "robot": content["robot_id"]}
        if found["model"] != model.model_id:
            raise SnapshotError(f"{path}: beliefs of model {found['model']!r}, this node fuses with {model.model_id!r}")
        if found["robot"] != robot_id:
            raise SnapshotError(f"{path}: beliefs of robot {found['robot']!r}, this node is robot {robot_id!r}")
        store = BeliefStore.from_state(model, robot_id, config, content["store"])
        return Snapshot(store, str(content["frame"]), float(content["saved_unix_s"]))
    except SnapshotError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"{path}: its content does not fit the model ({type(exc).__name__}: {exc})") from None


def _checked_body(path: Path) -> bytes:
    """The body of the snapshot at `path` once its header says it is whole; SnapshotError otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no snapshot") from None
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read it ({exc.strerror})") from None
    first, _, body = data.partition(b"\n")
    try:
        header = json.loads(first)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError
    except ValueError:
        raise SnapshotError(f"{path}: not a belief snapshot (its first line is no {FORMAT} header)") from None
    if header.get("version") != VERSION:
        raise SnapshotError(f"{path}: format version {header.get('version')!r}, this fusion node reads {VERSION}")
    if len(body) != header.get("bytes") or hashlib.sha256(body).hexdigest() != header.get("sha256"):
        raise SnapshotError(
            f"{path}: damaged (body of {len(body)} bytes, header says {header.get('bytes')}, or its SHA-256 differs)"
        )
    return body


def snapshot_object_ids(path: str | Path) -> set[str]:
    """The object ids in the snapshot at `path` without loading a model (for checks from outside the
    node, as `m2vae chaos` makes); empty when there is none or it is damaged."""
    try:
        return {str(item["id"]) for item in json.loads(_checked_body(Path(path)))["store"]["objects"]}
    except (SnapshotError, ValueError, KeyError, TypeError):
        return set()
