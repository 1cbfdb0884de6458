"""A class-conditional VAE (CVAE) for one modality: the generator behind MNIST-E (Sec. IV, Fig. 3b).

The paper builds MNIST-E "by sampling from superimposed latent spaces of various uni-modal
trained conditional VAEs". Each CVAE maximises Eq. 1 with every distribution conditioned on the
class c (one-hot):

    L(x | c) = - D_KL(q_phi(z | x, c) || p(z)) + E_q log p_theta(x | z, c),   p(z) = N(0, I),

with a Bernoulli likelihood on pixels in [0, 1]. Because the class enters the decoder directly,
z is free to carry the style; decoding one z with two CVAEs of the same latent size gives two
images of the same class that share a latent code.

This is a single-modality helper, not a `MultiModalVAE`, so it is not in the model registry.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from m2vae_fusion.core.errors import ConfigError, DataError, TrainingError
from m2vae_fusion.core.gaussian import DiagonalGaussian, kl_to_standard_normal
from m2vae_fusion.core.networks import GaussianHead, mlp


@dataclass(frozen=True)
class CVAEConfig:
    """Sizes of a CVAE: input_dim -> hidden... -> latent_dim, mirrored in the decoder."""

    input_dim: int = 784
    num_classes: int = 10
    hidden: tuple[int, ...] = (512, 256)
    latent_dim: int = 16
    learning_rate: float = 1e-3
    beta: float = 1.0  # KL weight (beta-VAE); > 1 leaves less class information in z

    def __post_init__(self) -> None:
        for name in ("input_dim", "num_classes", "latent_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CVAEConfig.{name} must be an integer >= 1, got {value!r}")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ConfigError(f"CVAEConfig.hidden must be a non-empty list of integers >= 1, got {self.hidden!r}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"CVAEConfig.learning_rate must be a finite number > 0, got {self.learning_rate!r}")
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta > 0):
            raise ConfigError(f"CVAEConfig.beta must be a finite number > 0, got {self.beta!r}")


class CVAE(nn.Module):
    """Encoder q_phi(z | x, c) and decoder p_theta(x | z, c), MLPs with the one-hot class appended."""

    def __init__(self, config: CVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = mlp([config.input_dim + config.num_classes, *config.hidden])
        self.head = GaussianHead(config.hidden[-1], config.latent_dim)
        hidden = list(reversed(config.hidden))
        self.decoder = nn.Sequential(
            mlp([config.latent_dim + config.num_classes, *hidden]),
            nn.Linear(hidden[-1], config.input_dim),
        )

    def one_hot(self, labels: Tensor) -> Tensor:
        return F.one_hot(labels.long(), self.config.num_classes).to(torch.float32)

    def encode(self, x: Tensor, labels: Tensor) -> DiagonalGaussian:
        """q_phi(z | x, c)."""
        return self.head(self.encoder(torch.cat([x, self.one_hot(labels)], dim=-1)))

    def decode_logits(self, z: Tensor, labels: Tensor) -> Tensor:
        """Bernoulli logits of p_theta(x | z, c)."""
        return self.decoder(torch.cat([z, self.one_hot(labels)], dim=-1))

    def decode(self, z: Tensor, labels: Tensor) -> Tensor:
        """E[x | z, c]: the Bernoulli means, in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z, labels))

    def loss(self, x: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Negative conditional ELBO (Eq. 1 given c, KL weighted by beta), one-sample estimate, batch mean."""
        q = self.encode(x, labels)
        logits = self.decode_logits(q.rsample(generator), labels)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return (reconstruction + self.config.beta * kl_to_standard_normal(q)).mean()


def train_cvae(
    images: np.ndarray | Tensor,
    labels: np.ndarray | Tensor,
    config: CVAEConfig,
    seed: int,
    epochs: int,
    batch_size: int = 256,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> CVAE:
    """Fit a CVAE to (images, labels) with Adam; returns it in eval mode.

    Deterministic from `seed` on a given thread count: weights, shuffling and reparameterisation
    noise come from torch's RNG seeded here inside fork_rng, so the caller's RNG state is left
    untouched. Runs on torch.get_num_threads() threads; `log` gets one line per epoch.
    """
    x, c = _check_training_data(images, labels, config)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError(f"CVAE epochs must be an integer >= 0, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"CVAE batch_size must be an integer >= 1, got {batch_size!r}")
    say = log or (lambda message: None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CVAE(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        generator = torch.Generator().manual_seed(seed)
        n = x.shape[0]
        model.train()
        bar = tqdm(range(epochs), desc="cvae", unit="epoch", disable=not progress or not sys.stderr.isatty())
        for epoch in bar:
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                loss = model.loss(x[index], c[index], generator)
                if not torch.isfinite(loss):
                    raise TrainingError(f"CVAE loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
            bar.set_postfix(loss=f"{total / n:.4g}")
            say(f"cvae epoch {epoch + 1}/{epochs}: negative ELBO {total / n:.4g} nats")
        bar.close()
    model.eval()
    return model


def _check_training_data(images: np.ndarray | Tensor, labels: np.ndarray | Tensor, config: CVAEConfig) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(images, dtype=torch.float32)
    c = torch.as_tensor(labels)
    if x.ndim != 2 or x.shape[1] != config.input_dim or x.shape[0] == 0:
        raise DataError(f"CVAE images must have shape (N>0, {config.input_dim}), got {tuple(x.shape)}")
    if c.shape != (x.shape[0],) or c.dtype.is_floating_point:
        raise DataError(f"CVAE labels must be integers of shape ({x.shape[0]},), got {c.dtype} {tuple(c.shape)}")
    if c.min() < 0 or c.max() >= config.num_classes:
        raise DataError(f"CVAE labels must lie in 0..{config.num_classes - 1}, got {int(c.min())}..{int(c.max())}")
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DataError("CVAE images must be finite and in [0, 1] for the Bernoulli likelihood")
    return x, c.long()
