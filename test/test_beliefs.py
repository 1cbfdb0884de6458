"""The fusion node's object table (m2vae_fusion.model.beliefs) without ROS, on a tiny perception model
trained in about a second on synthetic sensor views: association, in-place fusion in every order,
the repeat rule, bursts, forgetting, attribute marginals and the checks on incoming encodings; and
other robots' latents: fused in place into the missing modalities only, never shared back (no
echo), objects known from them alone, the checks and their counted reasons, the sharing rate."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from test_stack import tiny_config

from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.model.beliefs import (
    MAX_ABS_LOG_VAR,
    MAX_ABS_MEAN,
    BeliefStore,
    BeliefStoreConfig,
    Encoding,
    Latent,
    TrackedObject,
)
from m2vae_fusion.model.config import MODALITIES, load_stack_config
from m2vae_fusion.model.perception_model import Belief, PerceptionModel
from m2vae_fusion.model.plane_index import PlaneIndex
from m2vae_fusion.perception.labels import default_labels
from m2vae_fusion.training.dataset import Observations
from m2vae_fusion.training.train import train_fusion, train_preprocessors

CLASSES = default_labels().classes  # the paper's eight AMiRo classes (config/labels.yaml)

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
        labels,
        np.zeros((len(labels), 3)),
        np.arange(len(labels), dtype=float),
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
    """The default gate; forgetting after 60 s so the tests' stamps stay short."""
    return BeliefStore(model, "robot1", BeliefStoreConfig(forget_after_s=60.0))


def features(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(FEATURE_DIM).astype(np.float32)


def encoding(
    model: PerceptionModel, modality: str, seed: int = 0, position=(1.0, 2.0, 0.03), stamp_s: float = 10.0, **changes
) -> Encoding:
    fields = dict(
        modality=modality,
        model_id=model.model_id,
        features=features(seed),
        position=np.asarray(position, float),
        stamp_ns=round(stamp_s * S),
        robot_id="robot1",
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
    # 11 cm from that mean: beyond the 10 cm gate, a new object
    result = store.update([encoding(model, "ir", position=(1.125, 2.02, 0.03))])
    assert result.created == [result.updated[0].object_id] != [first.object_id]
    assert len(store.objects) == 2
    # nearest wins when two objects are within the gate
    result = store.update([encoding(model, "ir", seed=1, position=(1.10, 2.02, 0.03))])
    assert result.updated[0].object_id != first.object_id and result.updated[0].sensed == ("ir",)
    # a wider gate merges what the default separates
    wide = BeliefStore(model, "robot1", BeliefStoreConfig(gate=0.25))
    wide.update([encoding(model, "lidar", position=(1.0, 2.0, 0.0)), encoding(model, "ir", position=(1.15, 2.0, 0.0))])
    assert len(wide.objects) == 1


@pytest.mark.parametrize("order", list(itertools.permutations(MODALITIES)))
def test_every_order_covers_all_three_by_in_place_fusion(model: PerceptionModel, order: tuple[str, ...]) -> None:
    store = BeliefStore(model, "robot1")
    seeds = {"camera": 1, "lidar": 2, "ir": 3}
    expected = None
    for step, modality in enumerate(order):
        (obj,) = store.update([encoding(model, modality, seed=seeds[modality], stamp_s=10.0 + step)]).updated
        new = {modality: features(seeds[modality])}
        expected = model.fuse(expected, new) if expected else model.belief(new)
        assert set(obj.sensed) == set(order[: step + 1])
    assert obj.sensed == MODALITIES and obj.last_update_ns == 12 * S and obj.fused is obj.belief
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
    assert obj.sensed == ("camera", "lidar")
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
    assert near.sensed == ("camera", "lidar") and near.last_update_ns == round(10.3 * S)
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
    store.update(
        [encoding(model, "lidar", position=(0, 0, 0), stamp_s=0.0), encoding(model, "lidar", position=(2, 0, 0), stamp_s=30.0)]
    )
    first, second = store.objects
    assert store.forget(60 * S) == [] and len(store.objects) == 2  # exactly forget_after_s old: kept
    assert store.forget(61 * S) == [first] and list(store.objects) == [second]
    assert store.forget(91 * S) == [second] and not store.objects
    quick = BeliefStore(model, "robot1", BeliefStoreConfig(forget_after_s=1.0))
    quick.update([encoding(model, "ir", stamp_s=5.0)])
    assert quick.forget(round(6.5 * S)) and not quick.objects


def test_attribute_marginals(store: BeliefStore, model: PerceptionModel) -> None:
    (obj,) = store.update([encoding(model, "camera"), encoding(model, "ir")]).updated
    labels = model.labels
    ATTRIBUTES = dict(labels.attributes)
    attributes = labels.marginals(obj.class_probabilities)
    assert list(attributes) == list(ATTRIBUTES) == ["colour", "shape", "surface"]
    for name, p in attributes.items():
        assert p.shape == (len(ATTRIBUTES[name]),) and p.sum() == pytest.approx(1.0) and np.all(p >= 0)
    one_hot = np.zeros(len(CLASSES))
    one_hot[CLASSES.index("green_cube_matte")] = 1.0
    marginals = labels.marginals(one_hot)
    assert [ATTRIBUTES[n][int(np.argmax(p))] for n, p in marginals.items()] == ["green", "cube", "matte"]
    uniform = labels.marginals(np.full(len(CLASSES), 1 / len(CLASSES)))
    assert all(np.allclose(p, 0.5) for p in uniform.values())
    with pytest.raises(ValueError, match="shape"):
        labels.marginals(np.ones(3) / 3)


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
def test_bad_encodings_are_rejected_and_change_nothing(
    store: BeliefStore, model: PerceptionModel, changes: dict, kind: str, reason: str
) -> None:
    changes = dict(changes)
    (obj,) = store.update([encoding(model, "lidar")]).updated
    snapshot = (obj.belief, obj.position.copy(), obj.last_update_ns)
    bad = encoding(model, changes.pop("modality", "camera"), **changes)
    result = store.update([bad, encoding(model, "ir", position=(5.0, 5.0, 0.0))])
    (rejection,) = result.rejected
    assert rejection.item is bad and rejection.kind == kind and reason in rejection.reason
    assert [o.sensed for o in result.updated] == [("ir",)]  # the good one of the burst still goes through
    assert (obj.belief, obj.last_update_ns) == snapshot[::2] and np.array_equal(obj.position, snapshot[1])


def test_transform_reexpresses_positions(store: BeliefStore, model: PerceptionModel) -> None:
    (obj,) = store.update([encoding(model, "lidar", position=(1.0, 0.0, 0.05))]).updated
    map_to_odom = np.eye(4)
    map_to_odom[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # odom turned 90 degrees in map
    map_to_odom[:3, 3] = [0.5, 0.0, 0.0]
    store.transform(map_to_odom)
    np.testing.assert_allclose(obj.position, [0.5, 1.0, 0.05])


@pytest.mark.parametrize(
    "values",
    [
        {"gate": 0.0},
        {"gate": float("nan")},
        {"forget_after_s": -1.0},
        {"latent_rate_hz": 0},
        {"foreign_rate_hz": float("inf")},
        {"reshare_after_s": 0.0},
    ],
)
def test_config_is_checked(values) -> None:
    with pytest.raises(ConfigError, match=next(iter(values))):
        BeliefStoreConfig(**values)


# ---------------------------------------------------------------- other robots' latents


def shared(obj: TrackedObject, robot_id: str, model_id: str) -> Latent:
    """The latent a robot sends of `obj` (as the node's latent_message, without ROS)."""
    return Latent(
        robot_id,
        obj.object_id,
        model_id,
        obj.sequence,
        obj.own_sensed,
        obj.contributors,
        obj.belief.mean.copy(),
        obj.belief.log_var.copy(),
        obj.position.copy(),
        obj.own_update_ns,
    )


def latent(
    model: PerceptionModel,
    robot_id: str = "robot1",
    object_id: str = "object_1",
    sequence: int = 1,
    modalities=("camera",),
    position=(1.0, 2.0, 0.03),
    stamp_s: float = 10.0,
    seed: int = 0,
    **changes,
) -> Latent:
    rng = np.random.default_rng(seed)
    dim = model.config.fusion.latent_dim
    fields = dict(
        robot_id=robot_id,
        object_id=object_id,
        model_id=model.model_id,
        sequence=sequence,
        modalities=tuple(modalities),
        contributors=(robot_id,),
        mean=rng.standard_normal(dim).astype(np.float32),
        log_var=np.full(dim, -1.0, np.float32),
        position=np.asarray(position, float),
        stamp_ns=round(stamp_s * S),
    )
    fields.update(changes)
    return Latent(**fields)


@pytest.fixture
def robots(model: PerceptionModel) -> tuple[BeliefStore, BeliefStore]:
    """robot1 has sensed one object with all three sensors, robot2 the same one without a camera."""
    robot1, robot2 = BeliefStore(model, "robot1"), BeliefStore(model, "robot2")
    robot1.update([encoding(model, m, seed=k) for k, m in enumerate(MODALITIES)])
    robot2.update(
        [encoding(model, m, seed=10 + k, robot_id="robot2", position=(1.01, 2.0, 0.03)) for k, m in enumerate(("lidar", "ir"))]
    )
    return robot1, robot2


def test_a_foreign_latent_fills_the_missing_modality_in_place(robots, model: PerceptionModel) -> None:
    robot1, robot2 = robots
    (own1,) = robot1.due_latents(0.0)
    (obj,) = robot2.objects.values()
    own2 = obj.belief
    result = robot2.add_latents([shared(own1, "robot1", model.model_id)], 0.0)
    assert result.updated == [obj] and not result.created and not result.rejected
    assert obj.sensed == MODALITIES and obj.contributing_robots == ("robot2", "robot1")
    # Eq. 18: robot1's z decoded into the camera only, encoded with robot2's own LiDAR and IR means
    expected = model.fuse(
        Belief(own1.belief.mean, own1.belief.log_var, ("camera",)),
        {m: obj.evidence[m].mean.astype(np.float32) for m in ("lidar", "ir")},
    )
    np.testing.assert_allclose(obj.fused.mean, expected.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(obj.class_probabilities, model.class_probabilities(expected.mean[None])[0], rtol=1e-5)
    # the own belief, which robot2 shares, has nothing of robot1's: no echo
    assert obj.belief is own2 and obj.own_sensed == ("lidar", "ir") and obj.contributors == ("robot2",)
    (out,) = robot2.due_latents(0.0)
    back = shared(out, "robot2", model.model_id)
    assert back.modalities == ("lidar", "ir") and back.contributors == ("robot2",) and np.array_equal(back.mean, own2.mean)
    # robot1 sensed all of it itself: robot2's latent covers nothing missing and is not used
    (obj1,) = robot1.objects.values()
    assert robot1.add_latents([back], 0.0).updated == [obj1]
    assert obj1.used is None and obj1.fused is obj1.belief and obj1.contributing_robots == ("robot1",)
    # robot2's own sensing goes on fusing into its own belief; the foreign latent stays in the fused one
    robot2.update([encoding(model, "lidar", seed=20, robot_id="robot2", position=(1.0, 2.0, 0.03), stamp_s=11.0)])
    assert obj.own_sensed == ("lidar", "ir") and obj.sensed == MODALITIES and obj.used.robot_id == "robot1"


def test_own_sensing_wins_over_the_foreign_reconstruction(robots, model: PerceptionModel) -> None:
    _, robot2 = robots
    (obj,) = robot2.objects.values()
    own = {m: obj.evidence[m].mean.astype(np.float32) for m in ("lidar", "ir")}
    # covers the camera and the LiDAR: only the camera is decoded from it
    x = latent(model, modalities=("camera", "lidar"), seed=3)
    robot2.add_latents([x], 0.0)
    expected = model.fuse(Belief(x.mean, x.log_var, ("camera",)), own)
    np.testing.assert_allclose(obj.fused.mean, expected.mean, rtol=1e-5, atol=1e-6)
    assert not np.allclose(
        obj.fused.mean, model.fuse(Belief(x.mean, x.log_var, ("camera", "lidar")), {"ir": own["ir"]}).mean, atol=1e-4
    )
    # a latent of modalities robot2 has sensed itself changes nothing
    before = obj.fused
    robot2.add_latents([latent(model, robot_id="robot3", modalities=("lidar", "ir"), seed=4)], 0.0)
    assert np.array_equal(obj.fused.mean, before.mean) and obj.used.robot_id == "robot1"


def test_the_latent_covering_most_missing_modalities_is_used_newest_among_equals(model: PerceptionModel) -> None:
    store = BeliefStore(model, "robot2")
    store.update([encoding(model, "lidar", robot_id="robot2")])
    (obj,) = store.objects.values()
    store.add_latents([latent(model, robot_id="robot3", modalities=("camera",), stamp_s=12.0)], 0.0)
    assert obj.used.robot_id == "robot3" and obj.sensed == MODALITIES[:2]
    store.add_latents([latent(model, robot_id="robot1", modalities=("camera", "ir"), stamp_s=11.0)], 0.0)
    assert obj.used.robot_id == "robot1" and obj.sensed == MODALITIES and obj.contributing_robots == ("robot2", "robot1")
    store.add_latents([latent(model, robot_id="robot4", modalities=("camera", "ir", "lidar"), stamp_s=11.5)], 0.0)
    assert obj.used.robot_id == "robot4"  # two missing, as robot1's, and newer
    assert obj.last_update_ns == round(11.5 * S) == max(obj.own_update_ns, obj.used.stamp_ns)


def test_an_object_known_from_a_foreign_latent_only(store: BeliefStore, model: PerceptionModel) -> None:
    x = latent(model, robot_id="robot2", modalities=("ir", "camera"), position=(3.0, 1.0, 0.03))
    result = store.add_latents([x], 0.0)
    (object_id,) = result.created
    obj = store.objects[object_id]
    assert obj.belief is None and obj.sensed == ("camera", "ir") and obj.contributing_robots == ("robot2",)
    np.testing.assert_array_equal(obj.fused.mean, x.mean)
    np.testing.assert_allclose(obj.class_probabilities, model.class_probabilities(x.mean[None])[0])
    np.testing.assert_allclose(obj.position, x.position)
    assert store.due_latents(0.0) == []  # nothing of its own to share
    # its next latent goes to the same object even a little further away; the position follows it
    store.add_latents(
        [latent(model, robot_id="robot2", sequence=2, modalities=("ir", "camera"), position=(3.05, 1.03, 0.03), stamp_s=11.0)],
        0.0,
    )
    assert list(store.objects) == [object_id] and obj.position[0] == pytest.approx(3.05)
    # own sensing of it: associated, shared from then on (own modalities only)
    (same,) = store.update([encoding(model, "lidar", position=(3.04, 1.0, 0.03), stamp_s=12.0)]).updated
    assert same is obj and obj.own_sensed == ("lidar",) and obj.sensed == MODALITIES and obj.position[0] == pytest.approx(3.04)
    (due,) = store.due_latents(0.0)
    assert due is obj and obj.sequence == 1 and shared(obj, "robot1", model.model_id).modalities == ("lidar",)


@pytest.mark.parametrize(
    "changes, kind, reason",
    [
        ({"robot_id": "robot1"}, "own", "robot_id 'robot1' is this robot's"),
        ({"contributors": ("robot2", "robot1")}, "echo", "include this robot 'robot1'"),
        ({"model_id": "m2vae-000000000000"}, "model_id", "model_id 'm2vae-000000000000' is not the fusion model's"),
        ({"mean": np.zeros(2, np.float32)}, "size", "shapes (2,) and (3,)"),
        ({"log_var": np.zeros(4, np.float32)}, "size", "shapes (3,) and (4,)"),
        ({"mean": np.array([0.0, np.nan, 0.0], np.float32)}, "non_finite", "NaN or inf"),
        ({"log_var": np.array([0.0, -np.inf, 0.0], np.float32)}, "non_finite", "NaN or inf"),
        ({"position": np.array([0.0, np.inf, 0.0])}, "non_finite", "position"),
        ({"mean": np.array([0.0, 2 * MAX_ABS_MEAN, 0.0], np.float32)}, "magnitude", "|mean| up to 200"),
        ({"log_var": np.array([0.0, -2 * MAX_ABS_LOG_VAR, 0.0], np.float32)}, "magnitude", "|log_var| up to 60"),
        ({"modalities": ("radar",)}, "modality", "['radar'] are not distinct ones"),
        ({"modalities": ()}, "modality", "modalities []"),
        ({"modalities": ("camera", "camera")}, "modality", "not distinct"),
    ],
)
def test_bad_latents_are_rejected_with_a_counted_reason(
    store: BeliefStore, model: PerceptionModel, changes: dict, kind: str, reason: str
) -> None:
    (obj,) = store.update([encoding(model, "lidar")]).updated
    bad = latent(model, **{"robot_id": "robot2", **changes})
    good = latent(model, robot_id="robot3", position=(5.0, 5.0, 0.0))
    result = store.add_latents([bad, good], 0.0)
    (rejection,) = result.rejected
    assert rejection.item is bad and rejection.kind == kind and reason in rejection.reason, rejection.reason
    assert store.latent_rejections == {kind: 1}
    assert [o.sensed for o in result.updated] == [("camera",)] and obj.used is None and obj.fused is obj.belief


def test_duplicate_and_stale_latents_are_rejected(store: BeliefStore, model: PerceptionModel) -> None:
    first = latent(model, robot_id="robot2", sequence=5, stamp_s=10.0)
    assert not store.add_latents([first], 0.0).rejected
    (obj,) = store.objects.values()

    def kinds(*latents: Latent) -> list[str]:
        return [r.kind for r in store.add_latents(latents, 0.0).rejected]

    assert kinds(first) == ["duplicate"]  # the same message again
    assert kinds(latent(model, robot_id="robot2", sequence=4, stamp_s=12.0)) == ["duplicate"]  # an older sequence
    assert kinds(latent(model, robot_id="robot2", sequence=6, stamp_s=9.0)) == ["stale"]  # an older sensing
    assert obj.used is first
    newer = latent(model, robot_id="robot2", sequence=6, stamp_s=10.0, seed=1)  # a later belief of the same sensing time
    assert kinds(newer) == [] and obj.used is newer
    # per (robot, object): another robot's sequence 1 is not a duplicate
    assert kinds(latent(model, robot_id="robot3", sequence=1, stamp_s=1.0)) == []
    assert store.latent_rejections == {"duplicate": 2, "stale": 1}


def test_foreign_latents_are_rate_limited_per_robot(model: PerceptionModel) -> None:
    store = BeliefStore(model, "robot1", BeliefStoreConfig(foreign_rate_hz=2.0))
    flood = [latent(model, robot_id="robot2", object_id=f"object_{k}", position=(k, 0.0, 0.0)) for k in range(5)]
    result = store.add_latents([*flood, latent(model, robot_id="robot3")], 100.0)
    assert [r.item.object_id for r in result.rejected] == ["object_2", "object_3", "object_4"]  # a burst of two
    assert {r.kind for r in result.rejected} == {"rate"} and "more than 2 latents per second" in result.rejected[0].reason
    assert len(store.objects) == 3  # two of robot2's and robot3's
    again = [latent(model, robot_id="robot2", object_id=f"object_{k}", position=(k, 0.0, 0.0)) for k in (3, 4)]
    assert len(store.add_latents(again, 100.3).rejected) == 2  # 0.6 tokens back: none yet
    assert [r.item.object_id for r in store.add_latents(again, 100.6).rejected] == ["object_4"]


def test_own_latents_are_shared_at_once_then_at_most_at_the_rate(model: PerceptionModel) -> None:
    store = BeliefStore(model, "robot1", BeliefStoreConfig(latent_rate_hz=2.0))
    (obj,) = store.update([encoding(model, "lidar")]).updated
    assert store.due_latents(50.0) == [obj] and obj.sequence == 1
    assert store.due_latents(50.1) == []  # unchanged
    store.update([encoding(model, "camera", stamp_s=10.1)])
    store.update([encoding(model, "ir", stamp_s=10.2)])
    assert store.due_latents(50.3) == []  # changed, but the last went 0.3 s ago
    assert store.due_latents(50.5) == [obj] and obj.sequence == 2 and obj.own_sensed == MODALITIES
    assert store.due_latents(60.0) == []
    store.add_latents([latent(model, robot_id="robot2", modalities=("camera",))], 60.0)
    assert store.due_latents(60.0) == []  # foreign information does not change what is shared


def test_unchanged_beliefs_are_shared_again_oldest_first_within_a_budget(model: PerceptionModel) -> None:
    """A robot that missed a latent (cut off, restarted) gets it again within reshare_after_s."""
    store = BeliefStore(model, "robot1", BeliefStoreConfig(reshare_after_s=30.0))
    for k in range(3):
        store.update([encoding(model, "lidar", seed=k, position=(float(k), 0.0, 0.03))])
        store.due_latents(10.0 + k)
    sequences = [obj.sequence for obj in store.objects.values()]
    assert store.reshare(35.0, budget=5) == 0 and store.due_latents(35.0) == []  # none is 30 s old yet
    assert store.reshare(41.5, budget=1) == 1
    assert [obj.object_id for obj in store.due_latents(41.5)] == ["object_1"]  # the longest unshared
    assert store.reshare(41.8, budget=5) == 1 and [o.object_id for o in store.due_latents(41.8)] == ["object_2"]
    assert [obj.sequence for obj in store.objects.values()] == [sequences[0] + 1, sequences[1] + 1, sequences[2]]
    store.add_latents([latent(model, robot_id="robot2", position=(9.0, 9.0, 0.03))], 42.0)
    assert store.reshare(100.0, budget=5) == 3, "an object known only from another robot is never shared"


def test_forgetting_drops_old_foreign_latents(store: BeliefStore, model: PerceptionModel) -> None:
    store.update([encoding(model, "lidar", stamp_s=50.0)])
    (own,) = store.objects.values()
    store.add_latents([latent(model, robot_id="robot2", modalities=("camera",), stamp_s=5.0)], 0.0)
    store.add_latents([latent(model, robot_id="robot2", object_id="object_9", position=(4.0, 0.0, 0.0), stamp_s=8.0)], 0.0)
    assert own.sensed == ("camera", "lidar") and len(store.objects) == 2
    assert store.forget(66 * S) == []  # the foreign latents are 61 and 58 s old
    assert own.sensed == ("lidar",) and own.used is None and own.fused is own.belief and len(store.objects) == 2
    assert store.forget(69 * S) == ["object_2"]  # known from a foreign latent only
    # a replay of the forgotten one is stale, not news
    (rejection,) = store.add_latents([latent(model, robot_id="robot2", object_id="object_9", stamp_s=8.0)], 0.0).rejected
    assert rejection.kind == "stale" and "forgetting horizon" in rejection.reason


def test_transform_moves_foreign_latents_with_the_objects(store: BeliefStore, model: PerceptionModel) -> None:
    store.add_latents([latent(model, robot_id="robot2", position=(1.0, 0.0, 0.0))], 0.0)
    (obj,) = store.objects.values()
    odom_in_map = np.eye(4)
    odom_in_map[:3, 3] = [0.5, 0.0, 0.0]
    store.transform(odom_in_map)
    np.testing.assert_allclose([obj.position, obj.used.position], [[1.5, 0.0, 0.0]] * 2)
    assert obj.used is obj.foreign[("robot2", "object_1")]


# ---------------------------------------------------------------- batching and the spatial index


def counting_encodes(model: PerceptionModel, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the batch size of every subset-encoder call of the fusion model."""
    calls: list[int] = []
    encode = model.fusion.encode

    def counted(inputs):
        calls.append(len(next(iter(inputs.values()))))
        return encode(inputs)

    monkeypatch.setattr(model.fusion, "encode", counted)
    return calls


def assert_same_beliefs(batched: BeliefStore, single: BeliefStore) -> None:
    assert list(batched.objects) == list(single.objects)
    for a, b in zip(batched.objects.values(), single.objects.values()):
        assert a.sensed == b.sensed and a.own_sensed == b.own_sensed
        for x, y in ((a.belief, b.belief), (a.fused, b.fused)):
            if x is None or y is None:
                assert x is y
                continue
            np.testing.assert_allclose(x.mean, y.mean, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(x.log_var, y.log_var, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.class_probabilities, b.class_probabilities, rtol=1e-5, atol=1e-7)


def test_a_burst_over_many_objects_is_fused_in_batches_as_one_object_at_a_time(
    model: PerceptionModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects in every state take a new modality, a repeat, two at once or their first sensing in one
    burst: one model call per (stored sensors, new sensors), the same beliefs as one update per object."""
    stored = [("camera",), ("lidar",), ("camera", "lidar"), ("ir",), ("camera", "ir")]
    news = [("lidar",), ("camera",), ("ir",), ("camera", "ir")]
    plan = [(s, n) for s in stored for n in news] * 2  # every group twice
    batched, single = BeliefStore(model, "robot1"), BeliefStore(model, "robot1")
    position = lambda k: (0.3 * k, 0.5, 0.03)  # noqa: E731
    history = [encoding(model, m, seed=100 + k, position=position(k), stamp_s=1.0) for k, (s, _) in enumerate(plan) for m in s]
    for store in (batched, single):
        store.update(history)
    burst = {
        k: [encoding(model, m, seed=200 + 3 * k + j, position=position(k), stamp_s=2.0) for j, m in enumerate(n)]
        for k, (_, n) in enumerate(plan)
    }
    fresh = {
        len(plan) + k: [encoding(model, m, seed=300 + k, position=position(len(plan) + k), stamp_s=2.0) for m in n]
        for k, n in enumerate(news)
    }
    burst.update(fresh)

    calls = counting_encodes(model, monkeypatch)
    result = batched.update([e for group in burst.values() for e in group])
    groups = {(s, tuple(m for m in MODALITIES if m in n)) for s, n in plan} | {
        (None, tuple(m for m in MODALITIES if m in n)) for n in news
    }
    assert len(calls) == len(groups) and sum(calls) == len(burst)
    assert len(result.updated) == len(burst) and len(result.created) == len(fresh)
    calls.clear()
    for group in burst.values():
        single.update(group)
    assert calls == [1] * len(burst)
    assert_same_beliefs(batched, single)


def test_foreign_latents_for_many_objects_are_fused_in_batches_as_one_at_a_time(
    model: PerceptionModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = [("camera",), ("lidar",), ("lidar", "ir")] * 3
    foreign = [
        ("lidar",),
        ("ir",),
        ("camera",),
        ("camera", "lidar", "ir"),
        ("lidar", "ir"),
        ("camera",),
        ("ir",),
        ("camera", "ir"),
        ("lidar",),
    ]
    batched, single = BeliefStore(model, "robot1"), BeliefStore(model, "robot1")
    for store in (batched, single):
        store.update([encoding(model, m, seed=k, position=(0.3 * k, 0.0, 0.0)) for k, ms in enumerate(own) for m in ms])
    latents = [
        latent(model, robot_id="robot2", object_id=f"object_{k}", modalities=ms, position=(0.3 * k, 0.02, 0.0), seed=k)
        for k, ms in enumerate(foreign)
    ]
    latents.append(
        latent(model, robot_id="robot2", object_id="object_99", modalities=("camera",), position=(9.0, 9.0, 0.0))
    )  # a new object
    calls = counting_encodes(model, monkeypatch)
    result = batched.add_latents(latents, 0.0)
    assert len(result.updated) == len(latents) and len(result.created) == 1
    used = {
        (tuple(m for m in MODALITIES if m in ms), o) for o, ms in zip(own, foreign) if set(ms) - set(o)
    }  # (stored, new) groups
    assert len(calls) == len(used) < len(latents)
    for x in latents:
        single.add_latents([x], 0.0)
    assert_same_beliefs(batched, single)


def scan_nearest(entries: dict[str, tuple[float, float]], x: float, y: float, gate: float) -> str | None:
    """The association rule as a scan of every entry in order of creation, the last of equals winning."""
    best, best_distance = None, gate
    for key, (ex, ey) in entries.items():
        distance = math.hypot(ex - x, ey - y)
        if distance <= best_distance:
            best, best_distance = key, distance
    return best


def test_the_plane_index_finds_what_a_scan_finds() -> None:
    gate = 0.1
    rng = np.random.default_rng(3)
    index, entries = PlaneIndex(gate), {}
    # random points, points on cell borders and on a lattice of half the gate (ties at exactly the
    # gate and closer), far-off and non-finite ones
    points = [tuple(p) for p in rng.uniform(-1.0, 1.0, (300, 2))]
    points += [(0.1 * i, 0.1 * j) for i in range(-3, 4) for j in range(-3, 4)]
    points += [(0.05 * i + 2.0, 0.05 * j) for i in range(6) for j in range(6)]
    points += [(1e12, 5.0), (1e12 + 0.05, 5.0), (-3e300, 0.0), (np.inf, 0.0), (np.nan, 1.0)]
    for k, point in enumerate(points):
        index.place(f"k{k}", np.array(point))
        entries[f"k{k}"] = point
    queries = [*points, *(tuple(q) for q in rng.uniform(-1.2, 2.5, (400, 2))), (0.05, 0.05), (2.025, 0.025), (1e12 + 0.02, 5.0)]

    def check() -> None:
        for qx, qy in queries:
            found = index.nearest(np.array([qx, qy]))
            expected = scan_nearest(entries, qx, qy, gate)
            assert (found and found[0]) == expected, (qx, qy)
            if found:
                assert found[1] == math.hypot(entries[expected][0] - qx, entries[expected][1] - qy)

    check()
    # moves keep a key's rank (its place among equals); removals take it out
    for k in rng.choice(len(points), 60, replace=False):
        point = tuple(rng.uniform(-1.0, 1.0, 2))
        index.place(f"k{k}", np.array(point))
        entries[f"k{k}"] = point
    for k in rng.choice(len(points), 60, replace=False):
        if f"k{k}" in entries:
            index.remove(f"k{k}")
            del entries[f"k{k}"]
    assert len(index) == len(entries)
    check()


def test_ties_go_to_the_newer_object_within_the_store_and_the_burst(model: PerceptionModel) -> None:
    store = BeliefStore(model, "robot1", BeliefStoreConfig(gate=0.125))  # binary fractions: exact distances
    at = lambda x: (x, 0.0, 0.0)  # noqa: E731
    store.update(
        [
            encoding(model, "lidar", position=at(0.0)),
            encoding(model, "lidar", position=at(0.25)),
            encoding(model, "lidar", position=at(1.25)),
        ]
    )
    # exactly the gate from two objects: the one created last
    (obj,) = store.update([encoding(model, "ir", position=at(0.125))]).updated
    assert obj.object_id == "object_2"
    # a new object of this burst is newer than every stored one
    result = store.update([encoding(model, "camera", position=at(1.0)), encoding(model, "ir", position=at(1.125))])
    assert result.created == ["object_4"] and [o.object_id for o in result.updated] == ["object_4"]
    assert store.objects["object_4"].sensed == ("camera", "ir") and store.objects["object_3"].sensed == ("lidar",)


def test_association_through_the_index_equals_a_linear_scan(model: PerceptionModel) -> None:
    """Bursts of encodings in clusters (new objects within a burst, running means moving objects
    across cell borders), foreign latents, forgetting and a change of frame: every encoding and
    latent goes where a scan of every object in order of creation sends it."""
    gate = 0.1
    store = BeliefStore(model, "robot1", BeliefStoreConfig(forget_after_s=50.0))
    rng = np.random.default_rng(7)
    scan: dict[str, list] = {}  # object id -> [position (2,), count]
    centres = rng.uniform(0.0, 1.5, (25, 2))
    next_id = 1
    for burst_index in range(12):
        positions = centres[rng.integers(len(centres), size=10)] + rng.normal(0.0, 0.04, (10, 2))
        burst = [
            encoding(model, MODALITIES[k % 3], seed=k, position=(x, y, 0.0), stamp_s=float(burst_index))
            for k, (x, y) in enumerate(positions)
        ]
        for x, y in positions:  # the reference: the original linear scan
            key = scan_nearest({k: tuple(v[0]) for k, v in scan.items()}, x, y, gate)
            if key is None:
                scan[f"object_{next_id}"] = [np.array([x, y]), 1]
                next_id += 1
            else:
                scan[key][1] += 1
                scan[key][0] = scan[key][0] + (np.array([x, y]) - scan[key][0]) / scan[key][1]
        store.update(burst)
        assert list(store.objects) == list(scan)
        for object_id, (position, count) in scan.items():
            obj = store.objects[object_id]
            assert obj.position_count == count and np.array_equal(obj.position[:2], position)
        # a foreign latent of a new (robot, object): the nearest object, else a new one
        x, y = rng.uniform(-0.1, 1.6, 2)
        expected = scan_nearest({k: tuple(v.position[:2]) for k, v in store.objects.items()}, x, y, gate)
        result = store.add_latents(
            [
                latent(
                    model, robot_id="robot2", object_id=f"theirs_{burst_index}", position=(x, y, 0.0), stamp_s=float(burst_index)
                )
            ],
            0.0,
        )
        if expected is None:
            (created,) = result.created
            scan[created] = [np.array([x, y]), 0]
            next_id += 1
        else:
            assert [o.object_id for o in result.updated] == [expected] and not result.created
    # forgetting and a change of frame keep the index in step
    dropped = store.forget(56 * S)
    assert dropped and all(object_id not in store.objects for object_id in dropped)
    turn = np.eye(4)
    turn[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    store.transform(turn)
    for obj in list(store.objects.values()):
        expected = scan_nearest({k: tuple(v.position[:2]) for k, v in store.objects.items()}, *obj.position[:2], gate)
        assert store._nearest(obj.position) == expected


def test_forgetting_sees_an_older_stamp_that_arrives_late(store: BeliefStore, model: PerceptionModel) -> None:
    store.update([encoding(model, "lidar", position=(0, 0, 0), stamp_s=100.0)])
    assert store.forget(120 * S) == []  # nothing older than 60 s
    store.update([encoding(model, "ir", position=(3, 0, 0), stamp_s=10.0)])  # out of order
    store.add_latents([latent(model, robot_id="robot2", position=(6.0, 0.0, 0.0), stamp_s=100.0)], 0.0)
    assert store.forget(120 * S) == ["object_2"]
    store.add_latents([latent(model, robot_id="robot3", position=(9.0, 0.0, 0.0), stamp_s=100.0)], 0.0)
    assert store.forget(161 * S) == ["object_1", "object_3", "object_4"] and not store.objects
