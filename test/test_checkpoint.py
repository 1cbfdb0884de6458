"""Checkpoints: round trip, atomic writes, and a CheckpointError naming the file for every fault."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from m2vae_fusion.core import checkpoint as ckpt
from m2vae_fusion.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from m2vae_fusion.core.config import ModalityConfig, ModelConfig, TrainConfig
from m2vae_fusion.core.errors import CheckpointError
from m2vae_fusion.core.model import build_model

HASH = "0123456789abcdef"


def tiny_config(latent_dim: int = 2, dims: tuple[int, int] = (2, 2)) -> ModelConfig:
    return ModelConfig(
        modalities=[ModalityConfig("a", dims[0], hidden=(8, 4)), ModalityConfig("b", dims[1], hidden=(8, 4))],
        latent_dim=latent_dim,
        joint_hidden=(4,),
    )


def save(path: Path, config: ModelConfig | None = None, **kwargs) -> tuple[torch.nn.Module, torch.Tensor]:
    """Save a tiny model after one Adam step; return it and the RNG state stored."""
    config = config or tiny_config()
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model({"a": torch.rand(4, config.modalities[0].dim), "b": torch.rand(4, config.modalities[1].dim)}).loss.backward()
    optimizer.step()
    rng = torch.get_rng_state()
    save_checkpoint(
        path,
        model,
        model_config=config,
        train_config=TrainConfig(epochs=3),
        dataset_hash=HASH,
        epoch=3,
        optimizer=optimizer,
        rng_state={"torch": rng},
        extra=kwargs or None,
    )
    return model, rng


def test_round_trip_gives_identical_encodings(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    model, rng = save(path, note="hello")
    loaded = load_checkpoint(path, expected_model_config=tiny_config(), expected_dataset_hash=HASH)
    assert isinstance(loaded, Checkpoint)
    assert not loaded.model.training
    assert loaded.model_config == tiny_config()
    assert loaded.train_config == TrainConfig(epochs=3)
    assert (loaded.epoch, loaded.dataset_hash, loaded.extra) == (3, HASH, {"note": "hello"})
    assert loaded.code_version.startswith(__import__("m2vae_fusion").__version__)
    assert loaded.optimizer_state["state"], "Adam moments must be stored"
    assert torch.equal(loaded.rng_state["torch"], rng)
    x = {"a": torch.rand(5, 2), "b": torch.rand(5, 2)}
    model.eval()
    with torch.no_grad():
        for subset in ({"a": x["a"]}, {"b": x["b"]}, x):
            q0, q1 = model.encode(subset), loaded.model.encode(subset)
            assert torch.equal(q0.mean, q1.mean) and torch.equal(q0.log_var, q1.log_var)


def test_file_holds_only_plain_types_and_no_pickled_module(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save(path)
    payload = torch.load(path, weights_only=True)  # would raise on any pickled class
    assert payload["modality_names"] == ["a", "b"] and payload["modality_dims"] == [2, 2]
    assert payload["latent_dim"] == 2 and payload["model_name"] == "m2vae"
    assert payload["model_config"]["modalities"][0]["hidden"] == [8, 4]


def test_unstorable_extra_is_refused_at_save(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="extra"):
        save(tmp_path / "c.pt", bad=object())
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="nope.pt.*does not exist"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6, 0.95])
def test_truncated_file_is_named(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "checkpoint.pt"
    save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_random_bytes_are_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="checkpoint.pt.*corrupted"):
        load_checkpoint(path)


def rewrite(path: Path, change) -> None:
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save(path)
    rewrite(path, lambda p: p.pop("dataset_hash"))
    with pytest.raises(CheckpointError, match=r"checkpoint.pt lacks key\(s\) \['dataset_hash'\]"):
        load_checkpoint(path)


def test_wrong_format_version_is_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save(path)
    rewrite(path, lambda p: p.update(format_version=99))
    with pytest.raises(CheckpointError, match="checkpoint.pt has format version 99"):
        load_checkpoint(path)


def test_not_a_dict_is_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="checkpoint.pt is not an m2vae checkpoint"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_are_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save(path)
    rewrite(path, lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))))
    with pytest.raises(CheckpointError, match="checkpoint.pt: weights do not fit"):
        load_checkpoint(path)


def test_inconsistent_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save(path)
    rewrite(path, lambda p: p.update(latent_dim=7))
    with pytest.raises(CheckpointError, match="inconsistent: latent_dim 7"):
        load_checkpoint(path)


def test_config_mismatch_names_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save(path, tiny_config(latent_dim=3))
    with pytest.raises(CheckpointError, match="latent_dim: checkpoint 3, expected 2") as info:
        load_checkpoint(path, expected_model_config=tiny_config(latent_dim=2))
    assert "checkpoint.pt" in str(info.value)

    other_dim = tiny_config(latent_dim=3, dims=(2, 3))
    with pytest.raises(CheckpointError, match=r"modalities\.b\.dim: checkpoint 2, expected 3"):
        load_checkpoint(path, expected_model_config=other_dim)

    renamed = dataclasses.replace(
        tiny_config(latent_dim=3),
        modalities=[ModalityConfig("a", 2, hidden=(8, 4)), ModalityConfig("c", 2, hidden=(8, 4))],
    )
    with pytest.raises(
        CheckpointError, match=r"modality names \(dims\): checkpoint \{'a': 2, 'b': 2\}, expected \{'a': 2, 'c': 2\}"
    ):
        load_checkpoint(path, expected_model_config=renamed)


def test_dataset_hash_mismatch_is_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save(path)
    with pytest.raises(CheckpointError, match=f"checkpoint.pt.*dataset hash checkpoint {HASH}, expected ffff"):
        load_checkpoint(path, expected_dataset_hash="ffff")


def test_crash_mid_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save(path)
    before = path.read_bytes()
    real_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip file")
        f.flush()
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        save(path, tiny_config(latent_dim=3))
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"], "no stray temp file"
    assert load_checkpoint(path, expected_model_config=tiny_config()).epoch == 3


def test_code_version_survives_missing_git(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    ckpt.code_version.cache_clear()
    monkeypatch.setattr(ckpt.subprocess, "run", no_git)
    try:
        assert ckpt.code_version() == __import__("m2vae_fusion").__version__
    finally:
        ckpt.code_version.cache_clear()
