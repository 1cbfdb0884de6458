"""Evaluation metrics of Sec. V: the per-subset ELBO test (Eq. 20) with its terms and the
uni-modal posteriors' offset from the joint one, the same test as the authors' code scores it
(the posterior mean decoded, no sampling), naive-Bayes coherence (Table I) under two protocols,
and re-encoding drift (Eq. 21, Fig. 5).

Every function uses only the model contract (encode, decode, reconstruct, log_likelihood), so
the M2VAE and every baseline are measured the same way. All of them run without gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from m2vae_fusion.core import subsets as sub
from m2vae_fusion.core.errors import ConfigError, DataError
from m2vae_fusion.core.fusion import auto_reencode, in_place_fusion
from m2vae_fusion.core.gaussian import DiagonalGaussian, kl_to_standard_normal, standard_normal_log_prob
from m2vae_fusion.core.model import MultiModalVAE
from m2vae_fusion.core.naive_bayes import GaussianNaiveBayes


def _draw(
    model: MultiModalVAE,
    inputs: Mapping[str, Tensor],
    subset_names: Sequence[str],
    samples: int,
    generator: torch.Generator | None,
) -> tuple[DiagonalGaussian, Tensor]:
    """q_S(z|S) of the subset `subset_names` and `samples` draws from it, shape (K, batch, latent)."""
    if samples < 1:
        raise ConfigError(f"elbo_test: samples must be >= 1, got {samples}")
    model.check_inputs(inputs, complete=True)
    q = model.encode(_subset_inputs(model, inputs, subset_names))
    eps = torch.randn((samples, *q.mean.shape), generator=generator, dtype=q.mean.dtype, device=q.mean.device)
    return q, q.mean + q.std * eps


@torch.no_grad()
def elbo_test(
    model: MultiModalVAE,
    inputs: Mapping[str, Tensor],
    subset_names: Sequence[str],
    *,
    samples: int = 1,
    importance_weighted: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Eq. 20 per sample, shape (batch,):

        L_S = E_{q_S(z|S)}[ log p(M | z) + log p(z) - log q_S(z|S) ],  p(z) = N(0, I)

    z is drawn from the encoder of the subset S = `subset_names`, but the likelihood covers every
    modality M of the model, so `inputs` must hold all of them. With K = `samples` draws the
    estimate is the Monte-Carlo mean of the K log-weights, or with `importance_weighted` their
    log-mean-exp (the IWAE bound, tighter than the mean by Jensen's inequality).
    """
    q, z = _draw(model, inputs, subset_names, samples, generator)
    log_w = model.log_likelihood(model.decode(z), inputs) + standard_normal_log_prob(z) - q.log_prob(z)
    if importance_weighted:
        return torch.logsumexp(log_w, dim=0) - math.log(samples)
    return log_w.mean(dim=0)


@torch.no_grad()
def elbo_terms(
    model: MultiModalVAE, inputs: Mapping[str, Tensor], subset_names: Sequence[str], *, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """The single-sample Eq. 20 estimate split into its terms, each of shape (batch,): log p(m | z)
    for every modality m of the model (keyed by m) and "kl" = log q_S(z|S) - log p(z), so that
    L_S = sum_m terms[m] - terms["kl"]. It draws z as `elbo_test(samples=1)` does: given a generator
    in the same state (seeded alike, not one shared generator, whose state each call moves on),
    the two see the same z.

    Shows where a subset's ELBO is lost: reconstructing its own modalities, generating the others
    (the cross-modal terms), or its posterior's distance from the prior.
    """
    q, z = _draw(model, inputs, subset_names, 1, generator)
    params = model.decode(z)
    terms = {name: model.decoders[name].log_prob(params[name], inputs[name])[0] for name in model.modality_names}
    terms["kl"] = (q.log_prob(z) - standard_normal_log_prob(z))[0]
    return terms


# Decoded means are clipped into (0, 1) this far for the Bernoulli score of a Gaussian decoder, whose
# means may leave [0, 1]; a Bernoulli decoder's sigmoid means stay inside it anyway.
BERNOULLI_CLIP = 1e-6


@torch.no_grad()
def posterior_mean_terms(model: MultiModalVAE, inputs: Mapping[str, Tensor], subset_names: Sequence[str]) -> dict[str, Tensor]:
    """Eq. 20 as the authors' released code scores it (vae_tools `elbo_check`), per sample, shape
    (batch,): z = the posterior mean mu_S of q_S(z|S), no sampling, decoded into every modality;
    "sse" = the summed squared error of those reconstructions, "bernoulli" = the Bernoulli
    log-likelihood of the inputs at them (continuous targets), "kl" = the analytic KL(q_S || N(0, I)).
    The authors' value is -(sse + kl); the Bernoulli form is bernoulli - kl. A Gaussian likelihood
    with sigma^2 = 1/2 makes log p(x | z) = -sse + const, so the two scorings then rank alike."""
    model.check_inputs(inputs, complete=True)
    q = model.encode(_subset_inputs(model, inputs, subset_names))
    means = model.reconstruct(q.mean)
    sse = torch.zeros(q.mean.shape[0], dtype=q.mean.dtype)
    bernoulli = torch.zeros_like(sse)
    for name, x_hat in means.items():
        x = inputs[name].reshape(len(x_hat), -1)
        x_hat = x_hat.reshape(len(x_hat), -1)
        sse += (x - x_hat).pow(2).sum(-1)
        p = x_hat.clamp(BERNOULLI_CLIP, 1.0 - BERNOULLI_CLIP)
        bernoulli += (x * p.log() + (1.0 - x) * (1.0 - p).log()).sum(-1)
    return {"sse": sse, "bernoulli": bernoulli, "kl": kl_to_standard_normal(q)}


@torch.no_grad()
def posterior_mean_table(
    model: MultiModalVAE, inputs: Mapping[str, Tensor], batch_size: int = 1024
) -> dict[str, dict[str, float]]:
    """Per subset label, the data-set means of `posterior_mean_terms` and the two scores built of
    them: "sse_kl" = -(sse + kl) (the authors') and "bernoulli_kl" = bernoulli - kl."""
    table = subset_means(model, inputs, lambda chunk, names: posterior_mean_terms(model, chunk, names), batch_size)
    return {label: {**t, "sse_kl": -(t["sse"] + t["kl"]), "bernoulli_kl": t["bernoulli"] - t["kl"]} for label, t in table.items()}


@torch.no_grad()
def joint_offset(model: MultiModalVAE, inputs: Mapping[str, Tensor], subset_names: Sequence[str]) -> Tensor:
    """Mean over latent dimensions of ((mu_M - mu_S) / sigma_S)^2, shape (batch,): the squared
    distance, in q_S's own standard deviations, of the posterior mean given every modality M.

    The mutual terms KL(q_M || q_S) of Eq. 15 ask q_S to cover q_M, which puts this near or
    below 1; a uni-modal encoder trained to reconstruct every modality from its own (Eq. 20
    itself, as JMVAE-Zero and MoPoE do) may instead be narrower than its own error, which puts it
    well above 1. 0 for S = M.
    """
    model.check_inputs(inputs, complete=True)
    joint = model.encode(_subset_inputs(model, inputs, model.modality_names))
    q = model.encode(_subset_inputs(model, inputs, subset_names))
    return ((joint.mean - q.mean) / q.std).pow(2).mean(dim=-1)


def subset_means(
    model: MultiModalVAE,
    inputs: Mapping[str, Tensor],
    per_sample: Callable[[Mapping[str, Tensor], Sequence[str]], Mapping[str, Tensor]],
    batch_size: int = 1024,
) -> dict[str, dict[str, float]]:
    """For every subset (keyed by its label), the data-set mean of each per-sample tensor that
    `per_sample(chunk, subset_names)` returns.

    Evaluated in chunks of `batch_size` so that many samples of large inputs fit in memory.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    model.check_inputs(inputs, complete=True)
    n = _num_samples(inputs)
    table: dict[str, dict[str, float]] = {}
    for subset in sub.all_subsets(len(model.modality_names)):
        names = sub.names_of(subset, model.modality_names)
        totals: dict[str, float] = {}
        for start in range(0, n, batch_size):
            for key, x in per_sample({k: v[start : start + batch_size] for k, v in inputs.items()}, names).items():
                totals[key] = totals.get(key, 0.0) + float(x.sum())
        table[sub.label(subset, model.modality_names)] = {key: total / n for key, total in totals.items()}
    return table


@torch.no_grad()
def elbo_table(
    model: MultiModalVAE,
    inputs: Mapping[str, Tensor],
    samples: int = 1,
    importance_weighted: bool = False,
    *,
    batch_size: int = 1024,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Mean Eq. 20 ELBO over the data set for every subset, keyed by subset label (Table II)."""

    def elbo(chunk: Mapping[str, Tensor], names: Sequence[str]) -> dict[str, Tensor]:
        return {
            "elbo": elbo_test(model, chunk, names, samples=samples, importance_weighted=importance_weighted, generator=generator)
        }

    return {label: means["elbo"] for label, means in subset_means(model, inputs, elbo, batch_size).items()}


@torch.no_grad()
def joint_offset_table(model: MultiModalVAE, inputs: Mapping[str, Tensor], batch_size: int = 1024) -> dict[str, float]:
    """Mean `joint_offset` over the data set for every subset, keyed by subset label."""

    def offset(chunk: Mapping[str, Tensor], names: Sequence[str]) -> dict[str, Tensor]:
        return {"offset": joint_offset(model, chunk, names)}

    return {label: means["offset"] for label, means in subset_means(model, inputs, offset, batch_size).items()}


@torch.no_grad()
def embed_all_subsets(model: MultiModalVAE, inputs: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    """Posterior means E[q_S(z|S)] of every non-empty subset S, keyed by subset label (Fig. 4)."""
    model.check_inputs(inputs, complete=True)
    embeddings: dict[str, np.ndarray] = {}
    for subset in sub.all_subsets(len(model.modality_names)):
        names = sub.names_of(subset, model.modality_names)
        q = model.encode({n: inputs[n] for n in names})
        embeddings[sub.label(subset, model.modality_names)] = q.mean.cpu().numpy()
    return embeddings


def coherence(
    model: MultiModalVAE,
    train_inputs: Mapping[str, Tensor],
    train_labels: Tensor | np.ndarray,
    test_inputs: Mapping[str, Tensor],
    test_labels: Tensor | np.ndarray,
) -> dict[str, float]:
    """Table I: classification rate of ONE Gaussian naive Bayes classifier per subset.

    The classifier is fitted on the posterior means of all subsets of the training set stacked
    together (each sample once per subset, with its label), then scored on the test embeddings
    of each subset separately. A coherent model, q_ab(a, b) ~ q_a(a) ~ q_b(b), reaches the rate of
    exclusive classifiers on the raw data (`raw_accuracy`).
    """
    return _score_subsets(model, shared_classifier(model, train_inputs, train_labels), test_inputs, test_labels)


def _score_subsets(
    model: MultiModalVAE, classifier: GaussianNaiveBayes, inputs: Mapping[str, Tensor], labels
) -> dict[str, float]:
    """The classifier's rate on the posterior means of every subset, keyed by subset label."""
    y = _labels(labels, _num_samples(inputs), "test_labels")
    return {key: classifier.score(z, y) for key, z in embed_all_subsets(model, inputs).items()}


def coherence_from_joint(
    model: MultiModalVAE,
    train_inputs: Mapping[str, Tensor],
    train_labels: Tensor | np.ndarray,
    test_inputs: Mapping[str, Tensor],
    test_labels: Tensor | np.ndarray,
) -> dict[str, float]:
    """Coherence, strict protocol (the authors' later code): ONE Gaussian naive Bayes classifier
    fitted on the posterior means given every modality only, scored on the test embeddings of each
    subset. Unlike `coherence`, it never sees a uni-modal embedding in training, so a subset scores
    well only where its embeddings land where the joint ones do."""
    full = sub.label(sub.mask_of(model.modality_names, model.modality_names), model.modality_names)
    train = embed_all_subsets(model, train_inputs)[full]
    classifier = GaussianNaiveBayes().fit(train, _labels(train_labels, _num_samples(train_inputs), "train_labels"))
    return _score_subsets(model, classifier, test_inputs, test_labels)


def shared_classifier(
    model: MultiModalVAE, train_inputs: Mapping[str, Tensor], train_labels: Tensor | np.ndarray
) -> GaussianNaiveBayes:
    """The ONE naive Bayes classifier of Table I, fitted on the posterior means of all subsets."""
    train = embed_all_subsets(model, train_inputs)
    y_train = _labels(train_labels, _num_samples(train_inputs), "train_labels")
    return GaussianNaiveBayes().fit(np.concatenate(list(train.values())), np.tile(y_train, len(train)))


def raw_accuracy(
    train_inputs: Mapping[str, Tensor | np.ndarray],
    train_labels: Tensor | np.ndarray,
    test_inputs: Mapping[str, Tensor | np.ndarray],
    test_labels: Tensor | np.ndarray,
    modality_names: Sequence[str],
) -> dict[str, float]:
    """Table I, "raw" column: one exclusive naive Bayes classifier per subset on its raw inputs
    (the concatenated features of the subset's modalities; 2^M - 1 classifiers)."""
    for where, inputs in (("train_inputs", train_inputs), ("test_inputs", test_inputs)):
        missing = [n for n in modality_names if n not in inputs]
        if missing:
            raise DataError(f"raw_accuracy: {where} lacks modalities {missing}")
    y_train = _labels(train_labels, len(train_inputs[modality_names[0]]), "train_labels")
    y_test = _labels(test_labels, len(test_inputs[modality_names[0]]), "test_labels")
    rates: dict[str, float] = {}
    for subset in sub.all_subsets(len(modality_names)):
        names = sub.names_of(subset, modality_names)
        x_train = np.concatenate([_numpy(train_inputs[n]).reshape(len(y_train), -1) for n in names], axis=1)
        x_test = np.concatenate([_numpy(test_inputs[n]).reshape(len(y_test), -1) for n in names], axis=1)
        rates[sub.label(subset, modality_names)] = GaussianNaiveBayes().fit(x_train, y_train).score(x_test, y_test)
    return rates


@dataclass(frozen=True)
class DriftResult:
    """Re-encoding drift of Eq. 21 after `steps` re-encodings of posterior means."""

    steps: int
    mean: float  # mean of ||z_0 - z_k||_2 over the samples
    median: float
    label_switch_rate: float | None  # share of samples whose predicted class changed; None without a classifier
    latent_spread: float  # mean per-dimension std of z_0: near 0 means posterior collapse, where drift says nothing


@torch.no_grad()
def reencoding_drift(
    model: MultiModalVAE,
    inputs: Mapping[str, Tensor],
    subset_names: Sequence[str],
    steps: int,
    classifier: GaussianNaiveBayes | None = None,
) -> DriftResult:
    """Eq. 21 on data: z_0 = E[q_S(z|S)], then z -> p(S|z) -> q_S `steps` times (means only, Fig. 5a)."""
    _check_steps(steps)
    q0 = model.encode(_subset_inputs(model, inputs, subset_names))
    zk = auto_reencode(model, q0, list(subset_names), steps)[-1].mean
    z0 = q0.mean
    distance = torch.linalg.vector_norm(z0 - zk, dim=-1).cpu().numpy()
    switched = None
    if classifier is not None:
        switched = float(np.mean(classifier.predict(z0.cpu().numpy()) != classifier.predict(zk.cpu().numpy())))
    return DriftResult(
        steps=steps,
        mean=float(distance.mean()),
        median=float(np.median(distance)),
        label_switch_rate=switched,
        latent_spread=float(z0.std(dim=0, unbiased=False).mean()),
    )


@dataclass(frozen=True)
class InPlacePoint:
    """The belief after `steps` in-place fusions (Eq. 18) of repeated views, one modality at a time."""

    steps: int
    drift: float  # mean ||z_k - z_joint||_2: distance from encoding every modality at once
    accuracy: float | None  # the classifier's rate on z_k; None without a classifier


@torch.no_grad()
def inplace_fusion_curve(
    model: MultiModalVAE,
    inputs: Mapping[str, Tensor],
    steps: Sequence[int],
    classifier: GaussianNaiveBayes | Any | None = None,
    labels: Tensor | np.ndarray | None = None,
) -> list[InPlacePoint]:
    """Eq. 18 applied again and again: the belief starts from the first modality alone, then each
    step fuses the next modality in turn (a, b, a, b, ... for M = 2), always the same view of it, in
    place: the stored z is decoded (its mean) into the other modalities it covers and re-encoded
    with the new view through their subset encoder. Every step after the first re-encodes a
    reconstruction, so this is where the drift the re-encoding loss (Eq. 19) guards against piles
    up. Reported at each count in `steps` (1 = the first modality alone): the mean distance from the
    joint posterior mean and, given a classifier (`predict` on z) and labels, its accuracy."""
    counts = sorted(set(steps))
    if not counts or counts[0] < 1:
        raise ConfigError(f"in-place fusion steps must be >= 1, got {list(steps)}")
    model.check_inputs(inputs, complete=True)
    names = model.modality_names
    joint = model.encode(_subset_inputs(model, inputs, names)).mean
    y = None if labels is None else _labels(labels, _num_samples(inputs), "labels")
    q = model.encode({names[0]: inputs[names[0]]})
    sensed = [names[0]]
    points = []
    for k in range(1, counts[-1] + 1):
        if k > 1:
            new = names[(k - 1) % len(names)]
            q, sensed = in_place_fusion(model, q, sensed, {new: inputs[new]})
        if k in counts:
            drift = float(torch.linalg.vector_norm(q.mean - joint, dim=-1).mean())
            accuracy = None
            if classifier is not None and y is not None:
                accuracy = float(np.mean(classifier.predict(q.mean.cpu().numpy()) == y))
            points.append(InPlacePoint(k, drift, accuracy))
    return points


@torch.no_grad()
def drift_field(model: MultiModalVAE, subset_names: Sequence[str], grid: Tensor, steps: int) -> np.ndarray:
    """Eq. 21 over latent points (the Fig. 5c heatmap): ||z_init - z_reenc||_2 per row of `grid`.

    Each grid point is itself z_init (no data encoding): decode it into `subset_names`, re-encode
    with that subset's encoder, and repeat `steps` times, using means throughout.
    """
    _check_steps(steps)
    if grid.dim() != 2 or grid.shape[1] != model.latent_dim:
        raise DataError(f"drift_field: grid must have shape (points, {model.latent_dim}), got {tuple(grid.shape)}")
    start = DiagonalGaussian(grid, torch.zeros_like(grid))
    z_reenc = auto_reencode(model, start, list(subset_names), steps)[-1].mean
    return torch.linalg.vector_norm(grid - z_reenc, dim=-1).cpu().numpy()


def _subset_inputs(model: MultiModalVAE, inputs: Mapping[str, Tensor], names: Sequence[str]) -> dict[str, Tensor]:
    """The inputs of subset `names`, in the model's modality order."""
    if not names:
        raise DataError("a subset needs at least one modality")
    unknown = [n for n in names if n not in model.modality_names]
    if unknown:
        raise DataError(f"unknown modalities {unknown}; this model knows {model.modality_names}")
    missing = [n for n in names if n not in inputs]
    if missing:
        raise DataError(f"inputs lack modalities {missing} of subset {list(names)}")
    return {n: inputs[n] for n in model.modality_names if n in names}


def _num_samples(inputs: Mapping[str, Tensor]) -> int:
    return int(next(iter(inputs.values())).shape[0])


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _labels(labels: Tensor | np.ndarray, n: int, name: str) -> np.ndarray:
    y = _numpy(labels)
    if y.shape != (n,):
        raise DataError(f"{name}: expected shape ({n},) to match the inputs, got {y.shape}")
    return y


def _check_steps(steps: int) -> None:
    if steps < 1:
        raise ConfigError(f"re-encoding steps must be >= 1, got {steps}")
