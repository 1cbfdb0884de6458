"""In-place fusion (Eq. 18) and auto re-encoding."""

from __future__ import annotations

import pytest
import torch

from m2vae_fusion.core.config import ModalityConfig, ModelConfig
from m2vae_fusion.core.errors import DataError
from m2vae_fusion.core.fusion import auto_reencode, in_place_fusion
from m2vae_fusion.core.model import build_model

torch.set_num_threads(1)


@pytest.fixture
def model():
    torch.manual_seed(0)
    mods = [ModalityConfig(name=n, dim=3, hidden=(8, 6)) for n in ("camera", "lidar", "ir")]
    return build_model(ModelConfig(modalities=mods, latent_dim=2, joint_hidden=(5,))).eval()


def test_fusion_decodes_sensed_and_encodes_with_the_union_encoder(model, monkeypatch):
    x = {n: torch.rand(4, 3) for n in model.modality_names}
    stored = model.encode({"camera": x["camera"]})
    seen = []
    original = model.posterior
    monkeypatch.setattr(
        model, "posterior", lambda inputs, subset, features=None: seen.append(subset) or original(inputs, subset, features)
    )
    fused, covered = in_place_fusion(model, stored, ["camera"], {"lidar": x["lidar"]})
    assert covered == ["camera", "lidar"]
    assert seen == [0b011]  # the camera+lidar subset encoder, once
    expected = original({"camera": model.reconstruct(stored.mean, ["camera"])["camera"], "lidar": x["lidar"]}, 0b011)
    torch.testing.assert_close(fused.mean, expected.mean)


def test_fusion_from_nothing_is_plain_encoding(model):
    x = torch.rand(4, 3)
    prior = model.encode({"ir": x})
    fused, covered = in_place_fusion(model, prior, [], {"ir": x})
    assert covered == ["ir"]
    torch.testing.assert_close(fused.mean, prior.mean)


def test_new_observation_replaces_its_reconstruction(model):
    x = {n: torch.rand(4, 3) for n in model.modality_names}
    stored = model.encode({"camera": x["camera"], "lidar": x["lidar"]})
    fused, covered = in_place_fusion(model, stored, ["camera", "lidar"], {"lidar": x["lidar"], "ir": x["ir"]})
    assert covered == ["camera", "lidar", "ir"]
    expected = model.encode({"camera": model.reconstruct(stored.mean, ["camera"])["camera"], "lidar": x["lidar"], "ir": x["ir"]})
    torch.testing.assert_close(fused.mean, expected.mean)


def test_decoded_bound_clamps_what_the_stored_latent_decodes_to(model, monkeypatch):
    from m2vae_fusion.core.gaussian import DiagonalGaussian

    far = DiagonalGaussian(torch.full((2, 2), 50.0), torch.zeros(2, 2))  # far out: decodes to extreme values
    monkeypatch.setattr(model, "reconstruct", lambda z, names: {n: torch.full((2, 3), 1e3) for n in names})
    seen = []
    original = model.encode
    monkeypatch.setattr(model, "encode", lambda inputs: seen.append(inputs) or original(inputs))
    lidar = torch.rand(2, 3)
    in_place_fusion(model, far, ["camera"], {"lidar": lidar}, decoded_bound=2.0)
    assert torch.equal(seen[-1]["camera"], torch.full((2, 3), 2.0)) and torch.equal(
        seen[-1]["lidar"], lidar
    )  # only decoded values
    in_place_fusion(model, far, ["camera"], {"lidar": lidar})
    assert torch.equal(seen[-1]["camera"], torch.full((2, 3), 1e3))  # no bound: as decoded


def test_fusion_errors(model):
    stored = model.encode({"camera": torch.rand(1, 3)})
    with pytest.raises(DataError, match="at least one modality"):
        in_place_fusion(model, stored, ["camera"], {})
    with pytest.raises(DataError, match="unknown modalities \\['radar'\\]"):
        in_place_fusion(model, stored, ["camera"], {"radar": torch.rand(1, 3)})


def test_auto_reencode_trajectory(model):
    start = model.encode({"camera": torch.rand(5, 3), "ir": torch.rand(5, 3)})
    path = auto_reencode(model, start, ["camera", "ir"], steps=4)
    assert len(path) == 5 and path[0] is start
    manual = model.encode(model.reconstruct(start.mean, ["camera", "ir"]))
    torch.testing.assert_close(path[1].mean, manual.mean)
