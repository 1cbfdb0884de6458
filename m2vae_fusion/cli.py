"""The `m2vae` command. Each sub-command imports its heavy dependencies lazily so that
`m2vae --help` answers at once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from m2vae_fusion import __version__


def cmd_doctor(args: argparse.Namespace) -> int:
    from m2vae_fusion.doctor import run_checks

    ok = run_checks()
    print("all checks passed" if ok else "some checks failed: see the fixes above", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    print(
        "m2vae demo: the simulated-robot demo is not built yet (issue: bringup).\n"
        "Running the most end-to-end parts that exist:\n"
        "  1. the environment check, which sends a LatentEmbedding between two processes over real DDS;\n"
        "  2. a quick MoG reproduction (30 epochs, one seed; `m2vae reproduce mog` runs the paper's 400).\n",
        flush=True,
    )
    if cmd_doctor(args) != 0:
        return 1
    print()
    quick = build_parser().parse_args(["reproduce", "mog", "--epochs", "30", "--seeds", "1", "--out", "runs/demo-mog"])
    return cmd_reproduce(quick)


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    mog = experiments.add_parser(
        "mog",
        help="MoG experiment: Table I coherence, Fig. 4 embeddings, Fig. 5 re-encoding drift",
        description="Train M2VAE, JMVAE-Zero, tVAE, MVAE and MoPoE on the bi-modal MoG data set (paper Sec. V-A/B), "
        "print Table I beside the paper's numbers and the re-encoding drift with and without the loss of Eq. 19.",
    )
    mog.add_argument("--config", type=Path, help="experiment YAML (default: config/reproduce/mog.yaml)")
    mog.add_argument("--seed", type=int, help="first seed; runs use seed, seed+1, ... (default: from the config)")
    mog.add_argument(
        "--seeds", type=int, help="M2VAE seeds, with and without the re-encoding loss (default: from the config, 3)"
    )
    mog.add_argument("--epochs", type=int, help="training epochs per run, for a quick look (paper: 400); the re-encoding warm-up scales with it")
    mog.add_argument("--models", nargs="+", help="models to compare (default: all five)")
    mog.add_argument("--jobs", type=int, help="parallel training processes (default: number of CPUs)")
    mog.add_argument("--out", type=Path, default=Path("runs/mog"), help="folder for checkpoints, metrics and figures (default: runs/mog)")
    mog.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    mog.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    mog.add_argument(
        "--no-resume", action="store_true", help="retrain from scratch instead of continuing the checkpoints in --out"
    )


def cmd_reproduce(args: argparse.Namespace) -> int:
    import dataclasses

    from m2vae_fusion.experiments import mog

    experiment = mog.load_experiment(args.config)
    if args.seed is not None:
        experiment.train = dataclasses.replace(experiment.train, seed=args.seed)
    if args.epochs is not None:
        # keep the re-encoding warm-up at the same fraction of training
        scale = args.epochs / experiment.train.epochs
        experiment.reencode = dataclasses.replace(
            experiment.reencode,
            start_epoch=round(experiment.reencode.start_epoch * scale),
            ramp_epochs=round(experiment.reencode.ramp_epochs * scale),
        )
        experiment.train = dataclasses.replace(experiment.train, epochs=args.epochs)
    if args.seeds is not None:
        experiment = dataclasses.replace(experiment, seeds=args.seeds, baseline_seeds=min(experiment.baseline_seeds, args.seeds))
    if args.models:
        experiment.models = args.models
    results = mog.reproduce_mog(
        experiment, args.out, jobs=args.jobs, progress=sys.stderr.isatty(), resume=not args.no_resume
    )
    print(mog.table_i(results))
    print(f"\nwhole reproduction: {results['seconds'] / 60:.1f} min")
    mog.write_json(results, args.out / "results.json")
    if args.json:
        mog.write_json(results, args.json)
    if not args.no_figures:
        for path in mog.draw_figures(experiment, results, args.out):
            print(f"figure: {path}")
    return 0


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

COMMANDS: tuple[Command, ...] = (
    (
        "doctor",
        "check rclpy, m2vae_msgs, DDS between two processes, torch, MuJoCo offscreen rendering and data packages",
        lambda p: None,
        cmd_doctor,
    ),
    ("demo", "run the main job (what `make run` runs)", lambda p: None, cmd_demo),
    ("reproduce", "reproduce the paper's experiments (mog)", add_reproduce_arguments, cmd_reproduce),
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
    from m2vae_fusion.core.errors import M2VAEError

    try:
        return args.run(args)
    except M2VAEError as exc:
        print(f"m2vae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
