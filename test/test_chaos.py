"""`m2vae chaos` (issue 21) on the real 2-robot graph, real processes over real DDS: a short run with
the faults chosen here instead of drawn (a fusion node SIGKILLed once its snapshot holds objects, an
encoder killed, robot2 cut off the shared latents) ends with no unplanned crash, the killed fusion
node's snapshot objects all back after its restart, latents relayed and held back by the cut, and a
recovery figure for every fault. The schedule and the figures are checked on made-up logs."""

from __future__ import annotations

import pytest

from m2vae_fusion.robustness import chaos
from m2vae_fusion.robustness.chaos import Fault, RestartCheck, RunLog, Sample


def test_the_schedule_hits_every_node_before_any_twice_and_is_seeded() -> None:
    robots = ("robot1", "robot2")
    faults, cut = chaos.schedule(3, robots, duration_s=200.0, every_s=8.0, down_s=2.0, cut_s=20.0)
    kills = [f.target for f in faults if f.kind == "kill"]
    nodes = {f"{r}/{n}" for r in robots for n in chaos.KILLABLE}
    assert set(kills[: len(nodes)]) == nodes, "a node was hit twice before every node was hit once"
    assert [f for f in faults if f.kind == "cut"] == [Fault(200.0 / 3, "cut", cut, 20.0)]
    assert all(f.at_s + f.down_s + chaos.TARGET_RECOVERY_S <= 200.0 for f in faults if f.kind == "kill")
    assert chaos.schedule(3, robots, 200.0, 8.0, 2.0, 20.0) == (faults, cut)
    assert chaos.schedule(4, robots, 200.0, 8.0, 2.0, 20.0) != (faults, cut)


def log_of(accuracies: list[tuple[float, float]], faults: list[Fault]) -> RunLog:
    """Samples every second: (robot1, robot2) accuracy."""
    samples = [
        Sample(float(t), {"robot1": a, "robot2": b}, {"robot1": round(8 * a), "robot2": round(8 * b)})
        for t, (a, b) in enumerate(accuracies)
    ]
    return RunLog(samples=samples, faults=faults, objects=8)


def test_recovery_counts_from_the_fault_to_the_pre_fault_accuracy_with_the_node_back() -> None:
    accuracies = [(0.5, 0.5)] * 4 + [(0.0, 0.5)] * 3 + [(0.25, 0.5), (0.5, 0.5), (0.625, 0.5)] + [(0.625, 0.5)] * 5
    log = log_of(accuracies, [Fault(3.0, "kill", "robot1/fusion", 2.0), Fault(9.0, "kill", "robot2/lidar_encoder", 2.0)])
    rows = chaos.recoveries(log)
    assert [(r["robot"], r["pre_fault_accuracy"], r["recovery_s"], r["after_end_s"]) for r in rows] == [
        ("robot1", 0.5, 5.0, 3.0),
        ("robot2", 0.5, 2.0, 0.0),  # its accuracy never dipped: back when the node is
    ]
    never = chaos.recoveries(log_of([(0.5, 0.5)] * 4 + [(0.25, 0.5)] * 10, [Fault(3.0, "kill", "robot1/fusion", 2.0)]))
    assert never[0]["recovery_s"] is None


def test_the_goals_fail_on_a_crash_a_lost_belief_or_a_worse_end() -> None:
    good = log_of([(0.5, 0.5)] * 10, [Fault(2.0, "kill", "robot1/fusion", 2.0)])
    good.restarts = [RestartCheck("robot1", 2.0, {"object_1", "object_2"}, {"object_1"}, {"object_1", "object_1001"}, 1.0)]
    baseline = log_of([(0.625, 0.5)] * 10, [])
    figures = chaos.figures(good, baseline)
    assert figures["met"], figures["goals"]
    assert figures["restarts"][0]["lost_within_period"] == ["object_2"] and figures["restarts"][0]["lost_beyond_snapshot"] == []
    lost = log_of([(0.5, 0.5)] * 10, good.faults)
    lost.restarts = [RestartCheck("robot1", 2.0, {"object_1"}, {"object_1"}, set(), 1.0)]
    assert not chaos.figures(lost, baseline)["goals"]["no belief lost beyond the last snapshot"]
    crashed = log_of([(0.5, 0.5)] * 10, [])
    crashed.crashes = [{"at_s": 3.0, "node": "robot1/explorer", "status": 1, "log": ""}]
    assert not chaos.figures(crashed, None)["met"]
    worse = log_of([(0.25, 0.5)] * 10, [])
    assert not chaos.figures(worse, baseline)["goals"]["final accuracy within 1 object of the baseline"]


@pytest.mark.ros
def test_a_short_chaos_run_on_the_real_graph(tmp_path) -> None:
    faults = [
        Fault(4.0, "kill", "robot2/lidar_encoder", 1.5),
        Fault(6.0, "cut", "robot2", 4.0),
        Fault(12.0, "kill", "robot1/fusion", 3.0),
    ]
    settings = chaos.Settings(duration_s=20.0)
    log = chaos.run_graph(settings, faults, "robot2", tmp_path, print)
    figures = chaos.figures(log, None)
    assert figures["unplanned_crashes"] == [], figures["unplanned_crashes"]
    (restart,) = figures["restarts"]
    assert restart["in_snapshot"] > 0, "robot1's snapshot held no object at 12 s: the check would be empty"
    assert restart["restored"] is not None and restart["lost_beyond_snapshot"] == [], restart
    assert figures["latents_relayed"] > 0, "nothing passed the relay: robot2 was cut off all along"
    assert len(figures["recoveries"]) == 4  # the cut hits both robots
    down = [s.accuracy["robot1"] for s in log.samples if 12.0 + chaos.SILENT_S < s.at_s < 15.0]
    assert down and all(a == 0.0 for a in down), f"robot1 scored while its fusion node was down: {down}"


def test_the_run_loop_imports_no_torch() -> None:
    """What the run loop imports at a fusion kill must not stall it for seconds (torch's import did:
    the kill's restart came 8 s late)."""
    import subprocess
    import sys

    code = "import sys, m2vae_fusion.robustness.chaos, m2vae_fusion.model.belief_snapshot; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
