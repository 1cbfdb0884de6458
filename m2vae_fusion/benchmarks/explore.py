"""`m2vae bench explore`: the explorer's policies side by side (tour, entropy, active: see
m2vae_fusion/behaviour/explorer.py) on generated worlds, with 1 and 2 robots, in the embedded simulator
without DDS (one episode: m2vae_fusion/benchmarks/explore_episode.py).

World k is `m2vae sim world --seed FIRST+k` with 8 to 16 objects (drawn from the seed) and the robots
asked for; every policy runs on the same worlds. Per episode and simulated second, the fleet's accuracy
is that of its least informed robot (each robot's fused beliefs, its own sensing and the others'
latents, scored against ground truth). Reported per policy: the simulated time and the path length
(all robots) until 95 % of the objects are correctly classified, the accuracy at 60, 120 and 180 s, the
sensings (encodings fused, views taken), and the ratios to the tour: the median over worlds of each
world's time ratio, and the ratio of the median times (an episode that never reaches 95 % counts as
the budget). Target: active reaches 95 % in at most 0.7x the tour's time on the median world, with at
least its final accuracy, and beats entropy too.

With --demo-arena every run is instead the world `m2vae demo` runs for that many robots, with the
simulator seeded FIRST+k: the column ">=95% at end" then counts the runs that keep the demo's promise
(at least 95 % correct at the end of the budget; goal: 9 of 10).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

from m2vae_fusion.core.worker_pool import worker_pool

POLICIES = ("tour", "entropy", "active")
BUDGETS_S = (60, 120, 180)
TARGET_ACCURACY = 0.95
TARGET_TIME_RATIO = 0.7


def world_objects(seed: int) -> int:
    """Objects in world `seed`: 8 to 16, drawn from the seed so every policy sees the same world."""
    return random.Random(f"bench explore {seed}").randint(8, 16)


def summarise(episode: dict[str, Any], budget_s: float) -> dict[str, Any]:
    """Time, path and sensings to TARGET_ACCURACY and the accuracy at each budget, of one episode."""
    traces = list(episode["robots"].values())
    fleet = [min(values) for values in zip(*(t["accuracy"] for t in traces))]
    reached = next((second for second, value in enumerate(fleet, start=1) if value >= TARGET_ACCURACY), None)
    at = (reached or len(fleet)) - 1
    return {
        "objects": episode["objects"],
        "time_to_target_s": reached,
        "path_to_target_m": sum(t["path_m"][at] for t in traces) if reached else None,
        "accuracy_at": {str(b): fleet[b - 1] for b in BUDGETS_S if b <= len(fleet)},
        "final_accuracy": fleet[-1],
        "encodings": sum(t["encodings"][-1] for t in traces),
        "views": sum(t["views"][-1] for t in traces),
        "path_m": sum(t["path_m"][-1] for t in traces),
        # at the end, over the robots: objects no belief matched, and objects whose belief names another class
        "never_found": sum(1 for t in traces for m in t["misses"] if m["belief"] is None),
        "wrong_class": sum(1 for t in traces for m in t["misses"] if m["belief"] is not None),
        "budget_s": budget_s,
    }


def compare(episodes: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per policy: medians over worlds and the ratios to the tour (module docstring)."""
    out: dict[str, Any] = {}
    tour = episodes.get("tour")
    for policy, runs in episodes.items():
        times = [r["time_to_target_s"] or r["budget_s"] for r in runs]
        row = {
            "worlds": len(runs),
            "reached": sum(r["time_to_target_s"] is not None for r in runs),
            "met_at_budget": sum(r["final_accuracy"] >= TARGET_ACCURACY for r in runs),
            "median_time_s": statistics.median(times),
            "median_path_m": statistics.median([r["path_to_target_m"] or r["path_m"] for r in runs]),
            "mean_accuracy_at": {
                b: statistics.fmean(r["accuracy_at"][b] for r in runs)
                for b in runs[0]["accuracy_at"]
                if all(b in r["accuracy_at"] for r in runs)
            },
            "mean_final_accuracy": statistics.fmean(r["final_accuracy"] for r in runs),
            "median_encodings": statistics.median(r["encodings"] for r in runs),
            "median_views": statistics.median(r["views"] for r in runs),
            "never_found": sum(r["never_found"] for r in runs),
            "wrong_class": sum(r["wrong_class"] for r in runs),
        }
        if tour is not None:
            tour_times = [r["time_to_target_s"] or r["budget_s"] for r in tour]
            row["median_time_ratio_to_tour"] = statistics.median(a / b for a, b in zip(times, tour_times, strict=True))
            row["ratio_of_median_times_to_tour"] = row["median_time_s"] / statistics.median(tour_times)
        out[policy] = row
    return out


def _episode(job: tuple[int, bool, int, str, float, str, int]) -> tuple[tuple[int, int, str], dict[str, Any]]:
    from m2vae_fusion.benchmarks.explore_episode import run_episode
    from m2vae_fusion.bringup.worlds import resolve_world
    from m2vae_fusion.sim import world_gen

    seed, demo_arena, robots, policy, budget, model, samples = job
    with tempfile.TemporaryDirectory(prefix="m2vae-bench-explore-") as tmp:
        if demo_arena:  # the world `m2vae demo` runs for this many robots; the seed drives the simulator's noise
            world = resolve_world(None, robots, Path(tmp))
        else:
            world = world_gen.write_world(Path(tmp) / f"world_{seed}.sdf", seed, world_objects(seed), robots=robots)
        episode = run_episode(world, robots, policy, budget, Path(model), seed=seed, samples=samples)
    return (robots, seed, policy), summarise(episode, budget)


def bench_explore(
    worlds: int,
    first_seed: int,
    robots: list[int],
    policies: list[str],
    budget_s: float,
    model: Path,
    jobs: int,
    samples: int,
    demo_arena: bool = False,
) -> dict[str, Any]:
    from tqdm import tqdm

    seeds = range(first_seed, first_seed + worlds)
    work = [(s, demo_arena, r, p, budget_s, str(model), samples) for r in robots for s in seeds for p in policies]
    done: dict[tuple[int, int, str], dict[str, Any]] = {}
    with worker_pool(jobs) as pool:
        futures = [pool.submit(_episode, job) for job in work]
        for future in tqdm(as_completed(futures), total=len(futures), unit="episode", desc="bench explore"):
            key, summary = future.result()
            done[key] = summary
    results: dict[str, Any] = {
        "budget_s": budget_s,
        "seeds": list(seeds),
        "worlds": "the demo's arena, simulator seeded" if demo_arena else "generated from the seeds",
        "model": str(model),
        "by_robots": {},
    }
    for r in robots:
        episodes = {p: [done[(r, s, p)] for s in seeds] for p in policies}
        results["by_robots"][str(r)] = {"episodes": {p: dict(zip(map(str, seeds), runs)) for p, runs in episodes.items()}}
        results["by_robots"][str(r)]["policies"] = compare(episodes)
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        f"explorer policies on {len(results['seeds'])} worlds ({results.get('worlds', 'generated from the seeds')}, seeds "
        f"{results['seeds'][0]}..{results['seeds'][-1]}), "
        f"{results['budget_s']:g} s simulated; time to {TARGET_ACCURACY:.0%} correct (fleet: least informed robot)"
    ]
    for robots, block in results["by_robots"].items():
        lines.append(f"\n{robots} robot(s)")
        lines.append(
            f"{'policy':<9}{'reached':>8}{'median t95 s':>13}{'vs tour':>9}{'median of':>10}{'path m':>8}"
            + "".join(f"{'acc@' + str(b):>8}" for b in BUDGETS_S)
            + f"{'final':>7}{'>=95% at end':>13}{'encodings':>10}{'views':>7}{'unfound':>8}{'wrong':>6}"
        )
        for policy, row in block["policies"].items():
            acc = "".join(
                f"{row['mean_accuracy_at'][str(b)]:>8.2f}" if str(b) in row["mean_accuracy_at"] else f"{'-':>8}"
                for b in BUDGETS_S
            )
            lines.append(
                f"{policy:<9}{row['reached']:>4}/{row['worlds']:<3}{row['median_time_s']:>13.0f}"
                f"{row.get('ratio_of_median_times_to_tour', float('nan')):>8.2f}x{row.get('median_time_ratio_to_tour', float('nan')):>9.2f}x"
                f"{row['median_path_m']:>8.1f}{acc}{row['mean_final_accuracy']:>7.2f}"
                f"{str(row['met_at_budget']) + '/' + str(row['worlds']):>13}{row['median_encodings']:>10.0f}{row['median_views']:>7.0f}"
                f"{row['never_found']:>8}{row['wrong_class']:>6}"
            )
    lines.append(
        f"vs tour: ratio of the median times; median of: the median over worlds of each world's ratio (target for active: "
        f"<= {TARGET_TIME_RATIO}x). A world that never reaches {TARGET_ACCURACY:.0%} counts as the budget. unfound / wrong: at the "
        f"end, summed over worlds and robots, objects no belief matched / objects whose belief names another class."
    )
    return "\n".join(lines)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--worlds", type=int, default=10, help="worlds (or seeded runs with --demo-arena) per robot count (default: 10)"
    )
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seed of the first world; world k has seed FIRST+k (default: 0)"
    )
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 2], help="robot counts to run (default: 1 2)")
    parser.add_argument(
        "--policies", nargs="+", choices=POLICIES, default=list(POLICIES), help="policies to compare (default: all)"
    )
    parser.add_argument("--budget", type=float, default=180.0, help="simulated seconds per episode (default: 180)")
    parser.add_argument("--model", type=Path, help="perception model folder (default: the package's weights/amiro)")
    parser.add_argument(
        "--jobs", type=int, default=None, help="episodes run in parallel (default: the CPUs this process may use)"
    )
    parser.add_argument("--samples", type=int, default=8, help="z samples per gain estimate (default: 8)")
    parser.add_argument(
        "--demo-arena",
        action="store_true",
        help="run the world `m2vae demo` runs for each robot count (worlds/arena.sdf, arena_two_robots.sdf) with the "
        "simulator seeded FIRST+k, instead of generated worlds: the count of runs that keep the demo's promise",
    )


def run_bench(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from m2vae_fusion.resources import default_model_dir

    if args.worlds < 1 or args.budget <= 0 or args.samples < 1 or any(r < 1 for r in args.robots):
        raise ValueError(f"bench explore: need --worlds >= 1, --budget > 0, --samples >= 1, --robots >= 1; got {vars(args)}")
    jobs = args.jobs or len(os.sched_getaffinity(0))
    results = bench_explore(
        args.worlds,
        args.first_seed,
        args.robots,
        args.policies,
        args.budget,
        args.model or default_model_dir(),
        jobs,
        args.samples,
        demo_arena=args.demo_arena,
    )
    return results, table(results)
