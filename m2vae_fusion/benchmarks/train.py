"""`m2vae bench train`: training throughput on MNIST-E, every figure a ratio measured in this run.

Models: every model of the experiment and a beta-VAE of the same size train through
core.training.train (the code the reproductions run) on the same pairs, batch size and seed, one
torch thread, interleaved: each round trains every model one more epoch (resuming its checkpoint),
in alternating order, so load from other processes hits them alike. A model's samples/s is the
mean over rounds; its ratio to the M2VAE is the median of the per-round ratios.

The beta-VAE of the same size (core.models.beta_vae, the M = 1 case of the M2VAE objective) sees
the same data as ONE modality, the images concatenated (a+b: 1568 values), through the M2VAE's
per-modality trunk (hidden widths), latent size and beta_norm: its one 1568-wide input and output
layer hold as many weights as the M2VAE's two 784-wide ones, so both models read and reconstruct
the same numbers through equally wide layers. What differs is what the M2VAE adds: 2^M - 1
posteriors (the subset encoder on top of the unimodal ones) and an ELBO with its own decoder
pass for each of them. The M2VAE/beta-VAE epoch-time ratio is the price of those encoders. (A
beta-VAE on one modality would also halve the data, mixing that into the price.)

--ddp: the M2VAE trained by torchrun (DDP, gloo on CPU) with 1 and with N processes, the same
global batch, data and seed, alternating launches epoch by epoch (each resumes its checkpoint):
samples/s of each, the speed-up and the largest relative difference between the two per-epoch
loss curves. The curves differ only through float summation order and the reparameterisation
noise, which each process draws for its own shard.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2vae_fusion.core.config import ModalityConfig, ModelConfig, TrainConfig
from m2vae_fusion.core.errors import ConfigError, TrainingError

if TYPE_CHECKING:  # torch loads only when a benchmark runs, not for `m2vae --help`
    from torch import Tensor

    from m2vae_fusion.reproductions.mnist_e import MnistEExperiment

REFERENCE = "m2vae"
BETA_VAE = "beta_vae"


def same_size_beta_vae(model: ModelConfig) -> ModelConfig:
    """The beta-VAE over the concatenated modalities with the M2VAE's trunk, latent size and beta."""
    first = model.modalities[0]
    for m in model.modalities:
        if m.hidden != first.hidden or m.likelihood != first.likelihood or m.gaussian_std != first.gaussian_std or m.conv:
            raise ConfigError(
                f"bench train: the beta-VAE of the same size needs every modality to share one MLP trunk and likelihood; "
                f"modality {m.name} has hidden {m.hidden}, {m.likelihood}, conv {m.conv} vs {first.name}'s {first.hidden}, {first.likelihood}"
            )
    joined = ModalityConfig(
        name="_".join(model.modality_names),
        dim=sum(m.dim for m in model.modalities),
        hidden=first.hidden,
        likelihood=first.likelihood,
        gaussian_std=first.gaussian_std,
    )
    return dataclasses.replace(model, model=BETA_VAE, modalities=[joined])


def bench_train(
    experiment: MnistEExperiment,
    epochs: int = 3,
    batch_size: int = 128,
    samples: int | None = None,
    ddp_processes: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Samples per second per model (the beta-VAE of the same size among them) and the ratios to the
    M2VAE; with `ddp_processes` >= 2 also the 1- vs N-process torchrun comparison under "ddp"."""
    import torch

    from m2vae_fusion.reproductions.mnist_e import load_data

    if epochs < 1 or batch_size < 1 or (samples is not None and samples < 1):
        raise ConfigError(f"bench train: epochs, batch size and samples must be >= 1, got {epochs}, {batch_size}, {samples}")
    if ddp_processes == 1 or ddp_processes < 0:
        raise ConfigError(f"bench train: --ddp needs at least 2 processes, got {ddp_processes}")
    split = load_data(experiment, log).train
    tensors = {k: v[:samples] for k, v in split.as_tensors().items()}
    n = len(next(iter(tensors.values())))
    train_config = dataclasses.replace(experiment.train, batch_size=batch_size, threads=1, checkpoint_every=1, log_every=1)
    configs = {
        name: dataclasses.replace(experiment.model, model=name) for name in [REFERENCE, *experiment.models] if name != BETA_VAE
    }
    configs[BETA_VAE] = same_size_beta_vae(experiment.model)
    data = dict.fromkeys(configs, tensors)
    data[BETA_VAE] = {
        configs[BETA_VAE].modality_names[0]: torch.cat([tensors[m] for m in experiment.model.modality_names], dim=1)
    }

    times, parameters = _epoch_times(configs, data, train_config, epochs)
    rates = {name: n / statistics.mean(t) for name, t in times.items()}
    ratio = {name: statistics.median(r / t for r, t in zip(times[REFERENCE], t_name)) for name, t_name in times.items()}
    beta = configs[BETA_VAE].modalities[0]
    results: dict[str, Any] = {
        "samples_per_second": rates,
        "ratio_to": REFERENCE,
        "ratio": ratio,
        "parameters": parameters,
        "beta_vae": {
            "input": "+".join(experiment.model.modality_names),
            "dim": beta.dim,
            "hidden": list(beta.hidden),
            "latent_dim": experiment.model.latent_dim,
            "encoders": {REFERENCE: 2 ** len(experiment.model.modalities) - 1, BETA_VAE: 1},
            # epoch time of the M2VAE over the beta-VAE's: what the 2^M - 1 encoders cost
            "price": statistics.median(m / b for m, b in zip(times[REFERENCE], times[BETA_VAE])),
        },
        "samples": n,
        "batch_size": batch_size,
        "epochs": epochs,
        "threads": 1,
        "torch": torch.__version__,
    }
    if ddp_processes:
        results["ddp"] = bench_ddp(configs[REFERENCE], train_config, tensors, ddp_processes, epochs, log)
    return results


def _epoch_times(
    configs: dict[str, ModelConfig], data: dict[str, dict[str, Any]], train_config: TrainConfig, epochs: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Per model the time of each epoch, the models taking turns epoch by epoch in alternating order,
    and its parameter count."""
    from m2vae_fusion.core.training import train

    times: dict[str, list[float]] = {name: [] for name in configs}
    parameters: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="m2vae-bench-") as tmp:
        for round_ in range(epochs):
            names = list(configs) if round_ % 2 == 0 else list(reversed(configs))
            for name in names:
                result = train(
                    configs[name],
                    dataclasses.replace(train_config, epochs=round_ + 1),
                    data[name],
                    Path(tmp) / name,
                    dataset_hash="bench",
                    progress=False,
                )
                times[name].append(result.history[-1]["time"])
                parameters[name] = sum(p.numel() for p in result.model.parameters())
    return times, parameters


def bench_ddp(
    model_config: ModelConfig,
    train_config: TrainConfig,
    tensors: dict[str, Tensor],
    processes: int,
    epochs: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """1 vs `processes` torchrun processes on the same global batch: rates and loss curves."""
    import torch

    from m2vae_fusion.core.config import to_dict

    n = len(next(iter(tensors.values())))
    worlds = (1, processes)
    times: dict[int, list[float]] = {w: [] for w in worlds}
    curves: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="m2vae-bench-ddp-") as tmp:
        job = Path(tmp) / "job.pt"
        torch.save({"model": to_dict(model_config), "train": to_dict(train_config), "data": tensors}, job)
        for round_ in range(epochs):
            for world in worlds if round_ % 2 == 0 else worlds[::-1]:
                log(f"bench train --ddp: epoch {round_ + 1}/{epochs} on {world} process(es)")
                out = Path(tmp) / f"world{world}"
                _torchrun(world, job, out, round_ + 1)
                lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
                times[world].append(lines[-1]["time"])
                curves[world] = [line["loss"] for line in lines]
    one, many = curves[1], curves[processes]
    return {
        "processes": processes,
        "samples_per_second": {str(w): n / statistics.mean(times[w]) for w in worlds},
        "speedup": statistics.median(t1 / tn for t1, tn in zip(times[1], times[processes])),
        "loss": {str(w): curves[w] for w in worlds},
        "max_relative_loss_difference": max(abs(a - b) / abs(a) for a, b in zip(one, many)),
        "global_batch": train_config.batch_size,
        "batch_per_process": -(-train_config.batch_size // processes),
    }


def _torchrun(processes: int, job: Path, out: Path, epochs: int) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(processes),
        "-m",
        "m2vae_fusion.benchmarks.train",
        str(job),
        str(out),
        str(epochs),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TrainingError(
            f"bench train --ddp: torchrun with {processes} process(es) failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )


def table(results: dict[str, Any]) -> str:
    beta = results["beta_vae"]
    rows = [
        f"training throughput on MNIST-E: {results['samples']} pairs, batch {results['batch_size']}, {results['epochs']} epoch(s) "
        f"per model interleaved round by round, {results['threads']} torch thread",
        f"{'model':<12} {'samples/s':>10} {'ratio to ' + results['ratio_to']:>16} {'parameters':>11}",
    ]
    for name, rate in results["samples_per_second"].items():
        rows.append(f"{name:<12} {rate:>10.0f} {results['ratio'][name]:>16.2f} {results['parameters'][name]:>11}")
    rows.append(
        f"beta_vae: one encoder on {beta['input']} concatenated ({beta['dim']} values, hidden {beta['hidden']}, z {beta['latent_dim']}); "
        f"the M2VAE's {beta['encoders'][REFERENCE]} encoders make an epoch {beta['price']:.2f}x as long"
    )
    if "ddp" in results:
        ddp = results["ddp"]
        w = str(ddp["processes"])
        rows += [
            "",
            f"DDP (torchrun, gloo on CPU), M2VAE, global batch {ddp['global_batch']} ({ddp['batch_per_process']} per process with {w}):",
            f"{'processes':<12} {'samples/s':>10} {'loss per epoch'}",
            *(f"{p:<12} {ddp['samples_per_second'][p]:>10.0f} {' '.join(f'{x:.4f}' for x in ddp['loss'][p])}" for p in ("1", w)),
            f"speed-up {ddp['speedup']:.2f}x; largest relative difference of the loss curves {ddp['max_relative_loss_difference']:.2e}",
        ]
    return "\n".join(rows)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="MNIST-E experiment YAML for data, networks and models (default: config/reproduce/mnist_e.yaml)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs (rounds) per model (default: 3)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size; with --ddp the global batch (default: 128)")
    parser.add_argument("--samples", type=int, help="use the first N training pairs (default: all)")
    parser.add_argument(
        "--models", nargs="+", help="models to measure besides the M2VAE and the beta-VAE (default: from the config)"
    )
    parser.add_argument(
        "--ddp",
        type=int,
        nargs="?",
        const=2,
        default=0,
        metavar="N",
        help="also train the M2VAE with torchrun on 1 and on N processes (default N: 2) and compare",
    )


def run_bench(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from m2vae_fusion.reproductions import mnist_e

    experiment = mnist_e.load_experiment(args.config)
    if args.models:
        experiment.models = args.models
    results = bench_train(
        experiment, epochs=args.epochs, batch_size=args.batch_size, samples=args.samples, ddp_processes=args.ddp
    )
    return results, table(results)


def ddp_worker(argv: list[str]) -> None:
    """What `bench_ddp` launches under torchrun: train the job's model to EPOCHS in OUT."""
    import torch

    from m2vae_fusion.core.config import from_dict
    from m2vae_fusion.core.training import train

    parser = argparse.ArgumentParser(prog="python -m m2vae_fusion.benchmarks.train")
    parser.add_argument("job", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("epochs", type=int)
    args = parser.parse_args(argv)
    job = torch.load(args.job)
    train_config = dataclasses.replace(from_dict(TrainConfig, job["train"]), epochs=args.epochs)
    train(from_dict(ModelConfig, job["model"]), train_config, job["data"], args.out, dataset_hash="bench", progress=False)


if __name__ == "__main__":
    ddp_worker(sys.argv[1:])
