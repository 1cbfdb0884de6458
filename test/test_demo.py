"""`m2vae demo` end to end: the launcher starts the whole simulated graph (sim, three encoders, fusion,
explorer, scoreboard) as real processes over real DDS; the robot explores, the scoreboard prints its
table, ends the run after the simulated duration and writes the summary. A short run: accuracy over
the whole arena is the 180 s demo's figure (README), not this test's."""

from __future__ import annotations

import json
from pathlib import Path


def test_demo_runs_headless_and_ends_with_a_summary(processes, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = processes.python("-m", "m2vae_fusion.cli", "demo", "--headless", "--duration", "30", "--out", str(out))
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output
    assert "[scoreboard] robot1 at   10.0 s:" in output and "[scoreboard] SUMMARY robot1:" in output
    result = json.loads((out / "summary.json").read_text())
    figures = result["robots"]["robot1"]
    assert result["sim_time_s"] >= 30 and figures["objects"] == 8
    # 30 s reach the first object or two: at least one is classified, and nothing crashed on the way
    assert figures["correct"] >= 1, figures
    logs = {p.relative_to(out / "logs").as_posix() for p in (out / "logs").rglob("*.log")}
    assert {"robot1/sim.log", "robot1/fusion.log", "robot1/explorer.log", "robot1/camera_encoder.log", "scoreboard.log"} <= logs
