"""`m2vae bench explore`: the summaries and ratios from hand-made traces, and a short real episode of each
policy in the embedded simulator (perception path, belief store, gains and explorer in one process)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from m2vae_fusion.benchmarks.explore import compare, summarise, table, world_objects


def _episode(*accuracies: list[float], path_step: float = 0.1) -> dict:
    robots = {
        f"robot{k}": {
            "accuracy": list(a),
            "path_m": [path_step * (i + 1) for i in range(len(a))],
            "encodings": [10 * (i + 1) for i in range(len(a))],
            "views": [i for i in range(len(a))],
            "misses": [{"object": "red_cube_matte", "belief": None, "confidence": None}] if a[-1] < 1.0 else [],
        }
        for k, a in enumerate(accuracies, start=1)
    }
    return {"robots": robots, "objects": 8}


def test_the_fleet_reaches_the_target_when_its_least_informed_robot_does():
    ramp = [min(1.0, i / 100) for i in range(1, 181)]  # 0.95 at second 95
    late = [min(1.0, i / 120) for i in range(1, 181)]  # 0.95 at second 114
    summary = summarise(_episode(ramp, late), 180.0)
    assert summary["time_to_target_s"] == 114
    assert summary["path_to_target_m"] == pytest.approx(2 * 0.1 * 114)
    assert summary["accuracy_at"] == {"60": 0.5, "120": 1.0, "180": 1.0}
    assert summary["encodings"] == 2 * 1800 and summary["views"] == 2 * 179 and summary["final_accuracy"] == 1.0


def test_an_episode_that_never_gets_there_counts_as_the_budget():
    flat = summarise(_episode([0.5] * 60), 60.0)
    assert flat["time_to_target_s"] is None and flat["path_to_target_m"] is None
    assert flat["accuracy_at"] == {"60": 0.5}  # the longer budgets lie beyond the episode
    assert (flat["never_found"], flat["wrong_class"]) == (1, 0)
    fast = summarise(_episode([0.0] * 19 + [1.0] * 41), 60.0)
    rows = compare({"tour": [flat, flat], "active": [fast, flat]})
    assert rows["tour"]["median_time_ratio_to_tour"] == 1.0
    assert rows["active"]["median_time_s"] == pytest.approx((20 + 60) / 2)
    assert rows["active"]["median_time_ratio_to_tour"] == pytest.approx((20 / 60 + 1) / 2)
    assert rows["active"]["ratio_of_median_times_to_tour"] == pytest.approx(40 / 60)
    assert rows["active"]["reached"] == 1 and rows["tour"]["reached"] == 0
    assert rows["active"]["met_at_budget"] == 1 and rows["tour"]["met_at_budget"] == 0  # fast ends at 1.0
    text = table({"seeds": [0, 1], "budget_s": 60.0, "by_robots": {"1": {"policies": rows}}})
    assert "active" in text and "1/2" in text and "0.67x" in text


def test_world_sizes_are_drawn_from_the_seed():
    sizes = [world_objects(s) for s in range(40)]
    assert all(8 <= n <= 16 for n in sizes) and len(set(sizes)) > 3
    assert sizes == [world_objects(s) for s in range(40)]


@pytest.mark.slow
def test_a_short_episode_of_each_policy_senses_and_scores(tmp_path):
    """Two robots, 12 simulated seconds: each policy drives to an object and senses it; the JSON holds
    every policy's summary and its ratio to the tour."""
    out = tmp_path / "explore.json"
    subprocess.run(
        [sys.executable, "-m", "m2vae_fusion.cli", "bench", "explore", "--worlds", "1", "--robots", "2",
         "--budget", "12", "--jobs", "2", "--samples", "2", "--json", str(out)],
        check=True, timeout=600,
    )  # fmt: skip
    results = json.loads(out.read_text())
    for policy in ("tour", "entropy", "active"):
        row = results["by_robots"]["2"]["policies"][policy]
        episode = results["by_robots"]["2"]["episodes"][policy]["0"]
        assert row["worlds"] == 1 and episode["objects"] == world_objects(0) and "median_time_ratio_to_tour" in row
        assert episode["encodings"] > 0 and episode["path_m"] > 0.2, policy
        assert 0.0 < episode["final_accuracy"] <= 1.0, policy


@pytest.mark.slow
def test_demo_arena_runs_the_demos_world_with_seeded_noise(tmp_path):
    out = tmp_path / "demo.json"
    subprocess.run(
        [sys.executable, "-m", "m2vae_fusion.cli", "bench", "explore", "--demo-arena", "--worlds", "1", "--robots", "1",
         "--policies", "tour", "--budget", "4", "--jobs", "1", "--json", str(out)],
        check=True, timeout=600,
    )  # fmt: skip
    results = json.loads(out.read_text())
    assert results["worlds"].startswith("the demo's arena")
    assert results["by_robots"]["1"]["episodes"]["tour"]["0"]["objects"] == 8  # worlds/arena.sdf
