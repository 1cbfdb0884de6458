"""The expected information gain of a sensing (core/information_gain.py): shapes and batching on a
three-modality model, its invariants, and on a MoG model the answers the data set's geometry gives."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from m2vae_fusion.core.config import ModalityConfig, ModelConfig
from m2vae_fusion.core.errors import DataError
from m2vae_fusion.core.fusion import in_place_fusion
from m2vae_fusion.core.gaussian import DiagonalGaussian, kl_divergence
from m2vae_fusion.core.information_gain import class_entropy, expected_gain
from m2vae_fusion.core.metrics import shared_classifier
from m2vae_fusion.core.model import build_model
from m2vae_fusion.data.mog import make_mog

torch.set_num_threads(1)

NAMES = ("camera", "lidar", "ir")
ALL_CANDIDATES = [list(c) for r in (1, 2, 3) for c in itertools.combinations(NAMES, r)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    mods = [ModalityConfig(name=n, dim=4, hidden=(8, 6)) for n in NAMES]
    return build_model(ModelConfig(modalities=mods, latent_dim=3, joint_hidden=(5,))).eval()


def _probabilities(z: torch.Tensor) -> torch.Tensor:
    """A fixed soft classifier on z with four classes (enough to see entropies move)."""
    weights = torch.tensor([[1.0, -1.0, 0.5, 0.0], [0.0, 2.0, -1.0, 1.0], [-1.0, 0.0, 1.0, 0.5]])
    return torch.softmax(z @ weights, dim=-1)


def _beliefs(model, sensed):
    x = {n: torch.rand(len(sensed), 4, generator=torch.Generator().manual_seed(1)) for n in NAMES}
    means, log_vars = [], []
    for i, covered in enumerate(sensed):
        q = (
            model.encode({n: x[n][i : i + 1] for n in covered})
            if covered
            else DiagonalGaussian(torch.zeros(1, 3), torch.zeros(1, 3))
        )
        means.append(q.mean)
        log_vars.append(q.log_var)
    return DiagonalGaussian(torch.cat(means), torch.cat(log_vars))


def test_shapes_for_mixed_beliefs_and_every_candidate_of_three_modalities(model):
    sensed = [[], ["camera"], ["lidar", "ir"], ["camera", "lidar", "ir"], ["camera"]]
    gain = expected_gain(model, _beliefs(model, sensed), sensed, ALL_CANDIDATES, samples=8, class_probabilities=_probabilities)
    assert gain.kl.shape == (5, 7) and gain.entropy_after.shape == (5, 7) and gain.entropy_now.shape == (5,)
    assert gain.entropy_reduction.shape == (5, 7)
    assert gain.candidates == tuple(tuple(c) for c in ALL_CANDIDATES)
    assert torch.isfinite(gain.kl).all() and (gain.kl >= 0).all()
    assert ((gain.entropy_after >= 0) & (gain.entropy_after <= np.log(4) + 1e-6)).all()
    # From nothing, every sensing changes the belief (the prior is far from any posterior).
    assert (gain.kl[0] > 0.05).all()


def test_without_a_classifier_only_the_kl_is_estimated(model):
    sensed = [["camera"]] * 2
    gain = expected_gain(model, _beliefs(model, sensed), sensed, [["lidar"]], samples=4)
    assert gain.kl.shape == (2, 1) and gain.entropy_now is None and gain.entropy_reduction is None


def test_batched_equals_one_belief_at_a_time(model):
    # With a near-point belief every z sample is its mean, so the batch order cannot matter.
    sensed = [["camera"], ["lidar", "ir"], ["camera"], []]
    beliefs = _beliefs(model, sensed)
    sharp = DiagonalGaussian(beliefs.mean, torch.full_like(beliefs.log_var, -40.0))
    batched = expected_gain(model, sharp, sensed, ALL_CANDIDATES, samples=3, class_probabilities=_probabilities)
    for i, covered in enumerate(sensed):
        one = DiagonalGaussian(sharp.mean[i : i + 1], sharp.log_var[i : i + 1])
        single = expected_gain(model, one, [covered], ALL_CANDIDATES, samples=3, class_probabilities=_probabilities)
        torch.testing.assert_close(batched.kl[i], single.kl[0])
        torch.testing.assert_close(batched.entropy_after[i], single.entropy_after[0])


def test_one_imagined_sensing_is_the_fusion_of_a_decoded_sample(model):
    sensed = [["camera"], ["camera"]]
    beliefs = _beliefs(model, sensed)
    gain = expected_gain(model, beliefs, sensed, [["lidar"]], samples=1, generator=torch.Generator().manual_seed(5))
    z = beliefs.mean + beliefs.std * torch.randn((1, 2, 3), generator=torch.Generator().manual_seed(5))[0]
    after, _ = in_place_fusion(model, beliefs, ["camera"], model.reconstruct(z, ["lidar"]))
    start = model.encode(model.reconstruct(beliefs.mean, ["camera"]))  # the belief re-encoded (Eq. 21, one step)
    torch.testing.assert_close(gain.kl[:, 0], kl_divergence(after, start))


def test_sensing_again_what_is_sensed_gains_nothing(model):
    sensed = [["camera"], ["camera", "lidar"], list(NAMES)]
    beliefs = _beliefs(model, sensed)
    gain = expected_gain(model, beliefs, sensed, [["camera"]], samples=6, class_probabilities=_probabilities)
    assert torch.equal(gain.kl[:, 0], torch.zeros(3))
    torch.testing.assert_close(gain.entropy_reduction[:, 0], torch.zeros(3), atol=1e-6, rtol=0)  # a mean of S equal terms
    # The class entropy it starts from is that of the re-encoded belief, the start of every fusion.
    for i, covered in enumerate(sensed):
        start = model.encode(model.reconstruct(beliefs.mean[i : i + 1], covered))
        torch.testing.assert_close(gain.entropy_now[i : i + 1], class_entropy(_probabilities(start.mean)))


def test_nothing_sensed_starts_from_the_belief_itself(model):
    prior = DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 3))
    gain = expected_gain(model, prior, [[], []], [["ir"]], samples=2, class_probabilities=_probabilities)
    torch.testing.assert_close(gain.entropy_now, class_entropy(_probabilities(prior.mean)))


def test_seeded_estimates_repeat(model):
    sensed = [["ir"]] * 4
    beliefs = _beliefs(model, sensed)
    runs = [
        expected_gain(model, beliefs, sensed, ALL_CANDIDATES, samples=5, generator=torch.Generator().manual_seed(3)).kl
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0], runs[1])


def test_class_entropy_bounds():
    assert float(class_entropy(torch.tensor([1.0, 0.0, 0.0]))) == 0.0
    assert float(class_entropy(torch.full((4,), 0.25))) == pytest.approx(np.log(4))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sensed": [["camera"]]}, "2 beliefs but 1"),
        ({"candidates": [[]]}, "at least one modality"),
        ({"candidates": [["radar"]]}, "unknown modalities \\['radar'\\]"),
        ({"sensed": [["sonar"], []]}, "unknown modalities \\['sonar'\\]"),
        ({"samples": 0}, "samples must be an integer >= 1"),
        ({"belief": DiagonalGaussian(torch.zeros(2, 5), torch.zeros(2, 5))}, "shape \\(B, 3\\)"),
    ],
)
def test_errors_name_the_bad_input(model, kwargs, message):
    args = {"belief": DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 3)), "sensed": [[], []], "candidates": [["ir"]]}
    args.update(kwargs)
    with pytest.raises(DataError, match=message):
        expected_gain(model, **args)


# --- the MoG model: which sensing helps is known from the data set's geometry ----------------------


@pytest.fixture(scope="module")
def mog():
    """An M2VAE trained briefly on the bi-modal MoG set (Sec. IV): a merges classes 5, 6, 7 (and 0, 8),
    b merges 0 and 9. Its shared naive Bayes classifier (Table I) reads the class from z."""
    torch.manual_seed(0)
    data = make_mog(200, seed=0)
    mods = [ModalityConfig(name=n, dim=2, hidden=(64, 32), likelihood="bernoulli") for n in "ab"]
    model = build_model(ModelConfig(modalities=mods, latent_dim=2, joint_hidden=(32,), beta_norm=0.01))
    x = {"a": torch.from_numpy(data.a), "b": torch.from_numpy(data.b)}
    optimiser = torch.optim.Adam(model.parameters(), 3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(1500):
        batch = torch.randint(0, len(data), (256,), generator=generator)
        loss = model({k: v[batch] for k, v in x.items()}).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    classifier = shared_classifier(model, x, data.labels)
    test = make_mog(30, seed=1)
    return model, lambda z: torch.from_numpy(classifier.predict_proba(z.double().numpy())).float(), test


def _mog_gain(mog, sensed):
    model, probabilities, test = mog
    x = {"a": torch.from_numpy(test.a), "b": torch.from_numpy(test.b)}
    with torch.no_grad():
        q, both = model.encode({n: x[n] for n in sensed}), model.encode(x)
    gain = expected_gain(
        model, q, [sensed] * len(test), [["a"], ["b"]], samples=32, class_probabilities=probabilities,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    realised = gain.entropy_now - class_entropy(probabilities(both.mean))  # sensing the other modality for real
    return gain, realised, test.labels


@pytest.mark.slow
def test_mog_a_belief_on_a_merged_cluster_values_sensing_b(mog):
    gain, realised, labels = _mog_gain(mog, ["a"])
    merged = np.isin(labels, (5, 6, 7))
    kl, reduction = gain.kl[merged].mean(0), gain.entropy_reduction[merged].mean(0)
    assert kl[1] > 4 * kl[0] and kl[1] > 0.3, kl  # columns: sensing a again, sensing b
    assert reduction[1] > 0.2 and reduction[1] > reduction[0] + 0.15, reduction
    # Imagination predicts what sensing b really does to the class entropy.
    assert abs(float(reduction[1] - realised[merged].mean())) < 0.15
    alone = np.isin(labels, (1, 2, 3, 4))  # a single class on its grid point: nothing left to learn
    assert gain.entropy_reduction[alone].abs().mean() < 0.05


@pytest.mark.slow
def test_mog_b_belief_on_its_merged_pair_values_sensing_a(mog):
    gain, realised, labels = _mog_gain(mog, ["b"])
    merged = np.isin(labels, (0, 9))
    kl, reduction = gain.kl[merged].mean(0), gain.entropy_reduction[merged].mean(0)
    assert kl[0] > 4 * kl[1] and reduction[0] > 0.2 and reduction[0] > reduction[1] + 0.15, (kl, reduction)
    assert abs(float(reduction[0] - realised[merged].mean())) < 0.15


@pytest.mark.slow
def test_mog_a_and_b_belief_values_no_sensing(mog):
    gain, _, _ = _mog_gain(mog, ["a", "b"])
    assert gain.kl.mean() < 0.15 and gain.entropy_reduction.abs().mean() < 0.05
    a_only, _, labels = _mog_gain(mog, ["a"])
    merged = np.isin(labels, (5, 6, 7))
    assert a_only.kl[merged, 1].mean() > 3 * gain.kl[merged, 1].mean()
