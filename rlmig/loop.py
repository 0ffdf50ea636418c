"""The one decision loop: observe, forecast, plan, account; one interval at a time.

The simulation (`rlmig.planners.run_planner`, so `rlmig simulate` and `rlmig eval`), the Gymnasium
environment and the node agent all run this loop; they differ only in where the rates and the current
configuration come from (the workload's rates and the configuration decided, or measured rates and the
node's real state) and in what happens to a decision (simulated, or applied through the executor).

Round k decides interval k:

1. `observe` the mean rates of interval k - 1 (round 0: the load as the run starts, which only seeds
   the forecasters: the load just before the run is taken to be the load at its start). From round 1
   on this accounts interval k - 1 (`rlmig.simulator.Simulator.step`) under the configurations in place
   during intervals k - 1 and k - 2, with those rates; then each tenant's forecaster is fed.
2. `forecast` the next `horizon` intervals' rates (or, for a planner with foresight, `true_future`).
3. A planner decides from `cluster_state`: the configuration in place, the tenants' retraining state,
   the rates seen so far and the forecast.
4. `commit` the configuration in place for interval k.

After the last round, one more `observe` accounts the last interval. The run's first configuration is
in place from the start (no downtime), as the simulator defines it.

Usage::

    loop = DecisionLoop(workload)
    for k in range(workload.intervals):
        loop.observe(workload.rates[max(k - 1, 0)])
        state = loop.cluster_state(loop.placed, loop.forecast())
        loop.commit(planner.plan(state).configuration)
    loop.observe(workload.rates[-1])
    print(loop.result().metrics)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlmig.configuration import Configuration
from rlmig.errors import RlmigError
from rlmig.forecast import make_forecaster
from rlmig.simulator import EncodedConfig, IntervalOutcome, RunResult, Simulator, TenantState
from rlmig.workload import Workload


@dataclass(frozen=True)
class ClusterState:
    """What a planner may observe before interval `interval` (arrays over the workload's tenants)."""

    workload: Workload
    simulator: Simulator
    interval: int
    current: Configuration | None
    tenants: TenantState
    history: np.ndarray  # (intervals so far, tenants): observed mean rates, oldest first
    forecast: np.ndarray  # (horizon, tenants): rates of intervals interval .. interval + horizon - 1

    def upcoming(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Accuracy, retraining progress, running jobs and seconds left in the window, as they will be
        at the start of `interval` (a window starting then drifts the model and starts a fresh job)."""
        sim, k = self.simulator, self.interval
        start = sim.window_start(k, self.tenants)
        return start.accuracy, start.progress, start.active & sim.has_retraining, sim.dynamics.seconds_left(k)

    def may_retrain(self) -> np.ndarray:
        """Per tenant, whether it may own a retraining instance in this interval: its job runs, a fresh
        window starts now, or it holds a retraining instance already (which can be kept even when its
        job has nothing left to do). The one rule for the ILP's first step and the policy's action mask."""
        may = self.tenants.active.astype(bool) | self.simulator.dynamics.window_starts(self.interval)
        if self.current is not None:
            for placed in self.current.placed():
                if placed.owner is not None and placed.owner.role == "retraining":
                    may[self.simulator.tenant_index[placed.owner.tenant]] = True
        return may


def pad_forecast(forecast: np.ndarray, horizon: int) -> np.ndarray:
    """`forecast` (intervals, tenants) with at least `horizon` rows, its last row repeated."""
    if len(forecast) >= horizon:
        return forecast
    return np.vstack([forecast, np.repeat(forecast[-1:], horizon - len(forecast), 0)])


def true_future(workload: Workload, interval: int, horizon: int) -> np.ndarray:
    """The true rates of intervals interval .. interval + horizon - 1 (the last one repeated past the
    run's end): what a planner with foresight is shown."""
    rates = workload.rates
    return rates[np.minimum(np.arange(interval, interval + horizon), len(rates) - 1)]


def predicted_goodput(state: ClusterState, config: Configuration, horizon: int = 1) -> float:
    """Goodput the simulator predicts for holding `config` over the next `horizon` forecast intervals,
    coming from ``state.current``."""
    sim = state.simulator
    tenants = state.tenants.copy()
    previous = sim.encode(state.current) if state.current is not None else None
    encoded = sim.encode(config)
    total = 0.0
    for h in range(horizon):
        rates = state.forecast[min(h, len(state.forecast) - 1)]
        outcome, tenants = sim.step(state.interval + h, tenants, encoded, previous, rates)
        total += float(outcome.goodput.sum())
        previous = encoded
    return total


class DecisionLoop:
    """The state of a run between intervals, and the steps of a round (see the module docstring).

    `cache` False encodes each committed configuration afresh instead of through the simulator's
    cache (for callers, such as the environment, that rarely see a configuration twice)."""

    def __init__(
        self,
        workload: Workload,
        simulator: Simulator | None = None,
        *,
        forecaster: str = "auto",
        horizon: int = 1,
        cache: bool = True,
    ) -> None:
        self.workload = workload
        self.simulator = simulator or Simulator(workload)
        self.horizon = max(1, horizon)
        self.cache = cache
        self.forecasters = [make_forecaster(forecaster) for _ in workload.tenants]
        self.tenants: TenantState = self.simulator.initial_state()
        self.k = 0  # the interval the next round decides
        self.history: list[np.ndarray] = []
        self.placed: Configuration | None = None  # in place during interval k - 1 (None: nothing)
        self.placed_encoded: EncodedConfig | None = None
        self._before: EncodedConfig | None = None  # in place during interval k - 2
        self.outcomes: list[IntervalOutcome] = []
        self.configurations: list[Configuration] = []  # in place during each accounted interval

    def observe(self, rates: np.ndarray | None, downtime_s: float | None = None) -> IntervalOutcome | None:
        """Take the rates of interval k - 1 (None: none could be read; the interval is accounted with
        no load and the forecasters are not fed). Returns the accounting of interval k - 1 (None in
        round 0). `downtime_s`: what a changed instance really lost at the start of interval k - 1 (a
        node's measured apply), instead of the workload's figure."""
        outcome = None
        observed = rates if rates is not None else np.zeros(len(self.workload.tenants))
        if self.k > 0:
            sim = self.simulator
            placed = self.placed or Configuration.empty(self.workload.gpu, self.workload.gpu_count)
            encoded = self.placed_encoded if self.placed is not None else sim.encode(placed)
            outcome, self.tenants = sim.step(
                self.k - 1, self.tenants, encoded, self._before, observed, downtime_s
            )
            self.outcomes.append(outcome)
            self.configurations.append(placed)
            self.history.append(observed)
        if rates is not None:
            for f, rate in zip(self.forecasters, rates, strict=True):
                f.update(float(rate))
        return outcome

    def forecast(self) -> np.ndarray:
        """The forecast of the next `horizon` intervals' rates, shape (horizon, tenants), never negative."""
        return np.stack([np.maximum(f.forecast(self.horizon), 0.0) for f in self.forecasters], axis=1)

    def cluster_state(self, current: Configuration | None, forecast: np.ndarray) -> ClusterState:
        """What a planner sees before interval k (the tenants' state is a copy it may change)."""
        history = np.array(self.history).reshape(len(self.history), len(self.workload.tenants))
        return ClusterState(
            self.workload, self.simulator, self.k, current, self.tenants.copy(), history, forecast
        )

    def commit(self, config: Configuration | None) -> None:
        """Make `config` the configuration in place for interval k (None: nothing owned)."""
        self._before = self.placed_encoded if self.placed is not None else None
        self.placed = config
        self.placed_encoded = self.simulator.encode(config, cache=self.cache) if config is not None else None
        self.k += 1

    def bring_up(self, config: Configuration | None) -> None:
        """Before round 0's commit: `config` was in place before the run (a node that already serves
        tenants), so the first interval pays for what it changes; None: bring-up is free."""
        self.placed = config
        self.placed_encoded = self.simulator.encode(config) if config is not None else None

    def snapshot(self) -> dict[str, object]:
        """What a restarted loop needs to go on where this one is (`restore`): the interval it decides
        next, the tenants' retraining state and the rates seen, as JSON."""
        return {
            "interval": self.k,
            "tenants": list(self.workload.tenant_names),
            "accuracy": self.tenants.accuracy.tolist(),
            "progress": self.tenants.progress.tolist(),
            "active": self.tenants.active.astype(bool).tolist(),
            "history": [np.asarray(row, dtype=float).tolist() for row in self.history],
        }

    def restore(self, snapshot: Mapping[str, Any], placed: Configuration | None) -> None:
        """Go on from a `snapshot` of a loop over the same tenants, with `placed` in place now (what the
        node holds). The forecasters see the rates again; the accounting of earlier intervals is not
        restored (it belongs to the process that ran them)."""
        names = list(self.workload.tenant_names)
        if list(snapshot.get("tenants", [])) != names:
            raise RlmigError(
                f"the saved state is for tenants {snapshot.get('tenants')}, the workload has {names}"
            )
        try:
            n = len(names)
            k = int(snapshot["interval"])
            accuracy, progress, active = (
                np.array(snapshot[key], dtype=float).reshape(n) for key in ("accuracy", "progress", "active")
            )
            history = [np.array(row, dtype=float).reshape(n) for row in snapshot["history"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise RlmigError(f"the saved state is malformed ({type(exc).__name__}: {exc})") from None
        if k < 0 or len(history) > k or not np.all(np.isfinite(accuracy)) or not np.all(progress >= 0):
            raise RlmigError(
                "the saved state is malformed (interval, history or retraining state out of range)"
            )
        self.k, self.history = k, history
        self.tenants = TenantState(accuracy, progress, active.astype(bool))
        for row in history:
            for f, rate in zip(self.forecasters, row, strict=True):
                f.update(float(rate))
        self.bring_up(placed)

    def result(self) -> RunResult:
        """The accounted intervals as a run's result."""
        return RunResult(self.simulator.metrics(self.outcomes), self.outcomes, self.configurations)
