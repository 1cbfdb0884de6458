"""The demo's scoreboard: matching beliefs to ground truth, the table and summary, and the node over
real DDS ending by itself after its duration with the summary written."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
import yaml

from m2vae_fusion.evaluation.scoreboard import BeliefRow, TrueObject, accuracy, match, summary, table
from m2vae_fusion.resources import config_path

TRUTH = [
    TrueObject("red_cube_matte", "red_cube_matte", 0.0, 0.6),
    TrueObject("green_cube_shiny", "green_cube_shiny", 0.42, -0.42),
]


def row(object_id: str, x: float, y: float, label: str, confidence: float = 0.9) -> BeliefRow:
    return BeliefRow(object_id, x, y, label, confidence, ("camera", "lidar"), ("robot1",))


def test_each_object_gets_its_nearest_belief_and_a_belief_serves_one_object() -> None:
    near = row("object_1", 0.02, 0.6, "red_cube_matte")
    nearer_to_nothing = row("object_2", 0.05, 0.6, "red_cube_shiny")  # second-closest to the same object
    wrong = row("object_3", 0.4, -0.4, "green_cube_matte")
    matches = match(TRUTH, [nearer_to_nothing, wrong, near], radius=0.1)
    assert [m.belief for m in matches] == [near, wrong]
    assert [m.correct for m in matches] == [True, False] and accuracy(matches) == 0.5
    # beyond the radius: not that object's belief
    assert [m.belief for m in match(TRUTH, [row("object_1", 0.0, 0.75, "red_cube_matte")], radius=0.1)] == [None, None]


def test_table_and_summary_show_what_is_right_and_wrong() -> None:
    matches = match(TRUTH, [row("object_1", 0.0, 0.6, "red_cube_matte", 0.97)], radius=0.1)
    text = table("robot1", matches, 42.0, extra_beliefs=1)
    assert "robot1 at   42.0 s: 1/2 correct, 1 beliefs match no object" in text
    assert "red_cube_matte          0.97  CL" in text and "(not seen yet)" in text
    with_gain = dataclasses.replace(row("object_1", 0.0, 0.6, "red_cube_matte", 0.97), gain=0.4321)
    assert "0.97  CL      0.43  robot1" in table("robot1", match(TRUTH, [with_gain], radius=0.1), 42.0)
    result = summary({"robot1": matches}, 180.0, target=0.95)
    assert result["robots"]["robot1"]["correct"] == 1 and result["met"] is False
    assert result["robots"]["robot1"]["wrong"] == [{"object": "green_cube_shiny", "truth": "green_cube_shiny", "belief": None}]
    assert summary({"robot1": match(TRUTH[:1], [row("o", 0.0, 0.6, "red_cube_matte")], 0.1)}, 1.0, 0.95)["met"] is True


def test_parameter_file_holds_known_valid_overrides() -> None:
    from m2vae_fusion.nodes.scoreboard import PARAMETERS

    params = yaml.safe_load(config_path("scoreboard.yaml").read_text())["/**"]["ros__parameters"]
    for name, value in params.items():
        PARAMETERS[name].validate(name, value)  # a KeyError: no such parameter


def test_node_scores_and_exits_after_its_duration(processes, tmp_path: Path) -> None:
    import rclpy
    from dds_probe import rclpy_session  # Jazzy's rclpy.init is no context manager

    from m2vae_fusion.perception.labels import default_labels
    from m2vae_fusion.ros_interface.topics import BELIEF_QOS, TRUTH_QOS

    CLASSES = default_labels().classes
    from m2vae_msgs.msg import LabelledObject, LabelledObjectArray, ObjectBelief, ObjectBeliefArray

    summary_path = tmp_path / "summary.json"
    proc = processes.start(
        "scoreboard",
        "--ros-args",
        "--params-file",
        str(config_path("scoreboard.yaml")),
        "-p",
        "duration_s:=30.0",
        "-p",
        f"summary_path:={summary_path}",
        "-p",
        "robots:=[robot1]",
    )
    with rclpy_session():
        node = rclpy.create_node("scoreboard_probe")
        truth_pub = node.create_publisher(LabelledObjectArray, "/robot1/ground_truth/objects", TRUTH_QOS)
        beliefs_pub = node.create_publisher(ObjectBeliefArray, "/robot1/beliefs", BELIEF_QOS)
        beliefs = ObjectBeliefArray()
        for k, t in enumerate(TRUTH):
            probabilities = [0.01] * len(CLASSES)
            probabilities[CLASSES.index(t.label)] = 1 - 0.01 * (len(CLASSES) - 1)
            b = ObjectBelief(
                object_id=f"object_{k}", class_names=list(CLASSES), class_probabilities=probabilities, modalities=["lidar"]
            )
            b.position.x, b.position.y = t.x + 0.01, t.y
            beliefs.beliefs.append(b)
        deadline = time.monotonic() + 30
        stamp = 0
        while proc.poll() is None and time.monotonic() < deadline:
            beliefs_pub.publish(beliefs)
            rclpy.spin_once(node, timeout_sec=0.1)
            truth = LabelledObjectArray(objects=[LabelledObject(name=t.name, label=t.label) for t in TRUTH])
            for o, t in zip(truth.objects, TRUTH):
                o.pose.position.x, o.pose.position.y = t.x, t.y
            truth.header.stamp.sec = stamp
            truth_pub.publish(truth)
            # ground truth comes at 1 Hz of simulated time; here 10 simulated seconds per 0.3 s once the
            # node has had time to hear the beliefs
            stamp += 10 if stamp or time.monotonic() > deadline - 27 else 0
            time.sleep(0.2)
        node.destroy_node()
    output = proc.stdout.read()
    assert proc.returncode == 0, output
    assert "SUMMARY robot1: 2/2 objects classified correctly (100%) after 30 s" in output
    result = json.loads(summary_path.read_text())
    assert result["met"] is True and result["robots"]["robot1"]["accuracy"] == pytest.approx(1.0)
