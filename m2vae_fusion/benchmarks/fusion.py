"""`m2vae bench fusion`: what an in-place fusion update (Eq. 18) costs beside the subset encoder it calls.

Single: one encoding of a modality an object has not sensed yet, through BeliefStore.update (the
fusion node's whole step: association, decoding the stored z into the sensed modalities, the
subset-encoder forward of their union, classification), against one forward of that subset encoder
(PerceptionModel.encode of the same features) and PerceptionModel.fuse alone (decode + encode),
interleaved per repetition, p50 and p99. Goal: update / encode <= 3 at p50.

Batched: K encodings for K objects in one update (one batched decode + encode + classification)
against K single updates of K other objects in the same state, per encoding, interleaved.

Every update goes to an object in the same state (sensed by the camera only, the LiDAR new), so
repetitions measure the same work; one torch thread (the networks are tiny).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch loads only when a benchmark runs, not for `m2vae --help`
    from m2vae_fusion.model.beliefs import BeliefStore, Encoding
    from m2vae_fusion.model.perception_model import PerceptionModel

SPACING = 0.3  # m between lattice points; with JITTER objects stay >= 0.2 m apart (world_gen: >= 0.15 m)
JITTER = 0.05  # m


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_model(path: Path | None) -> PerceptionModel:
    from m2vae_fusion.model.perception_model import PerceptionModel
    from m2vae_fusion.resources import default_model_dir

    return PerceptionModel.load(path or default_model_dir())


def spread_positions(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` object positions (n, 3) on a jittered square lattice: never closer than SPACING - 2 * JITTER."""
    side = max(1, math.ceil(math.sqrt(n)))
    cells = np.stack(np.divmod(np.arange(n), side), axis=1).astype(np.float64) * SPACING
    xy = cells + rng.uniform(-JITTER, JITTER, size=(n, 2))
    return np.column_stack([xy, np.full(n, 0.03)])


def percentiles_us(samples_ns: list[int]) -> dict[str, float]:
    values = np.asarray(samples_ns, np.float64) / 1e3
    return {"p50_us": float(np.percentile(values, 50)), "p99_us": float(np.percentile(values, 99))}


def timed(call: Callable[[], object]) -> int:
    start = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - start


def own_encoding(
    model: PerceptionModel, modality: str, features: np.ndarray, position: np.ndarray, stamp_ns: int, robot_id: str = "robot1"
) -> Encoding:
    from m2vae_fusion.model.beliefs import Encoding

    return Encoding(modality, model.model_id, features.astype(np.float32), position, stamp_ns, robot_id)


def camera_only_objects(store: BeliefStore, n: int, rng: np.random.Generator) -> list[str]:
    """`n` objects in an empty `store`, each sensed by the camera once; their ids in order."""
    if store.objects:
        raise ValueError("camera_only_objects lays objects out in an empty store")
    burst = [own_encoding(store.model, "camera", rng.standard_normal(store.feature_dim), p, 1) for p in spread_positions(n, rng)]
    result = store.update(burst)
    if len(result.created) != n:
        raise RuntimeError(f"bench fusion: {n} camera encodings made {len(result.created)} objects; the layout is wrong")
    return result.created


def bench_fusion(
    model: PerceptionModel, repetitions: int = 200, batch_sizes: tuple[int, ...] = (4, 16, 64), seed: int = 0
) -> dict[str, Any]:
    from m2vae_fusion.model.beliefs import BeliefStore, BeliefStoreConfig

    if repetitions < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(
            f"bench fusion: --repetitions and every --batch-size must be >= 1, got {repetitions}, {list(batch_sizes)}"
        )
    rng = np.random.default_rng(seed)
    store = BeliefStore(model, "robot1", BeliefStoreConfig(forget_after_s=1e9))
    per_repetition = 1 + 2 * sum(batch_sizes)
    ids = iter(camera_only_objects(store, repetitions * per_repetition, rng))
    dim = store.feature_dim

    def lidar(object_id: str) -> Encoding:
        obj = store.objects[object_id]
        return own_encoding(model, "lidar", rng.standard_normal(dim), obj.position + rng.normal(0, 0.005, 3), 2)

    single: dict[str, list[int]] = {"update": [], "fuse": [], "encode": []}
    batched: dict[int, dict[str, list[int]]] = {k: {"batched": [], "single": []} for k in batch_sizes}
    for _ in range(repetitions):
        object_id = next(ids)
        encoding = lidar(object_id)
        stored = store.objects[object_id]
        camera = stored.evidence["camera"].mean.astype(np.float32)
        belief = stored.belief
        single["encode"].append(timed(lambda: model.encode({"camera": camera[None], "lidar": encoding.features[None]})))
        single["fuse"].append(timed(lambda: model.fuse(belief, {"lidar": encoding.features})))
        single["update"].append(timed(lambda: store.update([encoding])))
        for k in batch_sizes:
            together = [lidar(next(ids)) for _ in range(k)]
            apart = [lidar(next(ids)) for _ in range(k)]
            batched[k]["batched"].append(timed(lambda: store.update(together)))
            batched[k]["single"].append(sum(timed(lambda e=e: store.update([e])) for e in apart))
    times = {name: percentiles_us(samples) for name, samples in single.items()}
    per_encoding = {}
    for k, samples in batched.items():
        together = percentiles_us([t / k for t in samples["batched"]])
        apart = percentiles_us([t / k for t in samples["single"]])
        per_encoding[str(k)] = {"batched": together, "single": apart, "speedup_p50": apart["p50_us"] / together["p50_us"]}
    return {
        "model_id": model.model_id,
        "latent_dim": model.config.fusion.latent_dim,
        "repetitions": repetitions,
        "single": times,
        "update_over_encode_p50": times["update"]["p50_us"] / times["encode"]["p50_us"],
        "fuse_over_encode_p50": times["fuse"]["p50_us"] / times["encode"]["p50_us"],
        "goal_update_over_encode": 3.0,
        "per_encoding": per_encoding,
    }


def table(results: dict[str, Any]) -> str:
    single = results["single"]
    rows = [
        f"in-place fusion (Eq. 18), model {results['model_id']} (D_z = {results['latent_dim']}), {results['repetitions']} repetitions, "
        "one torch thread; camera sensed, LiDAR new",
        f"{'step':<40} {'p50 us':>9} {'p99 us':>9} {'/ encode':>9}",
    ]
    names = {
        "encode": "subset encoder forward (encode)",
        "fuse": "decode + encode (PerceptionModel.fuse)",
        "update": "BeliefStore.update, one encoding",
    }
    for key, name in names.items():
        rows.append(
            f"{name:<40} {single[key]['p50_us']:>9.1f} {single[key]['p99_us']:>9.1f} {single[key]['p50_us'] / single['encode']['p50_us']:>9.2f}"
        )
    rows.append(
        f"update / encode at p50: {results['update_over_encode_p50']:.2f} (goal <= {results['goal_update_over_encode']:g})"
    )
    rows.append("")
    rows.append("K encodings for K objects: one update vs K single updates, per encoding")
    rows.append(f"{'K':>4} {'batched p50 us':>15} {'single p50 us':>14} {'speedup':>8}")
    for k, row in results["per_encoding"].items():
        rows.append(f"{k:>4} {row['batched']['p50_us']:>15.1f} {row['single']['p50_us']:>14.1f} {row['speedup_p50']:>8.2f}")
    return "\n".join(rows)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="perception model folder (default: the shipped m2vae_fusion/weights/amiro)")
    parser.add_argument("--repetitions", type=int, default=200, help="repetitions of every measurement (default: 200)")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[4, 16, 64], help="K of the batched comparison (default: 4 16 64)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")


def measure_with_model(
    args: argparse.Namespace, bench: str, measure: Callable[[PerceptionModel], dict[str, Any]]
) -> dict[str, Any]:
    """`measure` on the --model, with --threads torch threads (fusion and scale benches)."""
    if args.threads < 1:
        raise ValueError(f"bench {bench}: --threads must be >= 1, got {args.threads}")
    model = load_model(args.model)
    with torch_threads(args.threads):
        results = measure(model)
    results["threads"] = args.threads
    return results


def run_bench(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    results = measure_with_model(args, "fusion", lambda model: bench_fusion(model, args.repetitions, tuple(args.batch_sizes)))
    return results, table(results)
