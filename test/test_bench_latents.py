"""`m2vae bench latents`: a tiny cell over real DDS (2 peers in two sender processes, 5 objects, a few
seconds) gives the table and JSON whose counters add up, with positive, finite latencies (never
absolute times); the plan's latents pass the fusion node's checks, and the window arithmetic
(latency by mean, rates between /diagnostics statuses) is right on made-up data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from m2vae_fusion.benchmarks import latent_load
from m2vae_fusion.benchmarks.latent_load import Cell, S
from m2vae_fusion.nodes.fusion import latent_from_message


def test_tiny_cell_over_dds(processes, ros_env, tmp_path: Path) -> None:
    out = tmp_path / "latents.json"
    bench = processes.start(
        "m2vae",
        "bench",
        "latents",
        *("--peers", "2", "--objects", "5", "--seconds", "3", "--warmup", "1"),
        *("--peers-per-process", "1", "--no-gains-off-rerun", "--domain-id", ros_env["ROS_DOMAIN_ID"]),
        *("--json", str(out)),
    )
    output, _ = bench.communicate(timeout=120)
    assert bench.returncode == 0, output
    assert "N=2 M=5 gains=8: fusion node up" in output and "verdict:" in output, output
    header = next(line for line in output.splitlines() if line.strip().startswith("peers | objects | gains | offered/s"))
    assert [c.strip() for c in header.split("|")][-1] == "kept up"

    results = json.loads(out.read_text())
    (cell,) = results["cells"]
    assert (cell["peers"], cell["objects"], cell["gain_samples"], cell["target_hz"]) == (2, 5, 8, 20.0)
    totals = cell["totals"]
    # every latent sent is received or lost in DDS, every one received is accepted or refused by reason
    assert totals["accepted"] <= totals["received"] <= totals["sent"] and totals["lost"] == totals["sent"] - totals["received"]
    assert totals["unaccounted"] == 0 and totals["ignored_own"] == 0, totals
    assert totals["accepted"] + sum(totals["rejected"].values()) == totals["received"]
    # window rates: a latent received just before the window's first status can be accepted just after
    # it, so only the totals above are ordered strictly
    assert 0 < cell["offered_hz"] and 0 <= cell["accepted_hz"] and 0 <= cell["received_hz"]
    assert cell["accepted_ratio"] == pytest.approx(cell["accepted_hz"] / cell["offered_hz"])
    latency = cell["latency"]
    # the published mean is the latent's, bit for bit, and its last_update the latent's stamp
    assert latency["stamp_mismatches"] == 0 and 1 <= latency["seen"] <= latency["sent"], latency
    assert 0 < latency["min_ms"] <= latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"], latency
    assert all(math.isfinite(latency[k]) for k in ("min_ms", "p50_ms", "p99_ms", "max_ms"))
    for key in ("node_cpu_percent", "beliefs_hz", "beliefs_per_array", "bench_cpu_percent"):
        assert cell[key] > 0 and math.isfinite(cell[key]), (key, cell[key])
    assert cell["senders"]["processes"] == 2 and cell["senders"]["sent_ratio"] > 0
    assert cell["node_run_queue_percent"] >= 0 and cell["load_average_1min"] >= 0
    costs = cell["costs_percent"]
    steps = {"take", "fuse", "gains", "beliefs"}
    assert set(costs) == steps | {"total", "gains_ms_per_publish", "beliefs_ms_per_publish"}
    assert all(costs[k] >= 0 for k in costs) and costs["total"] == pytest.approx(sum(costs[k] for k in steps))
    assert isinstance(cell["kept_up"], bool) and results["verdict"]["text"]


def test_the_plans_latents_pass_the_nodes_checks() -> None:
    """Latents as the peers send them (messages from the plan, as the node converts them) are all taken."""
    from m2vae_fusion.benchmarks.fusion import load_model
    from m2vae_fusion.benchmarks.latent_peers import fill, latent_template
    from m2vae_fusion.model.beliefs import BeliefStore

    model = load_model(None)
    cell = Cell(peers=3, objects=20)
    plan = latent_load.make_plan(model, cell, np.random.default_rng(0))
    store = BeliefStore(model, latent_load.RECEIVER)
    latents = []
    for peer, obj in np.ndindex(plan["phases"].shape):
        msg = latent_template(plan, peer, obj)
        fill(msg, 1, plan["means"][peer, obj], S)
        latents.append(latent_from_message(msg))
    assert [store.check_latent(x) for x in latents] == [None] * len(latents)
    result = store.add_latents(latents, 0.0)
    # every peer sees the same objects: one object each, all peers' latents on it
    assert not result.rejected and len(store.objects) == cell.objects
    assert sorted(len(obj.foreign) for obj in store.objects.values()) == [cell.peers] * cell.objects


def test_latencies_find_latents_by_mean_and_split_the_window() -> None:
    w0, w1 = 10 * S, 13 * S
    means = np.arange(12, dtype=np.float32).reshape(4, 3)
    sent = {"stamp_ns": np.array([9 * S, 10 * S, 11 * S, 12 * S + S // 2]), "mean": means}
    first_seen = {
        means[0].tobytes(): (9 * S + 5, 9 * S),  # before the window: not counted
        means[1].tobytes(): (10 * S + 20_000_000, 10 * S),
        means[2].tobytes(): (11 * S + 40_000_000, 11 * S + 1),  # a belief's last_update that is not the latent's stamp
        means[3].tobytes(): (12 * S + S // 2 + 60_000_000, 12 * S + S // 2),
    }
    out = latent_load.latencies(sent, (w0, w1), first_seen)
    assert (out["sent"], out["seen"], out["stamp_mismatches"]) == (3, 2, 1)
    assert (out["min_ms"], out["max_ms"]) == pytest.approx((20.0, 60.0))
    assert (out["p99_first_third_ms"], out["p99_last_third_ms"]) == pytest.approx((20.0, 60.0))
    empty = latent_load.latencies(sent, (w0, w1), {})
    assert empty["seen"] == 0 and empty["p99_ms"] is None


def test_window_rates_between_the_statuses_nearest_the_edges() -> None:
    counts = [
        (int(9.9 * S), {"received latents": 100, "accepted latents": 90, "dropped latent: rate": 10}),
        (int(10.4 * S), {"received latents": 110, "accepted latents": 100, "dropped latent: rate": 10}),
        (
            int(12.4 * S),
            {"received latents": 150, "accepted latents": 130, "dropped latent: rate": 15, "dropped latent: stale": 5},
        ),
        (
            int(12.9 * S),
            {"received latents": 160, "accepted latents": 140, "dropped latent: rate": 15, "dropped latent: stale": 5},
        ),
    ]
    rates = latent_load.window_rates(counts, (10 * S, 13 * S))
    assert rates["diagnostics_span_s"] == pytest.approx(3.0)
    assert (rates["received_hz"], rates["accepted_hz"]) == pytest.approx((20.0, 50 / 3))
    assert rates["dropped_hz"] == pytest.approx({"rate": 5 / 3, "stale": 5 / 3})
    with pytest.raises(latent_load.BenchError):
        latent_load.window_rates(counts[:1], (10 * S, 13 * S))
