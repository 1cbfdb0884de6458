"""`m2vae bench train`: training throughput of every model on MNIST-E, side by side.

Each model trains for a few epochs through core.training.train (the code the reproductions
run) on the same pairs, with the same batch size and one torch thread, one model after the
other in this process; the epoch times it logs exclude checkpoint writing.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2vae_fusion.core.errors import ConfigError

if TYPE_CHECKING:  # torch loads only when a benchmark runs, not for `m2vae --help`
    from m2vae_fusion.experiments.mnist_e import MnistEExperiment


def bench_train(
    experiment: MnistEExperiment,
    epochs: int = 1,
    batch_size: int = 128,
    samples: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Samples per second of a training epoch (mean over `epochs`) per model, and its ratio to the first model."""
    import numpy as np
    import torch

    from m2vae_fusion.core.training import train
    from m2vae_fusion.experiments.mnist_e import load_data

    if epochs < 1 or batch_size < 1 or (samples is not None and samples < 1):
        raise ConfigError(f"bench train: epochs, batch size and samples must be >= 1, got {epochs}, {batch_size}, {samples}")
    split = load_data(experiment, log).train
    tensors = {k: v[:samples] for k, v in split.as_tensors().items()}
    n = len(next(iter(tensors.values())))
    train_config = dataclasses.replace(experiment.train, epochs=epochs, batch_size=batch_size, threads=1, checkpoint_every=epochs)
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="m2vae-bench-") as tmp:
        for name in experiment.models:
            result = train(
                dataclasses.replace(experiment.model, model=name),
                train_config,
                tensors,
                Path(tmp) / name,
                dataset_hash="bench",
                resume=False,
                progress=False,
            )
            rates[name] = n / float(np.mean([h["time"] for h in result.history]))
    reference = "m2vae" if "m2vae" in rates else next(iter(rates))
    return {
        "samples_per_second": rates,
        "ratio_to": reference,
        "ratio": {name: rate / rates[reference] for name, rate in rates.items()},
        "samples": n,
        "batch_size": batch_size,
        "epochs": epochs,
        "threads": 1,
        "torch": torch.__version__,
    }


def table(results: dict[str, Any]) -> str:
    rows = [
        f"training throughput on MNIST-E: {results['samples']} pairs, batch {results['batch_size']}, "
        f"{results['epochs']} epoch(s), {results['threads']} torch thread",
        f"{'model':<12} {'samples/s':>10} {'ratio to ' + results['ratio_to']:>16}",
    ]
    for name, rate in results["samples_per_second"].items():
        rows.append(f"{name:<12} {rate:>10.0f} {results['ratio'][name]:>16.2f}")
    return "\n".join(rows)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="MNIST-E experiment YAML for data, networks and models (default: config/reproduce/mnist_e.yaml)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per model (default: 1)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    parser.add_argument("--samples", type=int, help="use the first N training pairs (default: all)")
    parser.add_argument("--models", nargs="+", help="models to measure (default: from the config)")


def run_bench(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from m2vae_fusion.experiments import mnist_e

    experiment = mnist_e.load_experiment(args.config)
    if args.models:
        experiment.models = args.models
    results = bench_train(experiment, epochs=args.epochs, batch_size=args.batch_size, samples=args.samples)
    return results, table(results)
