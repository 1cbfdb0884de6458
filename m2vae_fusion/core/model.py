"""The contract every multi-modal VAE in core follows, and the registry that builds them.

A model is configured by `ModelConfig`; inputs are dicts keyed by modality name (the keys
present are the observed subset); `forward` returns a `ModelOutput` with the scalar loss to
minimise and a flat dict of named terms for logging. Trainers, metrics and in-place fusion
only use this contract, so the M2VAE and every baseline are interchangeable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

from m2vae_fusion.core import subsets as sub
from m2vae_fusion.core.config import ModelConfig
from m2vae_fusion.core.errors import ConfigError, DataError
from m2vae_fusion.core.gaussian import DiagonalGaussian, kl_divergence
from m2vae_fusion.core.networks import Decoder


@dataclass
class ModelOutput:
    loss: Tensor  # scalar to minimise (negative objective, batch mean)
    terms: dict[str, float] = field(default_factory=dict)  # named, detached terms for logs


class MultiModalVAE(nn.Module):
    """Base class: decoders, likelihoods, beta and input checking shared by all models."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.modality_names: list[str] = config.modality_names
        self.latent_dim = config.latent_dim
        self.full_mask = (1 << len(self.modality_names)) - 1
        self.decoders = nn.ModuleDict({m.name: Decoder(m, config.latent_dim) for m in config.modalities})
        self._dims = {m.name: m.dim for m in config.modalities}

    # --- contract -------------------------------------------------------------------------
    def encode(self, inputs: Mapping[str, Tensor]) -> DiagonalGaussian:
        """q(z | the modalities present in `inputs`)."""
        raise NotImplementedError

    def forward(self, batch: Mapping[str, Tensor], epoch: float = 0.0) -> ModelOutput:
        """The training loss on a complete batch (every modality present)."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------
    def decode(self, z: Tensor, names: Iterable[str] | None = None) -> dict[str, Tensor]:
        """Likelihood parameters of p(m | z) for each modality in `names` (default: all)."""
        return {name: self.decoders[name](z) for name in (self.modality_names if names is None else names)}

    def reconstruct(self, z: Tensor, names: Iterable[str] | None = None) -> dict[str, Tensor]:
        """E[m | z] for each modality in `names` (default: all)."""
        return {name: self.decoders[name].mean(params) for name, params in self.decode(z, names).items()}

    def log_likelihood(self, params: Mapping[str, Tensor], inputs: Mapping[str, Tensor]) -> Tensor:
        """sum_m log p(x_m | z) over the modalities in `params` (one value per sample)."""
        return sum(self.decoders[name].log_prob(p, inputs[name]) for name, p in params.items())

    def beta(self, subset: int) -> float:
        """KL weight of subset S. With beta_scaling=input_dim, beta_S = beta_norm * D_S / D_z.

        The paper keeps beta_norm = beta_m^{D_m/D_z} constant across subsets (Sec. III-A); we
        follow the authors' reading of the beta-VAE normalisation (Higgins et al.:
        beta_norm = beta * D_z / D_m), so every encoder feels the same pressure per input
        dimension, and D_S is the summed input dimension of S's modalities.
        """
        if self.config.beta_scaling == "constant":
            return self.config.beta_norm
        d_s = sum(self._dims[n] for n in sub.names_of(subset, self.modality_names))
        return self.config.beta_norm * d_s / self.latent_dim

    def subset_mask(self, inputs: Mapping[str, Tensor]) -> int:
        return sub.mask_of(inputs.keys(), self.modality_names)

    def check_inputs(self, inputs: Mapping[str, Tensor], complete: bool = False) -> int:
        """Validate shapes; return the subset mask. Errors name the modality and the shapes."""
        if complete and set(inputs) != set(self.modality_names):
            missing = sorted(set(self.modality_names) - set(inputs))
            raise DataError(f"training batch lacks modalities {missing}; this model needs {self.modality_names}")
        batch = None
        for name, x in inputs.items():
            if name not in self._dims:
                raise DataError(f"unknown modality '{name}'; this model knows {self.modality_names}")
            if x.dim() != 2 or x.shape[1] != self._dims[name]:
                raise DataError(f"modality '{name}': expected shape (batch, {self._dims[name]}), got {tuple(x.shape)}")
            if batch is not None and x.shape[0] != batch:
                raise DataError(f"modality '{name}' has {x.shape[0]} samples, others have {batch}")
            batch = x.shape[0]
        return self.subset_mask(inputs)


MODELS: dict[str, type[MultiModalVAE]] = {}


def register_model(name: str) -> Callable[[type[MultiModalVAE]], type[MultiModalVAE]]:
    def add(cls: type[MultiModalVAE]) -> type[MultiModalVAE]:
        if name in MODELS:
            raise ValueError(f"model name {name!r} registered twice")
        MODELS[name] = cls
        cls.registry_name = name
        return cls

    return add


def build_model(config: ModelConfig) -> MultiModalVAE:
    """The model named by `config.model`."""
    import m2vae_fusion.core.models  # noqa: F401  (registers every model)

    if config.model not in MODELS:
        raise ConfigError(f"unknown model {config.model!r}; available: {sorted(MODELS)}")
    return MODELS[config.model](config)


def reencode_divergence(q: DiagonalGaussian, q_re: DiagonalGaussian, variant: str) -> Tensor:
    """E_reenc of Eq. 19 per sample: KL(q(z|x) || q(z|x')) or squared error on (mean, log_var)."""
    if variant == "kl":
        return kl_divergence(q, q_re)
    return ((q.mean - q_re.mean) ** 2 + (q.log_var - q_re.log_var) ** 2).sum(-1)
