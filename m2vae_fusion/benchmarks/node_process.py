"""The encoder node under benchmark: its command line and parameters, and the process it runs in."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from m2vae_fusion.bringup import process_group
from m2vae_fusion.core.errors import M2VAEError

NAMESPACE = "bench"
STOP_GRACE_S = 5.0


class BenchError(M2VAEError):
    """The benchmark cannot measure: a node that dies or never answers, no usable frames."""


@contextmanager
def ros_environment(env: dict[str, str]) -> Iterator[None]:
    """This process's rclpy must see the same DDS settings as the node it measures."""
    keys = ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION")
    before = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: env[k] for k in keys})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads) from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class NodeProcess:
    """A node in its own process group with its output in a temporary file (a pipe nobody reads could
    fill up and stall it); `stop` ends it, SIGKILL after a grace period."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.argv = list(argv)
        self.log: IO[str] = tempfile.TemporaryFile("w+")
        self.proc = process_group.start(self.argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self, lines: int = 15) -> str:
        self.log.flush()
        self.log.seek(0)
        return "\n".join(self.log.read().splitlines()[-lines:]) or "(none)"

    def check_alive(self, what: str) -> None:
        if self.proc.poll() is not None:
            raise BenchError(
                f"{what} exited with status {self.proc.returncode} ({' '.join(self.argv)}); its last output:\n{self.output()}"
            )

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        process_group.stop([self.proc], STOP_GRACE_S)
        self.log.close()


def encoder_command(modality: str, params_file: Path, model: Path | None, executor: str | None = None) -> list[str]:
    argv = [
        "encoder",
        "--ros-args",
        "-r",
        f"__ns:=/{NAMESPACE}",
        "-r",
        f"__node:={modality}_encoder",
        "--params-file",
        str(params_file),
    ]
    if model is not None:
        argv += ["-p", f"model:={model}"]
    if executor is not None:
        argv += ["-p", f"executor:={executor}"]
    return argv


def encoder_parameters(params_file: Path, modality: str) -> dict[str, Any]:
    """The encoder node's parameters for `modality`: PARAMETERS defaults overlaid with its block of the
    params file, so the bare path filters objects as the node does."""
    import yaml

    from m2vae_fusion.nodes.encoder import PARAMETERS

    values = {name: entry.default for name, entry in PARAMETERS.items()}
    data = yaml.safe_load(params_file.read_text()) or {}
    for key in (f"/**/{modality}_encoder", f"{modality}_encoder", f"/{NAMESPACE}/{modality}_encoder"):
        values.update((data.get(key) or {}).get("ros__parameters", {}))
    return values
