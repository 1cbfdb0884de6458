"""The node graph under fuzz and chaos: the simulated robots' nodes, each its own process group, logs
in a folder; any node can be killed and started again with the same command."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
from pathlib import Path
from typing import Any

from m2vae_fusion.bringup import process_group

FAST_DIAGNOSTICS_S = 0.1  # the encoders' and fusion nodes' diagnostics period during a fuzz run


class Graph:
    """The node graph as processes in their own process groups, logs in `log_dir`."""

    def __init__(
        self,
        robots: int,
        env: dict[str, str],
        log_dir: Path,
        fleet_key: Path | None = None,
        overrides: dict[str, dict[str, dict[str, Any]]] | None = None,
    ) -> None:
        """`fleet_key`: a key file every fusion node signs and verifies latents with, as `m2vae launch --fleet-key`.
        `overrides`: per-robot node overrides as `m2vae launch --overrides` takes them."""
        from m2vae_fusion.bringup.graph import sim_description
        from m2vae_fusion.bringup.launcher import resolve_commands

        description = sim_description(
            robots=robots, simulator="embedded", headless=True, rviz=False, fleet_key=fleet_key, overrides=overrides
        )
        nodes = tuple(
            dataclasses.replace(n, parameters={**n.parameters, "diagnostics_period_s": FAST_DIAGNOSTICS_S})
            if n.executable in ("encoder", "fusion")
            else n
            for n in description.nodes
        )
        self.description = dataclasses.replace(description, nodes=nodes)
        commands, problems = resolve_commands(self.description)
        if problems:
            raise FileNotFoundError("cannot start the graph:\n  " + "\n  ".join(problems))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.commands = {spec.key: (argv, {**env, **spec.env, "PYTHONUNBUFFERED": "1"}) for spec, argv in commands}
        self.procs: dict[str, subprocess.Popen] = {}
        for key in self.commands:
            self.start(key, "w")

    def start(self, key: str, mode: str = "a") -> None:
        """Start node `key` (`robot1/fusion`) with its command; its log is appended to (mode "a")."""
        argv, env = self.commands[key]
        with open(self.log_dir / f"{key.replace('/', '_')}.log", mode, encoding="utf-8") as log:
            self.procs[key] = process_group.start(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, key: str) -> None:
        """SIGKILL to node `key`'s process group, as an OOM kill or a power cut would end it."""
        process_group.signal_group(self.procs[key], signal.SIGKILL)
        self.procs[key].wait()

    def exited(self) -> dict[str, int]:
        return {key: proc.returncode for key, proc in self.procs.items() if proc.poll() is not None}

    def tail(self, key: str, lines: int = 15) -> str:
        path = self.log_dir / f"{key.replace('/', '_')}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no log)"

    def stop(self, grace_s: float = 5.0) -> None:
        process_group.stop(self.procs.values(), grace_s)
