"""ros_interface.runtime: the executor a node's `executor` parameter picks, and how a node process ends: SIGINT or
SIGTERM, whatever callback it interrupts, is an orderly stop with exit status 0 on both executors (the
encoder process itself is tested in test_encoder_node.py: idle CPU, encodings and Ctrl-C)."""

from __future__ import annotations

import random
import signal
import sys
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from m2vae_fusion.ros_interface.runtime import ParameterError, declare_executor, executor_parameter, node_executor

TABLE = {"executor": executor_parameter("events")}


@pytest.fixture
def make_node(ros_env):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    made = []

    def make(**parameters):
        node = rclpy.create_node(
            "runtime_test", context=context, parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()]
        )
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
    assert declare_executor(python, TABLE) == "single_threaded" and isinstance(node_executor(python), SingleThreadedExecutor)
    assert isinstance(node_executor(make_node()), SingleThreadedExecutor)  # a node without the parameter


def test_unknown_executor_is_named(make_node):
    with pytest.raises(ParameterError, match="parameter 'executor' must be one of single_threaded, events, got 'fast'"):
        declare_executor(make_node(executor="fast"), TABLE)


def test_rclpy_without_events_executor_falls_back_with_a_warning(make_node, monkeypatch):
    node = make_node()
    declare_executor(node, TABLE)
    warnings = []
    monkeypatch.setattr(node.get_logger(), "warning", warnings.append, raising=False)
    monkeypatch.setitem(sys.modules, "rclpy.experimental", None)  # import fails as on an older rclpy
    assert isinstance(node_executor(node), SingleThreadedExecutor)
    assert warnings and "no rclpy.experimental.EventsExecutor" in warnings[0]


# A node with work in callbacks: a timer every 20 ms whose callback runs Python for BUSY_S (argv[1])
# and a subscription to its own topic. Signals land at random moments: inside a Python callback,
# inside the C++ EventsExecutor between callbacks (where it calls back into rclpy's Python), or in the
# node's shutdown when a second one follows (ros2 launch's Ctrl-C: the terminal's SIGINT, then its
# own). With rclpy's handlers the KeyboardInterrupt raised there ended the process with status 1
# (`RuntimeError: Unable to convert call argument`) or aborted it (pybind11::error_already_set).
BUSY_NODE = """
import sys, time
from rclpy.node import Node
from std_msgs.msg import String
from m2vae_fusion.ros_interface.runtime import declare_executor, executor_parameter, run_node

BUSY_S = float(sys.argv[1])

class Busy(Node):
    def __init__(self):
        super().__init__("busy")
        declare_executor(self, {"executor": executor_parameter("events")})
        self.pub = self.create_publisher(String, "chatter", 10)
        self.create_subscription(String, "chatter", self.on_message, 10)
        self.create_timer(0.02, self.work)
        self.ticks = 0

    def work(self):
        end = time.monotonic() + BUSY_S
        while time.monotonic() < end:
            pass
        self.pub.publish(String(data="x" * 100))
        self.ticks += 1
        if self.ticks == 3:
            print("spinning", flush=True)

    def on_message(self, msg):
        sum(range(2000))

def close(node):
    print("closed", flush=True)
    node.destroy_node()

run_node("busy", Busy, sys.argv, close=close)
"""


def start_busy(processes, executor: str, busy_s: float):
    proc = processes.python("-c", BUSY_NODE, str(busy_s), "--ros-args", "-p", f"executor:={executor}")
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "spinning" in line:
            return proc
        if not line and proc.poll() is not None:
            break
    pytest.fail(f"busy node ({executor}) did not start: exit {proc.poll()}\n{''.join(lines)}")


@pytest.mark.parametrize("busy_s", [0.005, 0.03])
@pytest.mark.parametrize("executor", ["events", "single_threaded"])
def test_signals_stop_the_node_cleanly_whatever_they_interrupt(processes, executor, busy_s):
    """SIGINT, SIGTERM and two SIGINTs a moment apart, at random moments of a node that is busy a
    quarter of the time or all of it: every process runs its close and exits 0, nothing aborts or
    prints a traceback."""
    rng = random.Random(16)
    plans = [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]] * 2
    procs = [(plan, start_busy(processes, executor, busy_s)) for plan in plans]
    for plan, proc in procs:
        time.sleep(rng.uniform(0.0, 0.1))
        for sig in plan:
            proc.send_signal(sig)
            time.sleep(rng.uniform(0.0, 0.05))
    for plan, proc in procs:
        output, _ = proc.communicate(timeout=20)
        names = "+".join(signal.Signals(s).name for s in plan)
        assert proc.returncode == 0, f"{names} ({executor}): exit {proc.returncode}\n{output}"
        assert "closed" in output, f"{names} ({executor}): the node's close did not run\n{output}"
        for bad in ("Traceback", "terminate called", "Fatal Python error", "KeyboardInterrupt"):
            assert bad not in output, f"{names} ({executor}): {bad!r} in the output\n{output}"


def test_third_signal_ends_a_stuck_node_at_once(processes):
    """A node stuck in a callback: two signals ask it to stop; the third ends it the default way."""
    stuck = BUSY_NODE.replace(
        "if self.ticks == 3:",
        "if self.ticks == 3:\n            print('spinning', flush=True)\n            while True: pass\n        if False:",
    )
    proc = processes.python("-c", stuck, "0.005", "--ros-args", "-p", "executor:=events")
    while "spinning" not in proc.stdout.readline():
        assert proc.poll() is None, proc.stdout.read()
    for _ in range(2):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    assert proc.poll() is None  # still stuck: the signals were stop requests
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == -signal.SIGINT


def test_sigterm_shows_where_a_node_that_did_not_stop_hangs(processes):
    """ros2 launch sends SIGTERM to a node still running 5 s after its SIGINT: the node first writes
    every thread's stack to stderr, naming the function it hangs in, and the SIGTERM still counts as
    a stop request (here the third signal, which ends it)."""
    stuck = BUSY_NODE.replace(
        "if self.ticks == 3:",
        "if self.ticks == 3:\n            print('spinning', flush=True)\n            hang_here()\n        if False:",
    ).replace("class Busy(Node):", "def hang_here():\n    while True: pass\n\nclass Busy(Node):")
    proc = processes.python("-c", stuck, "0.005", "--ros-args", "-p", "executor:=events")
    while "spinning" not in proc.stdout.readline():
        assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert proc.poll() is None  # a stop request, not an end: it is stuck
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGINT
    assert "most recent call first" in output and "in hang_here" in output, output


@pytest.mark.parametrize("node", ["fusion", "encoder"])
def test_signal_while_a_node_is_still_importing_is_a_clean_stop(processes, node):
    """ros2 launch stopping a graph that is still starting: the console script (ros_interface.entry) has taken
    the signals over before its seconds of imports, so the node exits 0 without a traceback."""
    script = Path(sys.executable).parent / node
    for delay_s in (0.3, 1.0):
        proc = processes.start(str(script), "--ros-args", "-r", f"__node:=stopped_{node}", "-p", "modality:=lidar")
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{node} signalled after {delay_s} s: exit {proc.returncode}\n{output}"
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
