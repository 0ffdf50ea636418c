"""Interval dynamics (DESIGN.md §3): the terms of one interval that the simulator steps, the ILP builds
its constraints from, and the baselines, the policy codec and the node agent reason with. Defined once.

- Which instance changed: an owned instance whose (GPU, placement, profile, tenant, role) was not in the
  previous interval's configuration (`changed_instances`); the run's first configuration is in place
  from the start, so nothing changes in the first interval.
- Downtime: a changed instance works ``1 - downtime/Δ`` of the interval (`uptime`); a retraining job on
  it trains for ``Δ - downtime`` seconds (`train_seconds`).
- Retraining windows: tenant t's window starts every ``window_s / Δ`` intervals (`window_starts`); the
  model drifts and a fresh job starts then; `window_phase` and `seconds_left` say where in its window
  an interval falls.
- Retraining progress: `job_progress` advances each tenant's job through one interval and says when in
  the interval it completes.

Usage::

    dynamics = Dynamics.of(workload)
    changed = changed_instances(simulator.encode(new), simulator.encode(old))
    capacity = np.bincount(tenant, weights=capacity_per_instance * dynamics.uptime(changed))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rlmig.simulator import EncodedConfig
    from rlmig.workload import Workload


@dataclass(frozen=True)
class Dynamics:
    """The interval length, the downtime of a changed instance, and each tenant's retraining window."""

    interval_s: float
    downtime_s: float
    has_retraining: np.ndarray  # (tenants,) bool
    window_intervals: np.ndarray  # (tenants,) int: intervals per retraining window, 0 without retraining

    @classmethod
    def of(cls, workload: Workload) -> Dynamics:
        """The dynamics of a workload's run."""
        windows = [t.retraining for t in workload.tenants]
        return cls(
            workload.interval_s,
            workload.downtime_s,
            np.array([r is not None for r in windows]),
            np.array([round(r.window_s / workload.interval_s) if r else 0 for r in windows], dtype=np.int64),
        )

    # -- downtime ----------------------------------------------------------------------------------

    @property
    def lost_share(self) -> float:
        """The share of an interval a changed instance does not work: downtime / Δ."""
        return self.downtime_s / self.interval_s

    @property
    def changed_uptime(self) -> float:
        """The share of an interval a changed instance works: 1 - downtime / Δ."""
        return 1.0 - self.lost_share

    def uptime(self, changed: np.ndarray) -> np.ndarray:
        """Per instance, the share of the interval it works (1 unchanged, 1 - downtime/Δ changed)."""
        return 1.0 - self.lost_share * changed

    def train_seconds(self, changed: bool) -> float:
        """Seconds a retraining instance trains in the interval: Δ, or Δ - downtime when it changed."""
        return self.interval_s - self.downtime_s if changed else self.interval_s

    # -- retraining windows ------------------------------------------------------------------------

    def window_starts(self, index: int) -> np.ndarray:
        """Per tenant, whether a retraining window starts with interval `index`."""
        return self.has_retraining & (index % np.maximum(self.window_intervals, 1) == 0)

    def window_phase(self, index: int) -> np.ndarray:
        """Per tenant, how far into its window interval `index` starts, in [0, 1) (0 without retraining)."""
        window = np.maximum(self.window_intervals, 1)
        return np.where(self.has_retraining, (index % window) / window, 0.0)

    def seconds_left(self, index: int) -> np.ndarray:
        """Per tenant, the seconds from the start of interval `index` to the end of its window."""
        window = np.maximum(self.window_intervals, 1)
        return ((window - index % window) * self.interval_s).astype(float)

    # -- retraining progress -----------------------------------------------------------------------

    def job_progress(
        self, remaining: np.ndarray, steady: np.ndarray, delayed: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One interval of each tenant's retraining job: `remaining` samples to go, training throughput
        on unchanged (`steady`) and on changed (`delayed`, working once its downtime ends) instances.

        Returns the samples gained, whether the job completes in the interval, and when it does (seconds
        into the interval; Δ when it does not)."""
        dt, down = self.interval_s, self.downtime_s
        gain = steady * self.train_seconds(False) + delayed * self.train_seconds(True)
        completes = active & (gain >= remaining) & (gain > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            finish = np.where(
                steady * down >= remaining,
                remaining / steady,
                down + (remaining - steady * down) / (steady + delayed),
            )
        return gain, completes, np.where(completes, np.clip(finish, 0.0, dt), dt)


def changed_instances(new: EncodedConfig, old: EncodedConfig | None) -> np.ndarray:
    """Per instance (row) of `new`, whether it is owned and was not in `old` with the same GPU,
    placement, profile, tenant and role; nothing has changed when there is no `old` (the run's start)."""
    owned = new.tenant >= 0
    if old is None:
        return np.zeros_like(owned)
    before = set(old.key.tolist())  # integer keys; a set beats np.isin on a planner's few hundred
    return owned & ~np.fromiter((k in before for k in new.key.tolist()), bool, len(new.key))
