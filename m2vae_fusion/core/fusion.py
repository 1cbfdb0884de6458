"""In-place sensor fusion (Eq. 18) and auto re-encoding (Sec. III-B, Eq. 21).

A stored belief is a posterior q(z | M') over the modalities M' sensed so far. A new observation
of modalities m is fused by decoding z into M' (f(M') = U_{m' in M'} p(m'|z)), joining the new
observation, and encoding the union with the subset encoder q_{phi_{m u M'}}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from m2vae_fusion.core.errors import DataError
from m2vae_fusion.core.gaussian import DiagonalGaussian
from m2vae_fusion.core.model import MultiModalVAE


def _latent(q: DiagonalGaussian, sample: bool, generator: torch.Generator | None) -> Tensor:
    return q.rsample(generator) if sample else q.mean


@torch.no_grad()
def in_place_fusion(
    model: MultiModalVAE,
    stored: DiagonalGaussian,
    sensed: Sequence[str],
    new: Mapping[str, Tensor],
    sample: bool = False,
    generator: torch.Generator | None = None,
    decoded_bound: float | None = None,
) -> tuple[DiagonalGaussian, list[str]]:
    """Eq. 18: q(z* | new, f(sensed)); returns the fused posterior and the modalities it covers.

    The stored latent is decoded with its mean (or a sample with `sample=True`). A modality that
    is both in `sensed` and in `new` takes the new observation: a fresh measurement replaces its
    reconstruction. `decoded_bound` clamps the decoded values to [-bound, bound]: a stored latent
    from an untrusted source decodes to no input farther out than the encoder was trained on.
    """
    if not new:
        raise DataError("in-place fusion needs a new observation of at least one modality")
    unknown = [n for n in [*sensed, *new] if n not in model.modality_names]
    if unknown:
        raise DataError(f"unknown modalities {unknown}; this model knows {model.modality_names}")
    decoded = model.reconstruct(_latent(stored, sample, generator), [n for n in sensed if n not in new]) if sensed else {}
    if decoded_bound is not None:
        decoded = {n: x.clamp(-decoded_bound, decoded_bound) for n, x in decoded.items()}
    inputs = {**decoded, **new}
    covered = [n for n in model.modality_names if n in inputs]
    return model.encode({n: inputs[n] for n in covered}), covered


@torch.no_grad()
def auto_reencode(
    model: MultiModalVAE,
    start: DiagonalGaussian,
    names: Sequence[str],
    steps: int,
    sample: bool = False,
    generator: torch.Generator | None = None,
) -> list[DiagonalGaussian]:
    """z -> x' -> z, `steps` times, through the encoder of `names` (Fig. 5). Returns the
    trajectory [q_0, q_1, ..., q_steps]; q_0 is `start`."""
    trajectory = [start]
    q = start
    for _ in range(steps):
        q = model.encode(model.reconstruct(_latent(q, sample, generator), names))
        trajectory.append(q)
    return trajectory
