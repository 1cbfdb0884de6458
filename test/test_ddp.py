"""Distributed training launched by torchrun (DDP, gloo on CPU), as real torchrun subprocesses.

With the reparameterisation noise replaced by the posterior mean, 2 processes follow the
1-process loss curve and reach its weights to float precision (the same global batch gives the
same gradient, uneven shards included); with the noise, which each process draws for its own
shard, the curves agree within a small tolerance. Rank 0 alone writes, a DDP run resumes to
identical weights, and `m2vae train` trains every stage under torchrun. (That its --help loads no
torch, test_cli checks for every sub-command.)

Run as a script (what torchrun starts), this file trains the tiny model of test_training, one run
per argument; with ":mean" z is the posterior mean instead of a sample (no noise):
    test_ddp.py OUT_DIR:EPOCHS[:mean] ...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training import CONFIG, DATA, HASH

from m2vae_fusion.core.checkpoint import load_checkpoint
from m2vae_fusion.core.config import TrainConfig
from m2vae_fusion.core.gaussian import DiagonalGaussian
from m2vae_fusion.core.training import train

pytestmark = pytest.mark.slow  # torchrun processes training for tens of seconds

# 48 samples in global batches of 15: 15, 15, 15, 3, so the last batch splits 2 / 1 over two
# processes and the shard weighting matters.
TRAIN = dict(batch_size=15, learning_rate=1e-2, seed=3, checkpoint_every=1)
EPOCHS = 4


def torchrun(processes: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def losses(out: Path) -> list[float]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(1, len(lines) + 1)), "one line per epoch: rank 0 alone writes"
    return [line["loss"] for line in lines]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "checkpoint.pt").model.state_dict()


def relative_difference(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) / abs(x) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model trained by 1 and by 2 processes, with and without noise; a 2-process run
    stopped after 2 epochs and resumed by a second launch."""
    root = tmp_path_factory.mktemp("ddp")
    script = str(Path(__file__).resolve())
    torchrun(1, script, f"{root / 'mean1'}:{EPOCHS}:mean", f"{root / 'noise1'}:{EPOCHS}")
    torchrun(2, script, f"{root / 'mean2'}:{EPOCHS}:mean", f"{root / 'noise2'}:{EPOCHS}", f"{root / 'resumed'}:2")
    torchrun(2, script, f"{root / 'resumed'}:{EPOCHS}")
    return root


def test_two_processes_take_the_one_process_steps(runs: Path) -> None:
    one, two = losses(runs / "mean1"), losses(runs / "mean2")
    assert len(one) == EPOCHS and one[-1] < one[0]
    assert relative_difference(one, two) < 1e-5, (one, two)
    w1, w2 = weights(runs / "mean1"), weights(runs / "mean2")
    for name, value in w1.items():
        assert torch.allclose(value, w2[name], rtol=1e-4, atol=1e-5), name


def test_with_noise_the_loss_curves_agree_within_tolerance(runs: Path) -> None:
    one, two = losses(runs / "noise1"), losses(runs / "noise2")
    assert relative_difference(one, two) < 0.02, (one, two)
    # the noise differs (each process draws its shard's), so the weights do too
    assert not torch.equal(weights(runs / "noise1")["decoders.a.out.weight"], weights(runs / "noise2")["decoders.a.out.weight"])


def test_a_ddp_run_resumes_to_identical_weights(runs: Path) -> None:
    assert losses(runs / "resumed") == losses(runs / "noise2")
    straight = weights(runs / "noise2")
    for name, value in weights(runs / "resumed").items():
        assert torch.equal(value, straight[name]), name


def test_m2vae_train_trains_every_stage_under_torchrun(tmp_path: Path) -> None:
    from test_stack import SAMPLES, tiny_config

    from m2vae_fusion.model.perception_model import PerceptionModel
    from m2vae_fusion.sim.collect import collect

    bag, out = tmp_path / "bag", tmp_path / "model"
    collect(bag, SAMPLES, seed=5)
    config = tiny_config(tmp_path / "tiny.yaml")
    proc = torchrun(
        2, "-m", "m2vae_fusion.cli", "train", "--bag", str(bag), "--out", str(out), "--config", str(config), timeout=300
    )
    assert proc.stdout.count("perception model m2vae-") == 1, proc.stdout  # rank 0 alone prints
    assert "one after the other, each over 2 processes" in proc.stdout
    for stage, epochs in [("preprocessors/camera", 2), ("preprocessors/lidar", 2), ("preprocessors/ir", 2), ("fusion", 3)]:
        assert len(losses(out / stage)) == epochs, stage
    assert PerceptionModel.load(out).model_id == json.loads((out / "perception_model.json").read_text())["model_id"]


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="train test_training's tiny model (under torchrun)")
    parser.add_argument("runs", nargs="+", metavar="OUT_DIR:EPOCHS[:mean]")
    sample = DiagonalGaussian.rsample
    for run in parser.parse_args(argv).runs:
        out, epochs, *mode = run.split(":")
        DiagonalGaussian.rsample = (lambda self, generator=None: self.mean) if mode == ["mean"] else sample
        train(CONFIG, TrainConfig(epochs=int(epochs), **TRAIN), DATA, out, dataset_hash=HASH, progress=False)


if __name__ == "__main__":
    worker(sys.argv[1:])
