"""`m2vae launch`: run a node graph (a bringup.description.Description, e.g. from bringup.graph) without
ROS 2 launch, each node its own process.

`launch(description, options) -> int` starts every NodeSpec with its real argv in its own process
group (process_group.start, so a terminal's Ctrl-C reaches the launcher only and the launcher decides
how nodes stop), writes each node's stdout+stderr to <log dir>/[<namespace>/]<node>.log and echoes it:
`screen` nodes every line, `log` nodes only WARN/ERROR/FATAL lines (--verbose: every line), each
prefixed `[robot1/fusion]` in a colour of its own (none when stdout is not a terminal or NO_COLOR is set).

It ends, stopping every node (SIGINT to each group, then SIGTERM and SIGKILL after a grace period):
- when a node marked ends_launch exits with status 0 (the scoreboard after its duration): status 0;
- when any other node exits, or one of those with a non-zero status, or a one_shot node fails:
  "node robot1/fusion exited with status 1" and the last lines of its log on stderr, status 1;
- on Ctrl-C (SIGINT): status 130; on SIGTERM: 143.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TextIO

from m2vae_fusion.bringup import process_group
from m2vae_fusion.bringup.description import BringupError, Description, NodeSpec, find_executable

POLL_S = 0.05
TAIL_LINES = 20  # of a crashed node's log
IMPORTANT = re.compile(r"^\s*(?:\x1b\[[0-9;]*m)?\[(WARN|WARNING|ERROR|FATAL)\]")
COLOURS = (32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)  # ANSI foregrounds; red (31) is kept for the launcher's errors
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass
class LaunchOptions:
    log_dir: Path | None = None  # default: ROS_HOME/log/m2vae_launch/<timestamp>
    verbose: bool = False  # echo every line of every node
    dry_run: bool = False  # print the commands, start nothing
    grace_s: float = 5.0  # after SIGINT, before SIGTERM
    colour: bool | None = None  # None: when stdout is a terminal and NO_COLOR is unset
    env: dict[str, str] | None = None  # the nodes' environment (default: os.environ)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)


class NodeProcess:
    """One running node: its process, its log file and the thread copying its output."""

    def __init__(self, spec: NodeSpec, proc: subprocess.Popen, log_path: Path, echo: Echo) -> None:
        self.spec, self.proc, self.log_path = spec, proc, log_path
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._thread = threading.Thread(target=self._copy, args=(echo,), name=f"output {spec.key}", daemon=True)
        self._thread.start()

    def _copy(self, echo: Echo) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                log.write(line + "\n")
                log.flush()
                self.tail.append(line)
                echo(self.spec, line)

    def finish_output(self, timeout: float = 2.0) -> None:
        # a grandchild that keeps the pipe open must not hang the launcher
        self._thread.join(timeout)


class Echo:
    """Prints node lines with a `[key]` prefix, coloured per node; thread-safe."""

    def __init__(self, out: TextIO, colour: bool, verbose: bool) -> None:
        self.out, self.colour, self.verbose = out, colour, verbose
        self._lock = threading.Lock()

    def prefix(self, key: str) -> str:
        if not self.colour:
            return f"[{key}]"
        code = COLOURS[zlib.crc32(key.encode()) % len(COLOURS)]  # stable across runs, unlike hash()
        return f"\x1b[{code}m[{key}]\x1b[0m"

    def __call__(self, spec: NodeSpec, line: str) -> None:
        if self.verbose or spec.output == "screen" or IMPORTANT.match(line):
            self.say(f"{self.prefix(spec.key)} {line}")

    def say(self, text: str, stream: TextIO | None = None) -> None:
        with self._lock:
            print(text, file=stream or self.out, flush=True)


def default_log_dir() -> Path:
    ros_home = Path(os.environ.get("ROS_HOME") or "~/.ros").expanduser()
    return ros_home / "log" / "m2vae_launch" / datetime.now().strftime("%Y-%m-%d-%H-%M-%S-%f")


def resolve_commands(description: Description) -> tuple[list[tuple[NodeSpec, list[str]]], list[str]]:
    """Every node's argv with its executable found, and the problems that keep nodes from starting
    (missing executables and parameter files), each naming its node."""
    problems, commands = [], []
    for spec in description.nodes:
        executable = find_executable(spec.package, spec.executable)
        if executable is None:
            problems.append(
                f"node {spec.key}: executable {spec.executable!r} of package {spec.package} not found (source env.sh, or your workspace's setup.bash)"
            )
        problems += [f"node {spec.key}: parameter file {path} does not exist" for path in spec.params_files if not path.is_file()]
        commands.append((spec, spec.command(executable)))
    return commands, problems


def launch(description: Description, options: LaunchOptions | None = None) -> int:
    """Run the graph until it ends (see the module docstring); returns the exit status."""
    options = options or LaunchOptions()
    commands, problems = resolve_commands(description)
    if options.dry_run:
        for spec, argv in commands:
            env = "".join(f"{k}={shlex.quote(v)} " for k, v in spec.env.items())
            print(f"[{spec.key}] {env}{shlex.join(argv)}", file=options.out)
        for line in (*description.notes, *problems):
            print(f"[launch] {line}", file=options.err)
        return 1 if problems else 0
    if problems:
        raise FileNotFoundError("cannot start the graph:\n  " + "\n  ".join(problems))
    colour = options.colour if options.colour is not None else _is_tty(options.out) and not os.environ.get("NO_COLOR")
    echo = Echo(options.out, colour, options.verbose)
    log_dir = options.log_dir or default_log_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    for note in description.notes:
        echo.say(f"[launch] {note}")

    received: list[int] = []
    previous = _install_handlers(received)
    running: list[NodeProcess] = []
    try:
        for spec, argv in commands:
            running.append(_start(spec, argv, log_dir, echo, options.env))
        simulated = f" ({description.simulator} simulator, {len(description.robots)} robot(s))" if description.simulator else ""
        echo.say(f"[launch] started {len(running)} nodes{simulated}; logs in {log_dir}; Ctrl-C stops")
        status = _supervise(running, received, echo, options)
    finally:
        # another Ctrl-C while waiting skips to the next, harder signal
        process_group.stop([n.proc for n in running], options.grace_s, hurry=lambda: len(received))
        for node in running:
            node.finish_output()
        _restore_handlers(previous)
    return status


def _start(spec: NodeSpec, argv: list[str], log_dir: Path, echo: Echo, base_env: dict[str, str] | None) -> NodeProcess:
    env = dict(os.environ if base_env is None else base_env)
    env.update(spec.env)
    env.setdefault("PYTHONUNBUFFERED", "1")  # lines reach the log as they happen
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"  # the launcher colours; logs stay plain text
    log_path = log_dir / f"{spec.key}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"# {shlex.join(argv)}\n")
    try:
        proc = process_group.start(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
    except OSError as exc:
        raise BringupError(f"node {spec.key}: cannot start {argv[0]}: {exc}") from None
    return NodeProcess(spec, proc, log_path, echo)


def _supervise(running: list[NodeProcess], received: list[int], echo: Echo, options: LaunchOptions) -> int:
    done: set[int] = set()
    while True:
        if received:
            echo.say(f"[launch] {signal.Signals(received[0]).name}: stopping every node (Ctrl-C again: stop harder)")
            return EXIT_SIGNAL.get(received[0], 1)
        for node in running:
            code = node.proc.poll()
            if code is None or id(node) in done:
                continue
            done.add(id(node))
            spec = node.spec
            if code == 0 and spec.ends_launch:
                echo.say(f"[launch] {spec.key} finished: stopping every node")
                return 0
            if code == 0 and spec.one_shot:
                continue
            node.finish_output()
            reason = f"exited with status {code}" if code >= 0 else f"was killed by {signal.Signals(-code).name}"
            tail = "\n".join(f"    {line}" for line in node.tail) or "    (no output)"
            echo.say(
                f"[launch] node {spec.key} {reason}; its last lines ({node.log_path}):\n{tail}\n[launch] stopping every node",
                stream=options.err,
            )
            return 1
        time.sleep(POLL_S)


def _install_handlers(received: list[int]) -> dict[int, object]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # signals only reach the main thread; a caller elsewhere stops the nodes its own way

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)

    return {sig: signal.signal(sig, handler) for sig in EXIT_SIGNAL}


def _restore_handlers(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _is_tty(stream: IO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------- the `m2vae launch` command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "graph",
        choices=("sim",),
        help="the graph to run: sim, the simulated demo with the embedded simulator (as ros2 launch m2vae_fusion sim.launch.py simulator:=embedded)",
    )
    parser.add_argument("--robots", type=int, default=1, help="number of robots, each in its namespace robot1..N (default: 1)")
    parser.add_argument(
        "--world", help="world SDF (relative names also in the package's worlds/; default: by the number of robots)"
    )
    parser.add_argument("--headless", action="store_true", help="no viz nodes and no rviz2 (CI, machines without a display)")
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        metavar="S",
        help="simulated seconds until the scoreboard ends the run (default: 0 = until Ctrl-C)",
    )
    parser.add_argument(
        "--overrides",
        type=Path,
        metavar="FILE",
        help="YAML of per-robot changes, NAMESPACE -> NODE -> {enabled: false} and/or {parameters: {...}}, "
        "e.g. `robot2: {camera_encoder: {enabled: false}}` for a robot without a camera",
    )
    parser.add_argument(
        "--fleet-key",
        type=Path,
        metavar="FILE",
        help="fleet key file (docs/robustness.md): every robot's fusion node signs the latents it shares and drops "
        "those not signed with one of its keys (as ros2 launch ... fleet_key:=FILE; default: off)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="FOLDER",
        help="perception model folder for every encoder, fusion and viz node (as ros2 launch ... model:=FOLDER; "
        "default: the shipped model)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="echo every line of every node (default: the scoreboard's, and WARN/ERROR/FATAL of the rest)",
    )
    parser.add_argument(
        "--log-dir", type=Path, help="folder for one log file per node (default: $ROS_HOME/log/m2vae_launch/<time>)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print every node's command and exit")
    parser.add_argument(
        "--grace",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds nodes get to stop after SIGINT before SIGTERM/SIGKILL (default: 5)",
    )


def run(args: argparse.Namespace) -> int:
    """`m2vae launch sim`: the embedded simulator (this launcher does not run Gazebo; ros2 launch does)."""
    from m2vae_fusion.bringup.graph import load_overrides, sim_description

    if args.grace < 0:
        raise ValueError(f"--grace must be >= 0 seconds, got {args.grace}")
    description = sim_description(
        robots=args.robots,
        world=args.world,
        simulator="embedded",
        headless=args.headless,
        rviz=not args.headless,
        duration_s=args.duration,
        overrides=load_overrides(args.overrides) if args.overrides else None,
        fleet_key=args.fleet_key,
        model=args.model,
    )
    options = LaunchOptions(log_dir=args.log_dir, verbose=args.verbose, dry_run=args.dry_run, grace_s=args.grace)
    return launch(description, options)
