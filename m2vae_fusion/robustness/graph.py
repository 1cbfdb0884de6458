"""The node graph under fuzz: the simulated robots' nodes, each its own process group, logs in a folder."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from m2vae_fusion.bringup import process_group

FAST_DIAGNOSTICS_S = 0.1  # the encoders' and fusion nodes' diagnostics period during a fuzz run


class Graph:
    """The node graph as processes in their own process groups, logs in `log_dir`."""

    def __init__(self, robots: int, env: dict[str, str], log_dir: Path) -> None:
        from m2vae_fusion.bringup.graph import sim_description
        from m2vae_fusion.bringup.launcher import resolve_commands

        description = sim_description(robots=robots, simulator="embedded", headless=True, rviz=False)
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
        self.procs: dict[str, subprocess.Popen] = {}
        for spec, argv in commands:
            log = open(log_dir / f"{spec.key.replace('/', '_')}.log", "w", encoding="utf-8")
            self.procs[spec.key] = process_group.start(
                argv,
                env={**env, **spec.env, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()

    def exited(self) -> dict[str, int]:
        return {key: proc.returncode for key, proc in self.procs.items() if proc.poll() is not None}

    def tail(self, key: str, lines: int = 15) -> str:
        path = self.log_dir / f"{key.replace('/', '_')}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no log)"

    def stop(self, grace_s: float = 5.0) -> None:
        process_group.stop(self.procs.values(), grace_s)
