"""Training the perception model in two stages (paper Sec. V-D), unsupervised but for the classifier:

1. one beta-VAE per sensor on every view of that sensor in the bags;
2. the tri-modal M2VAE (with the re-encoding loss of Eq. 19) on the standardised beta-VAE means of
   the observations every sensor saw, then one MLP classifier on z from every subset encoder (the
   coherence protocol of Table I), fitted with the labels.

The result is a folder: preprocessors/<sensor>/checkpoint.pt, fusion/checkpoint.pt and
perception_model.json, the manifest the nodes load (m2vae_fusion.model.perception_model).

Under torchrun every stage trains with DDP (core.training): the beta-VAEs one after the other
instead of in a process pool, and rank 0 alone writes the manifest. The `m2vae train` command
itself is in training.command, which loads without torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m2vae_fusion.core.atomic_file import write_text_atomic
from m2vae_fusion.core.checkpoint import load_checkpoint, save_checkpoint
from m2vae_fusion.core.config import ModelConfig, to_dict
from m2vae_fusion.core.errors import CheckpointError, DataError
from m2vae_fusion.core.metrics import embed_all_subsets
from m2vae_fusion.core.training import dataset_fingerprint, distributed, train
from m2vae_fusion.core.worker_pool import worker_pool
from m2vae_fusion.model.classifier import LatentClassifier
from m2vae_fusion.model.config import MODALITIES, StackConfig
from m2vae_fusion.model.perception_model import MANIFEST
from m2vae_fusion.perception.labels import LabelSpace, default_labels
from m2vae_fusion.training.dataset import Observations


def preprocessor_dir(out: Path, modality: str) -> Path:
    return out / "preprocessors" / modality


def _train_preprocessor(
    modality: str, config: StackConfig, views: np.ndarray, out: Path, resume: bool, progress: bool
) -> dict[str, Any]:
    data = {modality: torch.from_numpy(views)}
    result = train(
        config.preprocessor(modality),
        config.preprocessors.train,
        data,
        preprocessor_dir(out, modality),
        dataset_hash=dataset_fingerprint(data),
        resume=resume,
        progress=progress,
    )
    return {"modality": modality, "samples": len(views), "final": result.history[-1] if result.history else {}}


def train_preprocessors(
    config: StackConfig,
    observations: Observations,
    out: Path,
    *,
    resume: bool = True,
    progress: bool = False,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Stage 1: a beta-VAE per sensor on every view of it (labels unused); under torchrun one after
    the other, each with DDP over every process, whatever `jobs` says."""
    rng = np.random.default_rng(config.preprocessors.train.seed)
    views = {}
    for m in MODALITIES:
        views[m] = observations.views[m]
        if len(views[m]) > config.preprocessors.max_views:
            views[m] = views[m][np.sort(rng.choice(len(views[m]), config.preprocessors.max_views, replace=False))]
    for m, v in views.items():
        if len(v) < config.preprocessors.train.batch_size:
            raise DataError(
                f"only {len(v)} {m} views in the bags: fewer than one batch ({config.preprocessors.train.batch_size}); record more data"
            )
        log(f"stage 1: beta-VAE {m}: {len(v)} views of {v.shape[1]} values")
    # the camera's Conv2D dominates: it gets a process of its own when there are two. Each process is
    # sent its own sensor's views only (the camera's are hundreds of MB).
    runs = sorted(MODALITIES, key=lambda m: -views[m].size)
    world_size = distributed().world_size
    if jobs > 1 and world_size > 1:
        log(f"stage 1: under torchrun the beta-VAEs train one after the other, each over {world_size} processes (--jobs ignored)")
    if jobs > 1 and world_size == 1:
        with worker_pool(jobs) as pool:
            futures = {m: pool.submit(_train_preprocessor, m, config, views[m], out, resume, False) for m in runs}
            records = {m: future.result() for m, future in futures.items()}
    else:
        records = {m: _train_preprocessor(m, config, views[m], out, resume, progress) for m in runs}
    return {m: records[m] for m in MODALITIES}


@torch.no_grad()
def encode_views(out: Path, config: StackConfig, observations: Observations) -> dict[str, np.ndarray]:
    """Every view through its beta-VAE: latent means (N, feature_dim); NaN rows where a sensor saw nothing."""
    encoded = {}
    for m in MODALITIES:
        model = load_checkpoint(preprocessor_dir(out, m) / "checkpoint.pt", expected_model_config=config.preprocessor(m)).model
        means = np.full((len(observations), config.feature_dim), np.nan, np.float32)
        if len(observations.views[m]):
            means[observations.rows[m]] = model.encode({m: torch.from_numpy(observations.views[m])}).mean.numpy()
        encoded[m] = means
    return encoded


def standardiser(encoded: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, dict[str, list[float]]]:
    """Per-sensor mean and std of the beta-VAE means over the training observations."""
    return {
        m: {"mean": encoded[m][mask].mean(axis=0).tolist(), "std": np.maximum(encoded[m][mask].std(axis=0), 1e-6).tolist()}
        for m in MODALITIES
    }


def standardise(encoded: dict[str, np.ndarray], stats: dict[str, dict[str, list[float]]]) -> dict[str, np.ndarray]:
    return {
        m: ((x - np.asarray(stats[m]["mean"], np.float32)) / np.asarray(stats[m]["std"], np.float32)).astype(np.float32)
        for m, x in encoded.items()
    }


def train_fusion(
    config: StackConfig,
    observations: Observations,
    out: Path,
    label_space: LabelSpace | None = None,
    *,
    resume: bool = True,
    progress: bool = False,
    fusion: ModelConfig | None = None,
    name: str = "fusion",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Stage 2: the M2VAE on complete observations, then the classifier on z of every subset; writes the
    manifest, with the label space the observations' class ids index (default: the paper's eight classes)."""
    fusion = fusion or config.fusion
    label_space = label_space or default_labels()
    complete = observations.complete()
    if complete.sum() < config.fusion_train.batch_size:
        raise DataError(
            f"only {int(complete.sum())} labelled observations seen by all of {', '.join(MODALITIES)}: fewer than one batch "
            f"({config.fusion_train.batch_size}); record more data or check the labels"
        )
    encoded = encode_views(out, config, observations)
    stats = standardiser(encoded, complete)
    inputs = {m: torch.from_numpy(x[complete]) for m, x in standardise(encoded, stats).items()}
    log(
        f"stage 2: M2VAE ({fusion.model}) on {int(complete.sum())} complete observations, re-encoding alpha {fusion.reencode.alpha:g}"
    )
    result = train(
        fusion,
        config.fusion_train,
        inputs,
        out / name,
        dataset_hash=dataset_fingerprint(inputs),
        resume=resume,
        progress=progress,
    )
    model = result.model
    embeddings = embed_all_subsets(model, inputs)
    labels = observations.labels[complete]
    classifier = LatentClassifier.fit(
        np.concatenate(list(embeddings.values())), np.tile(labels, len(embeddings)), seed=config.fusion_train.seed
    )
    manifest = {
        "format": 2,
        "model_id": model_id(out, name),
        "config": to_dict(dataclasses.replace(config, fusion=fusion)),
        "modalities": list(MODALITIES),
        "preprocessors": {m: str(preprocessor_dir(out, m).relative_to(out) / "checkpoint.pt") for m in MODALITIES},
        "fusion": f"{name}/checkpoint.pt",
        "standardiser": stats,
        "classifier": classifier.to_dict(),
        "labels": label_space.to_dict(),
        "training": {"observations": int(complete.sum()), "dataset": observations.fingerprint()},
    }
    if distributed().main:
        write_text_atomic(out / manifest_name(name), json.dumps(manifest, indent=1))
    return manifest


def manifest_name(fusion_name: str) -> str:
    return MANIFEST if fusion_name == "fusion" else f"perception_model-{fusion_name}.json"


def model_id(out: Path, fusion_name: str = "fusion") -> str:
    """A short hash of the four models' weights: latents are only comparable between equal ids. It
    hashes the weights, not the files, so an exported copy (without optimiser state) keeps its id."""
    digest = hashlib.sha256()
    for path in [preprocessor_dir(out, m) / "checkpoint.pt" for m in MODALITIES] + [out / fusion_name / "checkpoint.pt"]:
        for name, tensor in sorted(load_checkpoint(path).model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return "m2vae-" + digest.hexdigest()[:12]


def export_model(src: Path, dst: Path) -> dict[str, Any]:
    """Copy a trained perception model for deployment: weights, configs and the manifest, without the
    optimiser state, metrics and caches that only resuming needs (a third of the size)."""
    manifest = json.loads((src / MANIFEST).read_text())
    if dst.exists():
        raise FileExistsError(f"{dst} already exists; remove it first")
    fusion_name = Path(manifest["fusion"]).parent.name
    manifest["model_id"] = model_id(src, fusion_name)
    for relative in [*manifest["preprocessors"].values(), manifest["fusion"]]:
        checkpoint = load_checkpoint(src / relative)
        save_checkpoint(
            dst / relative,
            checkpoint.model,
            model_config=checkpoint.model_config,
            train_config=checkpoint.train_config,
            dataset_hash=checkpoint.dataset_hash,
            epoch=checkpoint.epoch,
        )
    if model_id(dst, fusion_name) != manifest["model_id"]:
        raise CheckpointError(f"exported weights of {src} do not reproduce its model id {manifest['model_id']}")
    write_text_atomic(dst / MANIFEST, json.dumps(manifest, indent=1))
    return manifest
