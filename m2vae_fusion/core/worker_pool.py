"""The process pool every parallel training and benchmark run uses.

Its workers are spawned, not forked. A forked worker of a process that has already run a parallel
torch op (torch's OpenMP thread pool, libgomp, is not fork-safe) hangs forever at its own first
parallel op. `m2vae reproduce sim --data-seeds 0 1 2` did exactly that: seed 0's fusion training in
the main process, then seed 1's beta-VAE pool, whose workers sat in a futex with no CPU use.
Spawning costs each worker a fresh import of torch (a few seconds), which runs of minutes don't feel.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """A pool of `jobs` spawned processes; what it runs must be picklable (module-level functions,
    functools.partial of them, plain data)."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
