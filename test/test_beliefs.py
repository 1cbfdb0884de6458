"""The fusion node's object table (m2vae_fusion.stack.beliefs) without ROS, on a tiny perception model
trained in about a second on synthetic sensor views: association, in-place fusion in every order,
the repeat rule, bursts, forgetting, attribute marginals and the checks on incoming encodings."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.sim.classes import CLASSES
from m2vae_fusion.stack.beliefs import ATTRIBUTES, BeliefStore, BeliefStoreConfig, Encoding, attribute_probabilities
from m2vae_fusion.stack.config import MODALITIES, load_stack_config
from m2vae_fusion.stack.dataset import Observations
from m2vae_fusion.stack.model import PerceptionModel
from m2vae_fusion.stack.train import train_fusion, train_preprocessors
from test_stack import tiny_config

FEATURE_DIM = 4  # tiny_config's
S = 1_000_000_000  # ns per second


def train_tiny_model(folder: Path) -> Path:
    """A perception model folder trained on 64 synthetic views per sensor, where the camera sees the
    colour, the LiDAR the shape and the IR the surface (each a brighter or darker view)."""
    config = load_stack_config(tiny_config(folder / "tiny.yaml"))
    rng = np.random.default_rng(0)
    labels = np.arange(64) % len(CLASSES)

    def views(dim: int, bit: int) -> np.ndarray:
        level = np.where((labels >> bit) & 1, 0.7, 0.3)[:, None]
        return np.clip(level + 0.05 * rng.standard_normal((len(labels), dim)), 0, 1).astype(np.float32)

    # CLASSES = colour x shape x surface: bit 2 colour, bit 1 shape, bit 0 surface
    observations = Observations.seen_by_all(
        {"camera": views(3 * 16 * 16, 2), "lidar": views(64, 1), "ir": views(6, 0)},
        labels, np.zeros((len(labels), 3)), np.arange(len(labels), dtype=float),
    )
    out = folder / "model"
    train_preprocessors(config, observations, out, log=lambda _: None)
    train_fusion(config, observations, out, log=lambda _: None)
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> PerceptionModel:
    return PerceptionModel.load(train_tiny_model(tmp_path_factory.mktemp("beliefs")))


@pytest.fixture
def store(model: PerceptionModel) -> BeliefStore:
    return BeliefStore(model)


def features(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(FEATURE_DIM).astype(np.float32)


def encoding(model: PerceptionModel, modality: str, seed: int = 0, position=(1.0, 2.0, 0.03), stamp_s: float = 10.0, **changes) -> Encoding:
    fields = dict(
        modality=modality, model_id=model.model_id, features=features(seed), position=np.asarray(position, float),
        stamp_ns=round(stamp_s * S), robot_id="robot1",
    )
    fields.update(changes)
    return Encoding(**fields)


def test_association_within_and_outside_the_gate(store: BeliefStore, model: PerceptionModel) -> None:
    (first,) = store.update([encoding(model, "lidar", position=(1.0, 2.0, 0.03))]).updated
    # 5 cm away (and at another height, which association ignores): the same object
    result = store.update([encoding(model, "camera", position=(1.03, 2.04, 0.10))])
    assert [o.object_id for o in result.updated] == [first.object_id] and not result.created
    assert first.sensed == ("camera", "lidar")
    np.testing.assert_allclose(first.position, [1.015, 2.02, 0.065])  # running mean of both
    # 7 cm from that mean: beyond the 6 cm gate, a new object
    result = store.update([encoding(model, "ir", position=(1.085, 2.02, 0.03))])
    assert result.created == [result.updated[0].object_id] != [first.object_id]
    assert len(store.objects) == 2
    # nearest wins when two objects are within the gate
    result = store.update([encoding(model, "ir", seed=1, position=(1.06, 2.02, 0.03))])
    assert result.updated[0].object_id != first.object_id and result.updated[0].sensed == ("ir",)
    # a wider gate merges what the default separates
    wide = BeliefStore(model, BeliefStoreConfig(gate=0.2))
    wide.update([encoding(model, "lidar", position=(1.0, 2.0, 0.0)), encoding(model, "ir", position=(1.15, 2.0, 0.0))])
    assert len(wide.objects) == 1


@pytest.mark.parametrize("order", list(itertools.permutations(MODALITIES)))
def test_every_order_covers_all_three_by_in_place_fusion(model: PerceptionModel, order: tuple[str, ...]) -> None:
    store = BeliefStore(model)
    seeds = {"camera": 1, "lidar": 2, "ir": 3}
    expected = None
    for step, modality in enumerate(order):
        (obj,) = store.update([encoding(model, modality, seed=seeds[modality], stamp_s=10.0 + step)]).updated
        new = {modality: features(seeds[modality])}
        expected = model.fuse(expected, new) if expected else model.belief(new)
        assert set(obj.sensed) == set(order[: step + 1])
    assert obj.sensed == MODALITIES and obj.sequence == 3 and obj.last_update_ns == 12 * S
    # Eq. 18 step by step, not a re-encoding of the stored raw features
    np.testing.assert_allclose(obj.belief.mean, expected.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(obj.belief.log_var, expected.log_var, rtol=1e-5, atol=1e-6)
    assert not np.allclose(obj.belief.mean, model.belief({m: features(s) for m, s in seeds.items()}).mean, atol=1e-4)
    assert obj.class_probabilities.shape == (len(CLASSES),) and obj.class_probabilities.sum() == pytest.approx(1.0)


def test_a_repeat_fuses_the_mean_of_the_modality_s_measurements(store: BeliefStore, model: PerceptionModel) -> None:
    store.update([encoding(model, "camera", seed=1)])
    (obj,) = store.update([encoding(model, "lidar", seed=2)]).updated
    before = obj.belief
    (obj,) = store.update([encoding(model, "camera", seed=3, stamp_s=11.0)]).updated
    assert obj.sensed == ("camera", "lidar") and obj.sequence == 3
    camera = obj.evidence["camera"]
    assert camera.count == 2
    np.testing.assert_array_equal(camera.last, features(3))
    mean = (features(1).astype(np.float64) + features(3)) / 2
    np.testing.assert_allclose(camera.mean, mean)
    # the camera enters once, as the mean of its two views; the LiDAR comes from the stored z
    expected = model.fuse(before, {"camera": mean.astype(np.float32)})
    np.testing.assert_allclose(obj.belief.mean, expected.mean, rtol=1e-5, atol=1e-6)
    newest_only = model.fuse(before, {"camera": features(3)})
    assert not np.allclose(obj.belief.mean, newest_only.mean, atol=1e-4)
    # a third view: mean of three
    (obj,) = store.update([encoding(model, "camera", seed=4, stamp_s=12.0)]).updated
    np.testing.assert_allclose(obj.evidence["camera"].mean, (features(1).astype(np.float64) + features(3) + features(4)) / 3)


def test_the_same_view_again_does_not_sharpen_the_belief(store: BeliefStore, model: PerceptionModel) -> None:
    """No double counting: re-sensing an identical view many times leaves the posterior spread of one view."""
    (obj,) = store.update([encoding(model, "camera", seed=1), encoding(model, "lidar", seed=2)]).updated
    once = obj.belief
    for k in range(20):
        (obj,) = store.update([encoding(model, "camera", seed=1, stamp_s=11.0 + k)]).updated
    assert obj.evidence["camera"].count == 21
    # with the re-encoding of the decoded LiDAR the posterior may move a little, but its spread
    # must not shrink as if 21 independent camera views had been fused
    assert np.exp(obj.belief.log_var).mean() > 0.5 * np.exp(once.log_var).mean()


def test_a_burst_is_one_update_per_object(store: BeliefStore, model: PerceptionModel) -> None:
    burst = [
        encoding(model, "camera", seed=1, stamp_s=10.0),
        encoding(model, "lidar", seed=2, position=(1.02, 2.0, 0.03), stamp_s=10.1),
        encoding(model, "lidar", seed=5, position=(3.0, 0.0, 0.03), stamp_s=10.2),  # another object
        encoding(model, "camera", seed=3, stamp_s=10.3),  # repeat within the burst
    ]
    result = store.update(burst)
    assert len(result.updated) == 2 == len(result.created) and not result.rejected
    near, far = result.updated
    assert near.sensed == ("camera", "lidar") and near.sequence == 1 and near.last_update_ns == round(10.3 * S)
    assert far.sensed == ("lidar",)
    # a new object seen by two sensors in one burst: their joint subset encoder, no fusion chain
    camera = ((features(1).astype(np.float64) + features(3)) / 2).astype(np.float32)
    expected = model.belief({"camera": camera, "lidar": features(2)})
    np.testing.assert_allclose(near.belief.mean, expected.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(far.belief.mean, model.belief({"lidar": features(5)}).mean, rtol=1e-5, atol=1e-6)
    assert near.contributors == ("robot1",)
    store.update([encoding(model, "ir", robot_id="robot2", stamp_s=9.0)])
    assert near.contributors == ("robot1", "robot2") and near.last_update_ns == round(10.3 * S)  # an older stamp keeps the newest


def test_forgetting_drops_only_stale_objects(store: BeliefStore, model: PerceptionModel) -> None:
    store.update([encoding(model, "lidar", position=(0, 0, 0), stamp_s=0.0), encoding(model, "lidar", position=(2, 0, 0), stamp_s=30.0)])
    first, second = store.objects
    assert store.forget(60 * S) == [] and len(store.objects) == 2  # exactly forget_after_s old: kept
    assert store.forget(61 * S) == [first] and list(store.objects) == [second]
    assert store.forget(91 * S) == [second] and not store.objects
    quick = BeliefStore(model, BeliefStoreConfig(forget_after_s=1.0))
    quick.update([encoding(model, "ir", stamp_s=5.0)])
    assert quick.forget(round(6.5 * S)) and not quick.objects


def test_attribute_marginals(store: BeliefStore, model: PerceptionModel) -> None:
    (obj,) = store.update([encoding(model, "camera"), encoding(model, "ir")]).updated
    attributes = obj.attributes()
    assert list(attributes) == list(ATTRIBUTES) == ["colour", "shape", "surface"]
    for name, p in attributes.items():
        assert p.shape == (len(ATTRIBUTES[name]),) and p.sum() == pytest.approx(1.0) and np.all(p >= 0)
    one_hot = np.zeros(len(CLASSES))
    one_hot[CLASSES.index("green_cube_matte")] = 1.0
    marginals = attribute_probabilities(one_hot)
    assert [ATTRIBUTES[n][int(np.argmax(p))] for n, p in marginals.items()] == ["green", "cube", "matte"]
    uniform = attribute_probabilities(np.full(len(CLASSES), 1 / len(CLASSES)))
    assert all(np.allclose(p, 0.5) for p in uniform.values())
    with pytest.raises(ValueError, match="shape"):
        attribute_probabilities(np.ones(3) / 3)


@pytest.mark.parametrize(
    "changes, kind, reason",
    [
        ({"model_id": "m2vae-000000000000"}, "model_id", "model_id 'm2vae-000000000000' is not the fusion model's"),
        ({"modality": "radar"}, "modality", "unknown modality 'radar'"),
        ({"features": np.zeros(FEATURE_DIM + 1, np.float32)}, "size", "shape (5,)"),
        ({"features": np.array([0.0, np.nan, 0.0, 0.0], np.float32)}, "non_finite", "NaN or inf"),
        ({"features": np.array([0.0, np.inf, 0.0, 0.0], np.float32)}, "non_finite", "NaN or inf"),
        ({"position": np.array([np.nan, 0.0, 0.0])}, "non_finite", "position"),
    ],
)
def test_bad_encodings_are_rejected_and_change_nothing(store: BeliefStore, model: PerceptionModel, changes: dict, kind: str, reason: str) -> None:
    changes = dict(changes)
    (obj,) = store.update([encoding(model, "lidar")]).updated
    snapshot = (obj.belief, obj.position.copy(), obj.sequence)
    bad = encoding(model, changes.pop("modality", "camera"), **changes)
    result = store.update([bad, encoding(model, "ir", position=(5.0, 5.0, 0.0))])
    (rejection,) = result.rejected
    assert rejection.encoding is bad and rejection.kind == kind and reason in rejection.reason
    assert [o.sensed for o in result.updated] == [("ir",)]  # the good one of the burst still goes through
    assert (obj.belief, obj.sequence) == snapshot[::2] and np.array_equal(obj.position, snapshot[1])


def test_transform_reexpresses_positions(store: BeliefStore, model: PerceptionModel) -> None:
    (obj,) = store.update([encoding(model, "lidar", position=(1.0, 0.0, 0.05))]).updated
    map_to_odom = np.eye(4)
    map_to_odom[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # odom turned 90 degrees in map
    map_to_odom[:3, 3] = [0.5, 0.0, 0.0]
    store.transform(map_to_odom)
    np.testing.assert_allclose(obj.position, [0.5, 1.0, 0.05])


@pytest.mark.parametrize("values", [{"gate": 0.0}, {"gate": float("nan")}, {"forget_after_s": -1.0}])
def test_config_is_checked(values) -> None:
    with pytest.raises(ConfigError, match=next(iter(values))):
        BeliefStoreConfig(**values)
