"""Training the perception model from bags, end to end on a tiny scale: bag frames, labelled
observations, `m2vae train` (resumable), the model the nodes load, in-place fusion and
`m2vae reproduce sim`. Model quality is the reproduction's business, not these tests'."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from m2vae_fusion.core.errors import CheckpointError, ConfigError, DataError
from m2vae_fusion.data.bag_frames import TopicNames, labelled_objects, read_frames
from m2vae_fusion.model.config import load_stack_config
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.perception.config import PerceptionConfig
from m2vae_fusion.perception.labels import default_labels, read_labelling
from m2vae_fusion.sim.collect import collect
from m2vae_fusion.training.dataset import load_observations

CLASSES = default_labels().classes  # the paper's eight AMiRo classes (config/labels.yaml)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = 48


def tiny_config(path: Path) -> Path:
    """config/perception.yaml with 16-pixel crops, small networks and a few epochs."""
    config = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())
    config["feature_dim"] = 4
    config["perception"] = {"features": {"crop_pixels": 16}}
    pre = config["preprocessors"]
    pre["camera"].update(dim=3 * 16 * 16, shape=[3, 16, 16], conv=[4, 8], hidden=[16])
    pre["lidar"].update(conv=[4], hidden=[8])
    pre["ir"].update(hidden=[8])
    pre["train"].update(epochs=2, batch_size=16, checkpoint_every=1)
    fusion = config["fusion"]
    fusion.update(latent_dim=3, joint_hidden=[8])
    for m in fusion["modalities"]:
        m.update(dim=4, hidden=[8])
    fusion["reencode"].update(start_epoch=1, ramp_epochs=1)
    config["fusion_train"].update(epochs=3, batch_size=16, checkpoint_every=1)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stack") / "bag"
    collect(path, SAMPLES, seed=5)
    return path


@pytest.fixture(scope="module")
def trained(bag: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("model")
    config = tiny_config(folder / "tiny.yaml")
    out = folder / "model"
    proc = subprocess.run(
        ["m2vae", "train", "--bag", str(bag), "--out", str(out), "--config", str(config)],  # default: 2 processes
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, config, proc


@pytest.mark.slow
def test_bag_frames_pair_every_scan_with_image_ir_and_pose(bag: Path) -> None:
    frames = read_frames([bag])
    assert len(frames.frames) == SAMPLES
    assert all(f.image is not None and f.ir is not None and f.base_in_map is not None for f in frames.frames)
    assert frames.frames[0].image.rgb.shape == (240, 320, 3) and frames.frames[0].ir.frame_id == "ir_link"
    assert {(t.parent, t.child) for t in frames.static} >= {("base_link", "lidar_link"), ("camera_link", "camera_optical_frame")}
    assert sorted(o.class_id for o in frames.objects) == list(range(8))
    assert TopicNames.for_namespace("/robot2").scan == "/robot2/scan" and TopicNames.for_namespace("/robot2").tf == "/tf"


@pytest.mark.slow
def test_observations_carry_the_observed_label(bag: Path) -> None:
    observations = load_observations([bag], PerceptionConfig())
    # the target of every view is seen by camera and LiDAR; of the near half (the collection's default)
    # by the IR too
    targets = (observations.labels >= 0) & observations.seen("camera") & observations.seen("lidar")
    complete = observations.complete()
    assert targets.sum() >= 0.9 * SAMPLES and complete.sum() >= 0.3 * SAMPLES
    assert observations.views["camera"].shape[1] == 3 * 64 * 64 and observations.views["lidar"].shape[1] == 64
    for m in ("camera", "lidar", "ir"):
        seen = observations.views[m]
        assert len(seen) == observations.seen(m).sum() and seen.min() >= 0 and seen.max() <= 1
    # the views camera and LiDAR have are the targets: their labels are the ones /ground_truth/observed names, in order
    from rosbags.highlevel import AnyReader

    from m2vae_fusion.data.rosbag_types import typestore

    with AnyReader([bag], default_typestore=typestore()) as reader:
        connections = [c for c in reader.connections if c.topic == "/ground_truth/observed"]
        observed = [
            reader.deserialize(raw, c.msgtype).objects[0].class_id for c, _, raw in reader.messages(connections=connections)
        ]
    stamps = np.unique(observations.stamps[targets])
    by_stamp = {s: observations.labels[targets][observations.stamps[targets] == s] for s in stamps}
    matches = sum(int(observed[k] in by_stamp.get(s, [])) for k, s in enumerate(sorted(set(observations.stamps))))
    assert matches >= 0.9 * SAMPLES


@pytest.mark.slow
def test_train_writes_a_loadable_model(trained) -> None:
    out, config, proc = trained
    assert "perception model m2vae-" in proc.stdout
    manifest = json.loads((out / "perception_model.json").read_text())
    assert manifest["model_id"].startswith("m2vae-") and manifest["modalities"] == ["camera", "lidar", "ir"]
    for m in ("camera", "lidar", "ir"):
        assert (out / "preprocessors" / m / "metrics.jsonl").is_file()
    model = PerceptionModel.load(out)
    assert model.model_id == manifest["model_id"]
    view = np.full((1, 3 * 16 * 16), 0.5, np.float32)
    features = model.features("camera", view)
    assert features.shape == (1, 4) and np.all(np.isfinite(features))


@pytest.mark.slow
def test_in_place_fusion_through_the_model(trained) -> None:
    model = PerceptionModel.load(trained[0])
    rng = np.random.default_rng(0)
    f = {m: rng.standard_normal(4).astype(np.float32) for m in ("camera", "lidar", "ir")}
    belief = model.belief({"lidar": f["lidar"]})
    assert belief.sensed == ("lidar",) and belief.mean.shape == (3,)
    belief = model.fuse(belief, {"camera": f["camera"]})
    assert belief.sensed == ("camera", "lidar")
    belief = model.fuse(belief, {"ir": f["ir"]})
    assert belief.sensed == ("camera", "lidar", "ir")
    p = model.class_probabilities(belief.mean)
    assert p.shape == (1, len(CLASSES)) and p.sum() == pytest.approx(1.0)


@pytest.mark.slow
def test_train_resumes_and_refuses_a_mismatched_model(trained, bag: Path, tmp_path: Path) -> None:
    out, config, _ = trained
    again = subprocess.run(
        ["m2vae", "train", "fusion", "--bag", str(bag), "--out", str(out), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    manifest = json.loads((out / "perception_model.json").read_text())
    manifest["config"]["feature_dim"] = 5
    (tmp_path / "perception_model.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="feature_dim"):
        PerceptionModel.load(tmp_path / "perception_model.json")
    with pytest.raises(CheckpointError, match="no perception model"):
        PerceptionModel.load(tmp_path / "nothing")


def load_labels(path: Path) -> list:
    """A label file's objects, as `m2vae train --labels` reads them."""
    labelling, entries = read_labelling(path)
    return labelled_objects(entries, labelling.space, str(path))


def test_labels_file_format(tmp_path: Path) -> None:
    good = tmp_path / "labels.yaml"
    good.write_text("objects:\n  - {name: mug, label: red_cylinder_shiny, x: 1.2, y: -0.3}\n")
    (obj,) = load_labels(good)
    assert (obj.colour, obj.shape, obj.surface, obj.label) == ("red", "cylinder", "shiny", "red_cylinder_shiny")
    assert (obj.class_id, obj.z) == (CLASSES.index("red_cylinder_shiny"), 0.06)
    for text, message in (
        ("objects: []", "non-empty list"),
        ("name: x", "needs 'classes'"),
        ("objects:\n  - {name: a, label: blue_cube_matte, x: 0, y: 0}", "not one of"),
        ("objects:\n  - {name: a, label: red_cube_matte, x: 0}", "needs name, label, x and y"),
        (
            "objects:\n  - {name: a, label: red_cube_matte, x: 0, y: 0}\n  - {name: a, label: red_cube_matte, x: 1, y: 0}",
            "used twice",
        ),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises((DataError, ConfigError), match=message):
            load_labels(bad)


@pytest.mark.slow
def test_train_errors_name_the_bag(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["m2vae", "train", "--bag", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "missing" in proc.stderr and "does not exist" in proc.stderr


def test_default_config_loads() -> None:
    config = load_stack_config()
    assert config.preprocessor("camera").modalities[0].shape == (3, 64, 64)
    assert config.fusion.reencode.alpha > 0


@pytest.mark.slow
def test_reproduce_sim_tiny(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "tiny.yaml")
    cmd = [
        "m2vae",
        "reproduce",
        "sim",
        "--config",
        str(config),
        "--train-samples",
        "64",
        "--test-samples",
        "24",
        "--out",
        str(tmp_path / "run"),
        "--json",
        str(tmp_path / "r.json"),
        "--jobs",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "meta-sensor" in proc.stdout and "in-place fusion" in proc.stdout
    results = json.loads((tmp_path / "r.json").read_text())
    assert set(results["meta_sensor"]) == {"raw", "m2vae"} and set(results["in_place"]) == {"with_reenc", "without_reenc"}
    assert set(results["per_subset"]) == {"camera", "lidar", "ir", "camera+lidar", "camera+ir", "lidar+ir", "camera+lidar+ir"}
    assert all(
        0 <= r <= 1 for r in [*results["meta_sensor"].values(), *results["in_place"].values(), *results["per_subset"].values()]
    )
    for name, rates in results["meta_sensor_runs"].items():  # the figure is the mean over the MLP seeds
        assert len(rates) == 5 and results["meta_sensor"][name] == pytest.approx(sum(rates) / len(rates))
    assert "5 MLP seeds" in proc.stdout
    # the collection's far views (beyond the IR's reach) are scored per band of distance
    bands = results["by_distance"]
    assert list(bands) == ["0.00-0.25", "0.25-0.35", "0.35-0.50"] and "by distance from the LiDAR" in proc.stdout
    assert bands["0.35-0.50"]["camera"][1] > 0 and bands["0.35-0.50"]["camera+lidar+ir"][1] == 0  # the IR reaches 0.28 m
    assert all(0 <= rate <= 1 for band in bands.values() for rate, n in band.values() if n)
    # the in-place fusion curve, with and without the re-encoding loss
    for curve in results["in_place_curve"].values():
        assert [p["steps"] for p in curve] == [1, 2, 3, 4, 5, 10, 20, 50, 100, 200]
        assert all(0 <= p["accuracy"] <= 1 and p["drift"] >= 0 for p in curve)
    assert (
        set(results["in_place_curve"]) == {"with_reenc", "without_reenc"} and "in-place fusion of the same views" in proc.stdout
    )
    assert (tmp_path / "run" / "inplace_fusion.png").stat().st_size > 0


@pytest.mark.slow
def test_reproduce_sim_over_data_seeds(tmp_path: Path) -> None:
    """--data-seeds: one whole run per seed in its own folder, then mean and spread over the seeds."""
    config = tiny_config(tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    cmd = ["m2vae", "reproduce", "sim", "--config", str(config), "--train-samples", "48", "--test-samples", "16"]
    # two jobs: the second seed's beta-VAE pool starts after the first seed's training in this process
    cmd += ["--data-seeds", "3", "4", "--out", str(out), "--json", str(tmp_path / "r.json"), "--jobs", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["data_seeds"] == [3, 4] and (out / "seed3" / "model").is_dir() and (out / "seed4" / "model").is_dir()
    assert any(p.name.startswith("bag_test_s1004") for p in (out / "seed4").iterdir())
    raw = [results["per_seed"][s]["meta_sensor"]["raw"] for s in ("3", "4")]
    summary = results["summary"]["meta-sensor, MLP on raw beta-VAE features"]
    assert summary["mean"] == pytest.approx(sum(raw) / 2) and (summary["min"], summary["max"]) == (min(raw), max(raw))
    assert "Over 2 data seeds (3, 4): mean +- std" in proc.stdout and "--- data seed 4" in proc.stdout
    assert [p["steps"] for p in results["in_place_curve"]["without_reenc"]][-1] == 200
    assert (out / "inplace_fusion.png").stat().st_size > 0 and f"figure: {out / 'inplace_fusion.png'}" in proc.stdout


@pytest.mark.slow
def test_export_keeps_the_model_id_and_drops_optimiser_state(trained, tmp_path: Path) -> None:
    from m2vae_fusion.training.train import export_model

    out = trained[0]
    manifest = export_model(out, tmp_path / "exported")
    model = PerceptionModel.load(tmp_path / "exported")
    assert model.model_id == manifest["model_id"] == PerceptionModel.load(out).model_id
    size = lambda folder: sum(f.stat().st_size for f in folder.rglob("*.pt"))
    assert size(tmp_path / "exported") < size(out)
    with pytest.raises(FileExistsError):
        export_model(out, tmp_path / "exported")


@pytest.mark.slow
def test_a_manifest_without_every_sensor_is_refused(trained, tmp_path: Path) -> None:
    manifest = json.loads((trained[0] / "perception_model.json").read_text())
    del manifest["preprocessors"]["ir"]
    (tmp_path / "perception_model.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="exactly"):
        PerceptionModel.load(tmp_path)
