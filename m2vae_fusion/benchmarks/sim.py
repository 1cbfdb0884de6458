"""`m2vae bench sim`: how much faster than real time the embedded simulator runs with every sensor at
its SDF rate, and how many labelled observations per second data collection writes, on one core.

Both figures are ratios measured in this run (simulated seconds per wall second; observations per
wall second), never compared with stored absolute times.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def one_core() -> Iterator[int]:
    """Pin this process (and the renderer's threads it starts) to one CPU for the measurement."""
    before = os.sched_getaffinity(0)
    core = min(before)
    os.sched_setaffinity(0, {core})
    try:
        yield core
    finally:
        os.sched_setaffinity(0, before)


def run_realtime(world: Path, sim_seconds: float, physics_rate: float = 100.0) -> dict[str, Any]:
    """Drive in a slow circle for `sim_seconds`, stepping physics at `physics_rate` and firing each
    sensor at its own rate, as the sim node does; returns the time spent per sensor."""
    from m2vae_fusion.sim.simulator import SimConfig, Simulator

    with Simulator(SimConfig(world=world)) as sim:
        sensors = {kind: getattr(sim, kind) for kind in sim.sensors}
        periods = {kind: 1.0 / spec.rate_hz for kind, spec in sim.sensors.items()}
        due = dict(periods)
        spent = dict.fromkeys(["physics", *sensors], 0.0)
        fired = dict.fromkeys(sensors, 0)
        dt = 1.0 / physics_rate
        sim.set_cmd_vel(0.05, 0.3)
        start = time.perf_counter()
        while sim.time < sim_seconds:
            t0 = time.perf_counter()
            sim.step(dt)
            spent["physics"] += time.perf_counter() - t0
            for kind, read in sensors.items():
                if sim.time + 1e-9 >= due[kind]:
                    t0 = time.perf_counter()
                    read()
                    spent[kind] += time.perf_counter() - t0
                    fired[kind] += 1
                    due[kind] += periods[kind]
        wall = time.perf_counter() - start
        rates = {kind: spec.rate_hz for kind, spec in sim.sensors.items()}
    return {
        "sim_seconds": sim_seconds,
        "wall_seconds": wall,
        "real_time_factor": sim_seconds / wall,
        "sensor_rates_hz": rates,
        "readings": fired,
        "share_of_wall": {k: v / wall for k, v in spent.items()},
    }


def bench_sim(world: Path, sim_seconds: float = 30.0, samples: int = 500) -> dict[str, Any]:
    from m2vae_fusion.sim.collect import collect

    if sim_seconds <= 0 or samples < 1:
        raise ValueError(f"bench sim: --seconds must be > 0 and --samples >= 1, got {sim_seconds}, {samples}")
    with one_core() as core, tempfile.TemporaryDirectory(prefix="m2vae-bench-sim-") as tmp:
        realtime = run_realtime(world, sim_seconds)
        report = collect(Path(tmp) / "bag", samples, seed=0, world=world)
        bag_bytes = sum(f.stat().st_size for f in (Path(tmp) / "bag").iterdir())
    return {
        "world": str(world),
        "core": core,
        "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
        "simulation": realtime,
        "collection": {
            "samples": samples,
            "wall_seconds": report.seconds,
            "observations_per_second": report.rate,
            "bag_bytes_per_observation": bag_bytes / samples,
        },
        "targets": {"real_time_factor": 10.0, "observations_per_second": 100.0},
    }


def table(results: dict[str, Any]) -> str:
    sim, col = results["simulation"], results["collection"]
    rates = ", ".join(f"{k} {v:g} Hz" for k, v in sim["sensor_rates_hz"].items())
    shares = ", ".join(f"{k} {v:.0%}" for k, v in sim["share_of_wall"].items())
    lines = [
        f"embedded simulator on one core (cpu {results['core']}, MUJOCO_GL={results['mujoco_gl'] or 'unset'}), world {Path(results['world']).name}",
        f"{'measure':<34}{'value':>12}{'target':>10}",
        f"{'real-time factor (all sensors)':<34}{sim['real_time_factor']:>11.1f}x{'>= 10x':>10}",
        f"{'collection, observations/s':<34}{col['observations_per_second']:>12.0f}{'>= 100':>10}",
        f"{'bag size per observation (kB)':<34}{col['bag_bytes_per_observation'] / 1e3:>12.0f}",
        f"sensors: {rates}; wall time spent: {shares}",
    ]
    return "\n".join(lines)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", type=Path, help="world SDF (default: the package's worlds/arena.sdf)")
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated seconds to run (default: 30)")
    parser.add_argument("--samples", type=int, default=500, help="observations to collect (default: 500)")


def run_bench(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from m2vae_fusion.resources import share_dir

    results = bench_sim(args.world or share_dir() / "worlds" / "arena.sdf", args.seconds, args.samples)
    return results, table(results)
