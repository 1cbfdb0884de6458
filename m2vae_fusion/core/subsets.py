"""Modality subsets as bitmasks over the ordered modality list (bit i = modality i).

Nothing here is specific to two or three modalities: the M2VAE has one encoder per non-empty
subset (2^M - 1) and the objective of Eq. 16-17 recurses over subsets missing one modality.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction


def all_subsets(num_modalities: int) -> list[int]:
    """Every non-empty subset, ordered by size then by mask (singletons first, the full set last)."""
    return sorted(range(1, 1 << num_modalities), key=lambda s: (bin(s).count("1"), s))


def members(subset: int) -> list[int]:
    """Indices of the modalities in `subset`, ascending."""
    return [i for i in range(subset.bit_length()) if subset >> i & 1]


def size(subset: int) -> int:
    return bin(subset).count("1")


def mask_of(names: Iterable[str], modality_names: Sequence[str]) -> int:
    """The bitmask of `names`; raises naming the unknown modality."""
    mask = 0
    for name in names:
        if name not in modality_names:
            raise KeyError(f"unknown modality '{name}'; this model knows {list(modality_names)}")
        mask |= 1 << modality_names.index(name)
    if mask == 0:
        raise ValueError("a subset needs at least one modality")
    return mask


def names_of(subset: int, modality_names: Sequence[str]) -> list[str]:
    return [modality_names[i] for i in members(subset)]


def label(subset: int, modality_names: Sequence[str]) -> str:
    """Stable key for logs and dicts: member names joined by '+', e.g. 'a+b'."""
    return "+".join(names_of(subset, modality_names))


def one_smaller(subset: int) -> list[int]:
    """The subsets of `subset` that miss exactly one modality (the set tilde-M of Eq. 16)."""
    if size(subset) < 2:
        return []
    return [subset & ~(1 << i) for i in members(subset)]


def eq17_weights(full: int) -> dict[int, Fraction]:
    """Weight of every subset's term in the recursive M2VAE bound (Eq. 16-17).

    L_{M2,S} = 1/|S| (L_{S,S} + sum_{S' in one_smaller(S)} L_{M2,S'}), and L_{M2,{m}} = L_m.
    Unrolled from the full set, the joint term L_{S,S} of subset S (its ELBO plus its mutual KL
    terms) carries the returned weight. For M = 2: {a: 1/2, b: 1/2, ab: 1/2} (Eq. 10, times 1/2).
    """
    reach: dict[int, Fraction] = {full: Fraction(1)}
    weights: dict[int, Fraction] = {}
    for subset in sorted(all_subsets(full.bit_length()), key=size, reverse=True):
        if subset & ~full or subset not in reach:
            continue
        w = reach[subset]
        if size(subset) == 1:
            weights[subset] = w
            continue
        share = w / size(subset)
        weights[subset] = share
        for smaller in one_smaller(subset):
            reach[smaller] = reach.get(smaller, Fraction(0)) + share
    return weights
