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
from m2vae_fusion.model.views import view_vector
from m2vae_fusion.perception import frames as tf
from m2vae_fusion.perception.config import PerceptionConfig
from m2vae_fusion.perception.features import observe
from m2vae_fusion.perception.labels import Labelling, default_labels
from m2vae_fusion.perception.readings import ObjectState

MODALITIES = ("camera", "lidar", "ir")
CACHE_FORMAT = 3  # 3: with distances; 2: only the views each sensor has (1 stored NaN rows for the others)


@dataclass
class Observations:
    """Labels (class ids, -1 unlabelled), object positions in the map, stamps and distances from the
    LiDAR (m; NaN: unknown), one per observed object; and per sensor only the views it has: flat
    float32 `views[m]` of the observations `rows[m]` (most candidates are seen by the LiDAR alone, so
    dense camera rows would be mostly empty)."""

    views: dict[str, np.ndarray]
    rows: dict[str, np.ndarray]
    labels: np.ndarray
    positions: np.ndarray
    stamps: np.ndarray
    distances: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.distances is None:
            self.distances = np.full(len(self.labels), np.nan)

    @classmethod
    def seen_by_all(
        cls, views: dict[str, np.ndarray], labels: np.ndarray, positions: np.ndarray, stamps: np.ndarray
    ) -> Observations:
        """Observations every sensor saw: views[m] has one row per observation."""
        return cls(views, {m: np.arange(len(labels)) for m in views}, labels, positions, stamps)

    def __len__(self) -> int:
        return len(self.labels)

    def seen(self, modality: str) -> np.ndarray:
        mask = np.zeros(len(self), bool)
        mask[self.rows[modality]] = True
        return mask

    def dense(self, modality: str) -> np.ndarray:
        """(N, dim) views in observation order, NaN rows where the sensor saw nothing."""
        out = np.full((len(self), self.views[modality].shape[1]), np.nan, np.float32)
        out[self.rows[modality]] = self.views[modality]
        return out

    def complete(self) -> np.ndarray:
        """Rows where every sensor saw the object and a label is known."""
        mask = self.labels >= 0
        for modality in MODALITIES:
            mask &= self.seen(modality)
        return mask

    def subset(self, mask: np.ndarray) -> Observations:
        renumber = np.cumsum(mask) - 1
        keep = {m: mask[r] for m, r in self.rows.items()}
        return Observations(
            {m: v[keep[m]] for m, v in self.views.items()},
            {m: renumber[r[keep[m]]] for m, r in self.rows.items()},
            self.labels[mask],
            self.positions[mask],
            self.stamps[mask],
            self.distances[mask],
        )

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for key in sorted(self.views):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(self.views[key]).tobytes())
            digest.update(np.ascontiguousarray(self.rows[key]).tobytes())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()[:20]


def label_of(position: np.ndarray, objects: Sequence[ObjectState], gate: float, labelling: Labelling) -> int:
    """Class id (in `labelling`) of the only labelled object within `gate` of `position` (map frame), else -1."""
    near = [o for o in objects if np.hypot(o.x - position[0], o.y - position[1]) <= gate]
    return labelling.class_id(near[0].label) if len(near) == 1 else -1


def extract(
    bag: BagFrames,
    config: PerceptionConfig,
    labels: Sequence[ObjectState] | None = None,
    gate: float = 0.06,
    labelling: Labelling | None = None,
) -> Observations:
    """Every detected object of every frame, with its three views and its class id in `labelling`
    (default: the paper's eight classes)."""
    labelling = labelling or Labelling(default_labels())
    objects = list(labels) if labels is not None else bag.objects
    for o in objects:
        labelling.class_id(o.label)  # an unknown label fails here, naming it, not silently as "unlabelled"
    try:
        base_to_lidar = tf.lookup(bag.static, "base_link", "lidar_link")
        base_to_ir = tf.lookup(bag.static, "base_link", "ir_link")
        base_to_optical = tf.lookup(bag.static, "base_link", "camera_optical_frame")
    except KeyError as exc:
        raise DataError(f"/tf_static: {exc.args[0]}; the sensors' mounting transforms are needed") from None
    views: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
    rows: dict[str, list[int]] = {m: [] for m in MODALITIES}
    label_rows, positions, stamps, distances = [], [], [], []
    sizes = {"camera": 3 * config.features.crop_pixels**2, "lidar": 2 * config.features.lidar_samples, "ir": 6}
    for frame in bag.frames:
        for seen in observe(frame.image, frame.scan, frame.ir, base_to_lidar, base_to_ir, base_to_optical, config):
            for modality, view in (("camera", seen.camera), ("lidar", seen.lidar), ("ir", seen.ir)):
                if view is not None:
                    views[modality].append(view_vector(modality, view))
                    rows[modality].append(len(label_rows))
            position = tf.apply(frame.base_in_map, seen.position) if frame.base_in_map is not None else np.full(3, np.nan)
            label_rows.append(label_of(position, objects, gate, labelling) if frame.base_in_map is not None else -1)
            positions.append(position)
            stamps.append(frame.stamp)
            distances.append(seen.candidate.distance)
    if not label_rows:
        raise DataError("no objects detected in any LiDAR scan of the bag(s)")
    return Observations(
        {m: np.stack(v) if v else np.zeros((0, sizes[m]), np.float32) for m, v in views.items()},
        {m: np.asarray(r, np.int64) for m, r in rows.items()},
        np.asarray(label_rows, np.int64),
        np.asarray(positions, np.float64),
        np.asarray(stamps),
        np.asarray(distances, np.float64),
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
    bags: Sequence[Path],
    config: PerceptionConfig,
    cache_dir: Path | None = None,
    labels: Sequence[ObjectState] | None = None,
    topics: TopicNames = TopicNames(),
    labelling: Labelling | None = None,
) -> Observations:
    """`extract` over the bags, cached in cache_dir keyed by the bags, the perception config and labels."""
    labelling = labelling or Labelling(default_labels())
    identity = [
        CACHE_FORMAT,
        bag_fingerprint(bags),
        to_dict(config),
        [to_dict_object(o) for o in labels or []],
        to_dict(topics),
        labelling.to_dict(),
    ]
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    cache = cache_dir / f"observations-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache) as data:
            return Observations(
                {m: data[f"views_{m}"] for m in MODALITIES},
                {m: data[f"rows_{m}"] for m in MODALITIES},
                data["labels"],
                data["positions"],
                data["stamps"],
                data["distances"],
            )
    observations = extract(read_frames(list(bags), topics), config, labels, labelling=labelling)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"views_{m}": v for m, v in observations.views.items()} | {f"rows_{m}": r for m, r in observations.rows.items()}
        write_atomic(
            cache,
            lambda f: np.savez(
                f,
                labels=observations.labels,
                positions=observations.positions,
                stamps=observations.stamps,
                distances=observations.distances,
                **arrays,
            ),
        )
    return observations


def to_dict_object(o: ObjectState) -> dict:
    return {"name": o.name, "label": o.label, "x": o.x, "y": o.y}
