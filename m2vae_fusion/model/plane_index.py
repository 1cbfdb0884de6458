"""Nearest position within a gate in the plane: a uniform grid, so associating an encoding with one of
thousands of tracked objects looks at nine cells instead of every object (m2vae bench scale)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np

CELL_MARGIN = 1e-6  # cells are this much wider than the gate, so rounding in x / cell cannot put two positions within the gate two cells apart
GRID_LIMIT = (
    2.0**31
)  # cell coordinates up to this are exact to well within CELL_MARGIN; positions beyond (absurd, or non-finite) are searched linearly


class PlaneIndex:
    """Positions in the plane (x, y) by key, hashed into a uniform grid of square cells one gate wide,
    for the nearest key within the gate. Ties in distance go to the key added last (a moved key keeps
    its place), as in a scan in order of addition that keeps the last of equals."""

    def __init__(self, gate: float) -> None:
        self.gate = gate
        self._size = gate * (1.0 + CELL_MARGIN)
        self._cells: dict[tuple[int, int], dict[str, None]] = {}
        self._far: dict[str, None] = {}  # keys whose position is off the grid
        self._entries: dict[str, tuple[float, float, tuple[int, int] | None, int]] = {}  # key -> (x, y, cell, rank)
        self._placed = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _cell(self, x: float, y: float) -> tuple[int, int] | None:
        qx, qy = x / self._size, y / self._size
        if abs(qx) < GRID_LIMIT and abs(qy) < GRID_LIMIT:  # False for NaN too
            return math.floor(qx), math.floor(qy)
        return None

    def _bucket(self, cell: tuple[int, int] | None) -> dict[str, None]:
        return self._far if cell is None else self._cells.setdefault(cell, {})

    def place(self, key: str, position: np.ndarray) -> None:
        """Add `key` at `position` (x, y, ...), or move it there keeping its rank."""
        x, y = float(position[0]), float(position[1])
        cell = self._cell(x, y)
        entry = self._entries.get(key)
        if entry is None:
            self._placed += 1
            rank = self._placed
        else:
            rank = entry[3]
            if entry[2] != cell:
                self._unlink(key, entry[2])
        self._bucket(cell)[key] = None
        self._entries[key] = (x, y, cell, rank)

    def remove(self, key: str) -> None:
        self._unlink(key, self._entries.pop(key)[2])

    def _unlink(self, key: str, cell: tuple[int, int] | None) -> None:
        bucket = self._bucket(cell)
        del bucket[key]
        if not bucket and cell is not None:
            del self._cells[cell]

    def rank(self, key: str) -> int:
        """Order of first placement."""
        return self._entries[key][3]

    def nearest(self, position: np.ndarray) -> tuple[str, float] | None:
        """The key nearest to `position` in the plane within the gate, and its distance; None if none is."""
        x, y = float(position[0]), float(position[1])
        cell = self._cell(x, y)
        if cell is None:
            candidates: Iterable[str] = self._entries
        else:
            cx, cy = cell
            around = [self._cells.get((cx + i, cy + j), ()) for i in (-1, 0, 1) for j in (-1, 0, 1)]
            candidates = itertools.chain(*around, self._far)
        best, best_distance, best_rank = None, self.gate, 0
        for key in candidates:
            ex, ey, _, rank = self._entries[key]
            distance = math.hypot(ex - x, ey - y)
            if distance < best_distance or (distance == best_distance and rank > best_rank):
                best, best_distance, best_rank = key, distance, rank
        return None if best is None else (best, best_distance)
