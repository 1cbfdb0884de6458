"""beta-VAE (Higgins et al.): the uni-modal preprocessor the paper puts in front of the M2VAE for each
sensor (Sec. V-D). It is the M = 1 case of the M2VAE objective (Eq. 17 reduces to Eq. 1 with
beta_m = beta_norm * D_m / D_z), so it shares the M2VAE's encoder, decoder, re-encoding and
training code; this class only insists on exactly one modality."""

from __future__ import annotations

from m2vae_fusion.core.config import ModelConfig
from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.core.model import register_model
from m2vae_fusion.core.models.m2vae import M2VAE


@register_model("beta_vae")
class BetaVAE(M2VAE):
    def __init__(self, config: ModelConfig) -> None:
        if len(config.modalities) != 1:
            raise ConfigError(f"beta_vae takes exactly one modality, got {config.modality_names}")
        super().__init__(config)
