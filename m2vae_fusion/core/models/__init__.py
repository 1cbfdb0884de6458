"""Every multi-modal VAE, registered by name (see core.model.build_model).

m2vae       the M2VAE of Korthals et al. 2019 (Eq. 10-17, re-encoding loss Eq. 19)
"""

from m2vae_fusion.core.models import m2vae  # noqa: F401
