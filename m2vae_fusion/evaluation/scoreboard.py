"""How well the running robots' beliefs match the simulator's ground truth: each true object is matched
to the nearest belief within a radius (in the plane, both in map), a belief is correct when its most
probable class is the object's label. Plain data in, text and dicts out, so the scoreboard node and
the tests share it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SENSOR_LETTERS = {"camera": "C", "lidar": "L", "ir": "I"}


@dataclass(frozen=True)
class TrueObject:
    name: str
    label: str
    x: float
    y: float


@dataclass(frozen=True)
class BeliefRow:
    object_id: str
    x: float
    y: float
    label: str  # most probable class
    confidence: float  # its probability
    modalities: tuple[str, ...]
    robots: tuple[str, ...]
    gain: float | None = None  # nats: the largest class-entropy reduction the model expects of one more sensing


@dataclass(frozen=True)
class Match:
    truth: TrueObject
    belief: BeliefRow | None

    @property
    def correct(self) -> bool:
        return self.belief is not None and self.belief.label == self.truth.label


def match(truth: Sequence[TrueObject], beliefs: Sequence[BeliefRow], radius: float) -> list[Match]:
    """Every true object with its nearest belief within `radius` (m), or None. A belief serves one
    object only: pairs are taken closest first."""
    pairs = sorted((math.hypot(t.x - b.x, t.y - b.y), i, j) for i, t in enumerate(truth) for j, b in enumerate(beliefs))
    chosen: dict[int, BeliefRow] = {}
    used: set[int] = set()
    for distance, i, j in pairs:
        if distance > radius:
            break
        if i not in chosen and j not in used:
            chosen[i] = beliefs[j]
            used.add(j)
    return [Match(t, chosen.get(i)) for i, t in enumerate(truth)]


def accuracy(matches: Sequence[Match]) -> float:
    return sum(m.correct for m in matches) / len(matches) if matches else 0.0


def table(robot: str, matches: Sequence[Match], sim_time: float, extra_beliefs: int = 0) -> str:
    """The live table of one robot's beliefs against ground truth."""
    lines = [
        f"{robot} at {sim_time:6.1f} s: {sum(m.correct for m in matches)}/{len(matches)} correct"
        + (f", {extra_beliefs} beliefs match no object" if extra_beliefs else ""),
        f"  {'object':10s} {'position':>14s}  {'class':22s} {'conf':>5s}  {'sensed':6s} {'gain':>5s}  {'robots':16s} truth",
    ]
    for m in matches:
        b = m.belief
        if b is None:
            lines.append(f"  {'-':10s} {'':>14s}  {'(not seen yet)':22s} {'':>5s}  {'':6s} {'':>5s}  {'':16s} {m.truth.label}  ✗")
            continue
        sensed = "".join(SENSOR_LETTERS.get(s, s[:1].upper()) for s in b.modalities)
        mark = "✓" if m.correct else "✗"
        gain = "" if b.gain is None else f"{max(b.gain, 0.0):5.2f}"  # an estimate a hair below 0 is no gain
        lines.append(
            f"  {b.object_id:10s} ({b.x:5.2f}, {b.y:5.2f})  {b.label:22s} {b.confidence:5.2f}  {sensed:6s} {gain:>5s}  "
            f"{','.join(b.robots):16s} {m.truth.label}  {mark}"
        )
    return "\n".join(lines)


def summary(per_robot: dict[str, Sequence[Match]], sim_time: float, target: float) -> dict:
    """The end-of-run figures: per robot the correct count and accuracy, and whether each met `target`."""
    robots = {
        robot: {
            "correct": sum(m.correct for m in matches),
            "objects": len(matches),
            "accuracy": accuracy(matches),
            "wrong": [
                {"object": m.truth.name, "truth": m.truth.label, "belief": m.belief.label if m.belief else None}
                for m in matches
                if not m.correct
            ],
        }
        for robot, matches in per_robot.items()
    }
    return {
        "sim_time_s": sim_time,
        "target_accuracy": target,
        "robots": robots,
        "met": all(r["accuracy"] >= target for r in robots.values()) and bool(robots),
    }
