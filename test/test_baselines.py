"""The baseline models (tvae, jmvae_zero, mvae, mopoe) under the model contract, on tiny configs."""

from __future__ import annotations

import math

import pytest
import torch

from m2vae_fusion.core import subsets as sub
from m2vae_fusion.core.config import ModalityConfig, ModelConfig
from m2vae_fusion.core.errors import ConfigError, DataError
from m2vae_fusion.core.experts import product_of_experts
from m2vae_fusion.core.gaussian import DiagonalGaussian
from m2vae_fusion.core.model import build_model
from m2vae_fusion.core.models.jmvae_zero import JMVAEZero
from m2vae_fusion.core.models.mopoe import MoPoE
from m2vae_fusion.core.models.mvae import MVAE
from m2vae_fusion.core.models.tvae import TVAE

BASELINES = {"tvae": TVAE, "jmvae_zero": JMVAEZero, "mvae": MVAE, "mopoe": MoPoE}
DIMS = {2: {"a": 2, "b": 3}, 3: {"a": 2, "b": 3, "c": 4}}
BATCH = 6


def make_config(name: str, num_modalities: int) -> ModelConfig:
    modalities = [ModalityConfig(n, d, hidden=(8, 6)) for n, d in DIMS[num_modalities].items()]
    return ModelConfig(modalities=modalities, model=name, latent_dim=2, beta_norm=0.01)


def make_model(name: str, num_modalities: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(make_config(name, num_modalities))


def make_batch(num_modalities: int, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # binary pixels: a Bernoulli likelihood can fit them well, so training visibly lowers the loss
    return {n: (torch.rand(BATCH, d, generator=g) > 0.5).float() for n, d in DIMS[num_modalities].items()}


CASES = [(name, m) for name in BASELINES for m in (2, 3)]


@pytest.mark.parametrize("name", BASELINES)
def test_build_model_builds_each_baseline_by_name(name):
    model = make_model(name, 2)
    assert type(model) is BASELINES[name]
    assert model.registry_name == name


@pytest.mark.parametrize("name,m", CASES)
def test_forward_gives_finite_scalar_loss_and_terms(name, m):
    out = make_model(name, m)(make_batch(m))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.terms["loss"] == pytest.approx(out.loss.item())
    assert all(math.isfinite(v) for v in out.terms.values())
    full = sub.label((1 << m) - 1, list(DIMS[m]))
    assert f"rec/{full}" in out.terms and f"kl/{full}" in out.terms


@pytest.mark.parametrize("name,m", CASES)
def test_forward_rejects_an_incomplete_batch(name, m):
    batch = make_batch(m)
    del batch["a"]
    with pytest.raises(DataError, match="lacks modalities"):
        make_model(name, m)(batch)


@pytest.mark.parametrize("name,m", CASES)
def test_encode_works_for_every_subset(name, m):
    model = make_model(name, m)
    batch = make_batch(m)
    names = list(DIMS[m])
    for subset in sub.all_subsets(m):
        q = model.encode({n: batch[n] for n in sub.names_of(subset, names)})
        assert q.mean.shape == (BATCH, 2) and q.log_var.shape == (BATCH, 2)
        assert torch.isfinite(q.mean).all() and torch.isfinite(q.log_var).all()


@pytest.mark.parametrize("name,m", CASES)
def test_backward_reaches_every_parameter(name, m):
    model = make_model(name, m)
    model(make_batch(m)).loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ["tvae", "mvae", "mopoe"])
def test_encoder_of_an_absent_modality_gets_no_gradient(name):
    model = make_model(name, 3)
    batch = make_batch(3)
    model.encode({"a": batch["a"], "b": batch["b"]}).mean.sum().backward()
    assert all(p.grad is None for p in model.encoders["c"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders["a"].parameters())


@pytest.mark.parametrize("name,m", CASES)
def test_adam_steps_lower_the_loss(name, m):
    model = make_model(name, m)
    batch = make_batch(m)

    def loss_at_fixed_noise() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return model(batch).loss.item()

    before = loss_at_fixed_noise()
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-2)
    for _ in range(30):
        optimiser.zero_grad()
        model(batch).loss.backward()
        optimiser.step()
    assert loss_at_fixed_noise() < 0.95 * before


@pytest.mark.parametrize("m", [2, 3])
def test_tvae_unimodal_terms_leave_decoder_weights_without_gradient(m):
    model = make_model("tvae", m)
    batch = make_batch(m)
    total = sum(model.unimodal_elbo(batch, n)[0].mean() for n in DIMS[m])
    total.backward()
    for p in model.decoders.parameters():
        assert p.grad is None or not p.grad.any()
    assert all(p.grad is None for p in model.joint_encoder.parameters())
    for n in DIMS[m]:  # each unimodal encoder still learns through z
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoders[n].parameters())


def test_tvae_full_set_uses_joint_encoder_and_a_partial_set_the_product_with_prior():
    model = make_model("tvae", 3)
    batch = make_batch(3)
    with torch.no_grad():
        q_full = model.encode(batch)
        joint = model.joint_encoder(torch.cat([batch["a"], batch["b"], batch["c"]], dim=-1))
        q_ab = model.encode({"a": batch["a"], "b": batch["b"]})
        poe = product_of_experts([model.encoders["a"](batch["a"]), model.encoders["b"](batch["b"])], include_prior=True)
        q_b = model.encode({"b": batch["b"]})
        uni = model.encoders["b"](batch["b"])
    torch.testing.assert_close(q_full.mean, joint.mean)
    torch.testing.assert_close(q_ab.log_var, poe.log_var)
    torch.testing.assert_close(q_b.mean, uni.mean)


def test_tvae_needs_two_modalities():
    config = ModelConfig(modalities=[ModalityConfig("a", 2, hidden=(4,))], model="tvae")
    with pytest.raises(ConfigError, match="two modalities"):
        build_model(config)


@pytest.mark.parametrize("m", [2, 3])
def test_jmvae_zero_encode_zero_fills_missing_modalities(m):
    model = make_model("jmvae_zero", m)
    x = make_batch(m)["a"]
    zeros = torch.zeros(BATCH, sum(DIMS[m].values()) - DIMS[m]["a"])
    with torch.no_grad():
        q = model.encode({"a": x})
        expected = model.encoder(torch.cat([x, zeros], dim=-1))
    torch.testing.assert_close(q.mean, expected.mean)
    torch.testing.assert_close(q.log_var, expected.log_var)


def test_jmvae_zero_trains_on_one_zero_filled_copy_per_subset():
    model = make_model("jmvae_zero", 3)
    seen: list[torch.Tensor] = []
    model.encoder.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    batch = make_batch(3)
    out = model(batch)
    (x,) = seen
    assert x.shape == (7 * BATCH, 9)
    copy_a = x[:BATCH]  # singleton {a} comes first: a as given, b and c zero
    torch.testing.assert_close(copy_a[:, :2], batch["a"])
    assert not copy_a[:, 2:].any()
    labels = {f"rec/{sub.label(s, ['a', 'b', 'c'])}" for s in range(1, 8)}
    assert {k for k in out.terms if k.startswith("rec/")} == labels


def test_mopoe_encode_is_the_product_without_prior():
    model = make_model("mopoe", 2)
    batch = make_batch(2)
    with torch.no_grad():
        q_a = model.encode({"a": batch["a"]})
        expert = model.encoders["a"](batch["a"])
    torch.testing.assert_close(q_a.mean, expert.mean)
    torch.testing.assert_close(q_a.log_var, expert.log_var)


def test_mvae_single_modality_encode_includes_the_prior_expert():
    model = make_model("mvae", 2)
    batch = make_batch(2)
    with torch.no_grad():
        q_a = model.encode({"a": batch["a"]})
        expert = model.encoders["a"](batch["a"])
    # the prior adds precision 1, so the product is strictly tighter than the expert
    assert (q_a.log_var < expert.log_var).all()


def test_product_of_one_expert_and_the_prior_is_the_precision_weighted_product():
    mean = torch.tensor([[0.5, -2.0], [3.0, 0.0]])
    var = torch.tensor([[0.25, 4.0], [1.0, 0.1]])
    q = product_of_experts([DiagonalGaussian(mean, var.log())], include_prior=True)
    precision = 1.0 / var + 1.0
    torch.testing.assert_close(q.log_var, -precision.log())
    torch.testing.assert_close(q.mean, (mean / var) / precision)


def test_product_of_experts_is_order_invariant_and_one_expert_alone_is_itself():
    g = torch.Generator().manual_seed(0)
    experts = [DiagonalGaussian(torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)) for _ in range(3)]
    forward = product_of_experts(experts, include_prior=False)
    backward = product_of_experts(experts[::-1], include_prior=False)
    torch.testing.assert_close(forward.mean, backward.mean)
    torch.testing.assert_close(forward.log_var, backward.log_var)
    alone = product_of_experts(experts[:1], include_prior=False)
    torch.testing.assert_close(alone.mean, experts[0].mean)
    torch.testing.assert_close(alone.log_var, experts[0].log_var)


def test_product_of_no_experts_is_an_error():
    with pytest.raises(DataError, match="at least one expert"):
        product_of_experts([], include_prior=True)
