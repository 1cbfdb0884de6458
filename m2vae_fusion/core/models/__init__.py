"""Every multi-modal VAE, registered by name (see core.model.build_model).

m2vae       the M2VAE of Korthals et al. 2019 (Eq. 10-17, re-encoding loss Eq. 19)
beta_vae    the uni-modal beta-VAE preprocessor of Sec. V-D (the M = 1 case of the M2VAE)
tvae        triple ELBO of Vedantam et al. 2018: joint + unimodal encoders, decoders fixed in unimodal terms
jmvae_zero  joint ELBO (Eq. 2/3) on data augmented with zero-filled modalities (Suzuki et al.; Ngiam et al.)
mvae        product of experts with the prior, ELBO of the full set + singletons (Wu & Goodman 2018)
mopoe       mixture of products of experts, mixture ELBO over all subsets (Sutter et al. 2021)
"""

from m2vae_fusion.core.models import beta_vae, jmvae_zero, m2vae, mopoe, mvae, tvae  # noqa: F401
