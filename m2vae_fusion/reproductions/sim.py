"""`m2vae reproduce sim`: the simulated camera / LiDAR / reflectance experiment (paper Sec. V-D).

Collects a training bag in worlds/arena.sdf and a test bag in another world with other seeds (both
with the collection's default viewpoints: half near, where every sensor sees the object, half
beyond the IR's reach), trains the perception model (beta-VAEs, then the M2VAE with the re-encoding
loss, and a second M2VAE without it on the same features), and reports the accuracies of
m2vae_fusion.evaluation.classification beside the paper's figures, then the model's accuracy by
distance (`by_distance`). With several data seeds (`reproduce_sim_seeds`) the whole of it runs once
per seed, in its own folder, and the figures become the mean and spread over the seeds: over data
seeds 0-2 the collection seed moved the figures by 1.3 to 3 points, more than the classifier seed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from m2vae_fusion.evaluation.classification import accuracy, embed, evaluate, subset_key, subsets
from m2vae_fusion.model.config import StackConfig
from m2vae_fusion.model.perception_model import PerceptionModel
from m2vae_fusion.resources import share_dir
from m2vae_fusion.sim.collect import collect
from m2vae_fusion.sim.viewpoints import ViewpointRange
from m2vae_fusion.training.dataset import Observations, load_observations
from m2vae_fusion.training.train import manifest_name, train_fusion, train_preprocessors

PAPER = {"meta_sensor": {"raw": 0.971, "m2vae": 0.962}, "in_place": {"with_reenc": 0.943, "without_reenc": 0.658}}
TEST_WORLD = "arena_cluttered.sdf"  # other object places, two of each class, never seen in training
# half of the observations are far views without IR: these keep about 4000 / 1000 seen by every sensor
TRAIN_SAMPLES = 8000
TEST_SAMPLES = 2000
DISTANCE_BANDS = ((0.0, 0.25), (0.25, 0.35), (0.35, 0.5))  # m: the near views, then the far ones in two halves
BAND_SENSORS = (("camera",), ("lidar",), ("camera", "lidar"), ("camera", "lidar", "ir"))


def bags(out: Path, seed: int, train_samples: int, test_samples: int, log) -> tuple[Path, Path]:
    """Collect (or reuse) the training and test bags in out/."""
    worlds = share_dir() / "worlds"
    paths = []
    for name, world, samples, bag_seed in (
        ("train", worlds / "arena.sdf", train_samples, seed),
        ("test", worlds / TEST_WORLD, test_samples, seed + 1000),
    ):
        path = out / f"bag_{name}_s{bag_seed}_n{samples}_far{ViewpointRange.far_fraction:g}"
        if not path.exists():
            report = collect(path, samples, bag_seed, world, ViewpointRange())
            log(f"collected {samples} {name} observations in {world.name} (seed {bag_seed}) at {report.rate:.0f} obs/s")
        paths.append(path)
    return paths[0], paths[1]


def reproduce_sim(
    config: StackConfig,
    out: Path,
    seed: int = 0,
    train_samples: int = TRAIN_SAMPLES,
    test_samples: int = TEST_SAMPLES,
    jobs: int = 2,
    resume: bool = True,
    log=print,
) -> dict[str, Any]:
    started = time.monotonic()
    train_bag, test_bag = bags(out, seed, train_samples, test_samples, log)
    train = load_observations([train_bag], config.perception, out / "cache")
    test = load_observations([test_bag], config.perception, out / "cache")
    model_dir = out / "model"
    train_preprocessors(config, train, model_dir, resume=resume, jobs=jobs, log=log)
    labelled = test.subset(test.labels >= 0)
    train, test = train.subset(train.complete()), test.subset(test.complete())
    train_fusion(config, train, model_dir, resume=resume, log=log)
    without = dataclasses.replace(config.fusion, reencode=dataclasses.replace(config.fusion.reencode, alpha=0.0))
    train_fusion(config, train, model_dir, fusion=without, name="fusion_without_reencoding", resume=resume, log=log)
    model = PerceptionModel.load(model_dir)
    results = evaluate(
        model, train, test, seed, without_reencoding=PerceptionModel.load(model_dir / manifest_name("fusion_without_reencoding"))
    )
    results["by_distance"] = by_distance(model, labelled)
    results.update(
        model_id=model.model_id,
        seed=seed,
        seconds=time.monotonic() - started,
        reencode=dataclasses.asdict(config.fusion.reencode),
    )
    return results


def draw_inplace_curve(results: dict[str, Any], path: Path) -> Path:
    """The in-place fusion curve (accuracy and drift against steps, with and without the re-encoding
    loss) of one run, or its mean over the data seeds of `reproduce_sim_seeds`, as a PNG."""
    from m2vae_fusion.reproductions import figures  # matplotlib only when drawing

    def points(curve: list[dict[str, float]]) -> list[dict[str, float]]:
        return [
            {
                "steps": p["steps"],
                "accuracy": p.get("accuracy", p.get("accuracy_mean")),
                "drift": p.get("drift", p.get("drift_mean")),
            }
            for p in curve
        ]

    curves = results["in_place_curve"]
    seeds = results.get("data_seeds")
    over = f", mean over data seeds {', '.join(map(str, seeds))}" if seeds else f", data seed {results['seed']}"
    figures.inplace_curve(
        {"with re-encoding loss": points(curves["with_reenc"]), "without": points(curves["without_reenc"])},
        f"Simulated sensors: in-place fusion of the same views, camera / LiDAR / IR in turn{over}",
        path,
    )
    return path


# the figures that are averaged over data seeds: (label, path into one seed's results)
SUMMARISED = (
    ("meta-sensor, MLP on raw beta-VAE features", ("meta_sensor", "raw")),
    ("meta-sensor, MLP on M2VAE z (all sensors)", ("meta_sensor", "m2vae")),
    ("one sensor at a time, in-place fusion, re-enc", ("in_place", "with_reenc")),
    ("one sensor at a time, in-place fusion, no re-enc", ("in_place", "without_reenc")),
    ("20 sensings, re-enc", ("in_place_repeated", "with_reenc")),
    ("20 sensings, no re-enc", ("in_place_repeated", "without_reenc")),
)


def reproduce_sim_seeds(config: StackConfig, out: Path, seeds: list[int], log=print, **options: Any) -> dict[str, Any]:
    """`reproduce_sim` once per data seed (bags, models and results under out/seed<S>), and the mean,
    standard deviation and range over the seeds of each summarised figure and of the in-place curves."""
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"--data-seeds must name distinct seeds, got {seeds}")
    started = time.monotonic()
    per_seed = {}
    for seed in seeds:
        log(f"data seed {seed} ({len(per_seed) + 1} of {len(seeds)})")
        per_seed[seed] = reproduce_sim(config, out / f"seed{seed}", seed, log=log, **options)
    summary = {}
    for label, (group, key) in SUMMARISED:
        values = [r[group].get(key, float("nan")) for r in per_seed.values()]
        summary[label] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "min": min(values), "max": max(values)}
    curves = {}
    for variant in per_seed[seeds[0]]["in_place_curve"]:
        points = [r["in_place_curve"][variant] for r in per_seed.values()]
        curves[variant] = [
            {
                "steps": at[0]["steps"],
                **{f"{k}_mean": float(np.mean([p[k] for p in at])) for k in ("accuracy", "drift")},
                **{f"{k}_std": float(np.std([p[k] for p in at])) for k in ("accuracy", "drift")},
            }
            for at in zip(*points, strict=True)
        ]
    return {
        "data_seeds": seeds,
        "summary": summary,
        "in_place_curve": curves,
        "per_seed": {str(s): r for s, r in per_seed.items()},
        "seconds": time.monotonic() - started,
    }


def seeds_table(results: dict[str, Any]) -> str:
    """Each seed's table, then every summarised figure as mean +- std (min-max) over the seeds."""
    seeds = results["data_seeds"]
    lines = []
    for seed in seeds:
        lines += [
            f"--- data seed {seed} (training bag seed {seed}, test bag seed {seed + 1000})",
            table(results["per_seed"][str(seed)]),
            "",
        ]
    lines += [f"Over {len(seeds)} data seeds ({', '.join(map(str, seeds))}): mean +- std (min-max), paper", ""]
    for label, (group, key) in SUMMARISED:
        s, paper = results["summary"][label], PAPER.get(group, {}).get(key)
        paper = "" if paper is None else f"{paper:.3f}"
        lines.append(f"{label:<50}{s['mean']:.3f} +- {s['std']:.3f} ({s['min']:.3f}-{s['max']:.3f})  {paper}")
    lines += ["", "In-place fusion of the same views, camera / LiDAR / IR in turn: accuracy / drift (mean over seeds)"]
    curves = results["in_place_curve"]
    lines.append(f"{'steps':>6}   " + "   ".join(f"{variant:<22}" for variant in curves))
    for at in zip(*curves.values(), strict=True):
        cells = [f"{p['accuracy_mean']:.3f} / {p['drift_mean']:.4f}" for p in at]
        lines.append(f"{at[0]['steps']:>6}   " + "   ".join(f"{c:<22}" for c in cells))
    return "\n".join(lines)


def by_distance(model: PerceptionModel, observations: Observations) -> dict[str, dict[str, list]]:
    """Per band of distance (LiDAR to object centre) and set of sensors: [accuracy of the model's
    classifier on the views those sensors have, their number]. What a look from afar is worth."""
    out: dict[str, dict[str, list]] = {}
    for low, high in DISTANCE_BANDS:
        band = (observations.distances >= low) & (observations.distances < high)
        out[f"{low:.2f}-{high:.2f}"] = {}
        for names in BAND_SENSORS:
            seen = observations.subset(band & np.logical_and.reduce([observations.seen(m) for m in names]))
            features = {m: model.features(m, seen.dense(m)) for m in names}
            rate = accuracy(model, embed(model, features, names), seen.labels) if len(seen) else float("nan")
            out[f"{low:.2f}-{high:.2f}"][subset_key(names)] = [rate, len(seen)]
    return out


def table(results: dict[str, Any]) -> str:
    meta, in_place, repeated = results["meta_sensor"], results["in_place"], results["in_place_repeated"]
    runs = results.get("meta_sensor_runs", {})

    def row(label: str, measured: float, paper: float | None = None, note: str = "") -> str:
        return f"{label:<50}{measured:>9.3f}{'' if paper is None else format(paper, '.3f'):>8}{note}"

    def spread(name: str) -> str:
        rates = runs.get(name, [])
        return f"   ({len(rates)} MLP seeds: {min(rates):.3f}-{max(rates):.3f})" if len(rates) > 1 else ""

    lines = [
        f"Simulated camera / LiDAR / reflectance (paper Sec. V-D), {results['observations']['train']} training and "
        f"{results['observations']['test']} test observations (test world {TEST_WORLD})",
        f"{'accuracy':<50}{'measured':>9}{'paper':>8}",
        row("meta-sensor, MLP on raw beta-VAE features", meta["raw"], PAPER["meta_sensor"]["raw"], spread("raw")),
        row("meta-sensor, MLP on M2VAE z (all sensors)", meta["m2vae"], PAPER["meta_sensor"]["m2vae"], spread("m2vae")),
        row("one sensor at a time, in-place fusion, re-enc", in_place["with_reenc"], PAPER["in_place"]["with_reenc"]),
        row(
            "one sensor at a time, in-place fusion, no re-enc",
            in_place.get("without_reenc", float("nan")),
            PAPER["in_place"]["without_reenc"],
        ),
        row(f"same, {repeated['sensings']} sensings, re-enc", repeated["with_reenc"]),
        row(f"same, {repeated['sensings']} sensings, no re-enc", repeated.get("without_reenc", float("nan"))),
        "per subset (the model's classifier: one MLP on z of every subset encoder):",
        "  " + ", ".join(f"{subset_key(s)} {results['per_subset'][subset_key(s)]:.3f}" for s in subsets()),
    ]
    if "in_place_curve" in results:
        lines.append(
            "in-place fusion of the same views, the sensors in turn: accuracy / drift after k steps (re-enc | no re-enc)"
        )
        curves = results["in_place_curve"]
        for at in zip(*curves.values(), strict=True):
            lines.append(f"  {at[0]['steps']:>4}: " + " | ".join(f"{p['accuracy']:.3f} / {p['drift']:.4f}" for p in at))
    if "by_distance" in results:
        lines.append("by distance from the LiDAR (the model's classifier on the views these sensors have; test views):")
        for band, rates in results["by_distance"].items():
            lines.append(f"  {band} m: " + ", ".join(f"{names} {rate:.3f} ({n})" for names, (rate, n) in rates.items()))
    return "\n".join(lines)
