"""`m2vae reproduce mog` end to end on a two-epoch budget: JSON shape, table, figures, resume."""

from __future__ import annotations

import json
import subprocess

import pytest

from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.reproductions.mog import load_experiment, reproduce_mog

pytestmark = pytest.mark.slow  # reproductions: training runs in subprocesses, minutes


def test_reproduce_mog_quick(tmp_path):
    out = tmp_path / "mog"
    cmd = [
        "m2vae",
        "reproduce",
        "mog",
        "--epochs",
        "2",
        "--seeds",
        "1",
        "--models",
        "m2vae",
        "jmvae_zero",
        "--jobs",
        "2",
        "--out",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Table I" in proc.stdout and "jmvae_zero" in proc.stdout
    results = json.loads((tmp_path / "r.json").read_text())
    for model in ("raw", "m2vae", "jmvae_zero"):
        assert set(results[model]) == {"ab", "a", "b"}
        assert all(0.0 <= r <= 1.0 for r in results[model].values())
    assert results["raw"]["ab"] > 0.95  # the raw classifier needs no training
    for model in ("m2vae", "jmvae_zero"):
        assert set(results["coherence_joint"][model]) == {"ab", "a", "b"}
        assert all(0.0 <= r <= 1.0 for r in results["coherence_joint"][model].values())
    assert "The stricter protocol: one classifier fitted on the a&b embeddings only" in proc.stdout
    drift = results["reencoding"]["with_loss"]
    assert {"mean", "label_switch_rate", "latent_spread", "coherence"} <= set(drift)
    # the in-place fusion curve: every step count of the config, with and without the loss
    for curve in results["reencoding"]["inplace"].values():
        assert [p["steps"] for p in curve] == [1, 2, 3, 4, 5, 10, 20, 50, 100, 200]
        assert all(0.0 <= p["accuracy"] <= 1.0 and p["drift"] >= 0 for p in curve)
    assert "In-place fusion of repeated views" in proc.stdout
    assert (out / "fig4_embeddings.png").stat().st_size > 10_000
    assert (out / "fig5_reencoding.png").stat().st_size > 10_000
    assert (out / "inplace_fusion.png").stat().st_size > 10_000
    assert (out / "m2vae-s0" / "metrics.jsonl").read_text().count("\n") == 2

    # a second run finds the finished checkpoints and trains nothing
    again = subprocess.run(cmd + ["--no-figures"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "r.json").read_text())["m2vae"] == results["m2vae"]


def test_models_must_include_m2vae(tmp_path):
    experiment = load_experiment()
    experiment.models = ["tvae"]
    with pytest.raises(ConfigError, match="must include m2vae"):
        reproduce_mog(experiment, tmp_path)
    experiment.models = ["m2vae", "nope"]
    with pytest.raises(ConfigError, match="unknown: \\['nope'\\]"):
        reproduce_mog(experiment, tmp_path)


def test_bad_options_give_a_clean_error(tmp_path):
    proc = subprocess.run(
        ["m2vae", "reproduce", "mog", "--seeds", "0", "--out", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "m2vae reproduce: error: need seeds >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr
