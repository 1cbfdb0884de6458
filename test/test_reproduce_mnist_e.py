"""`m2vae reproduce mnist-e` end to end on a tiny MNIST-E and tiny networks: JSON, table, figures, config errors."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import yaml

from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.reproductions.mnist_e import load_experiment, table_ii

pytestmark = pytest.mark.slow  # reproductions: training runs in subprocesses

MODELS = ["m2vae", "tvae", "jmvae_zero", "mvae", "mopoe"]


def tiny_config(folder, **changes) -> dict:
    """A MNIST-E experiment that builds its data (2 small CVAEs, 1 epoch) and trains in seconds."""
    config = {
        "model": {
            "latent_dim": 3,
            "joint_hidden": [8],
            "modalities": [
                {"name": "a", "dim": 784, "hidden": [16, 8]},
                {"name": "b", "dim": 784, "hidden": [16, 8]},
            ],
        },
        "train": {"epochs": 1, "batch_size": 64},
        "data": {
            "n_train": 300,
            "n_test": 200,
            "latent_dim": 4,
            "hidden": [32],
            "epochs": 1,
            "max_source_samples": 300,
            "cache_dir": str(folder / "cache"),
        },
        "models": MODELS,
        "eval_batch_size": 64,
        "figure_rows": 3,
    }
    config.update(changes)
    return config


def write_config(path, config) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_reproduce_mnist_e_tiny(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path))
    out = tmp_path / "out"
    cmd = [
        "m2vae",
        "reproduce",
        "mnist-e",
        "--config",
        config,
        "--models",
        "m2vae",
        "tvae",
        "--jobs",
        "2",
        "--importance-samples",
        "3",
        "--out",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Table II" in proc.stdout and "-10.75" in proc.stdout  # the paper's M2VAE row beside ours
    assert "Eq. 20 by term" in proc.stdout and "Offset of the joint posterior mean" in proc.stdout
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["estimator"] == "single-sample" and results["importance_weighted"]["samples"] == 3
    assert "Importance-weighted bound (K=3" in proc.stdout and proc.stdout.count("highest ELBO: ab ") == 4
    assert "the authors' scoring: -(summed squared error + KL)" in proc.stdout
    assert "nats" in results["units"]
    for model in ("m2vae", "tvae"):
        assert set(results[model]) == {"ab", "a", "b"}
        # nats of 1568 pixels: far below zero, finite
        assert all(math.isfinite(e) and e < 0 for e in results[model].values())
        assert set(results["importance_weighted"][model]) == {"ab", "a", "b"}
        assert all(math.isfinite(e) and e < 0 for e in results["importance_weighted"][model].values())
        # the single-sample Eq. 20 terms: likelihoods of both images below zero, the KL term finite
        terms = results["elbo_terms"][model]
        assert set(terms) == {"ab", "a", "b"} and all(set(t) == {"a", "b", "kl"} for t in terms.values())
        assert all(t["a"] < 0 and t["b"] < 0 and math.isfinite(t["kl"]) for t in terms.values())
        offset = results["joint_offset"][model]
        assert offset["ab"] == 0 and offset["a"] > 0 and offset["b"] > 0
        # the authors' scoring: a squared error and a KL per subset, both >= 0, and the two scores built of them
        at_mean = results["posterior_mean"][model]
        assert set(at_mean) == {"ab", "a", "b"}
        for t in at_mean.values():
            assert t["sse"] > 0 and t["kl"] >= 0 and t["bernoulli"] < 0
            assert t["sse_kl"] == pytest.approx(-(t["sse"] + t["kl"])) and t["bernoulli_kl"] == pytest.approx(
                t["bernoulli"] - t["kl"]
            )
        assert set(results["coherence"][model]) == set(results["coherence_joint"][model]) == {"ab", "a", "b"}
        assert set(results["cross_modal"][model]) == {"a->b'", "b->a'"}
        rates = [
            *results["coherence"][model].values(),
            *results["coherence_joint"][model].values(),
            *results["cross_modal"][model].values(),
        ]
        assert all(0.0 <= r <= 1.0 for r in rates)
        assert (out / f"{model}-s0_generation.png").stat().st_size > 5_000
    assert "jmvae_zero" not in results
    assert results["data"] == {**results["data"], "train": 300, "test": 200}
    assert results["seconds"] > 0
    # the classifier of generated images works on real ones: above chance (.1) even on this tiny set
    assert results["cross_modal"]["classifier on real test images"]["a (real)"] > 0.3


def test_config_errors_name_the_field(tmp_path):
    bad = tiny_config(tmp_path)
    bad["data"]["n_trian"] = 5
    with pytest.raises(ConfigError, match="n_trian"):
        load_experiment(write_config(tmp_path / "a.yaml", bad))
    with pytest.raises(ConfigError, match="importance_samples"):
        load_experiment(write_config(tmp_path / "b.yaml", tiny_config(tmp_path, importance_samples=-1)))
    assert load_experiment().model.latent_dim == 10  # the shipped config loads, with the paper's D_z


def test_unknown_model_gives_a_clean_error(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config(tmp_path))
    proc = subprocess.run(
        ["m2vae", "reproduce", "mnist-e", "--config", config, "--models", "nope", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown models ['nope']" in proc.stderr and "Traceback" not in proc.stderr


def test_table_names_the_best_model_per_subset_and_the_smallest_gap():
    elbos = {
        "m2vae": {"ab": -10.0, "a": -12.0, "b": -13.0},
        "tvae": {"ab": -9.0, "a": -20.0, "b": -14.0},
        "jmvae_zero": {"ab": -11.0, "a": -11.5, "b": -30.0},
    }
    results = {
        **elbos,
        "units": "nats",
        "estimator": "single-sample",
        "elbo_terms": {m: {s: {"a": -1.0, "b": -2.0, "kl": 0.5} for s in ("ab", "a", "b")} for m in elbos},
        "joint_offset": {m: {"ab": 0.0, "a": 0.5, "b": 0.6} for m in elbos},
        "coherence": {m: {"ab": 0.9, "a": 0.8, "b": 0.7} for m in elbos},
        "coherence_joint": {m: {"ab": 0.9, "a": 0.6, "b": 0.5} for m in elbos},
        # the authors' scoring ranks the other way round: jmvae_zero first on ab
        "posterior_mean": {
            m: {s: {"sse_kl": v - (3.0 if m != "jmvae_zero" else 0.0), "bernoulli_kl": v} for s, v in e.items()}
            for m, e in elbos.items()
        },
        "cross_modal": {
            "classifier on real test images": {"a (real)": 0.9, "b (real)": 0.8},
            **{m: {"a->b'": 0.5, "b->a'": 0.6} for m in elbos},
        },
    }
    text = table_ii(results)
    assert "ranking by ab (paper: m2vae > tvae > jmvae_zero): tvae > m2vae > jmvae_zero" in text
    # worst uni-modal gap: m2vae -3, tvae -11, jmvae_zero -19
    assert "highest ELBO: ab tvae, a jmvae_zero, b m2vae; smallest uni-modal gap: m2vae" in text
    assert "ranking by ab (paper: m2vae > tvae > jmvae_zero): jmvae_zero > tvae > m2vae" in text  # the authors' scoring
    assert "0.900 / 0.800 / 0.700    | 0.900 / 0.600 / 0.500" in text  # both coherence protocols
    assert "Importance-weighted" not in text
    weighted = {"samples": 7, **{m: {k: v + 1 for k, v in e.items()} for m, e in elbos.items()}}
    weighted["m2vae"]["ab"] = 0.0
    text = table_ii({**results, "importance_weighted": weighted})
    assert "Importance-weighted bound (K=7" in text and "ranking by ab (paper: m2vae > tvae > jmvae_zero): m2vae > tvae" in text
