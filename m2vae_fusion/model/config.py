"""Configuration of the perception model (config/perception.yaml): the beta-VAE preprocessors, the
tri-modal M2VAE on their latent means, and how each is trained (paper Sec. V-D)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from m2vae_fusion.core.config import ModalityConfig, ModelConfig, TrainConfig, load_yaml
from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.perception.config import PerceptionConfig

MODALITIES = ("camera", "lidar", "ir")


@dataclass
class PreprocessorsConfig:
    """One beta-VAE per sensor; each encodes its view into `feature_dim` numbers (its latent mean)."""

    camera: ModalityConfig
    lidar: ModalityConfig
    ir: ModalityConfig
    beta_norm: float = 0.01
    beta_norms: dict[str, float] = field(default_factory=dict)  # per-sensor overrides of beta_norm
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, batch_size=64))
    max_views: int = 10000  # per sensor, drawn at random (seeded) when the bags hold more

    def __post_init__(self) -> None:
        if self.max_views < 1:
            raise ConfigError(f"preprocessors.max_views must be >= 1, got {self.max_views}")
        unknown = set(self.beta_norms) - set(MODALITIES)
        if unknown:
            raise ConfigError(f"preprocessors.beta_norms: unknown sensors {sorted(unknown)}; known: {list(MODALITIES)}")
        if any(not isinstance(b, (int, float)) or b < 0 for b in self.beta_norms.values()):
            raise ConfigError(f"preprocessors.beta_norms must be numbers >= 0, got {self.beta_norms}")

    def modality(self, name: str) -> ModalityConfig:
        return getattr(self, name)


@dataclass
class StackConfig:
    preprocessors: PreprocessorsConfig
    fusion: ModelConfig
    feature_dim: int = 8
    fusion_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=200))
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)

    def __post_init__(self) -> None:
        if self.feature_dim < 1:
            raise ConfigError(f"feature_dim must be >= 1, got {self.feature_dim}")
        for name in MODALITIES:
            if self.preprocessors.modality(name).name != name:
                raise ConfigError(f"preprocessors.{name}.name must be {name!r}, got {self.preprocessors.modality(name).name!r}")
        if tuple(self.fusion.modality_names) != MODALITIES:
            raise ConfigError(f"fusion.modalities must be {list(MODALITIES)} in this order, got {self.fusion.modality_names}")
        wrong = [m.name for m in self.fusion.modalities if m.dim != self.feature_dim]
        if wrong:
            raise ConfigError(
                f"fusion modalities {wrong} must have dim = feature_dim ({self.feature_dim}): they take the beta-VAE means"
            )
        expected = {
            "camera": 3 * self.perception.features.crop_pixels**2,
            "lidar": 2 * self.perception.features.lidar_samples,
            "ir": 6,
        }
        for name, dim in expected.items():
            if self.preprocessors.modality(name).dim != dim:
                raise ConfigError(
                    f"preprocessors.{name}.dim must be {dim} for the perception features, got {self.preprocessors.modality(name).dim}"
                )

    def preprocessor(self, name: str) -> ModelConfig:
        """The beta-VAE of one sensor, as a one-modality model config."""
        beta = self.preprocessors.beta_norms.get(name, self.preprocessors.beta_norm)
        return ModelConfig(
            [self.preprocessors.modality(name)], model="beta_vae", latent_dim=self.feature_dim, beta_norm=float(beta)
        )

    def with_epochs(self, preprocessors: int | None, fusion: int | None) -> StackConfig:
        """A copy with other epoch counts (quick runs); the re-encoding warm-up keeps its fraction of training."""
        config = dataclasses.replace(self)
        if preprocessors is not None:
            config.preprocessors = dataclasses.replace(
                self.preprocessors, train=dataclasses.replace(self.preprocessors.train, epochs=preprocessors)
            )
        if fusion is not None:
            config.fusion = dataclasses.replace(
                self.fusion, reencode=self.fusion.reencode.rescaled(fusion / self.fusion_train.epochs)
            )
            config.fusion_train = dataclasses.replace(self.fusion_train, epochs=fusion)
        return config


def load_stack_config(path: Path | None = None) -> StackConfig:
    from m2vae_fusion.resources import config_path

    return load_yaml(StackConfig, path or config_path("perception.yaml"))
