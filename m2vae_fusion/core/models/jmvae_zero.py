"""JMVAE-Zero: the joint multi-modal VAE of Suzuki et al. (ref. [3]) with KL weight alpha = 0,
i.e. only the joint ELBO of Eq. 2/3, trained on a data set augmented with zero-filled modalities
as Ngiam et al. 2011 (ref. [2]) train their bimodal deep autoencoder; the M2VAE paper names this
model JMVAE-Zero (Sec. II-1).

One joint encoder q(z | x_1..x_M) on the concatenated raw inputs (config order), one decoder per
modality. Every training batch is augmented with one copy per non-empty subset S (the full set
included) in which the modalities outside S are replaced by zeros; the reconstruction target is
always the complete sample. With x^S the zero-filled copy, the objective (negative of, mean over
the augmented batch, i.e. each copy weighted 1 / (2^M - 1)) is
    L = 1/(2^M - 1) sum_S ( E_{q(z|x^S)}[ sum_m log p(x_m|z) ] - beta_M KL(q(z|x^S) || p(z)) ).
For M = 2 the copies are (a, b), (a, 0), (0, b). Ngiam et al. mix the single-modality examples
in at a fixed share of the data; here every sample appears once per subset. Every copy
reconstructs all modalities, so every KL weight is beta of the full set (MultiModalVAE.beta).

Missing modalities: encode() zero-fills the modalities not present and runs the joint encoder.
config.reencode is ignored: the re-encoding loss (Eq. 19) belongs to the M2VAE only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from m2vae_fusion.core import subsets as sub
from m2vae_fusion.core.config import ModelConfig
from m2vae_fusion.core.experts import concat_encoder
from m2vae_fusion.core.gaussian import DiagonalGaussian, kl_to_standard_normal
from m2vae_fusion.core.model import ModelOutput, MultiModalVAE, register_model


@register_model("jmvae_zero")
class JMVAEZero(MultiModalVAE):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.encoder = concat_encoder(config)
        self.subsets = sub.all_subsets(len(self.modality_names))

    def zero_filled(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The encoder input: present modalities as given, absent ones as zeros, in config order."""
        like = next(iter(inputs.values()))
        return torch.cat(
            [inputs[n] if n in inputs else like.new_zeros(like.shape[0], self._dims[n]) for n in self.modality_names],
            dim=-1,
        )

    def encode(self, inputs: Mapping[str, Tensor]) -> DiagonalGaussian:
        self.check_inputs(inputs)
        return self.encoder(self.zero_filled(inputs))

    def forward(self, batch: Mapping[str, Tensor], epoch: float = 0.0) -> ModelOutput:
        self.check_inputs(batch, complete=True)
        copies = [{n: batch[n] for n in sub.names_of(s, self.modality_names)} for s in self.subsets]
        # one pass over the whole augmented batch; targets repeat the complete sample per copy
        q = self.encoder(torch.cat([self.zero_filled(c) for c in copies]))
        targets = {n: batch[n].repeat(len(self.subsets), 1) for n in self.modality_names}
        rec = self.log_likelihood(self.decode(q.rsample()), targets)
        kl = kl_to_standard_normal(q)
        loss = -(rec - self.beta(self.full_mask) * kl).mean()
        terms: dict[str, float] = {}
        for subset, rec_s, kl_s in zip(self.subsets, rec.chunk(len(self.subsets)), kl.chunk(len(self.subsets))):
            key = sub.label(subset, self.modality_names)
            terms[f"rec/{key}"], terms[f"kl/{key}"] = rec_s.mean().item(), kl_s.mean().item()
        terms["loss"] = loss.item()
        return ModelOutput(loss, terms)
