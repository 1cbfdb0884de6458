"""Expected information gain of a sensing, from the model's own imagination (the paper's Sec. VI
outlook: a jointly trained model can imagine what an unsensed modality would report).

For a belief q(z | M') over the sensed modalities M' and a candidate sensing of modalities T:

    z_s ~ q(z | M'),  s = 1..S                       (samples of the current belief)
    x_m^s = E[x_m | z_s]  for m in T - M'            (cross-modal imagination, the decoders p(m|z))
    x_m   = E[x_m | mu]   for m in T & M'            (a sensed modality: what the belief holds)
    q_s = q(z | f(M'), x_T^s)                        (in-place fusion, Eq. 18: exactly what the node
                                                      would compute had the sensing returned x_T^s)
    q_0 = q(z | f(M'))                               (the belief re-encoded: where every fusion starts)
    gain_KL(T)    = 1/S sum_s KL(q_s || q_0)                  (expected belief change, nats)
    gain_class(T) = H[p(c | mu_0)] - 1/S sum_s H[p(c | mu_s)]  (expected class-entropy reduction)

The first is a Monte-Carlo estimate of the mutual information between the latent and the imagined
observation; the second asks only what a classifier on z would learn. The imagined observation is
the decoder's mean rather than a sample of p(x_T | z): the spread of the prediction comes from the
belief's own uncertainty, which is what more sensing can remove (sampling a Bernoulli or Gaussian
likelihood would add sensor noise that no viewpoint can reduce).

Two choices keep the gain about information rather than about the model's round trip. A modality
already sensed is imagined as the belief holds it: decoding it from the samples z_s would predict
that a second look contradicts the first, and a belief from one sharp encoder would value looking
again with the same sensor above a new one. And gains are measured from q_0, not from q: fusion
decodes and re-encodes the sensed modalities whatever is added (Eq. 18), and that drift (Eq. 21) is
several nats for a sharp posterior of the shipped model, the same for every candidate. Sensing
again only what is sensed therefore gains exactly nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from m2vae_fusion.core.errors import DataError
from m2vae_fusion.core.fusion import in_place_fusion
from m2vae_fusion.core.gaussian import DiagonalGaussian, kl_divergence
from m2vae_fusion.core.model import MultiModalVAE

# p(class | z) for latent means (N, D_z) -> (N, C), rows summing to one.
ClassProbabilities = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class ExpectedGain:
    """Gains of K candidate sensings for B beliefs. `kl` is always estimated; the entropies only
    when a classifier was given."""

    candidates: tuple[tuple[str, ...], ...]
    kl: Tensor  # (B, K): E_s[KL(q_s || q_0)], nats
    entropy_now: Tensor | None = None  # (B,): H[p(c | mu_0)], the re-encoded belief's class entropy, nats
    entropy_after: Tensor | None = None  # (B, K): E_s[H[p(c | mu_s)]], nats

    @property
    def entropy_reduction(self) -> Tensor | None:
        """(B, K): the expected fall of the class entropy; may be slightly negative where a sensing
        is expected to confuse the classifier."""
        if self.entropy_now is None or self.entropy_after is None:
            return None
        return self.entropy_now[:, None] - self.entropy_after


def class_entropy(probabilities: Tensor) -> Tensor:
    """H[p] = -sum_c p_c log p_c over the last dimension, with 0 log 0 = 0."""
    return -(probabilities * probabilities.clamp_min(1e-12).log()).sum(-1)


@torch.no_grad()
def expected_gain(
    model: MultiModalVAE,
    belief: DiagonalGaussian,
    sensed: Sequence[Sequence[str]],
    candidates: Sequence[Sequence[str]],
    samples: int = 16,
    class_probabilities: ClassProbabilities | None = None,
    generator: torch.Generator | None = None,
    decoded_bound: float | None = None,
) -> ExpectedGain:
    """The expected gain of each candidate sensing for each of B beliefs (batched: one decoder and
    one subset-encoder pass per candidate and per group of beliefs that cover the same modalities).

    `belief`: B posteriors (mean and log-variance (B, D_z)); `sensed[b]`: the modalities belief b
    covers (empty: no sensing yet; pass the prior N(0, I) as its belief); `candidates`: K modality
    sets; `samples`: S draws of z per belief; `decoded_bound` as in `in_place_fusion`.
    """
    _check(model, belief, sensed, candidates, samples)
    batch, names = belief.mean.shape[0], model.modality_names
    kl = torch.zeros(batch, len(candidates), dtype=belief.mean.dtype)
    entropy_now = entropy_after = None
    if class_probabilities is not None:
        entropy_now, entropy_after = torch.zeros(batch, dtype=kl.dtype), torch.zeros_like(kl)
    z = belief.mean + belief.std * torch.randn((samples, *belief.mean.shape), generator=generator, dtype=belief.mean.dtype)
    for covered, rows in _groups(sensed, names).items():
        q = DiagonalGaussian(belief.mean[rows], belief.log_var[rows])
        start = _reencoded(model, q, covered, decoded_bound)
        repeated = DiagonalGaussian(q.mean.repeat(samples, 1), q.log_var.repeat(samples, 1))
        start_repeated = DiagonalGaussian(start.mean.repeat(samples, 1), start.log_var.repeat(samples, 1))
        z_rows = z[:, rows].reshape(samples * len(rows), -1)  # sample-major, like `repeated`
        if class_probabilities is not None:
            entropy_now[rows] = class_entropy(class_probabilities(start.mean).to(kl.dtype))
        for k, candidate in enumerate(candidates):
            imagined = {
                **model.reconstruct(repeated.mean, [n for n in candidate if n in covered]),
                **model.reconstruct(z_rows, [n for n in candidate if n not in covered]),
            }
            after, _ = in_place_fusion(model, repeated, covered, imagined, decoded_bound=decoded_bound)
            kl[rows, k] = kl_divergence(after, start_repeated).reshape(samples, len(rows)).mean(0).clamp_min(0.0)
            if class_probabilities is not None:
                h = class_entropy(class_probabilities(after.mean).to(kl.dtype))
                entropy_after[rows, k] = h.reshape(samples, len(rows)).mean(0)
    return ExpectedGain(tuple(tuple(c) for c in candidates), kl, entropy_now, entropy_after)


def _reencoded(
    model: MultiModalVAE, q: DiagonalGaussian, covered: Sequence[str], decoded_bound: float | None
) -> DiagonalGaussian:
    """q_0 = q(z | f(M')): the belief decoded into what it covers and encoded again, as Eq. 18 does
    before adding anything (the prior itself when nothing is covered)."""
    if not covered:
        return q
    decoded = model.reconstruct(q.mean, covered)
    if decoded_bound is not None:
        decoded = {n: x.clamp(-decoded_bound, decoded_bound) for n, x in decoded.items()}
    return model.encode(decoded)


def _groups(sensed: Sequence[Sequence[str]], names: Sequence[str]) -> dict[tuple[str, ...], Tensor]:
    """Belief indices by the modalities they cover (in the model's order)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, covered in enumerate(sensed):
        groups.setdefault(tuple(n for n in names if n in covered), []).append(index)
    return {covered: torch.tensor(rows) for covered, rows in groups.items()}


def _check(
    model: MultiModalVAE,
    belief: DiagonalGaussian,
    sensed: Sequence[Sequence[str]],
    candidates: Sequence[Sequence[str]],
    samples: int,
) -> None:
    if belief.mean.dim() != 2 or belief.mean.shape != belief.log_var.shape or belief.mean.shape[1] != model.latent_dim:
        raise DataError(
            f"beliefs must have mean and log-variance of shape (B, {model.latent_dim}), "
            f"got {tuple(belief.mean.shape)} and {tuple(belief.log_var.shape)}"
        )
    if len(sensed) != belief.mean.shape[0]:
        raise DataError(f"{belief.mean.shape[0]} beliefs but {len(sensed)} sensed-modality lists")
    if not candidates or any(not c for c in candidates):
        raise DataError(f"every candidate sensing needs at least one modality, got {[list(c) for c in candidates]}")
    unknown = sorted({n for group in [*sensed, *candidates] for n in group} - set(model.modality_names))
    if unknown:
        raise DataError(f"unknown modalities {unknown}; this model knows {model.modality_names}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise DataError(f"samples must be an integer >= 1, got {samples!r}")
