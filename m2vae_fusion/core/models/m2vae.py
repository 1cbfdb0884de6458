"""M2VAE: the jointly trained multi-modal VAE of Korthals et al. 2019.

Objective (negative of Eq. 17, general M; Eq. 10-15 for M = 2):
    L_{M2,S} = 1/|S| ( L_{S,S} + sum_{S' subset of S, |S'| = |S|-1} L_{M2,S'} ),   L_{M2,{m}} = L_m
    L_{S,S}  = E_{q_S}[ sum_{m in S} log p(m|z) ] - beta_S KL(q_S || p(z))
               - beta_S sum_{S'} KL(q_S || q_{S'})                         (Eq. 13-15)
    L_m      = E_{q_m}[ log p(m|z) ] - beta_m KL(q_m || p(z))               (Eq. 1, 11, 12)
plus the re-encoding loss alpha * E_reenc of Eq. 19 for every subset encoder, weighted like its
subset's term: alpha * w_S with w_S the subset's Eq. 17 weight (1/2 for every subset when M = 2,
so the configured alpha acts as alpha / 2 there). One encoder per non-empty subset (2^M - 1), one
decoder per modality. `mutual_kl_weight` set replaces beta_S on the mutual terms by that constant.

Eq. 17's recursion gives the singletons 1/3 and the pairs 1/6 of the loss for M = 3 (eq17_weights),
although the paper's text says smaller subsets weigh less: the code follows the equation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from m2vae_fusion.core import subsets as sub
from m2vae_fusion.core.config import ModelConfig
from m2vae_fusion.core.gaussian import DiagonalGaussian, kl_divergence, kl_to_standard_normal
from m2vae_fusion.core.model import ModelOutput, MultiModalVAE, reencode_divergence, register_model
from m2vae_fusion.core.networks import ModalityEncoder, SubsetEncoder


@register_model("m2vae")
class M2VAE(MultiModalVAE):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.encoders = nn.ModuleDict({m.name: ModalityEncoder(m, config.latent_dim) for m in config.modalities})
        self.subsets = sub.all_subsets(len(self.modality_names))
        self.subset_encoders = nn.ModuleDict()
        for subset in self.subsets:
            if sub.size(subset) >= 2:
                feature_dim = sum(self.encoders[n].feature_dim for n in sub.names_of(subset, self.modality_names))
                self.subset_encoders[str(subset)] = SubsetEncoder(feature_dim, config.joint_hidden, config.latent_dim)
        self.weights = {s: float(w) for s, w in sub.eq17_weights(self.full_mask).items()}

    def posterior(
        self, inputs: Mapping[str, Tensor], subset: int, features: Mapping[str, Tensor] | None = None
    ) -> DiagonalGaussian:
        """q_{phi_S}(z | x_S); `features` may carry precomputed penultimate features per modality."""
        names = sub.names_of(subset, self.modality_names)
        if len(names) == 1:
            encoder = self.encoders[names[0]]
            h = features[names[0]] if features is not None else encoder.features(inputs[names[0]])
            return encoder.head(h)
        feats = [features[n] if features is not None else self.encoders[n].features(inputs[n]) for n in names]
        return self.subset_encoders[str(subset)](torch.cat(feats, dim=-1))

    def encode(self, inputs: Mapping[str, Tensor]) -> DiagonalGaussian:
        return self.posterior(inputs, self.check_inputs(inputs))

    def posteriors(self, batch: Mapping[str, Tensor]) -> dict[int, DiagonalGaussian]:
        """Every subset's posterior, sharing each modality's feature pass."""
        features = {name: self.encoders[name].features(x) for name, x in batch.items()}
        return {s: self.posterior(batch, s, features) for s in self.subsets}

    def forward(self, batch: Mapping[str, Tensor], epoch: float = 0.0) -> ModelOutput:
        self.check_inputs(batch, complete=True)
        alpha = self.config.reencode.weight(epoch)
        qs = self.posteriors(batch)
        loss = torch.zeros(())
        terms: dict[str, float] = {}
        for subset in self.subsets:
            key = sub.label(subset, self.modality_names)
            names = sub.names_of(subset, self.modality_names)
            q = qs[subset]
            z = q.rsample()
            params = self.decode(z, names)
            rec = self.log_likelihood(params, batch)
            kl_prior = kl_to_standard_normal(q)
            kl_mutual = sum((kl_divergence(q, qs[s]) for s in sub.one_smaller(subset)), torch.zeros_like(kl_prior))
            beta = self.beta(subset)
            mutual = beta if self.config.mutual_kl_weight is None else self.config.mutual_kl_weight
            elbo = rec - beta * kl_prior - mutual * kl_mutual
            weight = self.weights[subset]
            loss = loss - weight * elbo.mean()
            terms[f"rec/{key}"] = rec.mean().item()
            terms[f"kl/{key}"] = kl_prior.mean().item()
            if sub.size(subset) >= 2:
                terms[f"mutual_kl/{key}"] = kl_mutual.mean().item()
            if alpha > 0:
                recon = {n: self.decoders[n].mean(p) for n, p in params.items()}
                reenc = reencode_divergence(q, self.posterior(recon, subset), self.config.reencode.variant)
                loss = loss + alpha * weight * reenc.mean()
                terms[f"reenc/{key}"] = reenc.mean().item()
        terms["alpha"] = alpha
        terms["loss"] = loss.item()
        return ModelOutput(loss, terms)
