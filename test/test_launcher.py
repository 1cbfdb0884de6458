"""The project's launcher (`m2vae launch`, m2vae_fusion.bringup.launcher) on small graphs of real processes:
every node comes up (seen in the ROS graph over DDS), output goes to per-node logs and is echoed by the
rules, a crash ends everything with status 1 naming the node, the scoreboard-like node's clean exit ends
it with 0, SIGINT stops it cleanly with 130, and no process is left behind."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from m2vae_fusion.bringup.description import NodeSpec, sim_description
from m2vae_fusion.bringup.launcher import Echo, LaunchOptions, launch

PYTHON = sys.executable


def script(name: str, code: str, **extra) -> dict:
    """A plain process (no ROS) running `code`."""
    return {"name": name, "executable": PYTHON, "ros": False, "arguments": ["-c", code], **extra}


def write_graph(folder: Path, robot_nodes: list[dict], global_nodes: list[dict]) -> Path:
    path = folder / "graph.yaml"
    path.write_text(yaml.safe_dump({"namespace": "robot{k}", "robot_nodes": robot_nodes, "global_nodes": global_nodes}))
    return path


def start_launcher(processes, graph: Path, log_dir: Path, *extra: str) -> subprocess.Popen:
    return processes.start("m2vae", "launch", str(graph), "--headless", "--log-dir", str(log_dir), "--grace", "3", *extra)


def process_stats() -> dict[int, list[str]]:
    """pid -> the fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, session, ...)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # the process ended meanwhile
            stats[int(entry.name)] = stat[stat.rindex(")") + 2 :].split()
    return stats


def sessions_of_children(pid: int) -> set[int]:
    """The process-group/session ids the launcher's children lead (each node has its own)."""
    return {child for child, fields in process_stats().items() if int(fields[1]) == pid}


def alive_in_sessions(sessions: set[int]) -> list[int]:
    return [p for p, fields in process_stats().items() if fields[0] != "Z" and int(fields[3]) in sessions]


def node_names(node) -> set[str]:
    return {f"{ns.rstrip('/')}/{name}" for name, ns in node.get_node_names_and_namespaces()}


def test_nodes_come_up_log_and_stop_on_sigint(processes, tmp_path: Path) -> None:
    import rclpy

    graph = write_graph(
        tmp_path,
        [{"name": "monitor", "executable": "latent_monitor", "remaps": {"latents": "/shared/latents"}}],
        [script("chatter", "import time\nprint('hello from chatter')\nprint('[WARN] [0.0] [chatter]: careful')\ntime.sleep(600)", output="screen"),
         script("quiet", "import time\nprint('[INFO] [0.0] [quiet]: routine')\nprint('[ERROR] [0.0] [quiet]: broken')\ntime.sleep(600)")],
    )
    log_dir = tmp_path / "logs"
    launcher = start_launcher(processes, graph, log_dir, "--robots", "2")
    expected = {"/robot1/monitor", "/robot2/monitor"}
    with rclpy.init():
        probe = rclpy.create_node("launcher_probe")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not expected <= node_names(probe):
            assert launcher.poll() is None, launcher.communicate()[0]
            time.sleep(0.2)
        seen = node_names(probe)
        probe.destroy_node()
    assert expected <= seen, seen
    for name in ("robot1/monitor", "robot2/monitor"):
        deadline = time.monotonic() + 10
        while "listening on /shared/latents" not in (log_dir / f"{name}.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    children = sessions_of_children(launcher.pid)
    assert len(children) == 4

    os.kill(launcher.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
    output, _ = launcher.communicate(timeout=20)
    assert launcher.returncode == 130, output
    assert alive_in_sessions(children) == []

    # every line in the node's log; on screen: everything of `screen` nodes, WARN and worse of the rest
    assert "listening on /shared/latents" in (log_dir / "robot1" / "monitor.log").read_text()
    assert "routine" in (log_dir / "quiet.log").read_text()
    assert "[chatter] hello from chatter" in output and "[chatter] [WARN] [0.0] [chatter]: careful" in output
    assert "[quiet] [ERROR] [0.0] [quiet]: broken" in output
    assert "routine" not in output and "listening on" not in output
    assert "\x1b[" not in output  # not a terminal: no colour
    assert "SIGINT: stopping every node" in output


def test_a_crash_stops_everything_and_names_the_node(processes, tmp_path: Path) -> None:
    graph = write_graph(
        tmp_path,
        [script("crasher", "import sys, time\ntime.sleep(0.5)\nprint('boom: no sensor', file=sys.stderr)\nsys.exit(3)"),
         # deaf to SIGINT: the launcher has to go on to SIGTERM after the grace period
         script("deaf", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(600)")],
        [],
    )
    launcher = start_launcher(processes, graph, tmp_path / "logs", "--grace", "1")
    deadline = time.monotonic() + 10
    children: set[int] = set()
    while time.monotonic() < deadline and len(children) < 2:
        children |= sessions_of_children(launcher.pid)
        time.sleep(0.05)
    output, _ = launcher.communicate(timeout=20)
    assert launcher.returncode == 1, output
    assert "node robot1/crasher exited with status 3" in output
    assert "boom: no sensor" in output  # the last lines of its log
    assert alive_in_sessions(children) == []


def test_the_ending_node_finishing_ends_the_launch_with_status_0(processes, tmp_path: Path) -> None:
    graph = write_graph(
        tmp_path,
        [script("steady", "import time\ntime.sleep(600)")],
        [script("scoreboard", "import time\ntime.sleep(0.5)\nprint('accuracy 100 %')", output="screen", ends_launch=True)],
    )
    launcher = start_launcher(processes, graph, tmp_path / "logs", "--robots", "2")
    output, _ = launcher.communicate(timeout=20)
    assert launcher.returncode == 0, output
    assert "[scoreboard] accuracy 100 %" in output and "scoreboard finished" in output


def test_dry_run_and_missing_pieces(tmp_path: Path) -> None:
    graph = write_graph(tmp_path, [{"name": "fusion", "executable": "fusion", "params_files": ["fusion.yaml"]}], [])
    out, err = io.StringIO(), io.StringIO()
    description = sim_description(2, simulator="embedded", graph=graph)
    assert launch(description, LaunchOptions(dry_run=True, out=out, err=err)) == 1
    assert "[robot2/fusion] " in out.getvalue() and "-r __ns:=/robot2 -r __node:=fusion" in out.getvalue()
    assert f"node robot1/fusion: parameter file {tmp_path / 'fusion.yaml'} does not exist" in err.getvalue()
    (tmp_path / "fusion.yaml").write_text("{}\n")
    assert launch(description, LaunchOptions(dry_run=True, out=io.StringIO())) == 0

    graph = write_graph(tmp_path, [{"name": "ghost", "executable": "no_such_node_executable"}], [])
    run = subprocess.run(["m2vae", "launch", str(graph), "--headless"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "node robot1/ghost: executable 'no_such_node_executable' of package m2vae_fusion not found" in run.stderr


def test_echo_colours_are_stable_per_node_and_filtered_by_output() -> None:
    out = io.StringIO()
    echo = Echo(out, colour=True, verbose=False)
    fusion = NodeSpec(name="fusion", executable="fusion", namespace="/robot1")
    assert echo.prefix("robot1/fusion") == Echo(io.StringIO(), colour=True, verbose=False).prefix("robot1/fusion")
    assert echo.prefix("robot1/fusion").startswith("\x1b[") and echo.prefix("robot1/fusion").endswith("[robot1/fusion]\x1b[0m")
    echo(fusion, "[INFO] [1.0] [robot1.fusion]: fused")
    echo(fusion, "[FATAL] [1.0] [robot1.fusion]: no model")
    assert "fused" not in out.getvalue() and "no model" in out.getvalue()
    verbose = io.StringIO()
    Echo(verbose, colour=False, verbose=True)(fusion, "[INFO] fused")
    assert verbose.getvalue() == "[robot1/fusion] [INFO] fused\n"
