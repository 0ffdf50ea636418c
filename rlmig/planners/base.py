"""The planner interface, and `run_planner`: any planner over a workload in the simulator.

A planner maps what can be observed of the cluster before an interval (the current configuration,
the tenants' retraining state, the rates seen so far and a forecast of the next ones) to the target
configuration of that interval. The ILP oracle, the baselines and the learned policy all implement
`Planner`; the CLI, the environment's expert, the evaluation and the node agent use nothing else.

Usage::

    from rlmig.planners import make_planner, run_planner
    from rlmig.workload import load_workload

    run = run_planner(load_workload("eval/scenarios/azure-retrain.yaml"), make_planner("ilp"))
    print(run.result.metrics, run.decision_ms_p99)

In serve mode a planner is asked once, with the peak rate of every tenant as its forecast, and its
configuration runs unchanged. In dynamic mode it is asked before every interval, through the one
decision loop (`rlmig.loop`): its forecast comes from one forecaster per tenant fed with the mean rate
of each finished interval (before the first interval the forecaster is seeded with the first interval's
rate: the load just before the run is taken to be the load at its start). A planner with
``foresight = True`` sees the true rates of the next intervals.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from rlmig.configuration import Configuration
from rlmig.errors import RlmigError
from rlmig.loop import ClusterState, DecisionLoop, pad_forecast, true_future
from rlmig.simulator import RunResult, Simulator
from rlmig.workload import Workload

__all__ = ["ClusterState", "Decision", "Planner", "PlannerRun", "pad_forecast", "run_planner", "serve_rates"]


@dataclass(frozen=True)
class Decision:
    """A planner's answer: the target configuration, and what the planner knows about it."""

    configuration: Configuration
    optimal: bool | None = None  # proven optimal (None: the planner does not prove anything)
    objective: float | None = None  # the planner's own objective value, when it has one
    solve_seconds: float = 0.0  # the decision's wall time, model building included (set by `run_planner`)
    horizon_plan: tuple[Configuration, ...] = ()  # planners that look ahead: the plan of every step
    gap: float | None = None  # solvers: relative gap to the solver's bound when it stopped (None: unknown)
    overruled: bool = False  # a guard kept another candidate than the planner's own proposal
    fallback: str | None = None  # decided by a fallback planner instead: "NAME: why"


class Planner(ABC):
    """Maps a `ClusterState` to a `Decision`. Subclasses set `name` and implement `plan`."""

    name: str = "planner"
    objective: str = ""  # one line: what the planner optimises (shown beside its results)
    horizon: int = 1  # forecast intervals the planner wants
    foresight: bool = False  # True: the forecast is the true future (an upper-bound planner)
    can_defer: bool = False  # True: a guard or a fallback may decide for it (its runs count them)

    def reset(self, workload: Workload) -> None:  # noqa: B027 - optional hook
        """Called before a run; planners with per-run state clear it here."""

    def forbid_mig_off(self) -> None:  # noqa: B027 - optional hook
        """Plan no GPU with MIG disabled where the planner would choose it (a node that may not change
        MIG modes). Planners that never choose it have nothing to do; as-is, MIG-off by definition,
        raises `RlmigError`."""

    @abstractmethod
    def plan(self, state: ClusterState) -> Decision:
        """The configuration to run during ``state.interval``."""


@dataclass
class PlannerRun:
    """A planner's run over a workload: the simulated result, each decision and its wall time."""

    result: RunResult
    decisions: list[Decision]
    decision_seconds: list[float]
    simulator: Simulator

    @property
    def decision_ms_p50(self) -> float:
        return float(np.percentile(self.decision_seconds, 50) * 1e3) if self.decision_seconds else 0.0

    @property
    def decision_ms_p99(self) -> float:
        return float(np.percentile(self.decision_seconds, 99) * 1e3) if self.decision_seconds else 0.0

    @property
    def guard_overrules(self) -> int:
        """Decisions where a guard kept another candidate than the planner's proposal."""
        return sum(d.overruled for d in self.decisions)

    @property
    def fallback_decisions(self) -> int:
        """Decisions made by a fallback planner instead of the planner itself."""
        return sum(d.fallback is not None for d in self.decisions)

    def decided_by(self, name: str) -> str:
        """`name`, and the fallback that decided when one did (e.g. "rl (fallback parva: ...)")."""
        reasons = sorted({d.fallback for d in self.decisions if d.fallback is not None})
        if not reasons:
            return name
        n = self.fallback_decisions
        share = "" if n == len(self.decisions) else f", {n} of {len(self.decisions)} decisions"
        return f"{name} (fallback {'; '.join(reasons)}{share})"


def serve_rates(workload: Workload) -> np.ndarray:
    """The rates a serve-mode plan must carry: each tenant's peak interval rate, shape (1, tenants)."""
    return workload.rates.max(axis=0, keepdims=True)


def check_intervals(intervals: int, workload: Workload) -> None:
    """Refuse a count of intervals (decisions to run) that `workload` does not have."""
    if not 1 <= intervals <= workload.intervals:
        raise RlmigError(f"intervals: {intervals} is not between 1 and the workload's {workload.intervals}")


def run_planner(
    workload: Workload,
    planner: Planner,
    *,
    forecaster: str = "auto",
    simulator: Simulator | None = None,
    on_decision: Callable[[int, Decision], None] | None = None,
    intervals: int | None = None,
) -> PlannerRun:
    """Run `planner` over `workload` in the simulator (see the module docstring for what it sees);
    `intervals` stops a dynamic run early (``rlmig plan`` asks for the first decision only)."""
    if intervals is not None:
        check_intervals(intervals, workload)
    simulator = simulator or Simulator(workload)
    planner.reset(workload)
    rates = workload.rates
    decisions: list[Decision] = []
    seconds: list[float] = []

    def ask(cluster: ClusterState) -> Decision:
        start = time.perf_counter()
        decision = planner.plan(cluster)
        seconds.append(time.perf_counter() - start)
        decision = replace(decision, solve_seconds=seconds[-1])
        decisions.append(decision)
        if on_decision is not None:
            on_decision(cluster.interval, decision)
        return decision

    if workload.mode == "serve":
        initial = simulator.initial_state()
        decision = ask(ClusterState(workload, simulator, 0, None, initial, rates[:0], serve_rates(workload)))
        return PlannerRun(simulator.run(decision.configuration), decisions, seconds, simulator)

    loop = DecisionLoop(workload, simulator, forecaster=forecaster, horizon=planner.horizon)
    n = workload.intervals if intervals is None else intervals
    for k in range(n):
        loop.observe(rates[max(k - 1, 0)])
        forecast = true_future(workload, k, loop.horizon) if planner.foresight else loop.forecast()
        loop.commit(ask(loop.cluster_state(loop.placed, forecast)).configuration)
    loop.observe(rates[n - 1])
    return PlannerRun(loop.result(), decisions, seconds, simulator)
