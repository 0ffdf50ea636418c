"""The hindsight bound: goodput that no planner can exceed on a whole run, even knowing the future.

An upper bound on the goodput ratio (total goodput / total arrivals) of any sequence of configurations
over a dynamic workload, from a linear relaxation of the run, solved by HiGHS. Every interval is
relaxed independently of the others except through retraining work; what is relaxed:

- GPUs are counted by profile mix (the mixes of the GPU model's maximal layouts, fractional counts
  allowed), instances per profile and tenant are fractional, and a whole GPU with MIG disabled gives a
  tenant its whole-GPU capacity (`Simulator.time_shared_capacity` with one sharer; k sharers get at
  most 1/k of it each, so a fraction of a GPU relaxes sharing);
- no downtime: every instance works the whole interval, whatever changed;
- served load s ≤ the arrival rate and ≤ the capacity of the tenant's inference instances;
- accuracy: a window starts with at most the post-retraining accuracy minus the drift (the accuracy
  never exceeds the post-retraining value), and reaches the post-retraining value for a share c of an
  interval only once the window's retraining work so far covers that share of the job's samples
  (c ≤ work so far / samples: before completion the true share is 0, after it 1 ≤ work / samples);
  goodput ≤ Δ·(l·s + g·min(s, λ·c)) with l the drifted level and g the gain, which over-counts every
  feasible run.

Each of these only enlarges the set of runs, so the LP optimum bounds the goodput of every planner
(`proven` when HiGHS proves the LP optimal). How loose it is shows as the gap to the best plan found.

Usage::

    bound = hindsight_bound(load_workload("eval/scenarios/azure-retrain.yaml"))
    print(bound.upper_bound, bound.proven)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pulp

from rlmig.errors import RlmigError
from rlmig.planners.ilp import layout_mixes
from rlmig.planners.mip import solve
from rlmig.simulator import Simulator
from rlmig.workload import Workload


@dataclass(frozen=True)
class Bound:
    """An upper bound on a run's goodput: as a ratio of the arrivals, in goodput, whether proven."""

    upper_bound: float  # goodput ratio no planner can exceed
    upper_goodput: float
    arrivals: float
    proven: bool
    status: str
    solve_seconds: float


def hindsight_bound(
    workload: Workload, simulator: Simulator | None = None, *, time_limit: float | None = None
) -> Bound:
    """The hindsight bound of a dynamic workload (see the module docstring)."""
    if workload.mode != "dynamic":
        raise RlmigError(
            f"{workload.name}: the hindsight bound is for dynamic workloads, not {workload.mode}"
        )
    sim = simulator or Simulator(workload)
    start = time.perf_counter()
    gpu, dyn = workload.gpu, sim.dynamics
    rates = workload.rates
    dt = workload.interval_s
    n_tenants, n_profiles = len(workload.tenants), len(gpu.profiles)
    mixes = sorted(layout_mixes(gpu))
    whole = np.array([sim.time_shared_capacity(t, 1) for t in range(n_tenants)])
    problem = pulp.LpProblem("hindsight_bound", pulp.LpMaximize)
    names = iter(range(10**9))

    def var(high: float | None = None) -> pulp.LpVariable:
        return problem.add_variable(f"v{next(names)}", 0, high)

    goodput_terms = []
    work: dict[int, pulp.LpAffineExpression] = {}  # per tenant, retraining work so far in its window
    for k in range(workload.intervals):
        starts = dyn.window_starts(k)
        n_mix = [var() for _ in mixes]
        n_whole = var()
        problem += pulp.lpSum(n_mix) + n_whole <= workload.gpu_count
        shared = []
        used: list[list[pulp.LpVariable]] = [[] for _ in range(n_profiles)]
        for t in range(n_tenants):
            lam = float(rates[k, t])
            inference = {j: var() for j in range(n_profiles) if sim.serve_rate[t, j] > 0}
            for j, z in inference.items():
                used[j].append(z)
            w = var() if whole[t] > 0 else None
            if w is not None:
                shared.append(w)
            served = var(lam)
            capacity = pulp.lpSum(sim.serve_rate[t, j] * z for j, z in inference.items())
            problem += served <= capacity + (whole[t] * w if w is not None else 0)
            if not sim.has_retraining[t]:
                goodput_terms.append(dt * served)
                continue
            training = {j: var() for j in range(n_profiles) if sim.train_rate[t, j] > 0}
            for j, r in training.items():
                used[j].append(r)
            if training:
                problem += pulp.lpSum(training.values()) <= 1  # one retraining instance per tenant
            this = pulp.lpSum(dt * sim.train_rate[t, j] * r for j, r in training.items())
            work[t] = this if starts[t] or t not in work else work[t] + this
            a1, drift = float(sim.accuracy_after[t]), float(sim.drift[t])
            level = max(a1 - drift, 0.0)
            share = var(1.0)  # share of the interval at the post-retraining accuracy
            samples = float(sim.samples[t])
            if samples > 0:
                problem += samples * share <= work[t]
            lifted = var()
            problem += lifted <= served
            problem += lifted <= lam * share
            goodput_terms.append(dt * (level * served + (a1 - level) * lifted))
        problem += pulp.lpSum(shared) <= n_whole
        for j in range(n_profiles):
            if used[j]:
                problem += pulp.lpSum(used[j]) <= pulp.lpSum(
                    m[j] * n for m, n in zip(mixes, n_mix, strict=True)
                )
    problem += pulp.lpSum(goodput_terms)
    result = solve(problem, time_limit=time_limit)
    if not result.optimal:  # an LP stopped early has no valid bound
        raise RlmigError(f"the bound's LP was not solved to optimality ({result.status})")
    goodput = max(float(pulp.value(problem.objective) or 0.0), 0.0)
    arrivals = float(rates.sum()) * dt
    ratio = goodput / arrivals if arrivals else 1.0
    return Bound(ratio, goodput, arrivals, True, result.status, time.perf_counter() - start)
