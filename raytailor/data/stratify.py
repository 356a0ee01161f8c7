"""Seeded, stratified index selection: carving val/test splits and capping classes.

Every function returns sorted index tensors into the array it was given, so the results are
disjoint by construction and identical for the same seed.
"""

from __future__ import annotations

import numpy as np
import torch

# Distinct streams so that carving test, carving val and capping never share random numbers.
STREAM_TEST, STREAM_VAL, STREAM_CAP = 1, 2, 3


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def stratified_carve(
    labels: torch.Tensor, *, fraction: float, seed: int, stream: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (kept, carved) with about ``fraction`` of every class carved.

    A class with at least two samples gives at least one to each side, so every such class
    appears in the carved split; a class with a single sample stays on the kept side.
    """
    rng = _rng(seed, stream)
    labels_np = labels.numpy()
    kept: list[np.ndarray] = []
    carved: list[np.ndarray] = []
    for cls in np.unique(labels_np):
        members = np.flatnonzero(labels_np == cls)
        members = members[rng.permutation(len(members))]
        count = len(members)
        take = int(round(fraction * count))
        if fraction > 0 and count >= 2:
            take = min(max(take, 1), count - 1)
        elif count < 2:
            take = 0
        carved.append(members[:take])
        kept.append(members[take:])
    return _sorted(kept), _sorted(carved)


def cap_per_class(labels: torch.Tensor, *, limit: int, seed: int) -> torch.Tensor:
    """Indices keeping at most ``limit`` randomly chosen (seeded) samples of every class."""
    rng = _rng(seed, STREAM_CAP)
    labels_np = labels.numpy()
    chosen: list[np.ndarray] = []
    for cls in np.unique(labels_np):
        members = np.flatnonzero(labels_np == cls)
        if len(members) > limit:
            members = rng.choice(members, size=limit, replace=False)
        chosen.append(members)
    return _sorted(chosen)


def _sorted(parts: list[np.ndarray]) -> torch.Tensor:
    if not parts:
        return torch.zeros(0, dtype=torch.int64)
    return torch.from_numpy(np.sort(np.concatenate(parts)).astype(np.int64))
