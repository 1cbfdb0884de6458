"""node_runtime: the executor a node's `executor` parameter picks (the processes themselves are
tested in test_encoder_node.py: idle CPU, encodings and Ctrl-C on the EventsExecutor)."""

from __future__ import annotations

import sys

import pytest
import rclpy
from rclpy.parameter import Parameter

from m2vae_fusion.node_runtime import ParameterError, declare_executor, executor_parameter, node_executor

TABLE = {"executor": executor_parameter("events")}


@pytest.fixture
def make_node(ros_env):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    made = []

    def make(**parameters):
        node = rclpy.create_node("runtime_test", context=context, parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
        made.append(node)
        return node

    yield make
    for node in made:
        node.destroy_node()
    rclpy.shutdown(context=context)


def test_executor_parameter_picks_the_executor(make_node):
    events = make_node()
    assert declare_executor(events, TABLE) == "events"
    assert type(node_executor(events)).__name__ == "EventsExecutor"  # a pybind11 class, made by a factory function
    python = make_node(executor="single_threaded")
    assert declare_executor(python, TABLE) == "single_threaded" and node_executor(python) is None
    assert node_executor(make_node()) is None  # a node without the parameter: rclpy.spin's executor


def test_unknown_executor_is_named(make_node):
    with pytest.raises(ParameterError, match="parameter 'executor' must be one of single_threaded, events, got 'fast'"):
        declare_executor(make_node(executor="fast"), TABLE)


def test_rclpy_without_events_executor_falls_back_with_a_warning(make_node, monkeypatch):
    node = make_node()
    declare_executor(node, TABLE)
    warnings = []
    monkeypatch.setattr(node.get_logger(), "warning", warnings.append, raising=False)
    monkeypatch.setitem(sys.modules, "rclpy.experimental", None)  # import fails as on an older rclpy
    assert node_executor(node) is None
    assert warnings and "no rclpy.experimental.EventsExecutor" in warnings[0]
