"""Metrics of Sec. V: Gaussian naive Bayes, the ELBO test (Eq. 20) with its terms and the joint
posterior's offset, coherence (Table I) and re-encoding drift (Eq. 21)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from m2vae_fusion.core.config import ModalityConfig, ModelConfig
from m2vae_fusion.core.errors import ConfigError, DataError
from m2vae_fusion.core.gaussian import DiagonalGaussian
from m2vae_fusion.core.metrics import (
    coherence,
    coherence_from_joint,
    drift_field,
    elbo_table,
    elbo_terms,
    elbo_test,
    embed_all_subsets,
    inplace_fusion_curve,
    joint_offset,
    joint_offset_table,
    posterior_mean_table,
    posterior_mean_terms,
    raw_accuracy,
    reencoding_drift,
    subset_means,
)
from m2vae_fusion.core.model import MultiModalVAE, build_model
from m2vae_fusion.core.naive_bayes import GaussianNaiveBayes

# --- Gaussian naive Bayes ---------------------------------------------------------------------


def test_naive_bayes_matches_a_hand_computation_in_one_dimension():
    X = np.array([[0.0], [2.0], [4.0], [6.0]])
    nb = GaussianNaiveBayes().fit(X, np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(nb.theta_, [[1.0], [5.0]])
    # Class variances are 1; smoothing adds 1e-9 * Var(X) = 1e-9 * 5.
    np.testing.assert_allclose(nb.var_, [[1.0 + 5e-9], [1.0 + 5e-9]], rtol=0, atol=1e-15)
    # x = 2: log N(2; 1, 1) - log N(2; 5, 1) = (9 - 1) / 2 = 4, equal priors.
    p0 = 1.0 / (1.0 + math.exp(-4.0))
    np.testing.assert_allclose(nb.predict_proba(np.array([[2.0], [3.0]])), [[p0, 1 - p0], [0.5, 0.5]], atol=1e-7)
    assert nb.predict(np.array([[-10.0], [10.0]])).tolist() == [0, 1]


def test_naive_bayes_matches_the_formula_with_unequal_priors_and_labels():
    X = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [5.0, 5.0], [7.0, 4.0]])
    y = np.array([7, 7, 7, 3, 3])
    nb = GaussianNaiveBayes(var_smoothing=0.0).fit(X, y)
    assert nb.classes_.tolist() == [3, 7]
    x = np.array([3.0, 3.0])

    def joint(rows, prior):
        value = math.log(prior)
        for j in range(2):
            mean = sum(r[j] for r in rows) / len(rows)
            var = sum((r[j] - mean) ** 2 for r in rows) / len(rows)
            value += -0.5 * math.log(2 * math.pi * var) - (x[j] - mean) ** 2 / (2 * var)
        return value

    j3, j7 = joint(X[3:], 2 / 5), joint(X[:3], 3 / 5)
    expected = [math.exp(j3) / (math.exp(j3) + math.exp(j7)), math.exp(j7) / (math.exp(j3) + math.exp(j7))]
    np.testing.assert_allclose(nb.predict_proba(x[None])[0], expected, rtol=1e-10)
    assert nb.predict(x[None]).tolist() == [7 if j7 > j3 else 3]
    assert nb.score(X, y) == 1.0


def test_naive_bayes_is_stable_far_away_and_rejects_misuse():
    nb = GaussianNaiveBayes().fit(np.array([[0.0], [0.1], [1.0], [1.1]]), np.array([0, 0, 1, 1]))
    proba = nb.predict_proba(np.array([[1e4], [-1e4]]))
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    with pytest.raises(DataError, match="before fit"):
        GaussianNaiveBayes().predict(np.zeros((1, 1)))
    with pytest.raises(DataError, match="features"):
        nb.predict(np.zeros((1, 3)))
    with pytest.raises(DataError, match="y must have shape"):
        GaussianNaiveBayes().fit(np.zeros((3, 1)), np.zeros(2))
    with pytest.raises(DataError, match="NaN"):
        nb.predict(np.array([[np.nan]]))
    with pytest.raises(DataError, match="zero variance"):
        GaussianNaiveBayes().fit(np.ones((4, 1)), np.array([0, 0, 1, 1]))


# --- tiny models and stubs --------------------------------------------------------------------


def tiny_config(latent_dim: int = 2) -> ModelConfig:
    return ModelConfig(
        modalities=[ModalityConfig("a", 2, hidden=(8,)), ModalityConfig("b", 3, hidden=(8,))],
        latent_dim=latent_dim,
        joint_hidden=(8,),
    )


def tiny_model() -> MultiModalVAE:
    torch.manual_seed(0)
    return build_model(tiny_config())


def tiny_batch(n: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"a": torch.rand(n, 2, generator=g), "b": torch.rand(n, 3, generator=g)}


class LabelEncoder(MultiModalVAE):
    """Stub: every subset encodes to the value of its first observed input's first column (the
    label), except that `blind` modalities, when observed alone, encode to 0."""

    def __init__(self, config: ModelConfig, blind: tuple[str, ...] = ()) -> None:
        super().__init__(config)
        self.blind = blind

    def encode(self, inputs):
        name, x = next(iter(inputs.items()))
        mean = x[:, :1].repeat(1, self.latent_dim)
        if list(inputs) == [name] and name in self.blind:
            mean = torch.zeros_like(mean)
        return DiagonalGaussian(mean, torch.zeros_like(mean))


class ScalingRoundTrip(MultiModalVAE):
    """Stub for drift: reconstruct is the identity, encode multiplies by `factor` (1: exact round trip)."""

    def __init__(self, config: ModelConfig, factor: float) -> None:
        super().__init__(config)
        self.factor = factor

    def encode(self, inputs):
        x = next(iter(inputs.values()))
        return DiagonalGaussian(self.factor * x, torch.zeros_like(x))

    def reconstruct(self, z, names=None):
        return {n: z for n in (self.modality_names if names is None else names)}


def latent_sized_config(dim: int) -> ModelConfig:
    return ModelConfig(modalities=[ModalityConfig("a", dim, hidden=(2,))], latent_dim=dim)


# --- ELBO test, Eq. 20 ------------------------------------------------------------------------


@pytest.mark.parametrize("subset", [["a"], ["b"], ["a", "b"], ["b", "a"]])
def test_elbo_test_is_finite_per_sample(subset):
    model, batch = tiny_model(), tiny_batch()
    elbo = elbo_test(model, batch, subset, samples=3, generator=torch.Generator().manual_seed(0))
    assert elbo.shape == (6,)
    assert torch.all(torch.isfinite(elbo)) and torch.all(elbo < 0)
    assert not elbo.requires_grad


def test_importance_weighting_tightens_the_bound():
    model, batch = tiny_model(), tiny_batch(64)
    for subset in (["a"], ["b"], ["a", "b"]):
        # Same draws: log-mean-exp >= mean for every sample (Jensen).
        iw = elbo_test(model, batch, subset, samples=50, importance_weighted=True, generator=torch.Generator().manual_seed(3))
        mc = elbo_test(model, batch, subset, samples=50, generator=torch.Generator().manual_seed(3))
        assert torch.all(iw >= mc - 1e-5)
        assert iw.mean() > mc.mean()
        # Independent draws: the K=50 IWAE bound beats the single-sample ELBO, averaged over many
        # draws so that its Monte-Carlo noise (~0.02 for one draw here) stays below the gap.
        single = elbo_test(model, batch, subset, samples=1000, generator=torch.Generator().manual_seed(4))
        assert iw.mean() > single.mean()


def test_elbo_equals_a_hand_computation_when_the_posterior_is_the_prior():
    model, batch = tiny_model(), tiny_batch(5)
    logits = {"a": 0.3, "b": -1.2}
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == "GaussianHead":  # every encoder now gives q = N(0, I) = p(z)
                for p in module.parameters():
                    p.zero_()
        for name, c in logits.items():  # p(m | z) = Bernoulli(sigmoid(c)) for every z
            model.decoders[name].out.weight.zero_()
            model.decoders[name].out.bias.fill_(c)
    # log p(z) - log q(z) = 0, so L_S = sum_m sum_j x log s(c) + (1 - x) log(1 - s(c)) for every S.
    per_modality = {}
    for name, c in logits.items():
        s = 1.0 / (1.0 + math.exp(-c))
        x = batch[name].double()
        per_modality[name] = (x * math.log(s) + (1 - x) * math.log(1 - s)).sum(-1)
    expected = per_modality["a"] + per_modality["b"]
    for subset in (["a"], ["b"], ["a", "b"]):
        for iw in (False, True):
            generator = torch.Generator().manual_seed(0)
            elbo = elbo_test(model, batch, subset, samples=4, importance_weighted=iw, generator=generator)
            torch.testing.assert_close(elbo.double(), expected, atol=1e-5, rtol=0)
    table = elbo_table(model, batch, samples=2, batch_size=2)
    assert list(table) == ["a", "b", "a+b"]
    for value in table.values():
        assert value == pytest.approx(expected.mean().item(), abs=1e-5)
    # the same split into its terms, in chunks of 2 of the 5 samples
    terms = subset_means(model, batch, lambda chunk, names: elbo_terms(model, chunk, names), batch_size=2)
    assert list(terms) == ["a", "b", "a+b"]
    for value in terms.values():
        assert value == pytest.approx(
            {"a": per_modality["a"].mean().item(), "b": per_modality["b"].mean().item(), "kl": 0.0}, abs=1e-5
        )


def test_elbo_table_on_a_tiny_model():
    generator = torch.Generator().manual_seed(0)
    table = elbo_table(tiny_model(), tiny_batch(), samples=2, importance_weighted=True, generator=generator)
    assert set(table) == {"a", "b", "a+b"}
    assert all(math.isfinite(v) for v in table.values())


def test_elbo_terms_add_up_to_the_single_sample_elbo():
    model, batch = tiny_model(), tiny_batch()
    for subset in (["a"], ["b"], ["a", "b"]):
        terms = elbo_terms(model, batch, subset, generator=torch.Generator().manual_seed(5))
        assert list(terms) == ["a", "b", "kl"] and all(t.shape == (6,) for t in terms.values())
        assert torch.all(terms["a"] < 0) and torch.all(terms["b"] < 0)
        elbo = elbo_test(model, batch, subset, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(terms["a"] + terms["b"] - terms["kl"], elbo)


class ShiftedEncoder(MultiModalVAE):
    """Stub: given both modalities q = N(x_a[:, :1], 1) in every dimension; given one, its mean
    (x_a[:, :1] from a, 0 from b) is moved by `shift` and its standard deviation is `std`."""

    def __init__(self, config: ModelConfig, shift: float, std: float) -> None:
        super().__init__(config)
        self.shift, self.std = shift, std

    def encode(self, inputs):
        mean = inputs["a"][:, :1].repeat(1, self.latent_dim) if "a" in inputs else torch.zeros(len(inputs["b"]), self.latent_dim)
        if set(inputs) == set(self.modality_names):
            return DiagonalGaussian(mean, torch.zeros_like(mean))
        return DiagonalGaussian(mean + self.shift, torch.full_like(mean, 2 * math.log(self.std)))


def test_joint_offset_counts_the_joint_mean_in_the_subset_posteriors_standard_deviations():
    batch = tiny_batch()
    model = ShiftedEncoder(tiny_config(latent_dim=3), shift=1.0, std=2.0)
    assert torch.all(joint_offset(model, batch, ["a", "b"]) == 0)
    torch.testing.assert_close(joint_offset(model, batch, ["a"]), torch.full((6,), 0.25))
    # b alone puts its mean at 0 + 1: the offset is (x_a - 1)^2 / 4 in every dimension
    torch.testing.assert_close(joint_offset(model, batch, ["b"]), (batch["a"][:, 0] - 1.0).pow(2) / 4)
    table = joint_offset_table(model, batch, batch_size=4)
    assert table["a+b"] == 0 and table["a"] == pytest.approx(0.25)
    assert table["b"] == pytest.approx(((batch["a"][:, 0] - 1.0).pow(2) / 4).mean().item())
    # narrower than its own error: the offset grows as 1 / std^2
    assert joint_offset(ShiftedEncoder(tiny_config(3), 1.0, 0.5), batch, ["a"]).mean().item() == pytest.approx(4.0)
    with pytest.raises(DataError, match="lacks modalities"):
        joint_offset(model, {"a": batch["a"]}, ["a"])
    with pytest.raises(ConfigError, match="batch_size"):
        joint_offset_table(model, batch, batch_size=0)


def test_elbo_test_rejects_bad_inputs():
    model, batch = tiny_model(), tiny_batch()
    with pytest.raises(DataError, match="lacks modalities"):
        elbo_test(model, {"a": batch["a"]}, ["a"])
    with pytest.raises(DataError, match="unknown modalities"):
        elbo_test(model, batch, ["c"])
    with pytest.raises(DataError, match="at least one"):
        elbo_test(model, batch, [])
    with pytest.raises(ConfigError, match="samples"):
        elbo_test(model, batch, ["a"], samples=0)


# --- coherence, Table I -----------------------------------------------------------------------


def test_coherence_on_a_tiny_model_is_a_rate_per_subset():
    model = tiny_model()
    train, test = tiny_batch(30), tiny_batch(12)
    rates = coherence(model, train, torch.arange(30) % 3, test, np.arange(12) % 3)
    assert set(rates) == {"a", "b", "a+b"}
    assert all(0.0 <= r <= 1.0 for r in rates.values())
    embeddings = embed_all_subsets(model, test)
    assert {k: v.shape for k, v in embeddings.items()} == {"a": (12, 2), "b": (12, 2), "a+b": (12, 2)}


def _label_inputs(labels: np.ndarray) -> dict[str, torch.Tensor]:
    column = torch.as_tensor(labels, dtype=torch.float32)[:, None]
    return {"a": column.repeat(1, 2), "b": column.repeat(1, 3)}


def test_coherence_is_perfect_for_a_separable_embedding_and_drops_for_a_blind_encoder():
    labels = np.arange(40) % 4
    train, test = _label_inputs(labels), _label_inputs(labels[::-1].copy())
    rates = coherence(LabelEncoder(tiny_config()), train, labels, test, labels[::-1].copy())
    assert rates == {"a": 1.0, "b": 1.0, "a+b": 1.0}
    # A uni-modal encoder that maps everything to one point is right only for one class in four.
    blind = coherence(LabelEncoder(tiny_config(), blind=("b",)), train, labels, test, labels[::-1].copy())
    assert blind["a"] == 1.0 and blind["a+b"] == 1.0
    assert blind["b"] == pytest.approx(0.25)


def test_the_strict_coherence_protocol_fits_on_the_joint_embeddings_only():
    """Fitted on a+b only: a uni-modal encoder whose embeddings separate the classes but sit elsewhere
    than the joint ones (here: shifted by 10) scores no better than guessing one class."""

    class Shifted(LabelEncoder):
        def encode(self, inputs):
            q = super().encode(inputs)
            return DiagonalGaussian(q.mean + (10.0 if list(inputs) == ["b"] else 0.0), q.log_var)

    labels = np.arange(40) % 4
    train, test = _label_inputs(labels), _label_inputs(labels[::-1].copy())
    model = Shifted(tiny_config())
    strict = coherence_from_joint(model, train, labels, test, labels[::-1].copy())
    assert strict["a+b"] == 1.0 and strict["a"] == 1.0 and strict["b"] == pytest.approx(0.25)
    aligned = coherence_from_joint(LabelEncoder(tiny_config()), train, labels, test, labels[::-1].copy())
    assert aligned == {"a": 1.0, "b": 1.0, "a+b": 1.0}


def test_posterior_mean_terms_decode_the_mean_without_sampling():
    """The authors' Table II scoring against a hand computation with a stub whose encoder gives the
    mean 0.5 with variance e^-1 and whose decoder returns z: sse = sum (x - 0.5)^2 over both
    modalities, KL = D_z / 2 (0.25 + e^-1 + 1 - 1)."""

    class Half(ScalingRoundTrip):
        def encode(self, inputs):
            n = next(iter(inputs.values())).shape[0]
            return DiagonalGaussian(torch.full((n, 1), 0.5), torch.full((n, 1), -1.0))

        def reconstruct(self, z, names=None):
            return {"a": z.repeat(1, 2), "b": z.repeat(1, 3)}

    x = tiny_batch(4)
    model = Half(tiny_config(), 1.0)
    terms = posterior_mean_terms(model, x, ["a"])
    sse = ((x["a"] - 0.5) ** 2).sum(-1) + ((x["b"] - 0.5) ** 2).sum(-1)
    bernoulli = (5 * math.log(0.5)) * torch.ones(4)
    torch.testing.assert_close(terms["sse"], sse)
    torch.testing.assert_close(terms["bernoulli"], bernoulli)
    torch.testing.assert_close(terms["kl"], torch.full((4,), 0.5 * (0.25 + math.exp(-1.0) + 1.0 - 1.0)))
    table = posterior_mean_table(model, x)
    assert table["a"]["sse_kl"] == pytest.approx(-(float(sse.mean()) + float(terms["kl"].mean())))
    assert table["b"]["bernoulli_kl"] == pytest.approx(5 * math.log(0.5) - float(terms["kl"].mean()))


def test_inplace_fusion_curve_alternates_modalities_and_decodes_the_others():
    """A stub that encodes the first present modality times 0.5 and decodes z as it is: the joint mean
    is 0.5 a; fusing b in place decodes a as 0.5 a and encodes 0.25 a (drift 0.25 |a|); fusing a
    again takes the real a back (drift 0). Accuracy: a classifier that reads the sign of z."""
    config = ModelConfig(modalities=[ModalityConfig("a", 2, hidden=(2,)), ModalityConfig("b", 2, hidden=(2,))], latent_dim=2)
    model = ScalingRoundTrip(config, 0.5)
    x = {"a": torch.tensor([[1.0, 0.0], [-2.0, 0.0]]), "b": torch.zeros(2, 2)}

    class Sign:
        def predict(self, z):
            return (z[:, 0] > 0).astype(int)

    curve = inplace_fusion_curve(model, x, [5, 1, 2, 3, 4], Sign(), np.array([1, 0]))
    assert [p.steps for p in curve] == [1, 2, 3, 4, 5]
    quarter = 0.25 * 1.5  # mean of 0.25 |a| over the two samples
    assert [p.drift for p in curve] == pytest.approx([0.0, quarter, 0.0, quarter, 0.0])
    assert all(p.accuracy == 1.0 for p in curve)
    assert inplace_fusion_curve(model, x, [2])[0].accuracy is None
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        inplace_fusion_curve(model, x, [0, 3])


def test_raw_accuracy_uses_one_classifier_per_subset():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(2), 50)
    # a separates the classes, b is pure noise.
    train = {"a": labels[:, None] * 5.0 + rng.normal(size=(100, 1)), "b": rng.normal(size=(100, 2))}
    test = {"a": labels[:, None] * 5.0 + rng.normal(size=(100, 1)), "b": rng.normal(size=(100, 2))}
    rates = raw_accuracy(train, labels, test, labels, ["a", "b"])
    assert rates["a"] > 0.97 and rates["a+b"] > 0.95
    assert rates["b"] < 0.7
    with pytest.raises(DataError, match="lacks modalities"):
        raw_accuracy(train, labels, {"a": test["a"]}, labels, ["a", "b"])


# --- re-encoding drift, Eq. 21 ----------------------------------------------------------------


def test_drift_is_zero_for_an_exact_round_trip():
    config = latent_sized_config(2)
    x = {"a": torch.randn(20, 2, generator=torch.Generator().manual_seed(0))}
    classifier = GaussianNaiveBayes().fit(x["a"].numpy(), (x["a"][:, 0] > 0).long().numpy())
    result = reencoding_drift(ScalingRoundTrip(config, 1.0), x, ["a"], steps=5, classifier=classifier)
    assert result.steps == 5 and result.mean == 0.0 and result.median == 0.0
    assert result.label_switch_rate == 0.0
    assert result.latent_spread == pytest.approx(x["a"].std(dim=0, unbiased=False).mean().item())
    grid = torch.tensor([[0.0, 0.0], [1.0, -2.0], [3.0, 3.0]])
    np.testing.assert_array_equal(drift_field(ScalingRoundTrip(config, 1.0), ["a"], grid, steps=3), 0.0)


def test_drift_of_a_shrinking_round_trip():
    config = latent_sized_config(2)
    x = {"a": torch.randn(20, 2, generator=torch.Generator().manual_seed(0))}
    result = reencoding_drift(ScalingRoundTrip(config, 0.5), x, ["a"], steps=3)
    # z_0 = x / 2, z_3 = x / 16: ||z_0 - z_3|| = 7/16 ||x||.
    norms = torch.linalg.vector_norm(x["a"], dim=-1).numpy()
    assert result.mean == pytest.approx(7 / 16 * norms.mean(), rel=1e-5)
    assert result.median == pytest.approx(7 / 16 * np.median(norms), rel=1e-5)
    assert result.mean > 0 and result.label_switch_rate is None
    # The heatmap starts at the grid point itself: z_3 = z / 8.
    grid = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    field = drift_field(ScalingRoundTrip(config, 0.5), ["a"], grid, steps=3)
    np.testing.assert_allclose(field, [0.0, 5 * 7 / 8], rtol=1e-6)


def test_drift_counts_label_switches():
    config = latent_sized_config(1)
    x = torch.tensor([[0.8], [1.0], [1.2], [3.8], [4.0], [4.2]])
    labels = np.array([0, 0, 0, 1, 1, 1])
    classifier = GaussianNaiveBayes().fit((0.5 * x).numpy(), labels)  # z_0 clusters near 0.5 and 2
    result = reencoding_drift(ScalingRoundTrip(config, 0.5), {"a": x}, ["a"], steps=2, classifier=classifier)
    # After two more halvings class 1 sits near 0.5: every class-1 sample switched.
    assert result.label_switch_rate == pytest.approx(0.5)


def test_drift_on_a_tiny_model_and_bad_arguments():
    model, batch = tiny_model(), tiny_batch()
    result = reencoding_drift(model, batch, ["a", "b"], steps=2)
    assert result.mean >= 0 and math.isfinite(result.mean) and result.latent_spread > 0
    field = drift_field(model, ["b"], torch.zeros(4, 2), steps=1)
    assert field.shape == (4,) and np.all(np.isfinite(field))
    with pytest.raises(ConfigError, match="steps"):
        reencoding_drift(model, batch, ["a"], steps=0)
    with pytest.raises(DataError, match="grid"):
        drift_field(model, ["a"], torch.zeros(4, 3), steps=1)
