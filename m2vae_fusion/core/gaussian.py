"""Diagonal Gaussian posteriors q(z|x) = N(mu, diag(sigma^2)) and their closed-form KLs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DiagonalGaussian:
    """A batch of diagonal Gaussians, parameterised by mean and log-variance log(sigma^2)."""

    mean: Tensor
    log_var: Tensor

    @property
    def std(self) -> Tensor:
        """sigma = exp(log(sigma^2) / 2)."""
        return torch.exp(0.5 * self.log_var)

    def rsample(self, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised sample z = mu + sigma * eps (Kingma & Welling), differentiable in mu, sigma."""
        eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * eps

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z), summed over the latent dimensions; z may carry extra leading sample dims."""
        return (-0.5 * (LOG_2PI + self.log_var + (z - self.mean) ** 2 / torch.exp(self.log_var))).sum(-1)

    def detach(self) -> DiagonalGaussian:
        return DiagonalGaussian(self.mean.detach(), self.log_var.detach())


LOG_2PI = float(torch.log(torch.tensor(2.0 * torch.pi)))


def kl_divergence(q: DiagonalGaussian, p: DiagonalGaussian) -> Tensor:
    """KL(q || p) between diagonal Gaussians, summed over latent dimensions (one value per sample).

    KL = 1/2 sum( log(sp^2/sq^2) + (sq^2 + (mq - mp)^2) / sp^2 - 1 ); used for the prior terms of
    Eq. 1, 11, 12, 14 and the mutual terms of Eq. 15.
    """
    var_ratio = torch.exp(q.log_var - p.log_var)
    mean_term = (q.mean - p.mean) ** 2 / torch.exp(p.log_var)
    return 0.5 * (p.log_var - q.log_var + var_ratio + mean_term - 1.0).sum(-1)


def kl_to_standard_normal(q: DiagonalGaussian) -> Tensor:
    """KL(q || N(0, I)) = 1/2 sum(mu^2 + sigma^2 - log sigma^2 - 1): the regulariser of Eq. 1."""
    return 0.5 * (q.mean**2 + torch.exp(q.log_var) - q.log_var - 1.0).sum(-1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log p(z) for the prior p(z) = N(0, I), summed over latent dimensions (Eq. 20)."""
    return (-0.5 * (LOG_2PI + z**2)).sum(-1)
