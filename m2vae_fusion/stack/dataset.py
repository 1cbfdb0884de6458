"""Labelled tri-modal observations from bags: detect objects in every LiDAR scan, cut out each sensor's
view of them (m2vae_fusion.perception), place them in the map and take the label of the labelled
object within `gate` metres. The beta-VAEs train on every view of a modality; the M2VAE and the
classifier on the observations where all three sensors saw the object (as the paper's data set)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m2vae_fusion.core.atomic_file import write_atomic
from m2vae_fusion.core.config import to_dict
from m2vae_fusion.core.errors import DataError
from m2vae_fusion.data.bag_frames import BagFrames, TopicNames, read_frames
from m2vae_fusion.perception import frames as tf
from m2vae_fusion.perception.config import PerceptionConfig
from m2vae_fusion.perception.features import observe
from m2vae_fusion.sim.readings import ObjectState
from m2vae_fusion.stack.views import view_vector

MODALITIES = ("camera", "lidar", "ir")


@dataclass
class Observations:
    """Flat float32 views per modality (NaN rows where the sensor did not see the object), labels
    (class ids, -1 unlabelled), object positions in the map and stamps."""

    features: dict[str, np.ndarray]
    labels: np.ndarray
    positions: np.ndarray
    stamps: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def seen(self, modality: str) -> np.ndarray:
        return ~np.isnan(self.features[modality][:, 0])

    def complete(self) -> np.ndarray:
        """Rows where every sensor saw the object and a label is known."""
        mask = self.labels >= 0
        for modality in MODALITIES:
            mask &= self.seen(modality)
        return mask

    def subset(self, mask: np.ndarray) -> Observations:
        return Observations({k: v[mask] for k, v in self.features.items()}, self.labels[mask], self.positions[mask], self.stamps[mask])

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for key in sorted(self.features):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(self.features[key]).tobytes())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()[:20]


def label_of(position: np.ndarray, objects: Sequence[ObjectState], gate: float) -> int:
    """Class id of the only labelled object within `gate` of `position` (map frame), else -1."""
    near = [o for o in objects if np.hypot(o.x - position[0], o.y - position[1]) <= gate]
    return near[0].class_id if len(near) == 1 else -1


def extract(bag: BagFrames, config: PerceptionConfig, labels: Sequence[ObjectState] | None = None, gate: float = 0.06) -> Observations:
    """Every detected object of every frame, with its three views and its label."""
    objects = list(labels) if labels is not None else bag.objects
    try:
        base_to_lidar = tf.lookup(bag.static, "base_link", "lidar_link")
        base_to_ir = tf.lookup(bag.static, "base_link", "ir_link")
        base_to_optical = tf.lookup(bag.static, "base_link", "camera_optical_frame")
    except KeyError as exc:
        raise DataError(f"/tf_static: {exc.args[0]}; the sensors' mounting transforms are needed") from None
    rows: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
    label_rows, positions, stamps = [], [], []
    sizes = {"camera": 3 * config.features.crop_pixels**2, "lidar": 2 * config.features.lidar_samples, "ir": 6}
    for frame in bag.frames:
        for seen in observe(frame.image, frame.scan, frame.ir, base_to_lidar, base_to_ir, base_to_optical, config):
            views = {"camera": seen.camera, "lidar": seen.lidar, "ir": seen.ir}
            for modality, view in views.items():
                rows[modality].append(np.full(sizes[modality], np.nan, np.float32) if view is None else view_vector(modality, view))
            position = tf.apply(frame.base_in_map, seen.position) if frame.base_in_map is not None else np.full(3, np.nan)
            label_rows.append(label_of(position, objects, gate) if frame.base_in_map is not None else -1)
            positions.append(position)
            stamps.append(frame.stamp)
    if not label_rows:
        raise DataError("no objects detected in any LiDAR scan of the bag(s)")
    return Observations(
        {m: np.stack(v) for m, v in rows.items()}, np.asarray(label_rows, np.int64), np.asarray(positions, np.float64), np.asarray(stamps)
    )


def bag_fingerprint(paths: Sequence[Path]) -> str:
    """Names, sizes and modification times of every file of the bags: cheap, and changes with the data."""
    digest = hashlib.sha256()
    for path in sorted(Path(p).resolve() for p in paths):
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                stat = f.stat()
                digest.update(f"{f}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def load_observations(
    bags: Sequence[Path], config: PerceptionConfig, cache_dir: Path | None = None, labels: Sequence[ObjectState] | None = None,
    topics: TopicNames = TopicNames(),
) -> Observations:
    """`extract` over the bags, cached in cache_dir keyed by the bags, the perception config and labels."""
    key = hashlib.sha256(
        json.dumps([bag_fingerprint(bags), to_dict(config), [to_dict_object(o) for o in labels or []], to_dict(topics)], sort_keys=True).encode()
    ).hexdigest()[:20]
    cache = cache_dir / f"observations-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            return Observations({m: data[m] for m in MODALITIES}, data["labels"], data["positions"], data["stamps"])
    observations = extract(read_frames(list(bags), topics), config, labels)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, lambda f: np.savez(f, labels=observations.labels, positions=observations.positions, stamps=observations.stamps, **observations.features))
    return observations


def to_dict_object(o: ObjectState) -> dict:
    return {"name": o.name, "label": o.label, "x": o.x, "y": o.y}
