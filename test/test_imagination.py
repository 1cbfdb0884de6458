"""The shipped perception model's imagination (issue 19): expected gains of sensings for its beliefs,
and the views it imagines for a latent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from m2vae_fusion.model.config import MODALITIES
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.resources import default_model_dir

CANDIDATES = [["camera"], ["lidar"], ["ir"], list(MODALITIES)]


@pytest.fixture(scope="module")
def model() -> PerceptionModel:
    return PerceptionModel.load(default_model_dir())


@pytest.fixture(scope="module")
def features(model) -> dict[str, np.ndarray]:
    """Features of three objects as the beta-VAEs see them: the encoders' views of imagined objects."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((3, model.fusion.latent_dim)).astype(np.float32)
    return {m: model.features(m, model.imagine(z, m)) for m in MODALITIES}


def test_gains_of_every_candidate_for_new_partial_and_full_beliefs(model, features):
    beliefs = [None, *model.belief_batch({"camera": features["camera"]}), *model.belief_batch(features)]
    gain = model.expected_gains(beliefs, CANDIDATES, samples=8)
    assert gain.kl.shape == (7, 4) and gain.entropy_now.shape == (7,) and gain.entropy_reduction.shape == (7, 4)
    classes = len(model.labels.classes)
    assert float(gain.entropy_now[0]) > 0.5 * np.log(classes)  # nothing sensed: the prior's z is ambiguous
    # Sensing the other sensors adds more to a camera-only belief than to one that has them all.
    camera_only, complete = gain.kl[1:4], gain.kl[4:]
    assert (camera_only[:, 1:3].mean() > 2 * complete[:, 1:3].mean()).item()
    # A complete belief sensed again with everything gains only the re-encoding drift, the same for every candidate.
    assert np.allclose(complete[:, 3].numpy(), complete[:, 0].numpy())


def test_gains_are_seeded(model, features):
    beliefs = model.belief_batch({"lidar": features["lidar"]})
    first, second = (model.expected_gains(beliefs, CANDIDATES, samples=4, seed=7).kl for _ in range(2))
    assert np.array_equal(first.numpy(), second.numpy())
    assert not np.array_equal(first.numpy(), model.expected_gains(beliefs, CANDIDATES, samples=4, seed=8).kl.numpy())


def test_imagined_views_have_each_sensors_layout(model):
    z = np.zeros((2, model.fusion.latent_dim), np.float32)
    for modality in MODALITIES:
        views = model.imagine(z, modality)
        assert views.shape == (2, model.config.preprocessors.modality(modality).dim) and np.isfinite(views).all()
    pixels = model.config.perception.features.crop_pixels
    camera = model.imagine(z, "camera").reshape(2, 3, pixels, pixels)
    assert camera.min() >= 0.0 and camera.max() <= 1.0  # a Bernoulli decoder's means: an image
    with pytest.raises(ValueError, match="unknown sensor 'radar'"):
        model.imagine(z, "radar")


def test_an_imagined_view_encodes_back_near_its_latent(model):
    """Decoding z into a sensor's view and encoding that view again lands near the sensor's part of z:
    the imagination speaks the encoders' language (what imagined crops on the viz topic rely on)."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((16, model.fusion.latent_dim)).astype(np.float32)
    for modality in MODALITIES:
        decoded = model.fusion.reconstruct(torch.from_numpy(z), [modality])[modality].detach().numpy()
        again = model.features(modality, model.imagine(z, modality))
        spread = decoded.std(0).mean()
        assert np.abs(again - decoded).mean() < spread, modality


# --- model.sensing_gains: gains of tracked objects, cached until their belief changes ----------------


def _store_with_objects(model, features):
    from m2vae_fusion.model.beliefs import BeliefStore, Encoding

    store = BeliefStore(model, "robot1")
    store.update(
        [Encoding("camera", model.model_id, features["camera"][i], np.array([i * 1.0, 0.0, 0.0]), 1, "robot1") for i in range(3)]
    )
    return store


def test_sensing_gains_estimate_changed_beliefs_only(model, features, monkeypatch):
    from m2vae_fusion.model.sensing_gains import SensingGains, class_entropy

    store = _store_with_objects(model, features)
    gains = SensingGains(model, [("lidar", "ir"), MODALITIES], samples=4)
    assert gains.first_look.best.entropy_reduction > 0.2  # a first look at anything tells a lot
    first = gains.of(store.objects.values())
    assert set(first) == set(store.objects) and all(len(g.gains) == 2 for g in first.values())
    obj = next(iter(store.objects.values()))
    assert first[obj.object_id].class_entropy == pytest.approx(class_entropy(obj.class_probabilities))
    assert first[obj.object_id].gains[0].modalities == ("lidar", "ir") and first[obj.object_id].gains[1].modalities == MODALITIES
    calls = []
    original = model.expected_gains
    monkeypatch.setattr(
        model, "expected_gains", lambda beliefs, *a, **k: calls.append(len(beliefs)) or original(beliefs, *a, **k)
    )
    assert gains.of(store.objects.values()) == first and calls == []  # nothing changed: nothing estimated
    from m2vae_fusion.model.beliefs import Encoding

    store.update([Encoding("lidar", model.model_id, features["lidar"][0], np.zeros(3), 2, "robot1")])
    after = gains.of(store.objects.values())
    assert calls == [1]  # the one object that took a new sensing
    changed = next(o for o in store.objects.values() if "lidar" in o.sensed)
    assert after[changed.object_id].gains[0].entropy_reduction < first[changed.object_id].gains[0].entropy_reduction + 1e-6
    del store.objects[changed.object_id]
    assert changed.object_id not in gains.of(store.objects.values())


def test_candidates_parse_from_parameter_text():
    from m2vae_fusion.core.errors import ConfigError
    from m2vae_fusion.model.sensing_gains import parse_candidates

    assert parse_candidates(["ir+camera", "lidar"], MODALITIES) == [("camera", "ir"), ("lidar",)]
    with pytest.raises(ConfigError, match="'camera\\+sonar'"):
        parse_candidates(["camera+sonar"], MODALITIES)
    with pytest.raises(ConfigError, match="at least one"):
        parse_candidates([], MODALITIES)
