"""`m2vae reproduce mog`: Table I (coherence), Fig. 4 (embeddings) and Fig. 5 (re-encoding drift).

Protocol (Sec. V-A/B): every model is trained unsupervised on the bi-modal MoG training set;
then ONE Gaussian naive Bayes classifier is fitted on the posterior means of all subsets of the
training set and scored per subset on the test set (Table I's protocol); beside it the stricter
one of the authors' later code, one classifier fitted on the joint (a&b) posterior means only and
scored on every subset. The raw row uses one classifier per subset on the raw inputs. The
re-encoding experiment trains the M2VAE again with the loss of Eq. 19 and compares, with and
without it, the drift of 400 auto re-encodings (Eq. 21) and the in-place fusion curve: accuracy
and drift after 1 to 200 in-place fusions (Eq. 18) of repeated views, a and b in turn.

Runs are independent, so they go to the process pool of reproductions.runs.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m2vae_fusion.core.config import ModelConfig, ReencodeConfig, TrainConfig, from_dict, load_yaml, to_dict
from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.core.metrics import (
    coherence,
    coherence_from_joint,
    elbo_table,
    inplace_fusion_curve,
    raw_accuracy,
    reencoding_drift,
    shared_classifier,
)
from m2vae_fusion.core.model import MODELS, build_model
from m2vae_fusion.data.mog import mog_splits
from m2vae_fusion.reproductions.runs import Run, fmt, resolve_jobs, run_pool, short_keys, train_run
from m2vae_fusion.resources import config_path

PAPER_TABLE_I = {
    "raw": {"ab": 0.99, "a": 0.71, "b": 0.90},
    "m2vae": {"ab": 0.99, "a": 0.71, "b": 0.90},
    "jmvae_zero": {"ab": 0.99, "a": 0.63, "b": 0.09},
    "tvae": {"ab": 0.99, "a": 0.64, "b": 0.29},
}


@dataclass
class MoGExperiment:
    model: ModelConfig
    train: TrainConfig
    models: list[str] = field(default_factory=lambda: ["m2vae", "jmvae_zero", "tvae", "mvae", "mopoe"])
    seeds: int = 3  # M2VAE runs, with and without the re-encoding loss
    baseline_seeds: int = 1  # every other model
    reencode: ReencodeConfig = field(default_factory=lambda: ReencodeConfig(alpha=0.25, start_epoch=100, ramp_epochs=100))
    drift_steps: int = 400
    inplace_steps: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 10, 20, 50, 100, 200])
    n_train_per_class: int = 1000
    n_test_per_class: int = 1000  # see config/reproduce/mog.yaml: the standard error of the rates

    def __post_init__(self) -> None:
        if self.seeds < 1 or not 1 <= self.baseline_seeds <= self.seeds:
            raise ConfigError(f"need seeds >= 1 and 1 <= baseline_seeds <= seeds, got {self.seeds} and {self.baseline_seeds}")
        for name in ("drift_steps", "n_train_per_class", "n_test_per_class"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


def load_experiment(path: Path | None = None) -> MoGExperiment:
    return load_yaml(MoGExperiment, path or config_path("reproduce/mog.yaml"))


def run_one(experiment: dict[str, Any], run: Run, out_dir: str, progress: bool, resume: bool) -> dict[str, Any]:
    """Train one model and evaluate it; runs in a worker process, so arguments are plain data."""
    exp = from_dict(MoGExperiment, experiment)
    torch.set_num_threads(exp.train.threads)
    train_data, test_data = mog_splits(exp.train.seed, exp.n_train_per_class, exp.n_test_per_class)
    model_config = dataclasses.replace(exp.model, model=run.model, reencode=exp.reencode if run.reencoding else ReencodeConfig())
    train_config = dataclasses.replace(exp.train, seed=run.seed)
    result, seconds = train_run(model_config, train_config, train_data, out_dir, run, progress=progress, resume=resume)
    model = result.model.eval()
    tr, te = train_data.as_tensors(), test_data.as_tensors()
    with torch.no_grad():
        rates = coherence(model, tr, train_data.labels, te, test_data.labels)
        strict = coherence_from_joint(model, tr, train_data.labels, te, test_data.labels)
        evidence = elbo_table(model, te, samples=1, importance_weighted=False)
    record: dict[str, Any] = {
        "run": run.name,
        "coherence": short_keys(rates),
        "coherence_joint": short_keys(strict),
        "elbo": short_keys(evidence),
        "train_seconds": seconds,
        "checkpoint": str(result.checkpoint),
    }
    if run.model == "m2vae":
        record["drift"] = drift_report(model, tr, train_data.labels, te, exp.drift_steps)
        classifier = shared_classifier(model, tr, train_data.labels)
        curve = inplace_fusion_curve(model, te, exp.inplace_steps, classifier, test_data.labels)
        record["inplace"] = [dataclasses.asdict(point) for point in curve]
    return record


def drift_report(model, train_inputs, train_labels, test_inputs, steps: int) -> dict[str, Any]:
    """Drift of the bimodal encoder after `steps` re-encodings, class switches, latent spread."""
    with torch.no_grad():
        classifier = shared_classifier(model, train_inputs, train_labels)
        drift = reencoding_drift(model, test_inputs, model.modality_names, steps, classifier=classifier)
    return dataclasses.asdict(drift)


def mean_rates(records: list[dict[str, Any]], key: str = "coherence") -> dict[str, float]:
    subsets = records[0][key].keys()
    return {s: float(np.mean([r[key][s] for r in records])) for s in subsets}


def reproduce_mog(
    experiment: MoGExperiment,
    out_dir: Path,
    jobs: int | None = None,
    progress: bool = True,
    resume: bool = True,
    log=print,
) -> dict[str, Any]:
    """Run every training run, evaluate, and return the results dict (the JSON of the CLI)."""
    build_model(experiment.model)  # validates the base config and fills the MODELS registry
    unknown = sorted(set(experiment.models) - set(MODELS))
    if unknown or "m2vae" not in experiment.models:
        raise ConfigError(
            f"models must include m2vae (the re-encoding comparison needs it) and only known names; "
            f"unknown: {unknown}, available: {sorted(MODELS)}"
        )
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = [experiment.train.seed + i for i in range(experiment.seeds)]
    baseline_seeds = seeds[: experiment.baseline_seeds]
    runs = [Run(m, s, False) for m in experiment.models for s in (seeds if m == "m2vae" else baseline_seeds)]
    runs += [Run("m2vae", s, True) for s in seeds]
    jobs = resolve_jobs(jobs)
    log(f"MoG reproduction: {len(runs)} training runs of {experiment.train.epochs} epochs on {jobs} process(es) -> {out_dir}")
    plain = to_dict(experiment)
    worker = functools.partial(run_one, plain, out_dir=str(out_dir), progress=progress and jobs == 1, resume=resume)
    records = run_pool(
        worker,
        runs,
        jobs,
        lambda run, r: log(f"  {run.name:<22} coherence {fmt(r['coherence'])}  ({r['train_seconds']:.0f} s)"),
    )

    train_data, test_data = mog_splits(experiment.train.seed, experiment.n_train_per_class, experiment.n_test_per_class)
    results: dict[str, Any] = {
        "raw": short_keys(
            raw_accuracy(train_data.as_tensors(), train_data.labels, test_data.as_tensors(), test_data.labels, ["a", "b"])
        )
    }

    def runs_of(model: str) -> list[dict[str, Any]]:
        return [records[r] for r in runs if r.model == model and not r.reencoding]

    for model in experiment.models:
        results[model] = mean_rates(runs_of(model))
    results["coherence_joint"] = {model: mean_rates(runs_of(model), "coherence_joint") for model in experiment.models}
    with_loss = [records[Run("m2vae", s, True)] for s in seeds]
    without = [records[Run("m2vae", s, False)] for s in seeds]
    results["reencoding"] = {
        "alpha": experiment.reencode.alpha,
        "variant": experiment.reencode.variant,
        "warm_up": {"start_epoch": experiment.reencode.start_epoch, "ramp_epochs": experiment.reencode.ramp_epochs},
        "steps": experiment.drift_steps,
        "with_loss": {"coherence": mean_rates(with_loss), **mean_drift(with_loss)},
        "without_loss": {"coherence": mean_rates(without), **mean_drift(without)},
        "inplace": {"with_loss": mean_curve(with_loss), "without_loss": mean_curve(without)},
    }
    results["elbo"] = {model: mean_rates(runs_of(model), "elbo") for model in experiment.models}
    results["runs"] = [records[r] for r in runs]
    results["seeds"] = {"m2vae": seeds, "baselines": baseline_seeds}
    results["seconds"] = time.monotonic() - started
    return results


def mean_drift(records: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in records[0]["drift"].items() if isinstance(v, (int, float))]
    return {k: float(np.mean([r["drift"][k] for r in records])) for k in keys}


def mean_curve(records: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The in-place fusion curve averaged over runs, step count by step count."""
    return [
        {key: float(np.mean([r["inplace"][i][key] for r in records])) for key in ("steps", "drift", "accuracy")}
        for i in range(len(records[0]["inplace"]))
    ]


def table_i(results: dict[str, Any]) -> str:
    """Table I side by side with the paper: a&b / a / b."""
    rows = [
        "Table I - naive Bayes classification rate on the latent embedding (a&b / a / b)",
        f"{'input':<12} {'measured':<24} {'paper':<20}",
    ]
    models = [m for m in results if m in ("m2vae", "jmvae_zero", "tvae", "mvae", "mopoe")]
    for model in ["raw", *models]:
        paper = fmt(PAPER_TABLE_I[model], 2) if model in PAPER_TABLE_I else "-"
        rows.append(f"{model:<12} {fmt(results[model]):<24} {paper:<20}")
    rows += ["", "The stricter protocol: one classifier fitted on the a&b embeddings only, scored per subset (a&b / a / b)"]
    rows += [f"{model:<12} {fmt(results['coherence_joint'][model])}" for model in models]
    rows += ["", "ELBO of Eq. 20 on the test set, nats per sample, single-sample estimate (a&b / a / b)"]
    for model, elbo in results.get("elbo", {}).items():
        rows.append(f"{model:<12} " + " / ".join(f"{elbo[k]:.2f}" for k in ("ab", "a", "b")))
    r = results["reencoding"]
    rows += [
        "",
        f"Re-encoding (bimodal encoder, {r['steps']} re-encodings; alpha={r['alpha']} {r['variant']}, "
        f"warm-up from epoch {r['warm_up']['start_epoch']} over {r['warm_up']['ramp_epochs']})",
        f"{'':<14} {'drift mean':>10} {'switched':>9} {'spread':>8}   coherence",
    ]
    for label, key in (("with loss", "with_loss"), ("without loss", "without_loss")):
        d = r[key]
        rows.append(
            f"{label:<14} {d['mean']:>10.4f} {d['label_switch_rate']:>9.3%} {d['latent_spread']:>8.3f}   {fmt(d['coherence'])}"
        )
    curves = r["inplace"]
    rows += [
        "",
        "In-place fusion of repeated views, a and b in turn (Eq. 18): accuracy / drift from the joint mean after k steps",
        f"{'steps':>6}   {'with loss':<18} {'without loss':<18}",
    ]
    for with_loss, without in zip(curves["with_loss"], curves["without_loss"], strict=True):
        cells = [f"{p['accuracy']:.3f} / {p['drift']:.4f}" for p in (with_loss, without)]
        rows.append(f"{with_loss['steps']:>6.0f}   {cells[0]:<18} {cells[1]:<18}")
    return "\n".join(rows)


def draw_figures(experiment: MoGExperiment, results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Fig. 4 for the first seed's M2VAE, Fig. 5 for it with and without the re-encoding loss."""
    from m2vae_fusion.core.checkpoint import load_checkpoint
    from m2vae_fusion.reproductions import figures

    seed = results["seeds"]["m2vae"][0]
    train_data, test_data = mog_splits(experiment.train.seed, experiment.n_train_per_class, experiment.n_test_per_class)
    plain = load_checkpoint(out_dir / Run("m2vae", seed, False).name / "checkpoint.pt").model
    reenc = load_checkpoint(out_dir / Run("m2vae", seed, True).name / "checkpoint.pt").model
    fig4 = out_dir / "fig4_embeddings.png"
    fig5 = out_dir / "fig5_reencoding.png"
    curve = out_dir / "inplace_fusion.png"
    figures.inplace_curve(
        {
            "with re-encoding loss": results["reencoding"]["inplace"]["with_loss"],
            "without": results["reencoding"]["inplace"]["without_loss"],
        },
        "MoG, M2VAE: in-place fusion of repeated views (a, b, a, ...)",
        curve,
    )
    test = test_data.as_tensors()
    figures.figure_4(plain, train_data.as_tensors(), train_data.labels, test, test_data.labels, fig4)
    figures.figure_5(
        {"without re-encoding loss": plain, f"with re-encoding loss (alpha={experiment.reencode.alpha})": reenc},
        test,
        experiment.drift_steps,
        fig5,
    )
    return [fig4, fig5, curve]
