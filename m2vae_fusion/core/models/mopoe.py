"""MoPoE-VAE: the mixture-of-products-of-experts multimodal VAE of Sutter et al. 2021
("Generalized Multimodal ELBO"), for general M.

One unimodal inference network q_m(z | x_m) per modality, one decoder p(x_m | z) each. Every
non-empty subset S gets the product of its experts, without a prior expert (the paper's
definition, q~(z|X_k) = prod_{x_j in X_k} q(z|x_j); their reference code adds the prior expert
to the full set's product only), and the joint posterior is the uniform mixture
    q(z | X) = 1/(2^M - 1) sum_S q~(z | S),   q~(z | S) = PoE({q_m : m in S}).
Objective (negative of, batch mean): the mixture ELBO, with the reconstruction expectation
under the mixture taken component by component and the mixture's KL bounded by the mean of the
components' KLs (Jensen), as in the paper:
    L = 1/(2^M - 1) sum_S ( E_{q~(z|S)}[ sum_{m in M} log p(x_m|z) ] - beta_M KL(q~(z|S) || p(z)) ).
Every component reconstructs all modalities, so every KL weight is beta of the full set
(MultiModalVAE.beta). Sutter et al. assign each sample to one component (stratified
sampling); evaluating every component for every sample estimates the same bound with less noise.

Missing modalities: encode() returns the product of the present modalities' experts (the
mixture component of that subset). config.reencode is ignored: the re-encoding loss (Eq. 19)
belongs to the M2VAE only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from m2vae_fusion.core import subsets as sub
from m2vae_fusion.core.config import ModelConfig
from m2vae_fusion.core.experts import ProductOfExpertsVAE
from m2vae_fusion.core.gaussian import kl_to_standard_normal
from m2vae_fusion.core.model import ModelOutput, register_model


@register_model("mopoe")
class MoPoE(ProductOfExpertsVAE):
    include_prior = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.subsets = sub.all_subsets(len(self.modality_names))

    def forward(self, batch: Mapping[str, Tensor], epoch: float = 0.0) -> ModelOutput:
        self.check_inputs(batch, complete=True)
        experts = self.experts(batch)
        beta = self.beta(self.full_mask)
        loss = torch.zeros(())
        terms: dict[str, float] = {}
        for subset in self.subsets:
            q = self.product(experts, sub.names_of(subset, self.modality_names))
            rec = self.log_likelihood(self.decode(q.rsample()), batch)
            kl = kl_to_standard_normal(q)
            loss = loss - (rec - beta * kl).mean() / len(self.subsets)
            key = sub.label(subset, self.modality_names)
            terms[f"rec/{key}"], terms[f"kl/{key}"] = rec.mean().item(), kl.mean().item()
        terms["loss"] = loss.item()
        return ModelOutput(loss, terms)
