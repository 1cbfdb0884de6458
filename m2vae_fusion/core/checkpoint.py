"""Self-describing, atomically written checkpoints.

A checkpoint is a `torch.save`d dict of tensors and plain Python values only, so it loads with
`torch.load(weights_only=True)` and never unpickles code. It carries everything needed to
rebuild and check the model: the model config (registry name included), the modality names and
dims, latent_dim, the data set hash and the code version, next to the state_dict, the optimizer
state and the RNG states that make a resumed run continue bit-identically.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import m2vae_fusion
from m2vae_fusion.core.atomic_file import write_atomic
from m2vae_fusion.core.config import ModelConfig, TrainConfig, from_dict, to_dict
from m2vae_fusion.core.errors import CheckpointError, ConfigError
from m2vae_fusion.core.model import MultiModalVAE, build_model

FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "format_version",
    "model_name",
    "model_config",
    "train_config",
    "modality_names",
    "modality_dims",
    "latent_dim",
    "dataset_hash",
    "code_version",
    "epoch",
    "state_dict",
    "optimizer_state",
    "rng_state",
    "extra",
)


@dataclass
class Checkpoint:
    """A loaded checkpoint; `model` is rebuilt from `model_config`, weights loaded, in eval mode."""

    model: MultiModalVAE
    model_config: ModelConfig
    train_config: TrainConfig | None
    dataset_hash: str
    code_version: str
    epoch: int
    optimizer_state: dict[str, Any] | None
    rng_state: dict[str, Any] | None
    extra: dict[str, Any] = field(default_factory=dict)


@functools.cache
def code_version() -> str:
    """m2vae_fusion.__version__, plus the git commit (and '.dirty') when run from a git checkout."""
    version = m2vae_fusion.__version__
    repo = Path(m2vae_fusion.__file__).resolve().parents[1]
    if not (repo / ".git").exists():
        return version
    try:
        commit = _git(repo, "rev-parse", "HEAD")
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        # git missing or broken: the version alone still identifies the release.
        return version
    return f"{version}+g{commit[:12]}{'.dirty' if dirty else ''}"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True)
    return done.stdout.strip()


def save_checkpoint(
    path: str | Path,
    model: MultiModalVAE,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig | None,
    dataset_hash: str,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    rng_state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint atomically: temp file in the same directory, fsync, rename, fsync dir.

    A crash at any point leaves either the previous file or the new one, never a torn one.
    `rng_state` and `extra` may hold only tensors and plain Python values.
    """
    path = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "model_name": model_config.model,
        "model_config": to_dict(model_config),
        "train_config": None if train_config is None else to_dict(train_config),
        "modality_names": list(model_config.modality_names),
        "modality_dims": [m.dim for m in model_config.modalities],
        "latent_dim": model_config.latent_dim,
        "dataset_hash": str(dataset_hash),
        "code_version": code_version(),
        "epoch": int(epoch),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state": None if optimizer is None else optimizer.state_dict(),
        "rng_state": rng_state,
        "extra": dict(extra or {}),
    }
    # Refuse what weights_only loading would refuse, now rather than when someone loads it.
    _check_plain(payload, "checkpoint")
    write_atomic(path, lambda f: torch.save(payload, f))
    return path


def _check_plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str, Tensor)):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"{where}: key {key!r} must be a str or int to be stored in a checkpoint")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise CheckpointError(f"{where}: a {type(value).__name__} cannot be stored in a checkpoint; use tensors or plain values")


def load_checkpoint(
    path: str | Path,
    *,
    expected_model_config: ModelConfig | None = None,
    expected_dataset_hash: str | None = None,
) -> Checkpoint:
    """Load and check a checkpoint; every failure is a CheckpointError naming the file."""
    path = Path(path)
    payload = _read_payload(path)

    try:
        model_config = from_dict(ModelConfig, payload["model_config"])
        train_config = None if payload["train_config"] is None else from_dict(TrainConfig, payload["train_config"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path} holds an invalid config: {exc}") from None
    _check_self_consistent(path, payload, model_config)
    if expected_model_config is not None:
        differences = config_differences(to_dict(model_config), to_dict(expected_model_config))
        if differences:
            raise CheckpointError(f"checkpoint {path} was trained with another model config: " + "; ".join(differences))
    if expected_dataset_hash is not None and payload["dataset_hash"] != expected_dataset_hash:
        raise CheckpointError(
            f"checkpoint {path} was trained on another data set: dataset hash checkpoint "
            f"{payload['dataset_hash']}, expected {expected_dataset_hash}"
        )

    try:
        model = build_model(model_config)
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: cannot build its model: {exc}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit model {model_config.model!r}: {exc}") from None
    model.eval()
    return Checkpoint(
        model=model,
        model_config=model_config,
        train_config=train_config,
        dataset_hash=payload["dataset_hash"],
        code_version=payload["code_version"],
        epoch=int(payload["epoch"]),
        optimizer_state=payload["optimizer_state"],
        rng_state=payload["rng_state"],
        extra=payload["extra"],
    )


def _read_payload(path: Path) -> dict[str, Any]:
    """The checkpoint's dict, read without executing code, of this format version and with every required key."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # The zip reader and the restricted unpickler raise a zoo of unrelated types
        # (RuntimeError, EOFError, UnpicklingError, KeyError, UnicodeDecodeError, ...) on a
        # truncated or damaged file; all of them mean the same thing to the user.
        # Only the reader's first line: the rest suggests weights_only=False, which would
        # execute whatever code a tampered file holds.
        reason = (str(exc).splitlines() or [""])[0][:160]
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted ({type(exc).__name__}: {reason})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} is not an m2vae checkpoint (holds a {type(payload).__name__})")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version!r}; this code reads version {FORMAT_VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks key(s) {missing}")
    return payload


def _check_self_consistent(path: Path, payload: dict[str, Any], config: ModelConfig) -> None:
    """The redundant header fields must agree with the stored config (guards hand-edited files)."""
    header = {
        "model_name": (payload["model_name"], config.model),
        "modality_names": (list(payload["modality_names"]), config.modality_names),
        "modality_dims": (list(payload["modality_dims"]), [m.dim for m in config.modalities]),
        "latent_dim": (payload["latent_dim"], config.latent_dim),
    }
    for key, (stored, from_config) in header.items():
        if stored != from_config:
            raise CheckpointError(f"checkpoint {path} is inconsistent: {key} {stored!r} but its config says {from_config!r}")


def config_differences(stored: dict[str, Any], expected: dict[str, Any], where: str = "") -> list[str]:
    """Human-readable differences between two config dicts: 'latent_dim: checkpoint 10, expected 2'.

    Modality lists are compared by name first, then field by field under 'modalities.<name>.'.
    """
    out: list[str] = []
    for key in sorted(set(stored) | set(expected), key=lambda k: (k != "modalities", k)):
        name = f"{where}{key}"
        a, b = stored.get(key), expected.get(key)
        if key == "modalities" and isinstance(a, list) and isinstance(b, list):
            out += _modality_differences(a, b, name)
        elif isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: checkpoint {a!r}, expected {b!r}")
    return out


def _modality_differences(stored: list[dict[str, Any]], expected: list[dict[str, Any]], where: str) -> list[str]:
    names_a = [m.get("name") for m in stored]
    names_b = [m.get("name") for m in expected]
    if names_a != names_b:
        dims_a = {m.get("name"): m.get("dim") for m in stored}
        dims_b = {m.get("name"): m.get("dim") for m in expected}
        return [f"modality names (dims): checkpoint {dims_a}, expected {dims_b}"]
    out: list[str] = []
    for a, b in zip(stored, expected):
        out += config_differences(a, b, f"{where}.{a['name']}.")
    return out
