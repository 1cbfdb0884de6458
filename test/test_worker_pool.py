"""The training pools' workers survive a parent that has already run parallel torch ops: forked
ones hung at their first parallel op (`reproduce sim --data-seeds`: seed 1's beta-VAE pool after
seed 0's fusion training in the main process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

# the parent runs a parallel op on two threads (torch's OpenMP pool exists from then on), then
# each worker runs one of its own; with forked workers this script never ends
SCRIPT = textwrap.dedent(
    """
    import torch
    from m2vae_fusion.core.worker_pool import worker_pool

    def all_finite(n):
        return bool(torch.isfinite(torch.rand(n)).all())

    if __name__ == "__main__":
        torch.set_num_threads(2)
        float((torch.rand(4_000_000) * 2).sum())
        with worker_pool(2) as pool:
            print(list(pool.map(all_finite, [2_000_000, 2_000_000])))
    """
)


@pytest.mark.slow
def test_workers_run_parallel_torch_ops_after_the_parent_did(tmp_path) -> None:
    script = tmp_path / "pool_after_torch.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too
        proc.communicate()
        pytest.fail("the pool's workers hung at their first parallel torch op (120 s)")
    assert proc.returncode == 0, out
    assert out.strip().endswith("[True, True]"), out
