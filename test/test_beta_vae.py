"""The beta-VAE preprocessors (Sec. V-D): Conv2D on image crops, Conv1D on LiDAR sectors, MLP on IR;
shapes, config errors, gradients, a few steps lowering the loss, and the M = 1 objective = Eq. 1."""

from __future__ import annotations

import pytest
import torch

from m2vae_fusion.core.config import ModalityConfig, ModelConfig
from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.core.gaussian import kl_to_standard_normal
from m2vae_fusion.core.model import build_model

CAMERA = ModalityConfig("camera", 3 * 16 * 16, hidden=(32,), shape=(3, 16, 16), conv=(8, 16))
LIDAR = ModalityConfig("lidar", 2 * 32, hidden=(16,), shape=(2, 32), conv=(4, 8))
IR = ModalityConfig("ir", 6, hidden=(16, 8))


def beta_vae(modality: ModalityConfig, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig([modality], model="beta_vae", latent_dim=4, **kwargs))


@pytest.mark.parametrize("modality", [CAMERA, LIDAR, IR], ids=lambda m: m.name)
def test_shapes_and_gradients(modality: ModalityConfig) -> None:
    model = beta_vae(modality)
    x = torch.rand(6, modality.dim)
    q = model.encode({modality.name: x})
    assert q.mean.shape == q.log_var.shape == (6, 4)
    recon = model.reconstruct(q.mean)[modality.name]
    assert recon.shape == (6, modality.dim) and recon.min() >= 0 and recon.max() <= 1
    model({modality.name: x}).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("modality", [CAMERA, LIDAR, IR], ids=lambda m: m.name)
def test_a_few_steps_lower_the_loss(modality: ModalityConfig) -> None:
    model = beta_vae(modality)
    prototypes = torch.rand(2, modality.dim).round()  # two patterns to learn, as objects of two kinds
    x = prototypes.repeat(16, 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(80):
        optimiser.zero_grad()
        loss = model({modality.name: x}).loss
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_objective_is_the_beta_vae_elbo() -> None:
    """M = 1: loss = -(E_q log p(x|z) - beta KL(q || p)), beta = beta_norm * D / D_z (Eq. 1 with Sec. III-A's beta)."""
    model = beta_vae(IR, beta_norm=0.5)
    model.eval()
    x = torch.rand(8, IR.dim)
    torch.manual_seed(1)
    loss = model({"ir": x}).loss
    torch.manual_seed(1)
    q = model.encode({"ir": x})
    z = q.rsample()
    expected = -(model.log_likelihood(model.decode(z), {"ir": x}) - 0.5 * 6 / 4 * kl_to_standard_normal(q)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dim=48, shape=(3, 4, 4)), "needs conv"),
        (dict(dim=50, shape=(2, 25), conv=(4,)), "divisible"),
        (dict(dim=64, shape=(2, 30), conv=(4,)), "has 60 values"),
        (dict(dim=64, shape=(64,), conv=(4,)), "channels, length"),
    ],
)
def test_conv_config_errors_name_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModalityConfig("x", hidden=(8,), **kwargs)


def test_beta_vae_takes_one_modality() -> None:
    with pytest.raises(ConfigError, match="exactly one modality"):
        build_model(ModelConfig([IR, ModalityConfig("other", 3)], model="beta_vae"))
