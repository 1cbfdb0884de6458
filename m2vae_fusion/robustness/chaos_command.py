"""`m2vae chaos`: arguments, the two runs and the report (the runs themselves: robustness.chaos)."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from m2vae_fusion.robustness import chaos

    parser.description = chaos.__doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    defaults = chaos.Settings()
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"seed of the faults (default: {defaults.seed})")
    parser.add_argument(
        "--duration",
        type=float,
        default=defaults.duration_s,
        metavar="S",
        help=f"simulated seconds per run (default: {defaults.duration_s:g})",
    )
    parser.add_argument(
        "--fault-every",
        type=float,
        default=defaults.every_s,
        metavar="S",
        help=f"mean simulated seconds between kills (default: {defaults.every_s:g})",
    )
    parser.add_argument(
        "--down",
        type=float,
        default=defaults.down_s,
        metavar="S",
        help=f"simulated seconds a killed node stays down (default: {defaults.down_s:g})",
    )
    parser.add_argument(
        "--cut",
        type=float,
        default=defaults.cut_s,
        metavar="S",
        help=f"simulated seconds one robot is off the shared latents; 0: no cut (default: {defaults.cut_s:g})",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the run without faults (and the final-accuracy comparison)"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument(
        "--log-dir", type=Path, help="folder for the nodes' logs (default: a temporary folder, removed when the targets are met)"
    )


def run(args: argparse.Namespace) -> int:
    from m2vae_fusion.core.atomic_file import write_text_atomic
    from m2vae_fusion.robustness import chaos

    settings = chaos.Settings(args.seed, args.duration, args.fault_every, args.down, args.cut)
    for name in ("duration", "fault_every", "down"):
        if not getattr(args, name) > 0:
            raise SystemExit(f"m2vae chaos: --{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.cut < 0:
        raise SystemExit(f"m2vae chaos: --cut must be >= 0, got {args.cut}")
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="m2vae_chaos_"))
    robots = tuple(f"robot{k}" for k in range(1, settings.robots + 1))
    faults, cut_robot = chaos.schedule(
        settings.seed, robots, settings.duration_s, settings.every_s, settings.down_s, settings.cut_s
    )
    say = lambda text: print(f"m2vae chaos: {text}", flush=True)  # noqa: E731
    baseline = None
    if not args.no_baseline:
        say(f"baseline run, no faults, logs in {log_dir / 'baseline'}")
        baseline = chaos.run_graph(settings, [], cut_robot, log_dir / "baseline", say)
    say(f"chaos run (seed {settings.seed}), logs in {log_dir / 'chaos'}")
    log = chaos.run_graph(settings, faults, cut_robot, log_dir / "chaos", say)
    results = {"settings": vars(settings), "cut_robot": cut_robot, **chaos.figures(log, baseline)}
    print(table(results))
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2, default=list))
    if results["met"] and args.log_dir is None:
        shutil.rmtree(log_dir, ignore_errors=True)
    elif not results["met"]:
        print(f"node logs: {log_dir}")
    return 0 if results["met"] else 1


def table(results: dict[str, Any]) -> str:
    lines = ["", "faults (recovery: simulated seconds from the fault, and from its end, to the pre-fault accuracy)"]
    lines.append(f"  {'at s':>6}  {'fault':<26} {'robot':<7} {'pre-fault':>9} {'recovery s':>10} {'after end':>9}")
    for r in results["recoveries"]:
        recovery = "never" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}"
        after = "never" if r["after_end_s"] is None else f"{r['after_end_s']:.1f}"
        lines.append(
            f"  {r['at_s']:6.1f}  {r['fault']:<26} {r['robot']:<7} {r['pre_fault_accuracy']:9.2f} {recovery:>10} {after:>9}"
        )
    lines.append("fusion restarts (objects)")
    lines.append(
        f"  {'at s':>6}  {'robot':<7} {'published':>9} {'snapshot':>8} {'restored':>8}  lost beyond snapshot / within a period"
    )
    for r in results["restarts"]:
        restored = "-" if r["restored"] is None else str(r["restored"])
        beyond = "unchecked" if r["lost_beyond_snapshot"] is None else str(len(r["lost_beyond_snapshot"]))
        lines.append(
            f"  {r['at_s']:6.1f}  {r['robot']:<7} {r['published']:9d} {r['in_snapshot']:8d} {restored:>8}  {beyond} / {len(r['lost_within_period'])}"
        )
    lines.append(
        f"latents relayed to and from {results['cut_robot']}: {results['latents_relayed']}, held back by the cut: "
        f"{results['latents_held_back_by_the_cut']}"
    )
    lines.append(f"unplanned crashes: {len(results['unplanned_crashes'])}")
    for crash in results["unplanned_crashes"]:
        lines.append(f"  {crash['at_s']} s {crash['node']} (status {crash['status']}):\n{crash['log']}")
    lines.append(f"median recovery: {results['median_recovery_s']:.1f} s of simulated time")
    base = results["baseline_final_correct"]
    for robot, correct in results["final_correct"].items():
        against = f" (baseline {base[robot]})" if base else ""
        lines.append(f"final: {robot} {correct}/{results['objects']} objects correct{against}")
    lines += [f"{'MET   ' if ok else 'MISSED'} {goal}" for goal, ok in results["goals"].items()]
    return "\n".join(lines)
