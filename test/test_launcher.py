"""The project's launcher (`m2vae launch`, m2vae_fusion.bringup.launcher) on small graphs of real processes:
every node comes up (seen in the ROS graph over DDS), output goes to per-node logs and is echoed by the
rules, a crash ends everything with status 1 naming the node, the scoreboard-like node's clean exit ends
it with 0, SIGINT stops it cleanly with 130, and no process is left behind; `m2vae launch sim` on the
simulated graph with per-robot overrides."""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

from m2vae_fusion.bringup.description import Description, NodeSpec
from m2vae_fusion.bringup.launcher import Echo, LaunchOptions, launch
from m2vae_fusion.ros_interface.latent_signing import write_key_file

PYTHON = sys.executable


def script(name: str, code: str, namespace: str = "", **extra) -> NodeSpec:
    """A plain process (no ROS) running `code`."""
    return NodeSpec(name=name, executable=PYTHON, namespace=namespace, ros=False, arguments=("-c", code), **extra)


def start_launcher(processes, nodes: list[NodeSpec], folder: Path, grace_s: float = 3.0) -> subprocess.Popen:
    """`launch` of these nodes in a process of its own, as `m2vae launch` runs it (signals reach it alone)."""
    graph = folder / "graph.pickle"
    graph.write_bytes(pickle.dumps(Description(tuple(nodes))))
    code = (
        "import pickle, sys\n"
        "from pathlib import Path\n"
        "from m2vae_fusion.bringup.launcher import LaunchOptions, launch\n"
        f"description = pickle.loads(Path({str(graph)!r}).read_bytes())\n"
        f"sys.exit(launch(description, LaunchOptions(log_dir=Path({str(folder / 'logs')!r}), grace_s={grace_s})))\n"
    )
    return processes.start(PYTHON, "-c", code)


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
    from dds_probe import rclpy_session  # Jazzy's rclpy.init is no context manager

    monitors = [
        NodeSpec(name="monitor", executable="latent_monitor", namespace=f"/robot{k}", remaps=(("latents", "/shared/latents"),))
        for k in (1, 2)
    ]
    launcher = start_launcher(
        processes,
        [
            *monitors,
            script(
                "chatter",
                "import time\nprint('hello from chatter')\nprint('[WARN] [0.0] [chatter]: careful')\ntime.sleep(600)",
                output="screen",
            ),
            script(
                "quiet",
                "import time\nprint('[INFO] [0.0] [quiet]: routine')\nprint('[ERROR] [0.0] [quiet]: broken')\ntime.sleep(600)",
            ),
        ],
        tmp_path,
    )
    log_dir = tmp_path / "logs"
    expected = {"/robot1/monitor", "/robot2/monitor"}
    with rclpy_session():
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
    launcher = start_launcher(
        processes,
        [
            script(
                "crasher",
                "import sys, time\ntime.sleep(0.5)\nprint('boom: no sensor', file=sys.stderr)\nsys.exit(3)",
                namespace="/robot1",
            ),
            # deaf to SIGINT: the launcher has to go on to SIGTERM after the grace period
            script(
                "deaf", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(600)", namespace="/robot1"
            ),
        ],
        tmp_path,
        grace_s=1.0,
    )
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
    launcher = start_launcher(
        processes,
        [
            *(script("steady", "import time\ntime.sleep(600)", namespace=f"/robot{k}") for k in (1, 2)),
            script("scoreboard", "import time\ntime.sleep(0.5)\nprint('accuracy 100 %')", output="screen", ends_launch=True),
        ],
        tmp_path,
    )
    output, _ = launcher.communicate(timeout=20)
    assert launcher.returncode == 0, output
    assert "[scoreboard] accuracy 100 %" in output and "scoreboard finished" in output


def test_dry_run_and_missing_pieces(tmp_path: Path) -> None:
    params = tmp_path / "fusion.yaml"
    description = Description((NodeSpec(name="fusion", executable="fusion", namespace="/robot2", params_files=(params,)),))
    out, err = io.StringIO(), io.StringIO()
    assert launch(description, LaunchOptions(dry_run=True, out=out, err=err)) == 1
    assert "[robot2/fusion] " in out.getvalue() and "-r __ns:=/robot2 -r __node:=fusion" in out.getvalue()
    assert f"node robot2/fusion: parameter file {params} does not exist" in err.getvalue()
    params.write_text("{}\n")
    assert launch(description, LaunchOptions(dry_run=True, out=io.StringIO())) == 0

    # `m2vae launch sim` on a machine where the nodes are not installed: each missing one named, status 2
    bare = {**os.environ, "PATH": str(tmp_path / "no_bin"), "AMENT_PREFIX_PATH": str(tmp_path / "no_prefix")}
    run = subprocess.run(
        [PYTHON, "-m", "m2vae_fusion.cli", "launch", "sim", "--headless"], env=bare, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2, run.stderr
    assert "node robot1/sim: executable 'sim' of package m2vae_fusion not found" in run.stderr
    assert "node scoreboard: executable 'scoreboard' of package m2vae_fusion not found" in run.stderr


def test_launch_sim_dry_run_with_overrides(tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("robot2: {camera_encoder: {enabled: false}, fusion: {parameters: {gate: 0.05}}}\n")
    run = subprocess.run(
        ["m2vae", "launch", "sim", "--robots", "2", "--headless", "--dry-run", "--overrides", str(overrides)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = {line.split(" ", 1)[0]: line for line in run.stdout.splitlines()}
    assert "[robot1/camera_encoder]" in lines and "[robot2/camera_encoder]" not in lines
    assert "-p gate:=0.05" in lines["[robot2/fusion]"] and "gate" not in lines["[robot1/fusion]"]
    assert "-r /clock:=/robot2/clock" in lines["[robot2/fusion]"]

    key = write_key_file(tmp_path / "fleet.yaml", {"fleet-1": bytes(range(32))}, "fleet-1")
    run = subprocess.run(
        ["m2vae", "launch", "sim", "--robots", "2", "--headless", "--dry-run", "--fleet-key", str(key)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    signed = [line.split(" ", 1)[0] for line in run.stdout.splitlines() if f"-p fleet_key:={key}" in line]
    assert signed == ["[robot1/fusion]", "[robot2/fusion]"], run.stdout

    overrides.write_text("robot2: {camera: {enabled: false}}\n")
    run = subprocess.run(
        ["m2vae", "launch", "sim", "--dry-run", "--overrides", str(overrides)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and f"overrides {overrides}: robot2: no robot node 'camera'" in run.stderr


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
