"""The `m2vae` command. Each sub-command imports its heavy dependencies lazily so that
`m2vae --help` answers at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from m2vae_fusion import __version__


def cmd_doctor(args: argparse.Namespace) -> int:
    from m2vae_fusion.doctor import run_checks

    ok = run_checks()
    print("all checks passed" if ok else "some checks failed: see the fixes above", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    print(
        "m2vae demo: the simulated-robot demo is not built yet (issue: bringup).\n"
        "Running the most end-to-end part that exists: the environment check, which sends a\n"
        "LatentEmbedding between two processes over real DDS.\n",
        flush=True,
    )
    return cmd_doctor(args)


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

COMMANDS: tuple[Command, ...] = (
    (
        "doctor",
        "check rclpy, m2vae_msgs, DDS between two processes, torch, MuJoCo offscreen rendering and data packages",
        lambda p: None,
        cmd_doctor,
    ),
    ("demo", "run the main job (what `make run` runs)", lambda p: None, cmd_demo),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m2vae",
        description="m2vae_fusion: multi-modal object perception with a jointly trained multi-modal VAE (M2VAE).",
    )
    parser.add_argument("--version", action="version", version=f"m2vae_fusion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, add_arguments, run in COMMANDS:
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
