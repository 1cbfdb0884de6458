"""Building blocks: MLP (optionally convolutional) encoders with Gaussian heads, subset encoders,
decoders, likelihoods.

Architecture of Fig. 2c / Sec. V-A: a modality encoder is input -> hidden ReLU layers (the last
one is the "penultimate" feature layer) -> two linear heads (mean, log-variance). A subset
encoder concatenates its members' penultimate features and adds its own ReLU layers and heads.
Decoders mirror the encoder's hidden layers; their output layer gives the likelihood's
parameters (Bernoulli logits or Gaussian means).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from m2vae_fusion.core.config import ModalityConfig
from m2vae_fusion.core.gaussian import LOG_2PI, DiagonalGaussian


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear + ReLU for each consecutive pair of `sizes`."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """Two linear layers giving the mean and log-variance of q(z|.)."""

    def __init__(self, fan_in: int, latent_dim: int) -> None:
        super().__init__()
        self.mean = nn.Linear(fan_in, latent_dim)
        self.log_var = nn.Linear(fan_in, latent_dim)

    def forward(self, h: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian(self.mean(h), self.log_var(h))


def _conv_layers(channels: Sequence[int], spatial_dims: int, transposed: bool) -> list[nn.Module]:
    """Stride-2, kernel-4 convolutions that halve (or, transposed, double) every spatial size."""
    conv = {(1, False): nn.Conv1d, (2, False): nn.Conv2d, (1, True): nn.ConvTranspose1d, (2, True): nn.ConvTranspose2d}[
        (spatial_dims, transposed)
    ]
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(conv(fan_in, fan_out, kernel_size=4, stride=2, padding=1))
        if not (transposed and i == len(channels) - 2):  # the decoder's last layer gives raw parameters
            layers.append(nn.ReLU())
    return layers


def conv_output_shape(modality: ModalityConfig) -> tuple[int, ...]:
    """(channels, *spatial) after the encoder's convolutions."""
    halving = 2 ** len(modality.conv)
    return (modality.conv[-1], *(size // halving for size in modality.shape[1:]))


def trunk(modality: ModalityConfig) -> nn.Sequential:
    """Input -> penultimate features: optional convolutions (on the input viewed as `shape`), then the MLP."""
    if not modality.conv:
        return mlp([modality.dim, *modality.hidden])
    layers = [
        nn.Unflatten(1, modality.shape),
        *_conv_layers([modality.shape[0], *modality.conv], len(modality.shape) - 1, False),
        nn.Flatten(),
    ]
    return nn.Sequential(*layers, *mlp([math.prod(conv_output_shape(modality)), *modality.hidden]))


class ModalityEncoder(nn.Module):
    """q_{phi_m}(z | m): features (penultimate layer) then a Gaussian head."""

    def __init__(self, modality: ModalityConfig, latent_dim: int) -> None:
        super().__init__()
        self.features = trunk(modality)
        self.head = GaussianHead(modality.hidden[-1], latent_dim)
        self.feature_dim = modality.hidden[-1]

    def forward(self, x: Tensor) -> DiagonalGaussian:
        return self.head(self.features(x))


class SubsetEncoder(nn.Module):
    """q_{phi_S}(z | S) on the concatenated penultimate features of S's modality encoders (Fig. 2c)."""

    def __init__(self, feature_dim: int, hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        self.joint = mlp([feature_dim, *hidden])
        self.head = GaussianHead(hidden[-1], latent_dim)

    def forward(self, features: Tensor) -> DiagonalGaussian:
        return self.head(self.joint(features))


class Decoder(nn.Module):
    """p_{theta_m}(m | z): mirrored hidden layers, then the likelihood's parameters."""

    def __init__(self, modality: ModalityConfig, latent_dim: int) -> None:
        super().__init__()
        hidden = list(reversed(modality.hidden))
        self.body = mlp([latent_dim, *hidden])
        if modality.conv:
            inner = conv_output_shape(modality)
            self.out = nn.Sequential(
                nn.Linear(hidden[-1], math.prod(inner)),
                nn.ReLU(),
                nn.Unflatten(1, inner),
                *_conv_layers([*reversed(modality.conv), modality.shape[0]], len(modality.shape) - 1, True),
                nn.Flatten(),
            )
        else:
            self.out = nn.Linear(hidden[-1], modality.dim)
        self.likelihood = modality.likelihood
        self.gaussian_std = modality.gaussian_std

    def forward(self, z: Tensor) -> Tensor:
        """Likelihood parameters: Bernoulli logits or Gaussian means."""
        return self.out(self.body(z))

    def mean(self, params: Tensor) -> Tensor:
        """E[m | z]: the reconstruction fed back into encoders for re-encoding and fusion."""
        return torch.sigmoid(params) if self.likelihood == "bernoulli" else params

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x | z), summed over the modality's dimensions (one value per sample)."""
        if self.likelihood == "bernoulli":
            params, x = torch.broadcast_tensors(params, x)
            return -F.binary_cross_entropy_with_logits(params, x, reduction="none").sum(-1)
        var = self.gaussian_std**2
        return (-0.5 * (LOG_2PI + torch.log(torch.tensor(var)) + (x - params) ** 2 / var)).sum(-1)
