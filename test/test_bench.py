"""`m2vae bench train` on a tiny MNIST-E: one row per model, JSON with positive rates (never absolute times)."""

from __future__ import annotations

import json
import subprocess

from test_reproduce_mnist_e import MODELS, tiny_config, write_config


def test_bench_train_tiny(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path))
    cmd = ["m2vae", "bench", "train", "--config", config, "--samples", "128", "--batch-size", "32", "--json", str(tmp_path / "b.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split()[0] for line in proc.stdout.splitlines() if line.split() and line.split()[0] in MODELS]
    assert rows == MODELS
    results = json.loads((tmp_path / "b.json").read_text())
    assert list(results["samples_per_second"]) == MODELS
    assert all(rate > 0 for rate in results["samples_per_second"].values())
    assert results["ratio"]["m2vae"] == 1.0 and results["ratio_to"] == "m2vae"
    assert results["samples"] == 128 and results["batch_size"] == 32


def test_bench_rejects_bad_sizes(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path))
    proc = subprocess.run(["m2vae", "bench", "train", "--config", config, "--epochs", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "must be >= 1" in proc.stderr
