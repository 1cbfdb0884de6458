"""`m2vae bench nodes`: what running a sensor's encoder as a ROS 2 node costs over the bare work.

For each modality the real `encoder` node runs as its own process (namespace /bench, parameters from
config/encoders.yaml) on a fresh ROS_DOMAIN_ID with loopback-only DDS. This process replays frames
the embedded simulator rendered beforehand (the robot 0.2 m from each object of the world, facing it):
per tick /tf odom -> base_link, then the sensor's messages (camera: camera_info + image; IR: ir/scan)
and the LiDAR scan, all stamped with the current wall time, at --rate-hz (30 Hz: a camera's frame
rate). Node latency = arrival of the frame's last encoding on `encodings` - the moment the first
sensor message of the frame goes out, so it covers the DDS transport both ways, the node's executor,
conversion, object detection and the torch forward. Arrival is the RMW's reception time of the sample
(MessageInfo received_timestamp, the same system clock), not the time this process's Python executor
gets round to the callback: that executor's half millisecond, like the /tf publish before the sensor
messages, is the harness's cost, not the node's.
odom -> base_link goes out with every frame at the frame's stamp: the node holds encodings back until
it has a transform at or after the scan (up to 0.5 s), which here is never the bottleneck measured.

Baseline, interleaved with the node in the same run: once a frame's encodings are back (the node is
idle then), this process times the node's path on the same messages without DDS: the node's
conversion functions -> perception.observe -> the node's object filter -> PerceptionModel.encode_views,
and the torch forward (encode_views) alone. Node p50 / bare p50 is the price of the node (goal <= 1.5).

Encoder CPU: utime + stime of the node's process over the measured window, in cores (goal: under half
a core at 30 Hz camera input). Kept up: every measured frame answered, sent at the requested rate, and
the median latency of the second half at most 1.5x that of the first.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from m2vae_fusion.benchmarks.node_frames import render_frames
from m2vae_fusion.benchmarks.node_process import encoder_command, encoder_parameters
from m2vae_fusion.benchmarks.node_replay import DRIFT_LIMIT, RATE_SHORTFALL, measure_modality
from m2vae_fusion.ros_interface.runtime import EXECUTORS

MODALITIES = ("camera", "lidar", "ir")
TARGETS = {"ratio_p50": 1.5, "camera_cpu_cores": 0.5}


def machine() -> dict[str, Any]:
    """Where the figures come from, and how busy it was."""
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "load_average_1min": os.getloadavg()[0],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
    }


def bench_nodes(
    modalities: Sequence[str],
    *,
    messages: int = 300,
    warmup: int = 30,
    rate_hz: float = 30.0,
    world: Path | None = None,
    model_dir: Path | None = None,
    params_file: Path | None = None,
    domain_id: int | None = None,
    executor: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    import torch

    from m2vae_fusion.bringup.ros_env import MAX_SAFE_DOMAIN_ID, isolated_ros_env
    from m2vae_fusion.model.perception_model import PerceptionModel
    from m2vae_fusion.resources import config_path, default_model_dir, share_dir

    if messages < 2 or warmup < 0 or not rate_hz > 0:
        raise ValueError(
            f"bench nodes: --messages must be >= 2, --warmup >= 0 and --rate-hz > 0, got {messages}, {warmup}, {rate_hz}"
        )
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"bench nodes: --modalities must be among {', '.join(MODALITIES)}, got {list(modalities)}")
    if domain_id is not None and not 0 <= domain_id <= MAX_SAFE_DOMAIN_ID:
        raise ValueError(f"bench nodes: --domain-id must be in 0..{MAX_SAFE_DOMAIN_ID}, got {domain_id}")
    world = world or share_dir() / "worlds" / "arena.sdf"
    params_file = params_file or config_path("encoders.yaml")
    for path in (world, params_file):
        if not path.is_file():
            raise FileNotFoundError(f"bench nodes: {path} does not exist")
    model = PerceptionModel.load(model_dir or default_model_dir())
    params = {m: encoder_parameters(params_file, m) for m in modalities}
    if executor is not None:
        for values in params.values():
            values["executor"] = executor
    torch.set_num_threads(int(params[modalities[0]]["threads"]))  # as the node: the bare path gets what it gets
    env = isolated_ros_env(domain_id)
    results: dict[str, Any] = {
        "rate_hz": rate_hz,
        "messages": messages,
        "warmup": warmup,
        "world": str(world),
        "model_id": model.model_id,
        "domain_id": int(env["ROS_DOMAIN_ID"]),
        "machine": machine(),
        "executors": {m: params[m]["executor"] for m in modalities},
        "modalities": {},
        "targets": TARGETS,
    }
    static_msg, static, frames = render_frames(world, modalities, model, params, rate_hz)
    for modality in modalities:
        command = encoder_command(modality, params_file, model_dir, executor)
        log(f"{modality}: {' '.join(command)} on ROS_DOMAIN_ID {env['ROS_DOMAIN_ID']}, {len(frames[modality])} views")
        results["modalities"][modality] = measure_modality(
            modality,
            frames[modality],
            static_msg,
            static,
            model,
            params[modality],
            env,
            command,
            rate_hz=rate_hz,
            messages=messages,
            warmup=warmup,
            log=log,
        )
    return results


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    columns = (
        "modality",
        "node p50",
        "node p99",
        "bare p50",
        "bare p99",
        "ratio p50",
        "CPU (cores)",
        "kept up",
        "torch fwd p50/p99",
    )
    widths = (9, 9, 9, 9, 9, 10, 12, 16, 18)
    lines = [
        f"encoder nodes over DDS vs the bare path in this process: {results['messages']} messages per modality at "
        f"{results['rate_hz']:g} Hz after {results['warmup']} warm-up, model {results['model_id']}, executor "
        f"{'/'.join(sorted(set(results['executors'].values())))}",
        f"machine: {m['cpu']}, {m['usable_cpus']} of {m['cpus']} CPUs usable, load {m['load_average_1min']:.1f} at the start; times in ms",
        " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths))),
    ]
    for modality, r in results["modalities"].items():
        kept = f"{'yes' if r['kept_up'] else 'no'} {r['answered']}/{r['sent']}"
        cells = (
            modality,
            f"{r['node_ms']['p50']:.2f}",
            f"{r['node_ms']['p99']:.2f}",
            f"{r['bare_ms']['p50']:.2f}",
            f"{r['bare_ms']['p99']:.2f}",
            f"{r['ratio_p50']:.2f}",
            f"{r['cpu_cores']:.3f}",
            kept,
            f"{r['forward_ms']['p50']:.2f}/{r['forward_ms']['p99']:.2f}",
        )
        lines.append(" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    drift = ", ".join(
        f"{k} {'-' if r['latency_drift'] is None else format(r['latency_drift'], '.2f')}"
        for k, r in results["modalities"].items()
    )
    lines.append(
        f"goals: ratio p50 <= {TARGETS['ratio_p50']:g}; camera node < {TARGETS['camera_cpu_cores']:g} core at 30 Hz. kept up: all answered, "
        f"sent at >= {RATE_SHORTFALL:.0%} of the rate, second-half p50 <= {DRIFT_LIMIT:g}x first-half "
        f"(drift: {drift})"
    )
    return "\n".join(lines)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=300, help="measured frames per modality (default: 300)")
    parser.add_argument(
        "--warmup", type=int, default=30, help="frames sent after the node's first answer before measuring (default: 30)"
    )
    parser.add_argument(
        "--rate-hz", type=float, default=30.0, help="frames per second sent to each node (default: 30, a camera's frame rate)"
    )
    parser.add_argument(
        "--modalities",
        nargs="+",
        default=list(MODALITIES),
        choices=MODALITIES,
        help="encoder nodes to measure, one after the other (default: all)",
    )
    parser.add_argument("--world", type=Path, help="world SDF to render the views from (default: the package's worlds/arena.sdf)")
    parser.add_argument(
        "--model",
        type=Path,
        help="perception model folder, for the nodes and the bare path (default: the shipped m2vae_fusion/weights/amiro)",
    )
    parser.add_argument("--params-file", type=Path, help="encoder parameters (default: the package's config/encoders.yaml)")
    parser.add_argument(
        "--domain-id", type=int, help="ROS_DOMAIN_ID of the measurement (default: a random one, loopback-only discovery)"
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="the nodes' executor parameter (default: the params file's; events in the package's)",
    )


def run_bench(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    results = bench_nodes(
        args.modalities,
        messages=args.messages,
        warmup=args.warmup,
        rate_hz=args.rate_hz,
        world=args.world,
        model_dir=args.model,
        params_file=args.params_file,
        domain_id=args.domain_id,
        executor=args.executor,
        log=lambda text: print(text, file=sys.stderr),
    )
    return results, table(results)
