"""Measured rows that contradict the others (`rlmig profiles check`).

Measurements are trusted by default, as ParvaGPU trusts its own; these checks only point at rows a
person should look at, and a workload may plan without them (``exclude_flagged: true``). A row is
flagged when, against the rows of the same instance size:

- it duplicates the row with one process fewer (same latency, same per-process throughput): a copied
  row rather than a measurement (ParvaGPU's bert 3g batch 256, 3 processes);
- p processes serve more than p times what one process serves at that batch (beyond `TOLERANCE`): MPS
  cannot more than multiply a process's throughput;
- its throughput falls below the next smaller batch's, with the same processes, beyond `FALL`;
- its latency falls below the next smaller batch's, with the same processes, beyond `TOLERANCE` and
  the 1 ms to which ParvaGPU rounds its latencies (a larger batch is not faster per batch);
- its throughput is off the latency model fitted to all the rows by more than `OUTLIER` (the rows
  around it, summed up by the fit, say otherwise: ParvaGPU's densenet169 batch 128 on 3g, 4g and 7g).

Usage::

    >>> from rlmig.catalog import model_profile
    >>> profile = model_profile("densenet169")
    >>> flagged = check_points(profile.measured, profile.throughput)
    >>> sorted(f.key for f in flagged if f.key[1] == 128)
    [(3, 128, 1), (4, 128, 1), (7, 128, 2)]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlmig.catalog.profile import Key, MeasuredPoints

TOLERANCE = 0.05
"""Relative noise allowed before a row counts as contradicting its neighbours."""
FALL = 0.10
"""How far throughput may fall from one batch size to the next larger one."""
OUTLIER = 1 / 3
"""How far a row's throughput may be from the fitted model's."""
LATENCY_RESOLUTION_MS = 1.0
"""ParvaGPU rounds latencies to 1 ms."""


@dataclass(frozen=True)
class Flag:
    """A measured row (compute, batch, processes) and why it contradicts the others."""

    key: Key
    reason: str

    def to_json(self) -> dict[str, object]:
        compute, batch, processes = self.key
        return {"compute": compute, "batch": batch, "processes": processes, "reason": self.reason}


def check_points(points: MeasuredPoints, model: Callable[[int, int, int], float] | None = None) -> list[Flag]:
    """The flagged rows of `points`, in (compute, batch, processes) order, each once (its first reason).
    `model` gives the fitted throughput of a (compute, batch, processes) segment, for the outlier rule."""
    tolerance = TOLERANCE
    rows = points.rows
    found: dict[Key, str] = {}

    def flag(key: Key, reason: str) -> None:
        found.setdefault(key, reason)

    for (c, b, p), (latency, throughput) in sorted(rows.items()):
        fewer = rows.get((c, b, p - 1))
        same_per_process = math.isclose(throughput / p, fewer[1] / (p - 1), rel_tol=1e-9) if fewer else False
        if fewer is not None and math.isclose(latency, fewer[0], rel_tol=1e-9) and same_per_process:
            flag((c, b, p), f"duplicates the {p - 1}-process row (latency {latency:g} ms, same per process)")
        single = rows.get((c, b, 1))
        if p > 1 and single is not None and throughput > p * single[1] * (1 + tolerance):
            flag(
                (c, b, p),
                f"{p} processes serve {throughput / single[1]:.2f}x one process's {single[1]:g} req/s, "
                f"more than {p}x",
            )
        smaller = [bb for (cc, bb, pp) in rows if (cc, pp) == (c, p) and bb < b]
        if smaller:
            prev = rows[c, max(smaller), p]
            if throughput < prev[1] * (1 - FALL):
                flag(
                    (c, b, p),
                    f"throughput {throughput:g} req/s, below {prev[1]:g} at batch {max(smaller)}",
                )
            if latency < prev[0] * (1 - tolerance) - LATENCY_RESOLUTION_MS:
                flag((c, b, p), f"latency {latency:g} ms, below {prev[0]:g} ms at batch {max(smaller)}")
        if model is not None:
            fitted = model(c, b, p)
            if abs(throughput / fitted - 1) > OUTLIER:
                off = throughput / fitted - 1
                flag((c, b, p), f"throughput {throughput:g} req/s, {off:+.0%} off the fit")
    return [Flag(key, reason) for key, reason in sorted(found.items())]
