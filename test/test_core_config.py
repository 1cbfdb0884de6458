"""Config dataclasses: YAML round trip and errors that name the bad field."""

from __future__ import annotations

import pytest

from m2vae_fusion.core.config import ModalityConfig, ModelConfig, ReencodeConfig, TrainConfig, from_dict, load_yaml, to_dict
from m2vae_fusion.core.errors import ConfigError


def test_yaml_round_trip(tmp_path):
    cfg = ModelConfig(
        modalities=[
            ModalityConfig("camera", 10, hidden=(32, 16)),
            ModalityConfig("lidar", 10, likelihood="gaussian", gaussian_std=0.5),
        ],
        latent_dim=10,
        reencode=ReencodeConfig(alpha=0.5, variant="mse", start_epoch=10, ramp_epochs=5),
    )
    path = tmp_path / "model.yaml"
    import yaml

    path.write_text(yaml.safe_dump(to_dict(cfg)))
    assert load_yaml(ModelConfig, path) == cfg


@pytest.mark.parametrize(
    "data, message",
    [
        ({"modalities": [{"name": "a", "dim": 2}], "latnet_dim": 2}, "unknown key\\(s\\) \\['latnet_dim'\\]"),
        ({"modalities": [{"name": "a", "dim": 0}]}, "modality a: dim must be >= 1"),
        ({"modalities": [{"name": "a", "dim": 2, "likelihood": "poisson"}]}, "likelihood must be one of"),
        ({"modalities": [{"name": "a", "dim": 2}, {"name": "a", "dim": 3}]}, "unique"),
        ({"modalities": [{"name": "a", "dim": "two"}]}, "modalities\\[0\\].dim: expected int"),
        ({"modalities": [{"name": "a", "dim": 2}], "reencode": {"alpha": -1}}, "reencode.alpha must be >= 0"),
        ({"modalities": []}, "at least one modality"),
    ],
)
def test_errors_name_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(ModelConfig, data)


def test_train_config_validation():
    with pytest.raises(ConfigError, match="train.batch_size"):
        TrainConfig(batch_size=0)


def test_load_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("modalities: [{name: a, dim: 2}]\nbogus: 1\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_yaml(ModelConfig, path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_yaml(ModelConfig, tmp_path / "missing.yaml")


def test_reencode_schedule_rescales_with_the_run_length():
    schedule = ReencodeConfig(alpha=0.2, start_epoch=100, ramp_epochs=100)
    quick = schedule.rescaled(30 / 400)
    assert (quick.alpha, quick.start_epoch, quick.ramp_epochs) == (0.2, 8, 8)
    assert quick.weight(8 + 4) == pytest.approx(0.1)
