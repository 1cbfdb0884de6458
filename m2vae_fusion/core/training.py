"""The training loop: seeded, deterministic on CPU, and resumable to bit-identical weights.

It minimises whatever `model(batch, epoch)` returns (for the M2VAE the negative of Eq. 17 plus
alpha * E_reenc of Eq. 19) with Adam over shuffled minibatches, logs the per-epoch means of the
model's terms to metrics.jsonl and checkpoints atomically (core.checkpoint). Reproducibility
rests on three things: the weights are initialised right after torch.manual_seed(seed); each
epoch's shuffle comes from its own generator seeded from (seed, epoch); torch's global RNG,
which draws the reparameterisation noise, is saved in every checkpoint and restored on resume.

Distributed data parallel: launched by torchrun (WORLD_SIZE > 1 in the environment), `train` joins
the gloo process group, wraps the model in DistributedDataParallel and splits every global batch
(train.batch_size, the same shuffle as one process) into near-equal contiguous shards, one per
process. Each shard's batch-mean loss is weighted by its share of the global batch, so the gradient
DDP averages is the gradient of the global batch mean, uneven last batches included: up to float
summation order, one process and N processes take the same optimiser step for the same noise.
The noise itself differs: each process draws the reparameterisation noise of its own shard from a
generator reseeded at every epoch from (seed, epoch, rank), which also makes a DDP run resumable to
identical weights without saving every process's RNG. The logged terms are the global means; only
rank 0 writes metrics.jsonl, checkpoints and the progress bar, and every rank resumes from the
same checkpoint, so out_dir must be a folder all processes see. With WORLD_SIZE 1 none of this
happens.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from m2vae_fusion.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from m2vae_fusion.core.config import ModelConfig, TrainConfig
from m2vae_fusion.core.errors import CheckpointError, DataError, TrainingError
from m2vae_fusion.core.model import MultiModalVAE, build_model

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
# Train settings that shape the optimisation trajectory; the rest (epochs, threads, logging and
# checkpoint intervals) may change when a run is resumed.
TRAJECTORY_FIELDS = ("batch_size", "learning_rate", "seed")


@dataclass
class TrainResult:
    model: MultiModalVAE  # trained, in eval mode
    history: list[dict[str, float]]  # one dict per epoch run by this call: epoch, time, every term
    checkpoint: Path
    epochs_run: int  # epochs run by this call (fewer than train_config.epochs after a resume)


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun launch: world size 1 and rank 0 without torchrun."""

    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a single process)."""
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


def distributed() -> Distributed:
    """Join torchrun's process group (gloo, CPU) when WORLD_SIZE > 1; once per process.

    torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; the group lives until
    the process exits, so several `train` calls (the stages of `m2vae train`) share it.
    """
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise TrainingError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None
    if world_size <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        try:
            dist.init_process_group("gloo")
        except (ValueError, RuntimeError, KeyError) as exc:
            raise TrainingError(
                f"WORLD_SIZE={world_size} but joining the process group failed ({exc}); launch with "
                "`torchrun --nproc-per-node N ...`, which also sets RANK, MASTER_ADDR and MASTER_PORT"
            ) from None
        atexit.register(dist.destroy_process_group)
    return Distributed(dist.get_rank(), dist.get_world_size())


def dataset_fingerprint(data: Mapping[str, Tensor]) -> str:
    """sha256 over each modality's name, shape, dtype and bytes (in name order), first 16 hex chars."""
    digest = hashlib.sha256()
    for name in sorted(data):
        x = data[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, list(x.shape), str(x.dtype)]).encode() + b"\n")
        # A byte view works for every dtype, bfloat16 included, where .numpy() would not.
        digest.update(x.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def check_data(model_config: ModelConfig, data: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Validate `data` against the config; return contiguous float tensors in modality order.

    Every modality of the config must be present (and no other), as a finite 2-D float tensor
    (samples, dim) with the same number of samples; Bernoulli modalities must lie in [0, 1].
    """
    names = model_config.modality_names
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise DataError(f"data holds modalities {unknown} that the model config does not list (it has {names})")
    out: dict[str, Tensor] = {}
    for modality in model_config.modalities:
        name = modality.name
        if name not in data:
            raise DataError(f"modality '{name}' is missing from the data (it has {sorted(data)}; the model needs {names})")
        x = data[name]
        if not isinstance(x, Tensor):
            raise DataError(f"modality '{name}': expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise DataError(f"modality '{name}': expected a float tensor, got dtype {x.dtype}")
        if x.dim() != 2 or x.shape[1] != modality.dim:
            raise DataError(f"modality '{name}': expected shape (samples, {modality.dim}), got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise DataError(f"modality '{name}' has no samples")
        if out and x.shape[0] != next(iter(out.values())).shape[0]:
            first = next(iter(out))
            raise DataError(f"modality '{name}' has {x.shape[0]} samples, '{first}' has {out[first].shape[0]}")
        x = x.detach().to(device="cpu", dtype=torch.get_default_dtype()).contiguous()
        if not torch.isfinite(x).all():
            raise DataError(f"modality '{name}' contains NaN or infinite values")
        if modality.likelihood == "bernoulli" and (x.min() < 0 or x.max() > 1):
            raise DataError(
                f"modality '{name}' has a Bernoulli likelihood, which needs values in [0, 1]; "
                f"got [{x.min().item():.4g}, {x.max().item():.4g}]"
            )
        out[name] = x
    return out


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: Mapping[str, Tensor],
    out_dir: str | Path,
    *,
    dataset_hash: str,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train `model_config`'s model on `data`, writing out_dir/metrics.jsonl and out_dir/checkpoint.pt.

    With `resume` and a checkpoint in out_dir that matches the model config, the data set hash
    and the trajectory settings (seed, batch size, learning rate), training continues from its
    epoch and ends with the same weights as an uninterrupted run. `log` receives status lines.
    """
    tensors = check_data(model_config, data)
    ranks = distributed()
    say = log if log is not None and ranks.main else (lambda message: None)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(train_config.threads)
    try:
        return _train(
            model_config, train_config, tensors, Path(out_dir), dataset_hash, resume, progress and ranks.main, say, ranks
        )
    finally:
        torch.set_num_threads(previous_threads)


def _adam(model: torch.nn.Module, learning_rate: float) -> torch.optim.Adam:
    """Adam with the fused kernel: the models here hold a few dozen small tensors, where the
    per-tensor default spends as long in the update as in the backward pass (22 % of a MoG run)."""
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)


def _train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: dict[str, Tensor],
    out_dir: Path,
    dataset_hash: str,
    resume: bool,
    progress: bool,
    say: Callable[[str], None],
    ranks: Distributed,
) -> TrainResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    metrics_path = out_dir / METRICS_NAME
    epochs = train_config.epochs
    model, optimizer, start = _start(model_config, train_config, checkpoint_path, metrics_path, dataset_hash, resume, say, ranks)
    num_samples = next(iter(data.values())).shape[0]
    if ranks.world_size > 1:
        _check_ranks_agree(dataset_hash=dataset_hash, samples=num_samples, start_epoch=start)

    if start == epochs:
        say(f"{checkpoint_path} already holds all {epochs} epochs; nothing to train")
        model.eval()
        return TrainResult(model, [], checkpoint_path, 0)

    batch_size = min(train_config.batch_size, num_samples)
    history: list[dict[str, float]] = []
    model.train()
    net = model if ranks.world_size == 1 else torch.nn.parallel.DistributedDataParallel(model)
    bar = tqdm(
        range(start, epochs),
        initial=start,
        total=epochs,
        desc="train",
        unit="epoch",
        disable=not progress or not sys.stderr.isatty(),
    )
    for epoch in bar:
        record = _run_epoch(net, optimizer, data, train_config.seed, epoch, batch_size, ranks)
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4g}")
        if ranks.main:
            _record_epoch(record, model, optimizer, model_config, train_config, dataset_hash, checkpoint_path, metrics_path)
    bar.close()
    ranks.barrier()  # every rank returns once rank 0's final checkpoint is on disk
    say(f"trained epochs {start + 1}-{epochs}; loss {history[-1]['loss']:.4g}; checkpoint {checkpoint_path}")
    model.eval()
    return TrainResult(model, history, checkpoint_path, epochs - start)


def _start(
    model_config: ModelConfig,
    train_config: TrainConfig,
    checkpoint_path: Path,
    metrics_path: Path,
    dataset_hash: str,
    resume: bool,
    say: Callable[[str], None],
    ranks: Distributed,
) -> tuple[MultiModalVAE, torch.optim.Adam, int]:
    """The model, its optimiser and the epoch to start from: restored from the checkpoint (with the
    global RNG that draws the noise) when resuming, else freshly initialised after manual_seed(seed)."""
    if resume and checkpoint_path.exists():
        checkpoint = _resumable(checkpoint_path, model_config, train_config, dataset_hash)
        model = checkpoint.model
        optimizer = _adam(model, train_config.learning_rate)
        optimizer.load_state_dict(checkpoint.optimizer_state)
        torch.set_rng_state(checkpoint.rng_state["torch"])
        start = checkpoint.epoch
        if ranks.main:
            _keep_metrics_up_to(metrics_path, start)
        say(f"resuming from {checkpoint_path} at epoch {start}/{train_config.epochs}")
        return model, optimizer, start
    if checkpoint_path.exists():
        say(f"resume disabled: starting afresh, {checkpoint_path} will be overwritten")
    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    optimizer = _adam(model, train_config.learning_rate)
    if ranks.main:
        metrics_path.unlink(missing_ok=True)
    return model, optimizer, 0


def _run_epoch(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: dict[str, Tensor],
    seed: int,
    epoch: int,
    batch_size: int,
    ranks: Distributed,
) -> dict[str, float]:
    """One pass over the (seed, epoch) shuffle of `data`; the epoch's record: its number, time and
    the per-sample means of the loss and every term."""
    started = time.perf_counter()
    num_samples = next(iter(data.values())).shape[0]
    num_batches = math.ceil(num_samples / batch_size)
    order = torch.randperm(num_samples, generator=_shuffle_generator(seed, epoch))
    if ranks.world_size > 1:
        torch.manual_seed(_derived_seed("m2vae-noise", seed, epoch, ranks.rank))
    sums: dict[str, float] = {}
    loss_sum = 0.0
    for b in range(num_batches):
        index = order[b * batch_size : (b + 1) * batch_size]
        loss_value, terms = _step(net, optimizer, data, index, epoch, b, num_batches, ranks)
        # Terms are batch means; weight by batch size so the epoch mean is over samples.
        loss_sum += loss_value * len(index)
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value * len(index)

    record = {"epoch": epoch + 1, "time": time.perf_counter() - started}
    record.update({key: value / num_samples for key, value in sums.items()})
    record.setdefault("loss", loss_sum / num_samples)
    return record


def _step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: dict[str, Tensor],
    index: Tensor,
    epoch: int,
    b: int,
    num_batches: int,
    ranks: Distributed,
) -> tuple[float, dict[str, float]]:
    """One optimiser step on the global batch `index` (this rank's shard of it); the batch's loss
    and terms as global batch means."""
    shard = index if ranks.world_size == 1 else index.tensor_split(ranks.world_size)[ranks.rank]
    # A process whose shard of a short last batch is empty still joins the gradient
    # all-reduce: it runs one sample with weight 0.
    batch = {name: x[shard if len(shard) else index[:1]] for name, x in data.items()}
    output = net(batch, epoch=epoch + b / num_batches)
    loss, loss_value, terms = output.loss, output.loss.item(), output.terms
    if ranks.world_size > 1:
        # DDP averages the ranks' gradients: weighting each shard's mean by its share of
        # the global batch turns that average into the gradient of the global batch mean.
        loss = loss * (len(shard) * ranks.world_size / len(index))
        loss_value, terms = _global_means(loss_value, terms, len(shard), len(index))
    if not math.isfinite(loss_value):
        listed = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        raise TrainingError(
            f"non-finite loss {loss_value} in epoch {epoch + 1} (batch {b + 1}/{num_batches}); "
            f"terms: {listed or 'none'}; try a lower train.learning_rate or check the data"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss_value, terms


def _record_epoch(
    record: dict[str, float],
    model: MultiModalVAE,
    optimizer: torch.optim.Optimizer,
    model_config: ModelConfig,
    train_config: TrainConfig,
    dataset_hash: str,
    checkpoint_path: Path,
    metrics_path: Path,
) -> None:
    """Rank 0 after each epoch: append the record to metrics.jsonl and checkpoint, each at its interval and after the last epoch."""
    done = int(record["epoch"])
    epochs = train_config.epochs
    if done % train_config.log_every == 0 or done == epochs:
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
    if done % train_config.checkpoint_every == 0 or done == epochs:
        save_checkpoint(
            checkpoint_path,
            model,
            model_config=model_config,
            train_config=train_config,
            dataset_hash=dataset_hash,
            epoch=done,
            optimizer=optimizer,
            rng_state={"torch": torch.get_rng_state()},
        )


def _shuffle_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch), so a resumed run shuffles identically."""
    return torch.Generator().manual_seed(_derived_seed("m2vae-shuffle", seed, epoch))


def _derived_seed(purpose: str, *parts: int) -> int:
    """A 63-bit seed from sha256 over `purpose` and `parts`: independent streams per purpose."""
    digest = hashlib.sha256(":".join([purpose, *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _global_means(loss: float, terms: dict[str, float], shard: int, batch: int) -> tuple[float, dict[str, float]]:
    """Means over the global batch of the loss and terms that each rank measured on its shard."""
    import torch.distributed as dist

    keys = list(terms)  # the same model code on every rank: the same keys in the same order
    values = torch.tensor([loss, *(terms[k] for k in keys)], dtype=torch.float64)
    values = values * shard if shard else torch.zeros_like(values)
    dist.all_reduce(values)
    values /= batch
    return values[0].item(), dict(zip(keys, values[1:].tolist()))


def _check_ranks_agree(**facts: Any) -> None:
    """Every rank must train on the same data from the same checkpoint epoch in the same folder."""
    import torch.distributed as dist

    gathered: list[dict[str, Any] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, facts)
    differing = [key for key in facts if any(g[key] != facts[key] for g in gathered)]
    if differing:
        per_rank = "; ".join(f"{key}: " + ", ".join(f"rank {r} {g[key]!r}" for r, g in enumerate(gathered)) for key in differing)
        raise TrainingError(
            f"the {len(gathered)} torchrun processes disagree ({per_rank}); every process must load the same "
            "data and see the same out_dir (a folder shared by all of them)"
        )


def _resumable(path: Path, model_config: ModelConfig, train_config: TrainConfig, dataset_hash: str) -> Checkpoint:
    """Load the checkpoint to resume; anything that would break bit-identical resumption is an error."""
    advice = "; pick another out_dir or pass resume=False to start afresh"
    try:
        checkpoint = load_checkpoint(path, expected_model_config=model_config, expected_dataset_hash=dataset_hash)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot resume: {exc}{advice}") from None
    if checkpoint.train_config is None or checkpoint.optimizer_state is None or not _has_torch_rng(checkpoint.rng_state):
        raise CheckpointError(f"cannot resume: checkpoint {path} lacks its train config, optimizer or RNG state{advice}")
    differences = [
        f"train.{name}: checkpoint {getattr(checkpoint.train_config, name)!r}, requested {getattr(train_config, name)!r}"
        for name in TRAJECTORY_FIELDS
        if getattr(checkpoint.train_config, name) != getattr(train_config, name)
    ]
    if differences:
        raise CheckpointError(f"cannot resume: checkpoint {path} was trained with " + "; ".join(differences) + advice)
    if checkpoint.epoch > train_config.epochs:
        raise CheckpointError(
            f"cannot resume: checkpoint {path} is at epoch {checkpoint.epoch}, past the requested "
            f"train.epochs={train_config.epochs}{advice}"
        )
    return checkpoint


def _has_torch_rng(rng_state: dict[str, Any] | None) -> bool:
    state = (rng_state or {}).get("torch")
    return isinstance(state, Tensor) and state.dtype == torch.uint8


def _keep_metrics_up_to(path: Path, epoch: int) -> None:
    """Drop metrics lines past the checkpoint's epoch (written before a crash) so none repeat."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash mid-write
        if isinstance(record, dict) and isinstance(record.get("epoch"), int) and record["epoch"] <= epoch:
            kept.append(line + "\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)
