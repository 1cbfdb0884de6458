"""The active explorer end to end: the launcher's simulated graph (sim, encoders, fusion, explorer,
scoreboard as real processes over real DDS) with `policy: active`. The fusion node's beliefs carry the
model's expected gains, the explorer chooses objects by them, logs each choice with the gain that drove
it and shares its target; the run ends cleanly with objects classified. Whether active beats the tour is
`m2vae bench explore`'s question (docs/active-perception.md), not this test's."""

from __future__ import annotations

import re
from pathlib import Path

CHOICE = re.compile(
    r"next: object at \((-?[\d.]+), (-?[\d.]+)\) in odom, (unseen|gain|unsure|tour)(?:, expected gain ([\d.]+) nats)?"
)


def test_active_policy_explores_the_sim_over_dds(processes, tmp_path: Path) -> None:
    overrides = tmp_path / "active.yaml"
    overrides.write_text("robot1:\n  explorer:\n    parameters: {policy: active}\n")
    logs = tmp_path / "logs"
    proc = processes.python(
        "-m", "m2vae_fusion.cli", "launch", "sim", "--headless", "--duration", "40",
        "--overrides", str(overrides), "--log-dir", str(logs),
    )  # fmt: skip
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    explorer = (logs / "robot1" / "explorer.log").read_text()
    assert "exploring (active)" in explorer, explorer
    choices = CHOICE.findall(explorer)
    assert choices, explorer
    # once beliefs come, an object no belief covers is valued at ln(8 classes) by default; before, no gain is named
    assert any(reason == "unseen" and gain and abs(float(gain) - 2.08) < 0.01 for *_, reason, gain in choices), choices
    assert all(reason != "tour" or not gain for *_, reason, gain in choices)
    assert "Traceback" not in explorer
    summary = re.findall(r"robot1 at +([\d.]+) s: (\d)/8 correct", output)
    assert summary and int(summary[-1][1]) >= 1, output
