"""The training loop: learning, metrics, bit-identical resumption, data checks, divergence."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from m2vae_fusion.core.checkpoint import load_checkpoint
from m2vae_fusion.core.config import ModalityConfig, ModelConfig, TrainConfig
from m2vae_fusion.core.errors import CheckpointError, DataError
from m2vae_fusion.core.models.m2vae import M2VAE
from m2vae_fusion.core.training import TrainingError, TrainResult, check_data, dataset_fingerprint, train

CONFIG = ModelConfig(
    modalities=[ModalityConfig("a", 2, hidden=(8, 4)), ModalityConfig("b", 2, hidden=(8, 4))],
    latent_dim=2,
    joint_hidden=(4,),
)


def make_data(n: int = 48) -> dict[str, torch.Tensor]:
    """Two correlated modalities in [0, 1]: four clusters seen by both."""
    g = torch.Generator().manual_seed(1)
    label = torch.randint(0, 4, (n,), generator=g)
    centre = torch.stack([label % 2, label // 2], dim=1).float() * 0.8 + 0.1
    a = centre + 0.05 * torch.randn(n, 2, generator=g)
    b = centre.flip(1) + 0.05 * torch.randn(n, 2, generator=g)
    return {"a": a.clamp(0, 1), "b": b.clamp(0, 1)}


DATA = make_data()
HASH = dataset_fingerprint(DATA)


def run(out_dir: Path, epochs: int, **kwargs) -> TrainResult:
    settings = dict(epochs=epochs, batch_size=16, learning_rate=1e-2, seed=3, checkpoint_every=100)
    settings.update(kwargs.pop("train", {}))
    return train(CONFIG, TrainConfig(**settings), kwargs.pop("data", DATA), out_dir, dataset_hash=HASH, progress=False, **kwargs)


def test_a_few_epochs_lower_the_loss_and_log_every_term(tmp_path: Path) -> None:
    messages: list[str] = []
    result = run(tmp_path, 20, train={"batch_size": 8}, log=messages.append)
    losses = [h["loss"] for h in result.history]
    assert result.epochs_run == 20 and len(losses) == 20
    assert losses[-1] < losses[0] - 0.2, losses
    assert not result.model.training
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(1, 21))
    for key in ("time", "loss", "rec/a", "rec/b", "rec/a+b", "kl/a", "kl/a+b", "mutual_kl/a+b"):
        assert all(key in line for line in lines), key
    assert lines[-1]["loss"] == pytest.approx(losses[-1])
    assert result.checkpoint == tmp_path / "checkpoint.pt"
    assert load_checkpoint(result.checkpoint, expected_model_config=CONFIG, expected_dataset_hash=HASH).epoch == 20
    assert any("checkpoint" in m for m in messages)


def test_log_every_thins_the_metrics_file(tmp_path: Path) -> None:
    run(tmp_path, 5, train={"log_every": 2})
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [2, 4, 5]


def test_same_seed_gives_same_weights(tmp_path: Path) -> None:
    one, two = run(tmp_path / "one", 2).model, run(tmp_path / "two", 2).model
    three = run(tmp_path / "three", 2, train={"seed": 4}).model
    assert all(torch.equal(p, q) for p, q in zip(one.parameters(), two.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(one.parameters(), three.parameters()))


def test_resume_reaches_bit_identical_weights(tmp_path: Path) -> None:
    straight = run(tmp_path / "straight", 4)
    first = run(tmp_path / "resumed", 2)
    assert first.epochs_run == 2
    torch.manual_seed(12345)  # resumption must not depend on the caller's global RNG
    messages: list[str] = []
    resumed = run(tmp_path / "resumed", 4, log=messages.append)
    assert resumed.epochs_run == 2 and [h["epoch"] for h in resumed.history] == [3, 4]
    assert any("resuming" in m and "epoch 2" in m for m in messages)
    params = dict(straight.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        assert torch.equal(p, params[name]), name
    lines = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2, 3, 4]
    assert run(tmp_path / "resumed", 4).epochs_run == 0


def test_resume_drops_metrics_written_after_the_checkpoint(tmp_path: Path) -> None:
    run(tmp_path, 3, train={"checkpoint_every": 2})
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint.epoch == 3
    # Simulate a crash after epoch 3 was logged but before its checkpoint: roll back to epoch 2.
    run(tmp_path / "two", 2)
    (tmp_path / "checkpoint.pt").write_bytes((tmp_path / "two" / "checkpoint.pt").read_bytes())
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 4, "lo')
    run(tmp_path, 3)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_mismatching_checkpoint_refuses_to_resume(tmp_path: Path) -> None:
    run(tmp_path, 1)
    other = dataclasses.replace(CONFIG, latent_dim=3)
    with pytest.raises(CheckpointError, match="latent_dim: checkpoint 2, expected 3.*resume=False"):
        train(other, TrainConfig(epochs=2), DATA, tmp_path, dataset_hash=HASH, progress=False)
    with pytest.raises(CheckpointError, match="dataset hash.*another out_dir"):
        train(CONFIG, TrainConfig(epochs=2), DATA, tmp_path, dataset_hash="feedbeef", progress=False)
    with pytest.raises(CheckpointError, match="train.learning_rate: checkpoint 0.01, requested 0.5"):
        run(tmp_path, 2, train={"learning_rate": 0.5})
    result = train(other, TrainConfig(epochs=1), DATA, tmp_path, dataset_hash=HASH, resume=False, progress=False)
    assert load_checkpoint(result.checkpoint).model_config.latent_dim == 3


def test_checkpoint_past_the_requested_epochs_refuses_to_resume(tmp_path: Path) -> None:
    run(tmp_path, 2)
    with pytest.raises(CheckpointError, match="at epoch 2, past the requested train.epochs=1"):
        run(tmp_path, 1)


def test_corrupted_checkpoint_names_file_and_remedy(tmp_path: Path) -> None:
    run(tmp_path, 1)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="checkpoint.pt is truncated or corrupted.*resume=False"):
        run(tmp_path, 2)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d.pop("b"), "modality 'b' is missing"),
        (lambda d: d.update(c=torch.rand(48, 2)), r"modalities \['c'\]"),
        (lambda d: d.update(a=torch.rand(48, 3)), r"modality 'a': expected shape \(samples, 2\), got \(48, 3\)"),
        (lambda d: d.update(b=torch.rand(48)), r"modality 'b': expected shape"),
        (lambda d: d.update(b=torch.ones(48, 2, dtype=torch.int64)), "modality 'b': expected a float tensor"),
        (lambda d: d.update(b=torch.rand(47, 2)), "modality 'b' has 47 samples, 'a' has 48"),
        (lambda d: d.update(a=torch.full((48, 2), float("nan"))), "modality 'a' contains NaN"),
        (lambda d: d.update(b=torch.full((48, 2), 2.0)), r"modality 'b' has a Bernoulli likelihood.*\[0, 1\]"),
    ],
)
def test_bad_data_names_the_modality(tmp_path: Path, change, match: str) -> None:
    data = dict(DATA)
    change(data)
    with pytest.raises(DataError, match=match):
        run(tmp_path, 1, data=data)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_check_data_casts_to_float32() -> None:
    checked = check_data(CONFIG, {k: v.double() for k, v in DATA.items()})
    assert all(x.dtype == torch.float32 for x in checked.values())


def test_non_finite_loss_names_the_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forward = M2VAE.forward

    def diverging(self, batch, epoch=0.0):
        out = forward(self, batch, epoch)
        if epoch >= 2:
            out.loss = out.loss * float("nan")
            out.terms["kl/a"] = float("inf")
        return out

    monkeypatch.setattr(M2VAE, "forward", diverging)
    with pytest.raises(TrainingError, match=r"non-finite loss nan in epoch 3 \(batch 1/3\).*kl/a=inf"):
        run(tmp_path, 5, train={"checkpoint_every": 1})
    assert load_checkpoint(tmp_path / "checkpoint.pt").epoch == 2, "the last good checkpoint stays"


def test_dataset_fingerprint() -> None:
    same = {"b": DATA["b"].clone(), "a": DATA["a"].clone()}
    assert dataset_fingerprint(same) == HASH and len(HASH) == 16
    nudged = dict(DATA, a=DATA["a"].clone())
    nudged["a"][0, 0] += 1e-6
    assert dataset_fingerprint(nudged) != HASH
    assert dataset_fingerprint({"a": DATA["a"].double(), "b": DATA["b"]}) != HASH
    assert dataset_fingerprint({"a": DATA["a"], "c": DATA["b"]}) != HASH
    assert dataset_fingerprint({"a": DATA["a"].reshape(-1, 4), "b": DATA["b"]}) != HASH
