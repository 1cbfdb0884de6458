"""The trained perception model as the nodes and evaluations use it: a sensor's view -> its beta-VAE
features, features of any subset of sensors -> q(z | subset), in-place fusion (Eq. 18) of a stored
belief with a new sensing, and class probabilities from z (one classifier for every subset) over the
model's own label space, stored in its manifest ("labels"; a manifest of format 1, from before labels
were stored, has the paper's eight classes)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from m2vae_fusion.core.checkpoint import load_checkpoint
from m2vae_fusion.core.config import from_dict
from m2vae_fusion.core.errors import CheckpointError
from m2vae_fusion.core.fusion import in_place_fusion
from m2vae_fusion.core.gaussian import DiagonalGaussian
from m2vae_fusion.core.information_gain import ExpectedGain, expected_gain
from m2vae_fusion.core.model import MultiModalVAE
from m2vae_fusion.model.classifier import LatentClassifier
from m2vae_fusion.model.config import MODALITIES, StackConfig
from m2vae_fusion.perception.labels import LabelSpace, default_labels

# The file that names a model folder's checkpoints. It lives with the loader, not with training,
# so the nodes that load a model do not import the training code (and its bag readers).
MANIFEST = "perception_model.json"


@dataclass(frozen=True)
class Belief:
    """A posterior over z with the sensors it has fused so far."""

    mean: np.ndarray  # (D_z,)
    log_var: np.ndarray  # (D_z,)
    sensed: tuple[str, ...]


class PerceptionModel:
    """Load with `PerceptionModel.load(folder or manifest)`; every check failure is a CheckpointError."""

    def __init__(self, manifest: dict, root: Path) -> None:
        self.manifest = manifest
        self.model_id: str = manifest["model_id"]
        self.config: StackConfig = from_dict(StackConfig, manifest["config"])
        self.preprocessors: dict[str, MultiModalVAE] = {
            m: load_checkpoint(root / manifest["preprocessors"][m], expected_model_config=self.config.preprocessor(m)).model
            for m in MODALITIES
        }
        self.fusion: MultiModalVAE = load_checkpoint(root / manifest["fusion"], expected_model_config=self.config.fusion).model
        self._mean = {m: np.asarray(manifest["standardiser"][m]["mean"], np.float32) for m in MODALITIES}
        self._std = {m: np.asarray(manifest["standardiser"][m]["std"], np.float32) for m in MODALITIES}
        self.classifier = LatentClassifier.from_dict(manifest["classifier"])
        self.labels: LabelSpace = (
            LabelSpace.from_dict(manifest["labels"], f"{root} manifest") if "labels" in manifest else default_labels()
        )
        outside = [int(c) for c in self.classifier.classes if not 0 <= int(c) < len(self.labels.classes)]
        if outside:
            raise CheckpointError(
                f"{root}: the classifier predicts class ids {outside}, outside the {len(self.labels.classes)} classes of its labels"
            )

    @classmethod
    def load(cls, path: Path | str) -> PerceptionModel:
        path = Path(path)
        manifest_path = path / MANIFEST if path.is_dir() else path
        if not manifest_path.is_file():
            raise CheckpointError(
                f"no perception model at {path} (expected {manifest_path}); train one with `m2vae train --bag ...`"
            )
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{manifest_path} is not a readable perception model manifest: {exc}") from None
        missing = {"model_id", "config", "preprocessors", "fusion", "standardiser", "classifier"} - set(manifest)
        if missing:
            raise CheckpointError(f"{manifest_path} lacks {sorted(missing)}")
        sensors = set(manifest["preprocessors"]) if isinstance(manifest["preprocessors"], dict) else set()
        if sensors != set(MODALITIES):
            raise CheckpointError(
                f"{manifest_path}: preprocessors for {sorted(sensors)}; this version needs exactly {list(MODALITIES)}"
            )
        return cls(manifest, manifest_path.parent)

    # ------------------------------------------------------------ features

    @torch.no_grad()
    def features(self, modality: str, views: np.ndarray) -> np.ndarray:
        """Standardised beta-VAE means (N, feature_dim) of flat views (N, dim) of one sensor."""
        if modality not in self.preprocessors:
            raise ValueError(f"unknown sensor {modality!r}; the model knows {list(MODALITIES)}")
        q = self.preprocessors[modality].encode({modality: torch.from_numpy(np.asarray(views, np.float32))})
        return (q.mean.numpy() - self._mean[modality]) / self._std[modality]

    @torch.no_grad()
    def encode_views(self, modality: str, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`features` and their log-variances (N, feature_dim), both in the standardised units:
        dividing by std scales the variance by 1 / std^2."""
        if modality not in self.preprocessors:
            raise ValueError(f"unknown sensor {modality!r}; the model knows {list(MODALITIES)}")
        q = self.preprocessors[modality].encode({modality: torch.from_numpy(np.asarray(views, np.float32))})
        features = (q.mean.numpy() - self._mean[modality]) / self._std[modality]
        return features, q.log_var.numpy() - 2 * np.log(self._std[modality])

    # ------------------------------------------------------------ latent beliefs

    @torch.no_grad()
    def encode(self, features: Mapping[str, np.ndarray]) -> DiagonalGaussian:
        """q(z | the sensors in `features`) through the matching subset encoder (batch of N)."""
        return self.fusion.encode({m: torch.from_numpy(np.asarray(f, np.float32)) for m, f in features.items()})

    def belief(self, features: Mapping[str, np.ndarray]) -> Belief:
        """A new belief from one observation (features of shape (feature_dim,) per sensor)."""
        return self.belief_batch({m: np.asarray(f)[None] for m, f in features.items()})[0]

    def belief_batch(self, features: Mapping[str, np.ndarray]) -> list[Belief]:
        """New beliefs from N observations by the same sensors (features (N, feature_dim) per sensor):
        one forward of their subset encoder."""
        q = self.encode(features)
        sensed = tuple(m for m in MODALITIES if m in features)
        return [Belief(mean, log_var, sensed) for mean, log_var in zip(q.mean.numpy(), q.log_var.numpy(), strict=True)]

    def fuse(self, stored: Belief, new: Mapping[str, np.ndarray]) -> Belief:
        """Eq. 18: decode the stored z into the sensors it covers, encode them with the new sensing."""
        return self.fuse_batch([stored], {m: np.asarray(f)[None] for m, f in new.items()})[0]

    def fuse_batch(
        self, stored: Sequence[Belief], new: Mapping[str, np.ndarray], decoded_bound: float | None = None
    ) -> list[Belief]:
        """Eq. 18 for N stored beliefs that cover the same sensors, each with its own new sensing by the
        same sensors (features (N, feature_dim) per sensor): one decoder pass per decoded sensor and
        one subset-encoder forward for all N. `decoded_bound`: clamp the decoded (standardised)
        features, for stored beliefs that are not this robot's own."""
        sensed = {b.sensed for b in stored}
        if len(sensed) != 1:
            raise ValueError(f"fuse_batch takes beliefs that cover the same sensors, got {sorted(sensed)}")
        gaussian = DiagonalGaussian(
            torch.from_numpy(np.stack([b.mean for b in stored]).astype(np.float32)),
            torch.from_numpy(np.stack([b.log_var for b in stored]).astype(np.float32)),
        )
        q, covered = in_place_fusion(
            self.fusion,
            gaussian,
            sensed.pop(),
            {m: torch.from_numpy(np.asarray(f, np.float32)) for m, f in new.items()},
            decoded_bound=decoded_bound,
        )
        return [Belief(mean, log_var, tuple(covered)) for mean, log_var in zip(q.mean.numpy(), q.log_var.numpy(), strict=True)]

    def class_probabilities(self, z: np.ndarray) -> np.ndarray:
        """p(class | z) for means z of shape (N, D_z); columns in the order of `labels.classes`."""
        proba = self.classifier.predict_proba(z)
        out = np.zeros((proba.shape[0], len(self.labels.classes)))
        out[:, self.classifier.classes.astype(int)] = proba
        return out

    # ------------------------------------------------------------ imagination

    def expected_gains(
        self, beliefs: Sequence[Belief | None], candidates: Sequence[Sequence[str]], samples: int = 16, seed: int = 0
    ) -> ExpectedGain:
        """What each candidate sensing is expected to add to each belief (core.information_gain): the
        KL of the imagined posterior from the belief and the fall of the class entropy. None stands for
        an object not sensed yet (the prior N(0, I)). Seeded, so the same beliefs value the same."""
        dim = self.fusion.latent_dim
        mean = np.stack([b.mean if b is not None else np.zeros(dim) for b in beliefs]).astype(np.float32)
        log_var = np.stack([b.log_var if b is not None else np.zeros(dim) for b in beliefs]).astype(np.float32)
        return expected_gain(
            self.fusion,
            DiagonalGaussian(torch.from_numpy(mean), torch.from_numpy(log_var)),
            [b.sensed if b is not None else () for b in beliefs],
            candidates,
            samples=samples,
            class_probabilities=lambda z: torch.from_numpy(self.class_probabilities(z.numpy())),
            generator=torch.Generator().manual_seed(seed),
        )

    @torch.no_grad()
    def imagine(self, z: np.ndarray, modality: str) -> np.ndarray:
        """What the model imagines `modality` shows of the objects at latents z (N, D_z): the fusion
        decoder's features, un-standardised, through the sensor's beta-VAE decoder -> flat views
        (N, view dim) laid out as `views.view_vector` lays them out (camera: CHW in [0, 1])."""
        if modality not in self.preprocessors:
            raise ValueError(f"unknown sensor {modality!r}; the model knows {list(MODALITIES)}")
        features = self.fusion.reconstruct(
            torch.from_numpy(np.asarray(z, np.float32).reshape(-1, self.fusion.latent_dim)), [modality]
        )
        raw = features[modality].numpy() * self._std[modality] + self._mean[modality]
        return self.preprocessors[modality].reconstruct(torch.from_numpy(raw.astype(np.float32)), [modality])[modality].numpy()
