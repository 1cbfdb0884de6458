"""tVAE: the triple-ELBO model of Vedantam et al. 2018 ("Generative Models of Visually Grounded
Imagination", ref. [4] of the M2VAE paper), for general M.

Networks: a joint inference network q_J(z | x_1..x_M) on the concatenated raw inputs (the M2VAE
paper configures the baselines "without the latent encoder q_ab" on penultimate features,
Sec. V-A), one unimodal inference network q_m(z | x_m) per modality, one decoder p(x_m | z) each.

Objective (negative of, batch mean), the M-modal triple ELBO:
    L = E_{q_J}[ sum_m log p(x_m|z) ] - beta_M KL(q_J || p(z))
        + sum_m ( E_{q_m}[ log p_{sg(theta_m)}(x_m|z) ] - beta_m KL(q_m || p(z)) )
Each unimodal term reconstructs only its own modality, and sg(.) stops the gradient to the
decoder weights: as in the original, the likelihood is fitted by the joint ELBO alone and held
fixed while the unimodal inference networks are fitted to it (the decoders run under
torch.func.functional_call with detached parameters, so gradients still reach q_m through z).
Vedantam's per-modality likelihood scaling lambda_m is kept at 1; the KL weights are
beta_S = MultiModalVAE.beta(S) of the reconstructed subset, as in the M2VAE (Eq. 1, 2).

Missing modalities: encode() uses q_J for the full set and q_m for a single modality; any other
subset S (M > 2) uses the product of experts p(z) prod_{m in S} q_m(z|x_m) (Vedantam Eq. 4, their
treatment of missing attributes). config.reencode is ignored: the re-encoding loss (Eq. 19)
belongs to the M2VAE only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from m2vae_fusion.core import subsets as sub
from m2vae_fusion.core.config import ModelConfig
from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.core.experts import concat_encoder, product_of_experts
from m2vae_fusion.core.gaussian import DiagonalGaussian, kl_to_standard_normal
from m2vae_fusion.core.model import ModelOutput, MultiModalVAE, register_model
from m2vae_fusion.core.networks import ModalityEncoder


@register_model("tvae")
class TVAE(MultiModalVAE):
    def __init__(self, config: ModelConfig) -> None:
        if len(config.modalities) < 2:
            raise ConfigError(f"tvae needs at least two modalities, got {config.modality_names}")
        super().__init__(config)
        self.encoders = nn.ModuleDict({m.name: ModalityEncoder(m, config.latent_dim) for m in config.modalities})
        self.joint_encoder = concat_encoder(config)

    def joint_posterior(self, inputs: Mapping[str, Tensor]) -> DiagonalGaussian:
        """q_J(z | x_1..x_M) on the inputs concatenated in config order."""
        return self.joint_encoder(torch.cat([inputs[n] for n in self.modality_names], dim=-1))

    def encode(self, inputs: Mapping[str, Tensor]) -> DiagonalGaussian:
        subset = self.check_inputs(inputs)
        if subset == self.full_mask:
            return self.joint_posterior(inputs)
        names = sub.names_of(subset, self.modality_names)
        if len(names) == 1:
            return self.encoders[names[0]](inputs[names[0]])
        return product_of_experts([self.encoders[n](inputs[n]) for n in names], include_prior=True)

    def frozen_log_likelihood(self, z: Tensor, name: str, x: Tensor) -> Tensor:
        """log p(x_m | z) with the decoder's weights held fixed (no gradient to them, only to z)."""
        decoder = self.decoders[name]
        frozen = {k: p.detach() for k, p in decoder.named_parameters()}
        return decoder.log_prob(functional_call(decoder, frozen, (z,)), x)

    def unimodal_elbo(self, batch: Mapping[str, Tensor], name: str) -> tuple[Tensor, Tensor, Tensor]:
        """(ELBO_m, reconstruction, KL) per sample for modality `name`, decoder frozen."""
        q = self.encoders[name](batch[name])
        rec = self.frozen_log_likelihood(q.rsample(), name, batch[name])
        kl = kl_to_standard_normal(q)
        return rec - self.beta(sub.mask_of([name], self.modality_names)) * kl, rec, kl

    def forward(self, batch: Mapping[str, Tensor], epoch: float = 0.0) -> ModelOutput:
        self.check_inputs(batch, complete=True)
        terms: dict[str, float] = {}
        q = self.joint_posterior(batch)
        rec = self.log_likelihood(self.decode(q.rsample()), batch)
        kl = kl_to_standard_normal(q)
        elbo = rec - self.beta(self.full_mask) * kl
        key = sub.label(self.full_mask, self.modality_names)
        terms[f"rec/{key}"], terms[f"kl/{key}"] = rec.mean().item(), kl.mean().item()
        for name in self.modality_names:
            elbo_m, rec_m, kl_m = self.unimodal_elbo(batch, name)
            elbo = elbo + elbo_m
            terms[f"rec/{name}"], terms[f"kl/{name}"] = rec_m.mean().item(), kl_m.mean().item()
        loss = -elbo.mean()
        terms["loss"] = loss.item()
        return ModelOutput(loss, terms)
