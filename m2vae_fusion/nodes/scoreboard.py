"""scoreboard: the demo's live view. Prints each robot's beliefs against the simulator's ground truth as
a table (object, position, class, confidence, sensed modalities, contributing robots) every
table_period_s of simulated time, and after duration_s a summary with the accuracy per robot; then it
exits with status 0, which ends the demo (`m2vae demo`, `m2vae launch sim`, sim.launch.py).
m2vae_fusion.evaluation.scoreboard does the matching; this node only gathers messages.

Ground truth is for evaluation only: nothing in the perception pipeline reads it.

Subscribes: /<robot>/beliefs (m2vae_msgs/ObjectBeliefArray) for every robot in `robots`,
  ground_truth_topic (m2vae_msgs/LabelledObjectArray; its stamps are the time base, so simulated time
  needs no use_sim_time).
Parameters: PARAMETERS below (defaults, types and ranges; docs/parameters.md lists them). Read at start-up only.

Usage: ros2 run m2vae_fusion scoreboard --ros-args -p robots:="[robot1, robot2]" -p duration_s:=180
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node

from m2vae_fusion.core.atomic_file import write_text_atomic
from m2vae_fusion.evaluation.scoreboard import BeliefRow, TrueObject, match, summary, table
from m2vae_fusion.perception.ros_messages import stamp_seconds
from m2vae_fusion.ros_interface.parameters import Parameters, number, strings, text
from m2vae_fusion.ros_interface.runtime import ParameterError, declare, run_node
from m2vae_fusion.ros_interface.topics import BELIEF_QOS, BELIEFS, GROUND_TRUTH, TRUTH_QOS
from m2vae_msgs.msg import LabelledObjectArray, ObjectBeliefArray

PARAMETERS: Parameters = {
    "robots": strings(["robot1"], "namespaces of the robots whose beliefs are scored"),
    "ground_truth_topic": text(f"/robot1/{GROUND_TRUTH.name}", "the simulator's labelled objects (in map)"),
    "match_distance": number(0.1, "a belief within this distance of a true object [m] is that object's belief", positive=True),
    "table_period_s": number(10.0, "print the table every this many simulated seconds", positive=True),
    "duration_s": number(0.0, "simulated seconds after which the summary is printed and the node exits (0: run until stopped)"),
    "target_accuracy": number(0.95, "accuracy the summary checks each robot against", maximum=1.0),
    "summary_path": text("", "also write the summary as JSON to this file"),
}


class ScoreboardNode(Node):
    def __init__(self) -> None:
        super().__init__("scoreboard")
        self.robots: list[str] = [r.strip("/") for r in declare(self, PARAMETERS, "robots")]
        if not self.robots or not all(self.robots):
            raise ParameterError(f"parameter 'robots' must list at least one robot namespace, got {self.robots!r}")
        self.radius = declare(self, PARAMETERS, "match_distance")
        self.period = declare(self, PARAMETERS, "table_period_s")
        self.duration = declare(self, PARAMETERS, "duration_s")
        self.target = declare(self, PARAMETERS, "target_accuracy")
        self.summary_path = declare(self, PARAMETERS, "summary_path")
        truth_topic = declare(self, PARAMETERS, "ground_truth_topic")

        self.truth: list[TrueObject] = []
        self.beliefs: dict[str, list[BeliefRow]] = {robot: [] for robot in self.robots}
        self.next_table = self.period
        self.finished = False
        for robot in self.robots:
            self.create_subscription(
                ObjectBeliefArray, f"/{robot}/{BELIEFS.name}", lambda msg, r=robot: self._on_beliefs(r, msg), BELIEF_QOS
            )
        self.create_subscription(LabelledObjectArray, truth_topic, self._on_truth, TRUTH_QOS)
        until = f"for {self.duration:g} s of simulated time" if self.duration > 0 else "until stopped"
        self.get_logger().info(f"scoring the beliefs of {', '.join(self.robots)} against {truth_topic} {until}")

    def _on_beliefs(self, robot: str, msg: ObjectBeliefArray) -> None:
        rows = []
        for b in msg.beliefs:
            if not b.class_probabilities:
                continue
            best = int(np.argmax(b.class_probabilities))
            rows.append(
                BeliefRow(
                    b.object_id,
                    b.position.x,
                    b.position.y,
                    b.class_names[best],
                    float(b.class_probabilities[best]),
                    tuple(b.modalities),
                    tuple(b.contributing_robots),
                    max((g.class_entropy_reduction for g in b.expected_gains), default=None),
                )
            )
        self.beliefs[robot] = rows

    def _on_truth(self, msg: LabelledObjectArray) -> None:
        if self.finished:
            return
        self.truth = [TrueObject(o.name, o.label, o.pose.position.x, o.pose.position.y) for o in msg.objects]
        now = stamp_seconds(msg.header)
        if self.duration > 0 and now >= self.duration:
            self._finish(now)
        elif now >= self.next_table:
            self.next_table = now + self.period
            self._print_tables(now)

    def _matches(self) -> dict[str, list]:
        return {robot: match(self.truth, self.beliefs[robot], self.radius) for robot in self.robots}

    def _print_tables(self, now: float) -> None:
        for robot, matches in self._matches().items():
            unmatched = len(self.beliefs[robot]) - sum(m.belief is not None for m in matches)
            print(table(robot, matches, now, unmatched), flush=True)

    def _finish(self, now: float) -> None:
        self.finished = True
        self._print_tables(now)
        result = summary(self._matches(), now, self.target)
        for robot, figures in result["robots"].items():
            verdict = "meets" if figures["accuracy"] >= self.target else "misses"
            print(
                f"SUMMARY {robot}: {figures['correct']}/{figures['objects']} objects classified correctly "
                f"({figures['accuracy']:.0%}) after {now:.0f} s of simulated time; {verdict} the {self.target:.0%} target",
                flush=True,
            )
        if self.summary_path:
            path = Path(self.summary_path).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(result, indent=2) + "\n")
            self.get_logger().info(f"summary written to {path}")
        rclpy.try_shutdown(context=self.context)  # ends spin; run_node exits 0


def main(args: list[str] | None = None) -> None:
    run_node("scoreboard", ScoreboardNode, args)


if __name__ == "__main__":
    main()
