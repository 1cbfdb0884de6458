"""Shared inference-network pieces of the baselines: the Gaussian product of experts and the
joint encoder on concatenated raw inputs.

Product of experts (Wu & Goodman 2018; Vedantam et al. 2018, Eq. 4; Sutter et al. 2021):
    q(z | S) ∝ [p(z)] prod_{m in S} q(z | m),   with diagonal Gaussian experts N(mu_m, sigma_m^2)
    precision  T = [1] + sum_m 1/sigma_m^2,   mean  mu = sum_m mu_m / sigma_m^2 / T,
where the bracketed terms are the N(0, I) prior expert (precision 1, mean 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from m2vae_fusion.core.config import ModalityConfig, ModelConfig
from m2vae_fusion.core.errors import DataError
from m2vae_fusion.core.gaussian import DiagonalGaussian
from m2vae_fusion.core.model import MultiModalVAE
from m2vae_fusion.core.networks import ModalityEncoder


def product_of_experts(experts: Sequence[DiagonalGaussian], include_prior: bool) -> DiagonalGaussian:
    """The precision-weighted product of diagonal Gaussian experts, optionally times N(0, I)."""
    if not experts:
        raise DataError("product_of_experts needs at least one expert")
    log_precisions = torch.stack([-q.log_var for q in experts])
    means = torch.stack([q.mean for q in experts])
    if include_prior:
        log_precisions = torch.cat([log_precisions, torch.zeros_like(log_precisions[:1])])
        means = torch.cat([means, torch.zeros_like(means[:1])])
    # log-sum-exp keeps the combined precision finite for confident (very negative log_var) experts
    log_precision = torch.logsumexp(log_precisions, dim=0)
    mean = (means * torch.softmax(log_precisions, dim=0)).sum(0)
    return DiagonalGaussian(mean, -log_precision)


def concat_encoder(config: ModelConfig) -> ModalityEncoder:
    """A joint inference network q(z | x_1, ..., x_M) on the raw inputs concatenated in config order.

    The M2VAE paper configures the baselines like its unimodal encoders but without the subset
    encoder on penultimate features (Sec. V-A), so the hidden layers are a modality encoder's; with
    differing per-modality sizes the widest modality's layers are taken.
    """
    hidden = max((m.hidden for m in config.modalities), key=sum)
    joint = ModalityConfig(name="joint", dim=sum(m.dim for m in config.modalities), hidden=hidden)
    return ModalityEncoder(joint, config.latent_dim)


class ProductOfExpertsVAE(MultiModalVAE):
    """Base of MVAE and MoPoE: one unimodal expert q_m(z | x_m) per modality, and a subset's
    posterior is the product of its experts (times the N(0, I) prior expert if `include_prior`)."""

    include_prior: bool

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.encoders = nn.ModuleDict({m.name: ModalityEncoder(m, config.latent_dim) for m in config.modalities})

    def experts(self, inputs: Mapping[str, Tensor]) -> dict[str, DiagonalGaussian]:
        return {name: self.encoders[name](x) for name, x in inputs.items()}

    def product(self, experts: Mapping[str, DiagonalGaussian], names: Sequence[str]) -> DiagonalGaussian:
        return product_of_experts([experts[n] for n in names], include_prior=self.include_prior)

    def encode(self, inputs: Mapping[str, Tensor]) -> DiagonalGaussian:
        self.check_inputs(inputs)
        return self.product(self.experts(inputs), list(inputs))
