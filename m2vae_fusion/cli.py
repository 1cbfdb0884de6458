"""The `m2vae` command. Each sub-command imports its heavy dependencies lazily so that
`m2vae --help` answers at once."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

from m2vae_fusion import __version__


class LazyParser(argparse.ArgumentParser):
    """A sub-command's parser that adds its arguments on first use (a parse, its help or its usage): they
    come from the sub-command's module, which may import torch or rclpy, and `m2vae --help` or a command
    line for another sub-command must not pay for that."""

    def __init__(self, *args, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pending_arguments = add_arguments

    def add_pending_arguments(self) -> None:
        if self.pending_arguments is not None:
            add_arguments, self.pending_arguments = self.pending_arguments, None
            add_arguments(self)

    def parse_known_args(self, args=None, namespace=None):
        self.add_pending_arguments()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.add_pending_arguments()
        return super().format_usage()

    def format_help(self) -> str:
        self.add_pending_arguments()
        return super().format_help()


def cmd_doctor(args: argparse.Namespace) -> int:
    from m2vae_fusion.doctor import run_checks

    ok = run_checks()
    print("all checks passed" if ok else "some checks failed: see the fixes above", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.bringup import demo

    demo.add_arguments(parser)


def cmd_demo(args: argparse.Namespace) -> int:
    from m2vae_fusion.bringup import demo

    return demo.run(args)


def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    experiments = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    _add_mog_arguments(experiments)
    _add_mnist_e_arguments(experiments)
    _add_sim_experiment_arguments(experiments)


def _add_mog_arguments(experiments: argparse._SubParsersAction) -> None:
    mog = experiments.add_parser(
        "mog",
        help="MoG experiment: Table I coherence, Fig. 4 embeddings, Fig. 5 re-encoding drift",
        description="Train M2VAE, JMVAE-Zero, tVAE, MVAE and MoPoE on the bi-modal MoG data set (paper Sec. V-A/B), "
        "print Table I beside the paper's numbers and the re-encoding drift with and without the loss of Eq. 19.",
    )
    mog.add_argument("--config", type=Path, help="experiment YAML (default: config/reproduce/mog.yaml)")
    mog.add_argument("--seed", type=int, help="first seed; runs use seed, seed+1, ... (default: from the config)")
    mog.add_argument("--seeds", type=int, help="M2VAE seeds, with and without the re-encoding loss (default: from the config, 3)")
    mog.add_argument(
        "--epochs",
        type=int,
        help="training epochs per run, for a quick look (paper: 400); the re-encoding warm-up scales with it",
    )
    mog.add_argument("--models", nargs="+", help="models to compare (default: all five)")
    mog.add_argument("--jobs", type=int, help="parallel training processes (default: number of CPUs)")
    mog.add_argument(
        "--out", type=Path, default=Path("runs/mog"), help="folder for checkpoints, metrics and figures (default: runs/mog)"
    )
    mog.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    mog.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    mog.add_argument(
        "--no-resume", action="store_true", help="retrain from scratch instead of continuing the checkpoints in --out"
    )


def _add_mnist_e_arguments(experiments: argparse._SubParsersAction) -> None:
    mnist = experiments.add_parser(
        "mnist-e",
        help="MNIST-E experiment: Table II ELBO test, coherence, cross-modal generation",
        description="Build (or load the cached) MNIST-E, train M2VAE, tVAE, JMVAE-Zero, MVAE and MoPoE on it (paper "
        "Sec. V-C), print Table II (ELBO of Eq. 20 per subset) beside the paper's numbers, the ELBO split into its "
        "terms, how far the joint posterior's mean lies from each uni-modal posterior, the naive Bayes coherence "
        "and the accuracy of cross-modal generation. Rerun on a finished --out to re-evaluate without retraining.",
    )
    mnist.add_argument("--config", type=Path, help="experiment YAML (default: config/reproduce/mnist_e.yaml)")
    mnist.add_argument("--seed", type=int, help="training seed (default: from the config)")
    mnist.add_argument("--epochs", type=int, help="training epochs per model (default: from the config, 100)")
    mnist.add_argument("--models", nargs="+", help="models to compare (default: all five)")
    mnist.add_argument("--jobs", type=int, help="parallel training processes (default: number of CPUs)")
    mnist.add_argument(
        "--importance-samples",
        type=int,
        metavar="K",
        help="also print the importance-weighted ELBO with K samples beside the single-sample Table II; 0: single-sample only "
        "(default: from the config, 100)",
    )
    mnist.add_argument(
        "--out",
        type=Path,
        default=Path("runs/mnist_e"),
        help="folder for checkpoints, metrics and figures (default: runs/mnist_e)",
    )
    mnist.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    mnist.add_argument("--no-figures", action="store_true", help="skip the PNG generation grids")
    mnist.add_argument(
        "--no-resume", action="store_true", help="retrain from scratch instead of continuing the checkpoints in --out"
    )


def _add_sim_experiment_arguments(experiments: argparse._SubParsersAction) -> None:
    sim = experiments.add_parser(
        "sim",
        help="simulated camera / LiDAR / reflectance experiment: meta-sensor and in-place fusion accuracy",
        description="Collect a training bag (worlds/arena.sdf) and a test bag (another world and seed), train the "
        "perception model (beta-VAEs, the M2VAE with and without the re-encoding loss) and print the accuracies of "
        "paper Sec. V-D beside the paper's: meta-sensor on raw features vs on z, one sensor at a time with in-place "
        "fusion with vs without re-encoding, and per subset.",
    )
    sim.add_argument("--config", type=Path, help="perception model YAML (default: config/perception.yaml)")
    sim.add_argument("--seed", type=int, default=0, help="seed of the training bag; the test bag uses seed + 1000 (default: 0)")
    sim.add_argument(
        "--data-seeds",
        type=int,
        nargs="+",
        metavar="S",
        help="run the whole reproduction once per data seed S (bags, models, results in OUT/seedS; test bag S + 1000) "
        "and report the mean and spread over them (default: --seed alone, in OUT)",
    )
    sim.add_argument(
        "--train-samples", type=int, help="training observations to collect, half of them beyond the IR's reach (default: 8000)"
    )
    sim.add_argument("--test-samples", type=int, help="test observations to collect, as the training ones (default: 2000)")
    sim.add_argument("--epochs-preprocessors", type=int, help="override the beta-VAEs' epochs (quick runs)")
    sim.add_argument("--epochs-fusion", type=int, help="override the M2VAEs' epochs (quick runs)")
    sim.add_argument("--jobs", type=int, default=2, help="processes for the beta-VAEs (default: 2)")
    sim.add_argument("--out", type=Path, default=Path("runs/sim"), help="folder for bags, models and results (default: runs/sim)")
    sim.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    sim.add_argument(
        "--no-resume", action="store_true", help="retrain from scratch instead of continuing the checkpoints in --out"
    )


def save_results(results: dict, args: argparse.Namespace) -> None:
    """A reproduction's results as results.json in --out, and at --json when given."""
    from m2vae_fusion.reproductions.runs import write_json

    write_json(results, args.out / "results.json")
    if args.json:
        write_json(results, args.json)


def cmd_reproduce(args: argparse.Namespace) -> int:
    return {"mog": reproduce_mog, "mnist-e": reproduce_mnist_e, "sim": reproduce_sim}[args.experiment](args)


def reproduce_sim(args: argparse.Namespace) -> int:
    from m2vae_fusion.model.config import load_stack_config
    from m2vae_fusion.reproductions import sim

    train_samples = sim.TRAIN_SAMPLES if args.train_samples is None else args.train_samples
    test_samples = sim.TEST_SAMPLES if args.test_samples is None else args.test_samples
    if train_samples < 1 or test_samples < 1:
        raise ValueError(f"--train-samples and --test-samples must be >= 1, got {train_samples}, {test_samples}")
    config = load_stack_config(args.config).with_epochs(args.epochs_preprocessors, args.epochs_fusion)
    options = {"train_samples": train_samples, "test_samples": test_samples, "jobs": args.jobs, "resume": not args.no_resume}
    if args.data_seeds:
        results = sim.reproduce_sim_seeds(config, args.out, args.data_seeds, **options)
        print(sim.seeds_table(results))
    else:
        results = sim.reproduce_sim(config, args.out, args.seed, **options)
        print(sim.table(results))
    print(f"figure: {sim.draw_inplace_curve(results, args.out / 'inplace_fusion.png')}")
    print(f"\nwhole reproduction: {results['seconds'] / 60:.1f} min")
    save_results(results, args)
    return 0


def reproduce_mnist_e(args: argparse.Namespace) -> int:
    import dataclasses

    from m2vae_fusion.reproductions import mnist_e

    experiment = mnist_e.load_experiment(args.config)
    if args.seed is not None:
        experiment.train = dataclasses.replace(experiment.train, seed=args.seed)
    if args.epochs is not None:
        experiment.train = dataclasses.replace(experiment.train, epochs=args.epochs)
    if args.models:
        experiment.models = args.models
    if args.importance_samples is not None:
        experiment = dataclasses.replace(experiment, importance_samples=args.importance_samples)
    results = mnist_e.reproduce_mnist_e(
        experiment, args.out, jobs=args.jobs, progress=sys.stderr.isatty(), resume=not args.no_resume
    )
    print(mnist_e.table_ii(results))
    save_results(results, args)
    if not args.no_figures:
        for path in mnist_e.draw_figures(experiment, results, args.out):
            print(f"figure: {path}")
    print(f"\nwhole reproduction: {results['seconds'] / 60:.1f} min (data {results['data']['seconds']:.0f} s)")
    return 0


def reproduce_mog(args: argparse.Namespace) -> int:
    import dataclasses

    from m2vae_fusion.reproductions import mog

    experiment = mog.load_experiment(args.config)
    if args.seed is not None:
        experiment.train = dataclasses.replace(experiment.train, seed=args.seed)
    if args.epochs is not None:
        experiment.reencode = experiment.reencode.rescaled(args.epochs / experiment.train.epochs)
        experiment.train = dataclasses.replace(experiment.train, epochs=args.epochs)
    if args.seeds is not None:
        experiment = dataclasses.replace(experiment, seeds=args.seeds, baseline_seeds=min(experiment.baseline_seeds, args.seeds))
    if args.models:
        experiment.models = args.models
    results = mog.reproduce_mog(experiment, args.out, jobs=args.jobs, progress=sys.stderr.isatty(), resume=not args.no_resume)
    print(mog.table_i(results))
    print(f"\nwhole reproduction: {results['seconds'] / 60:.1f} min")
    save_results(results, args)
    if not args.no_figures:
        for path in mog.draw_figures(experiment, results, args.out):
            print(f"figure: {path}")
    return 0


# `m2vae bench NAME`: the module that holds each benchmark. Each has add_bench_arguments(parser) and
# run_bench(args) -> (results dict, table text); `--json PATH` is added here for every one.
BENCHES: dict[str, tuple[str, str]] = {  # name -> (module, one-line help)
    "train": (
        "m2vae_fusion.benchmarks.train",
        "training samples per second of every model and a same-size beta-VAE on MNIST-E, interleaved; --ddp: 1 vs N torchrun processes",
    ),
    "sim": (
        "m2vae_fusion.benchmarks.sim",
        "embedded simulator speed: real-time factor with all sensors, data collection rate, on one core",
    ),
    "nodes": (
        "m2vae_fusion.benchmarks.nodes",
        "encoder nodes over real DDS vs the bare path: latency p50/p99, ratio, CPU at 30 Hz",
    ),
    "fusion": (
        "m2vae_fusion.benchmarks.fusion",
        "one in-place fusion update (Eq. 18) vs one subset-encoder forward; batched vs single updates",
    ),
    "scale": (
        "m2vae_fusion.benchmarks.scale",
        "fusion work per burst with 10..10 000 objects and 1..16 robots; LatentEmbedding bytes",
    ),
    "latents": (
        "m2vae_fusion.benchmarks.latent_load",
        "one fusion node process under N peers x M objects of shared latents over DDS: CPU, latency to belief, drops",
    ),
    "explore": (
        "m2vae_fusion.benchmarks.explore",
        "explorer policies tour / entropy / active on generated worlds, 1 and 2 robots: time to 95 percent correct, ratios to tour",
    ),
}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    benches = parser.add_subparsers(dest="bench", metavar="BENCH", required=True, parser_class=LazyParser)
    for name, (module_name, help_text) in BENCHES.items():
        # bench nodes imports rclpy: only the bench named on the command line is imported
        benches.add_parser(name, help=help_text, add_arguments=functools.partial(add_one_bench_arguments, module_name, help_text))


def add_one_bench_arguments(module_name: str, help_text: str, bench: argparse.ArgumentParser) -> None:
    import importlib

    module = importlib.import_module(module_name)
    bench.description = (module.__doc__ or help_text).strip()
    bench.formatter_class = argparse.RawDescriptionHelpFormatter
    module.add_bench_arguments(bench)
    bench.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    bench.set_defaults(bench_run=module.run_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from m2vae_fusion.reproductions.runs import write_json

    results, table = args.bench_run(args)
    print(table)
    if args.json:
        write_json(results, args.json)
    return 0


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.sim import collect, contact_sheet, world_gen

    commands = parser.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)
    world = commands.add_parser(
        "world",
        help="write a new arena world SDF with randomised objects, orientations and light",
        description="Write an SDF world (loadable by Gazebo and by the embedded simulator) with N objects of the 8 "
        "classes at random non-overlapping places and orientations, R robots and a random sun.",
    )
    world_gen.add_arguments(world)
    world.set_defaults(sim_run=world_gen.run)
    data = commands.add_parser(
        "collect",
        help="record a labelled camera / LiDAR / IR data set as a ROS 2 bag (mcap)",
        description=collect.__doc__.split("\n\n")[0].replace("`m2vae sim collect`: ", "").capitalize() + ".",
    )
    collect.add_arguments(data)
    data.set_defaults(sim_run=collect.run)
    sheet = commands.add_parser(
        "sheet",
        help="draw what the camera, LiDAR and IR ring see of each of the 8 classes (PNG)",
        description=contact_sheet.__doc__.split("\n\n")[0].replace("`m2vae sim sheet`: ", "").capitalize(),
    )
    contact_sheet.add_arguments(sheet)
    sheet.set_defaults(sim_run=contact_sheet.run)


def cmd_sim(args: argparse.Namespace) -> int:
    return args.sim_run(args)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.training import command as train_command

    train_command.add_arguments(parser)


def cmd_train(args: argparse.Namespace) -> int:
    from m2vae_fusion.training import command as train_command

    return train_command.run(args)


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.data import recorder

    recorder.add_arguments(parser)


def cmd_record(args: argparse.Namespace) -> int:
    from m2vae_fusion.data import recorder

    return recorder.run(args)


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.bringup import launcher

    launcher.add_arguments(parser)


def cmd_launch(args: argparse.Namespace) -> int:
    from m2vae_fusion.bringup import launcher

    return launcher.run(args)


def add_fuzz_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.robustness import command as fuzz

    fuzz.add_arguments(parser)


def cmd_fuzz(args: argparse.Namespace) -> int:
    from m2vae_fusion.robustness import command as fuzz

    return fuzz.run(args)


def add_chaos_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.robustness import chaos_command

    chaos_command.add_arguments(parser)


def cmd_chaos(args: argparse.Namespace) -> int:
    from m2vae_fusion.robustness import chaos_command

    return chaos_command.run(args)


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.viz import plot

    plot.add_arguments(parser)


def cmd_plot(args: argparse.Namespace) -> int:
    from m2vae_fusion.viz import plot

    return plot.run(args)


def add_docs_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.bringup import parameter_docs

    documents = parser.add_subparsers(dest="document", metavar="DOCUMENT", required=True)
    parameters = documents.add_parser(
        "parameters", help="docs/parameters.md: every node parameter's type, default, range and description"
    )
    parameter_docs.add_arguments(parameters)


def cmd_docs(args: argparse.Namespace) -> int:
    from m2vae_fusion.bringup import parameter_docs  # imports the nodes (rclpy, torch) only when run

    return parameter_docs.run(args)


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]

COMMANDS: tuple[Command, ...] = (
    (
        "doctor",
        "check rclpy, m2vae_msgs, DDS between two processes, torch, MuJoCo offscreen rendering and data packages",
        lambda p: None,
        cmd_doctor,
    ),
    (
        "demo",
        "the simulated-robot demo (what `make run` runs): explore the arena, classify the 8 objects, score them",
        add_demo_arguments,
        cmd_demo,
    ),
    ("reproduce", "reproduce the paper's experiments (mog, mnist-e, sim)", add_reproduce_arguments, cmd_reproduce),
    ("train", "train the perception model (beta-VAEs, M2VAE, classifier) from bags", add_train_arguments, cmd_train),
    (
        "sim",
        "embedded simulator tools: generate worlds, collect labelled bags, draw a sensor contact sheet",
        add_sim_arguments,
        cmd_sim,
    ),
    (
        "record",
        "record live ROS 2 topics into a bag (mcap, split by size/duration, Ctrl-C leaves a valid bag)",
        add_record_arguments,
        cmd_record,
    ),
    ("bench", f"benchmarks, measured side by side and reported as ratios: {', '.join(BENCHES)}", add_bench_arguments, cmd_bench),
    ("plot", "draw the viz node's views to PNG: latent space, beliefs from a bag, training curves", add_plot_arguments, cmd_plot),
    (
        "launch",
        "run a node graph (sim: the simulated robots) without ros2 launch, every node its own process",
        add_launch_arguments,
        cmd_launch,
    ),
    (
        "fuzz",
        "adversarial messages against the running node graph: no crash, finite beliefs, every rejection counted",
        add_fuzz_arguments,
        cmd_fuzz,
    ),
    (
        "chaos",
        "the 2-robot graph under seeded faults (nodes killed and restarted, a robot cut off the shared latents): crashes, beliefs lost, recovery",
        add_chaos_arguments,
        cmd_chaos,
    ),
    (
        "docs",
        "generate documents from the code: parameters (docs/parameters.md from the nodes' tables; --check)",
        add_docs_arguments,
        cmd_docs,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m2vae",
        description="m2vae_fusion: multi-modal object perception with a jointly trained multi-modal VAE (M2VAE).",
    )
    parser.add_argument("--version", action="version", version=f"m2vae_fusion {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=LazyParser)
    for name, help_text, add_arguments, run in COMMANDS:
        command = sub.add_parser(name, help=help_text, description=help_text, add_arguments=add_arguments)
        command.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from m2vae_fusion.core.errors import M2VAEError

    try:
        return args.run(args)
    except (M2VAEError, ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"m2vae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
