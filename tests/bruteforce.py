"""An independent enumerator of MIG layouts, for checking rlmig.geometry: every subset of the
candidate (profile, start) pairs, tested at once with numpy matrix products instead of search."""

from __future__ import annotations

import numpy as np

from rlmig.geometry import GpuModel, Profile


def brute_force_layouts(
    gpu: GpuModel, profiles: list[Profile], maximal: bool = False
) -> set[frozenset[tuple[str, int]]]:
    """Every valid non-empty (or maximal) layout as a frozenset of (profile name, start)."""
    candidates = [(p, s) for p in profiles for s in p.starts]
    n = len(candidates)
    assert n <= 22, "too many candidates for brute force"
    subsets = np.arange(1 << n, dtype=np.int64)
    chosen = ((subsets[:, None] >> np.arange(n)) & 1).astype(np.int16)  # (2^n, n)
    occupancy = np.zeros((n, gpu.slots), dtype=np.int16)
    for k, (p, s) in enumerate(candidates):
        occupancy[k, s : s + p.slots] = 1
    compute = np.array([p.compute for p, _ in candidates], dtype=np.int16)
    membership = np.array([[p is q for q in profiles] for p, _ in candidates], dtype=np.int16)
    max_counts = np.array([q.max_count for q in profiles], dtype=np.int16)
    valid = (
        ((chosen @ occupancy) <= 1).all(axis=1)
        & ((chosen @ compute) <= gpu.compute_slices)
        & ((chosen @ membership) <= max_counts).all(axis=1)
        & (subsets > 0)
    )
    if maximal:
        extendable = np.zeros_like(valid)
        for k in range(n):
            without_k = (subsets >> k) & 1 == 0
            extendable |= without_k & valid[subsets | (1 << k)]
        valid &= ~extendable
    return {
        frozenset((candidates[k][0].name, candidates[k][1]) for k in range(n) if index >> k & 1)
        for index in np.flatnonzero(valid)
    }
