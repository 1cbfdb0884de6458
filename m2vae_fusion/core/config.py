"""Typed configuration: dataclasses that round-trip through plain dicts and YAML.

Unknown keys and bad values raise `ConfigError` naming the field, so a typo in a YAML file is
an error and never a silently ignored option.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from m2vae_fusion.core.errors import ConfigError

LIKELIHOODS = ("bernoulli", "gaussian")
REENCODE_VARIANTS = ("kl", "mse")
BETA_SCALINGS = ("input_dim", "constant")


@dataclass
class ModalityConfig:
    """One modality: its name, flattened input dimension D_m, network sizes and likelihood."""

    name: str
    dim: int
    hidden: tuple[int, ...] = (128, 64)  # encoder layers; the decoder mirrors them
    likelihood: str = "bernoulli"  # bernoulli (inputs in [0, 1], BCE) or gaussian (fixed std)
    gaussian_std: float = 1.0
    # Convolutional trunk before `hidden` (the beta-VAE preprocessors of Sec. V-D): the flat input
    # is viewed as `shape` = (channels, length) for Conv1D or (channels, height, width) for Conv2D,
    # and each entry of `conv` is one stride-2 convolution (kernel 4) with that many channels.
    shape: tuple[int, ...] = ()
    conv: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        self.shape = tuple(self.shape)
        self.conv = tuple(self.conv)
        if self.conv or self.shape:
            if len(self.shape) not in (2, 3) or min(self.shape) < 1:
                raise ConfigError(
                    f"modality {self.name}: shape must be (channels, length) or (channels, height, width), got {self.shape}"
                )
            if math.prod(self.shape) != self.dim:
                raise ConfigError(
                    f"modality {self.name}: shape {self.shape} has {math.prod(self.shape)} values but dim is {self.dim}"
                )
            if not self.conv or min(self.conv) < 1:
                raise ConfigError(f"modality {self.name}: a shape needs conv channels >= 1, got {self.conv}")
            factor = 2 ** len(self.conv)
            if any(size % factor for size in self.shape[1:]):
                raise ConfigError(
                    f"modality {self.name}: spatial sizes {self.shape[1:]} must be divisible by 2^{len(self.conv)} (one halving per conv layer)"
                )
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ConfigError(f"modality name {self.name!r} must be a non-empty identifier")
        if self.dim < 1:
            raise ConfigError(f"modality {self.name}: dim must be >= 1, got {self.dim}")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"modality {self.name}: hidden must list layer sizes >= 1, got {self.hidden}")
        if self.likelihood not in LIKELIHOODS:
            raise ConfigError(f"modality {self.name}: likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.gaussian_std <= 0:
            raise ConfigError(f"modality {self.name}: gaussian_std must be > 0, got {self.gaussian_std}")


@dataclass
class ReencodeConfig:
    """Re-encoding loss of Eq. 19: weight alpha, warmed up linearly from start_epoch over ramp_epochs."""

    alpha: float = 0.0
    variant: str = "kl"  # kl: KL(q(z|x) || q(z|x')); mse: squared error on (mean, log_var)
    start_epoch: int = 0
    ramp_epochs: int = 0

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ConfigError(f"reencode.alpha must be >= 0, got {self.alpha}")
        if self.variant not in REENCODE_VARIANTS:
            raise ConfigError(f"reencode.variant must be one of {REENCODE_VARIANTS}, got {self.variant!r}")
        if self.start_epoch < 0 or self.ramp_epochs < 0:
            raise ConfigError("reencode.start_epoch and reencode.ramp_epochs must be >= 0")

    def rescaled(self, factor: float) -> ReencodeConfig:
        """The same schedule for a run `factor` times as long: warm-up start and ramp keep their
        fraction of training (quick runs with fewer epochs)."""
        return dataclasses.replace(
            self, start_epoch=round(self.start_epoch * factor), ramp_epochs=round(self.ramp_epochs * factor)
        )

    def weight(self, epoch: float) -> float:
        """alpha at (fractional) `epoch`: 0 before start_epoch, then a linear ramp to alpha."""
        if self.alpha == 0 or epoch < self.start_epoch:
            return 0.0
        if self.ramp_epochs == 0:
            return self.alpha
        return self.alpha * min(1.0, (epoch - self.start_epoch) / self.ramp_epochs)


@dataclass
class ModelConfig:
    """A multi-modal VAE: which model (registry name), its modalities and the objective's weights."""

    modalities: list[ModalityConfig]
    model: str = "m2vae"  # m2vae | tvae | jmvae_zero | mvae | mopoe
    latent_dim: int = 2
    joint_hidden: tuple[int, ...] = (64,)  # layers of every subset encoder (Fig. 2c)
    beta_norm: float = 0.01
    beta_scaling: str = "input_dim"  # input_dim: beta_S = beta_norm * D_S / D_z; constant: beta_S = beta_norm
    # M2VAE's mutual terms KL(q_S || q_S') of Eq. 15: None weighs them with beta_S as the paper writes;
    # a number weighs them with that constant instead (1.0 is the authors' vae_tools default)
    mutual_kl_weight: float | None = None
    reencode: ReencodeConfig = field(default_factory=ReencodeConfig)

    def __post_init__(self) -> None:
        self.joint_hidden = tuple(self.joint_hidden)
        if not self.modalities:
            raise ConfigError("model needs at least one modality")
        names = [m.name for m in self.modalities]
        if len(set(names)) != len(names):
            raise ConfigError(f"modality names must be unique, got {names}")
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if self.beta_norm < 0:
            raise ConfigError(f"beta_norm must be >= 0, got {self.beta_norm}")
        if self.mutual_kl_weight is not None and not self.mutual_kl_weight >= 0:
            raise ConfigError(f"mutual_kl_weight must be >= 0 or null (beta_S), got {self.mutual_kl_weight}")
        if self.beta_scaling not in BETA_SCALINGS:
            raise ConfigError(f"beta_scaling must be one of {BETA_SCALINGS}, got {self.beta_scaling!r}")
        if not self.joint_hidden or min(self.joint_hidden) < 1:
            raise ConfigError(f"joint_hidden must list layer sizes >= 1, got {self.joint_hidden}")

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]


@dataclass
class TrainConfig:
    """Optimisation: seeded, deterministic on CPU."""

    epochs: int = 400
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    threads: int = 1  # torch threads; tiny MLPs run fastest on one
    checkpoint_every: int = 50  # epochs; the last epoch is always saved
    log_every: int = 1  # epochs between metrics-log lines

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "threads", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate must be > 0, got {self.learning_rate}")


T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a plain dict, recursing into nested dataclasses and lists."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return origin(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-friendly dict (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Load dataclass `cls` from a YAML file, with errors naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
