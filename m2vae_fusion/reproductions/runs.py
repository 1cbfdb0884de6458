"""Pieces every `m2vae reproduce` experiment shares: a training run, the process pool that runs
them, the short subset keys of the result tables and the atomic JSON writer.

Runs are independent, so they go to a process pool with one torch thread each: for the small
MLPs of the paper that is far faster than sharing threads in one process.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor

from m2vae_fusion.core.atomic_file import write_text_atomic
from m2vae_fusion.core.config import ModelConfig, TrainConfig
from m2vae_fusion.core.training import TrainResult, train
from m2vae_fusion.core.worker_pool import worker_pool

SUBSET_KEYS = {"a+b": "ab", "a": "a", "b": "b"}


@dataclass(frozen=True)
class Run:
    """One training run: a model, a seed, with or without the re-encoding loss (Eq. 19)."""

    model: str
    seed: int
    reencoding: bool = False

    @property
    def name(self) -> str:
        return f"{self.model}{'-reenc' if self.reencoding else ''}-s{self.seed}"


class Split(Protocol):
    """A training split as the data modules provide it."""

    def as_tensors(self) -> dict[str, Tensor]: ...

    def fingerprint(self) -> str: ...


def train_run(
    model_config: ModelConfig,
    train_config: TrainConfig,
    data: Split,
    out_dir: str | Path,
    run: Run,
    *,
    progress: bool,
    resume: bool,
) -> tuple[TrainResult, float]:
    """Train `run` into out_dir/<run name>; returns the result and the wall time in seconds."""
    started = time.monotonic()
    result = train(
        model_config,
        train_config,
        data.as_tensors(),
        Path(out_dir) / run.name,
        dataset_hash=data.fingerprint(),
        progress=progress,
        resume=resume,
    )
    return result, time.monotonic() - started


def resolve_jobs(jobs: int | None) -> int:
    return jobs or os.cpu_count() or 1


def run_pool(
    worker: Callable[[Run], dict[str, Any]],
    runs: Sequence[Run],
    jobs: int,
    on_result: Callable[[Run, dict[str, Any]], None] = lambda run, record: None,
) -> dict[Run, dict[str, Any]]:
    """worker(run) for every run on `jobs` processes; `on_result` sees each record in run order.

    `worker` must be picklable: a module-level function or a functools.partial of one.
    """
    records: dict[Run, dict[str, Any]] = {}
    with worker_pool(jobs) as pool:
        futures = {run: pool.submit(worker, run) for run in runs}
        for run, future in futures.items():
            records[run] = future.result()
            on_result(run, records[run])
    return records


def short_keys(rates: dict[str, float]) -> dict[str, float]:
    """Subset labels of core.subsets ("a+b") as the tables print them ("ab")."""
    return {SUBSET_KEYS.get(k, k): v for k, v in rates.items()}


def fmt(rates: dict[str, float], digits: int = 3) -> str:
    """ "ab / a / b" with `digits` decimals; nan for a missing subset."""
    return " / ".join(f"{rates.get(k, float('nan')):.{digits}f}" for k in ("ab", "a", "b"))


def write_json(results: dict[str, Any], path: Path) -> None:
    write_text_atomic(path, json.dumps(results, indent=2))
