"""`m2vae bench train` on a tiny MNIST-E: one row per model plus the beta-VAE of the same size, the
DDP section, JSON with positive finite figures (never absolute times or ratio thresholds)."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
from test_reproduce_mnist_e import MODELS, tiny_config, write_config

from m2vae_fusion.benchmarks.train import same_size_beta_vae
from m2vae_fusion.core.config import ModalityConfig, ModelConfig
from m2vae_fusion.core.errors import ConfigError

pytestmark = pytest.mark.slow  # benchmark runs in subprocesses, torchrun included


def bench(tmp_path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path))
    cmd = [
        "m2vae",
        "bench",
        "train",
        "--config",
        config,
        "--samples",
        "128",
        "--batch-size",
        "32",
        "--json",
        str(tmp_path / "b.json"),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def test_bench_train_tiny(tmp_path):
    proc = bench(tmp_path, "--epochs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split()[0] for line in proc.stdout.splitlines() if line.split() and line.split()[0] in [*MODELS, "beta_vae"]]
    assert rows == [*MODELS, "beta_vae"]
    assert "one encoder on a+b concatenated (1568 values" in proc.stdout
    results = json.loads((tmp_path / "b.json").read_text())
    assert list(results["samples_per_second"]) == [*MODELS, "beta_vae"]
    assert all(positive(rate) for rate in results["samples_per_second"].values())
    assert all(positive(ratio) for ratio in results["ratio"].values())
    assert results["ratio"]["m2vae"] == 1.0 and results["ratio_to"] == "m2vae"
    assert results["samples"] == 128 and results["batch_size"] == 32 and results["epochs"] == 2
    beta = results["beta_vae"]
    assert beta["input"] == "a+b" and beta["dim"] == 1568 and beta["hidden"] == [16, 8] and beta["latent_dim"] == 3
    assert beta["encoders"] == {"m2vae": 3, "beta_vae": 1} and positive(beta["price"])
    assert set(results["parameters"]) == set(results["samples_per_second"]) and all(n > 0 for n in results["parameters"].values())
    assert "ddp" not in results


def test_bench_train_ddp_tiny(tmp_path):
    proc = bench(tmp_path, "--epochs", "1", "--models", "m2vae", "--ddp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DDP (torchrun, gloo on CPU)" in proc.stdout and "speed-up" in proc.stdout
    results = json.loads((tmp_path / "b.json").read_text())
    assert list(results["samples_per_second"]) == ["m2vae", "beta_vae"]
    ddp = results["ddp"]
    assert ddp["processes"] == 2 and ddp["global_batch"] == 32 and ddp["batch_per_process"] == 16
    assert set(ddp["samples_per_second"]) == {"1", "2"} and all(positive(r) for r in ddp["samples_per_second"].values())
    assert all(len(curve) == 1 and positive(curve[0]) for curve in ddp["loss"].values())
    assert positive(ddp["speedup"]) and math.isfinite(ddp["max_relative_loss_difference"])


def test_bench_rejects_bad_sizes(tmp_path):
    proc = bench(tmp_path, "--epochs", "0", timeout=60)
    assert proc.returncode == 2 and "must be >= 1" in proc.stderr
    proc = bench(tmp_path, "--ddp", "1", timeout=60)
    assert proc.returncode == 2 and "at least 2 processes" in proc.stderr


def test_same_size_beta_vae_concatenates_the_modalities():
    model = ModelConfig(
        [ModalityConfig("a", 3, hidden=(8, 4)), ModalityConfig("b", 5, hidden=(8, 4))], latent_dim=2, beta_norm=0.5
    )
    beta = same_size_beta_vae(model)
    assert beta.model == "beta_vae" and beta.latent_dim == 2 and beta.beta_norm == 0.5
    assert [(m.name, m.dim, m.hidden) for m in beta.modalities] == [("a_b", 8, (8, 4))]
    uneven = ModelConfig([ModalityConfig("a", 3, hidden=(8, 4)), ModalityConfig("b", 5, hidden=(6,))])
    with pytest.raises(ConfigError, match="modality b has hidden"):
        same_size_beta_vae(uneven)
