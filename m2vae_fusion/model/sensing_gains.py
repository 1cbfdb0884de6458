"""What one more sensing is expected to add to each tracked object's fused belief (issue 19): the class
entropy of the belief and, per candidate sensing, the expected class-entropy reduction and KL from the
model's imagination (core.information_gain via PerceptionModel.expected_gains). Estimates are kept per
object until its fused belief changes, so a node that publishes every belief every period pays only
for the beliefs that moved."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.core.information_gain import class_entropy as core_class_entropy
from m2vae_fusion.model.beliefs import TrackedObject
from m2vae_fusion.model.perception_model import Belief, PerceptionModel


@dataclass(frozen=True)
class SensingGain:
    modalities: tuple[str, ...]
    entropy_reduction: float  # nats, expected fall of the class entropy
    kl: float  # nats, expected KL of the imagined posterior from the belief


@dataclass(frozen=True)
class ObjectGains:
    class_entropy: float  # nats, of the belief's class probabilities
    gains: tuple[SensingGain, ...]  # one per candidate, in the candidates' order

    @property
    def best(self) -> SensingGain:
        return max(self.gains, key=lambda g: g.entropy_reduction)


def class_entropy(probabilities: np.ndarray) -> float:
    """core.information_gain's class entropy (nats) of one belief's class probabilities."""
    return float(core_class_entropy(torch.from_numpy(np.asarray(probabilities, np.float64))))


def parse_candidates(texts: Sequence[str], modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """'camera+lidar+ir' -> ('camera', 'lidar', 'ir'), in the model's order; errors name the bad entry."""
    candidates = []
    for text in texts:
        names = [n.strip() for n in str(text).split("+") if n.strip()]
        unknown = sorted(set(names) - set(modalities))
        if not names or unknown:
            raise ConfigError(f"sensing candidate {text!r}: expected modalities joined by '+' from {list(modalities)}")
        candidates.append(tuple(m for m in modalities if m in names))
    if not candidates:
        raise ConfigError("at least one sensing candidate is needed")
    return candidates


class SensingGains:
    """Expected gains of `candidates` for tracked objects, cached per object until its fused belief changes."""

    def __init__(self, model: PerceptionModel, candidates: Sequence[Sequence[str]], samples: int = 8, seed: int = 0) -> None:
        if samples < 1:
            raise ConfigError(f"gain samples must be >= 1, got {samples}")
        self.model, self.samples, self.seed = model, samples, seed
        self.candidates = [tuple(c) for c in candidates]
        self._cache: dict[str, tuple[Belief, ObjectGains]] = {}
        self.first_look = self._estimate([None])[0]  # an object nothing has sensed yet: the prior's gains

    def of(self, objects: Iterable[TrackedObject]) -> dict[str, ObjectGains]:
        """Gains of each object's fused belief (one batched estimate for those that changed)."""
        objects = list(objects)
        stale = [o for o in objects if o.object_id not in self._cache or self._cache[o.object_id][0] is not o.fused]
        for obj, gains in zip(
            stale, self._estimate([o.fused for o in stale], [o.class_probabilities for o in stale]), strict=True
        ):
            self._cache[obj.object_id] = (obj.fused, gains)
        alive = {o.object_id for o in objects}
        for object_id in [k for k in self._cache if k not in alive]:  # forgotten objects
            del self._cache[object_id]
        return {o.object_id: self._cache[o.object_id][1] for o in objects}

    def _estimate(self, beliefs: list[Belief | None], probabilities: list[np.ndarray] | None = None) -> list[ObjectGains]:
        if not beliefs:
            return []
        estimate = self.model.expected_gains(beliefs, self.candidates, samples=self.samples, seed=self.seed)
        reduction, kl = estimate.entropy_reduction.numpy(), estimate.kl.numpy()
        out = []
        for i in range(len(beliefs)):
            entropy = class_entropy(probabilities[i]) if probabilities is not None else float(estimate.entropy_now[i])
            gains = tuple(SensingGain(c, float(reduction[i, k]), float(kl[i, k])) for k, c in enumerate(self.candidates))
            out.append(ObjectGains(entropy, gains))
        return out
