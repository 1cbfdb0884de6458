"""Labels as data (perception/labels.py): the label space a model is trained on travels in its
manifest, and the fusion node publishes that space's class names and attribute marginals. The last
test trains a tiny model on a simulator bag relabelled to four classes of its own and reads them
back from the fusion node over DDS."""

from __future__ import annotations

import json
import shutil
import subprocess
from itertools import product
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_fusion_node import Peer, fusion_argv, modality_encoding, peer  # noqa: F401 (peer: the fixture)
from test_stack import tiny_config

from m2vae_fusion.core.errors import CheckpointError, ConfigError
from m2vae_fusion.model.perception_model import MANIFEST, PerceptionModel
from m2vae_fusion.perception.labels import Labelling, LabelSpace, default_labels, read_labelling
from m2vae_fusion.sim.collect import collect

# Four classes of our own over the eight primitives: the form (from the shape) and the finish (from
# the surface); colour is not a class any more.
OWN = {f"{form}_{finish}": {"form": form, "finish": finish} for form, finish in product(("round", "square"), ("dull", "glossy"))}
RELABEL = {
    f"{colour}_{shape}_{surface}": f"{'round' if shape == 'cylinder' else 'square'}_{'dull' if surface == 'matte' else 'glossy'}"
    for colour, shape, surface in product(("red", "green"), ("cylinder", "cube"), ("matte", "shiny"))
}


def test_the_default_space_is_the_papers_eight_classes() -> None:
    labels = default_labels()
    expected = [f"{c}_{s}_{f}" for c, s, f in product(("red", "green"), ("cylinder", "cube"), ("matte", "shiny"))]
    assert list(labels.classes) == expected  # the order the shipped classifier's ids index
    assert labels.attributes == (("colour", ("red", "green")), ("shape", ("cylinder", "cube")), ("surface", ("matte", "shiny")))
    assert labels.attribute_values("green_cube_shiny") == {"colour": "green", "shape": "cube", "surface": "shiny"}


def test_a_space_of_its_own_round_trips_and_sums_its_marginals() -> None:
    labels = LabelSpace.from_dict(OWN)
    assert LabelSpace.from_dict(labels.to_dict()) == labels
    assert labels.classes == ("round_dull", "round_glossy", "square_dull", "square_glossy")
    p = np.array([0.1, 0.2, 0.3, 0.4])
    marginals = labels.marginals(p)
    assert list(marginals) == ["form", "finish"]
    assert marginals["form"] == pytest.approx([0.3, 0.7]) and marginals["finish"] == pytest.approx([0.4, 0.6])
    bare = LabelSpace.from_dict({"mug": None, "box": {}})
    assert bare.attributes == () and bare.marginals(np.array([0.5, 0.5])) == {}


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({"only": {}}, "at least two"),
        ({"a": {"form": "x"}, "b": {"finish": "y"}}, "every class needs a value for every attribute"),
        ({"a": {"form": ["x"]}, "b": {"form": "y"}}, "plain strings"),
        ([1, 2], "must map"),
    ],
)
def test_a_bad_space_is_named(classes, message) -> None:
    with pytest.raises(ConfigError, match=message):
        LabelSpace.from_dict(classes, "mine.yaml")


def test_relabelling_maps_unlabels_and_refuses_unknown_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump({"classes": OWN, "relabel": {**RELABEL, "green_cube_shiny": None}}))
    labelling, objects = read_labelling(path)
    assert objects is None and labelling.space.classes == tuple(OWN)
    assert labelling.class_id("red_cylinder_matte") == 0 and labelling.class_id("red_cube_shiny") == 3
    assert labelling.class_id("green_cube_shiny") == -1  # relabelled to null: unlabelled
    assert labelling.class_id("square_dull") == 2  # a class of the space is its own label
    with pytest.raises(ConfigError, match="'blue_ball'.*relabel"):
        labelling.class_id("blue_ball")
    path.write_text(yaml.safe_dump({"classes": OWN, "relabel": {"red_cube_matte": "triangle"}}))
    with pytest.raises(ConfigError, match="'triangle' is not one of the classes"):
        read_labelling(path)
    assert Labelling(default_labels()).class_id("red_cube_matte") == 2


def test_a_model_reads_its_labels_from_its_manifest(tmp_path: Path) -> None:
    shipped = tmp_path / "amiro"
    shutil.copytree(Path(__file__).resolve().parents[1] / "m2vae_fusion" / "weights" / "amiro", shipped)
    manifest = json.loads((shipped / MANIFEST).read_text())
    assert manifest["format"] == 2 and LabelSpace.from_dict(manifest["labels"]) == default_labels()
    # a format-1 manifest (before labels were stored) has the paper's eight classes
    (shipped / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "labels"} | {"format": 1}))
    loaded = PerceptionModel.load(shipped)
    assert loaded.labels == default_labels() and loaded.class_probabilities(np.zeros((1, loaded.fusion.latent_dim))).shape == (
        1,
        8,
    )
    # a classifier that predicts more classes than the labels name is refused, naming both
    (shipped / MANIFEST).write_text(json.dumps(manifest | {"labels": {"a": {}, "b": {}}}))
    with pytest.raises(CheckpointError, match=r"class ids \[2, 3, 4, 5, 6, 7\], outside the 2 classes"):
        PerceptionModel.load(shipped)


@pytest.fixture(scope="module")
def relabelled_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("relabelled")
    bag = folder / "bag"
    collect(bag, 48, seed=5)
    labels = folder / "labels.yaml"
    labels.write_text(yaml.safe_dump({"classes": OWN, "relabel": RELABEL}, sort_keys=False))
    out = folder / "model"
    proc = subprocess.run(
        [
            "m2vae",
            "train",
            "--bag",
            str(bag),
            "--out",
            str(out),
            "--config",
            str(tiny_config(folder / "tiny.yaml")),
            "--labels",
            str(labels),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_fusion_node_publishes_the_classes_the_model_was_trained_on(relabelled_model: Path, processes, peer: Peer) -> None:
    model = PerceptionModel.load(relabelled_model)
    assert model.labels.classes == tuple(OWN) and json.loads((relabelled_model / MANIFEST).read_text())["labels"] == OWN
    proc = processes.start(*fusion_argv("-r", "__ns:=/robot1", "-p", f"model:={relabelled_model}", "-p", "publish_rate_hz:=20.0"))
    assert peer.spin_until(lambda: peer.encodings.get_subscription_count() >= 1, 30, proc), (
        "fusion node never subscribed to encodings"
    )
    peer.encodings.publish(modality_encoding("lidar", model.model_id, (0.4, 0.25, 0.03), 5.0, seed=0))
    assert peer.spin_until(lambda: bool(peer.beliefs) and len(peer.beliefs[-1].beliefs) == 1, 10, proc), (
        "no belief after an encoding"
    )
    (belief,) = peer.beliefs[-1].beliefs
    assert list(belief.class_names) == list(OWN) and sum(belief.class_probabilities) == pytest.approx(1.0, abs=1e-5)
    assert [(a.name, list(a.values)) for a in belief.attributes] == [
        ("form", ["round", "square"]),
        ("finish", ["dull", "glossy"]),
    ]
    p = np.asarray(belief.class_probabilities)
    form = next(a for a in belief.attributes if a.name == "form")
    assert list(form.probabilities) == pytest.approx([p[0] + p[1], p[2] + p[3]], abs=1e-5)
