"""MVAE: the product-of-experts multimodal VAE of Wu & Goodman 2018, for general M.

One unimodal inference network q_m(z | x_m) per modality, one decoder p(x_m | z) each. A subset
S is encoded by the product of its experts and the prior expert (precision-weighted Gaussian
product, core.experts.product_of_experts):
    q(z | S) ∝ p(z) prod_{m in S} q_m(z | x_m).
Objective (negative of, batch mean): the full-set ELBO plus every unimodal ELBO, each term
reconstructing only the modalities of its subset,
    L = ELBO(M) + sum_m ELBO({m}),
    ELBO(S) = E_{q(z|S)}[ sum_{m in S} log p(x_m|z) ] - beta_S KL(q(z|S) || p(z)),
with beta_S = MultiModalVAE.beta(S) as in the M2VAE (Eq. 1, 2). Wu & Goodman add, for M > 2,
ELBOs of randomly sub-sampled subsets; that optional term is not implemented (full + singletons
only), so subsets of 2..M-1 modalities are encoded by the product without being trained directly.

Missing modalities: encode() takes the product of the present modalities' experts and the prior;
an absent modality simply contributes no expert. config.reencode is ignored: the re-encoding loss
(Eq. 19) belongs to the M2VAE only.
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


@register_model("mvae")
class MVAE(ProductOfExpertsVAE):
    include_prior = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        # the full set and the singletons; with one modality they coincide
        self.trained_subsets = sorted({self.full_mask, *(1 << i for i in range(len(self.modality_names)))})

    def forward(self, batch: Mapping[str, Tensor], epoch: float = 0.0) -> ModelOutput:
        self.check_inputs(batch, complete=True)
        experts = self.experts(batch)
        loss = torch.zeros(())
        terms: dict[str, float] = {}
        for subset in self.trained_subsets:
            names = sub.names_of(subset, self.modality_names)
            q = self.product(experts, names)
            rec = self.log_likelihood(self.decode(q.rsample(), names), batch)
            kl = kl_to_standard_normal(q)
            loss = loss - (rec - self.beta(subset) * kl).mean()
            key = sub.label(subset, self.modality_names)
            terms[f"rec/{key}"], terms[f"kl/{key}"] = rec.mean().item(), kl.mean().item()
        terms["loss"] = loss.item()
        return ModelOutput(loss, terms)
