"""Serve mode: the GPUs each planner uses on a scenario, beside lower bounds and ParvaGPU's published counts.

Usage::

    from rlmig.eval.serve import lower_bounds, serve_table

    bounds = lower_bounds(load_scenario("parvagpu-slo3"))   # {"lp": 5, "slices": 4, ...}
    serve_table(evaluation).to_markdown()

Two lower bounds on the GPUs that carry every tenant's peak load, in rlmig's model (the catalog's best
SLO-feasible segments, the workload's ``slo_fraction`` and ``max_processes``):

- ``lp``: the ceiling of the optimum of the LP relaxation of the serve ILP (`rlmig.planners.ilp.plan_serve`,
  a Gilmore-Gomory pattern formulation over the maximal layouts of the base profiles), with one more
  pattern, a whole GPU with MIG disabled, so that the bound also holds for time-shared GPUs (the as-is
  baseline): a GPU time-shared by k tenants gives each at most 1/k of what it alone would get. Every
  configuration that carries the load is an integer point of this LP, so no planner can use fewer GPUs.
- ``slices``: the resource bound, max over compute slices (7 per GPU) and memory slots (8) of the sum
  over tenants of rate / (best throughput per slice, or per slot); weaker, shown as a check.

Load that no configuration can carry (no SLO-feasible segment) is left out of both bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pulp

from rlmig.eval.harness import Evaluation
from rlmig.eval.tables import TableData
from rlmig.planners import serve_rates
from rlmig.planners.ilp import layout_mixes
from rlmig.planners.mip import solve
from rlmig.simulator import Simulator
from rlmig.workload import Workload

PARVAGPU_GPUS = {
    "parvagpu-slo1": 2,
    "parvagpu-slo2": 3,
    "parvagpu-slo3": 5,
    "parvagpu-slo4": 7,
    "parvagpu-slo5": 13,
    "parvagpu-slo6": 17,
}
"""GPUs ParvaGPU reports needing for its six scenarios (ParvaGPU, SC24, arXiv 2409.14447)."""

_EPS = 1e-6


def lp_bound(workload: Workload, simulator: Simulator | None = None) -> float:
    """The optimum (fractional GPUs) of the LP relaxation of the serve ILP, whole GPUs included."""
    sim = simulator or Simulator(workload)
    rates = serve_rates(workload)[0]
    gpu = workload.gpu
    profiles = list(gpu.profiles)
    mixes = layout_mixes(gpu)
    tenants = [t for t in range(len(workload.tenants)) if rates[t] > 0]
    whole = [sim.time_shared_capacity(t, 1) for t in range(len(workload.tenants))]
    problem = pulp.LpProblem("serve_lp", pulp.LpMinimize)
    n = {m: problem.add_variable(f"n_{i}", 0) for i, m in enumerate(sorted(mixes))}
    n_whole = problem.add_variable("n_whole", 0)
    z = {
        (j, t): problem.add_variable(f"z_{j}_{t}", 0)
        for j in range(len(profiles))
        for t in tenants
        if sim.serve_rate[t, j] > 0
    }
    w = {t: problem.add_variable(f"w_{t}", 0) for t in tenants if whole[t] > 0}
    for j in range(len(profiles)):
        assigned = [z[j, t] for t in tenants if (j, t) in z]
        if assigned:
            problem += pulp.lpSum(assigned) <= pulp.lpSum(m[j] * n[m] for m in n if m[j])
    if w:
        problem += pulp.lpSum(w.values()) <= n_whole
    for t in tenants:
        served = [sim.serve_rate[t, j] * z[j, t] for j in range(len(profiles)) if (j, t) in z]
        if t in w:
            served.append(whole[t] * w[t])
        if served:  # a tenant nothing can serve is left out
            problem += pulp.lpSum(served) >= float(rates[t])
    problem += pulp.lpSum(n.values()) + n_whole
    if not solve(problem).optimal:
        raise RuntimeError(f"the serve LP relaxation did not solve ({pulp.LpStatus[problem.status]})")
    return float(pulp.value(problem.objective) or 0.0)


def slice_bound(workload: Workload, simulator: Simulator | None = None) -> float:
    """Fractional GPUs by compute slices and by memory slots, whichever is larger (see the module doc)."""
    sim = simulator or Simulator(workload)
    rates = serve_rates(workload)[0]
    compute = np.array([p.compute for p in workload.gpu.profiles], dtype=float)
    slots = np.array([p.slots for p in workload.gpu.profiles], dtype=float)
    by_compute = by_slots = 0.0
    for t, rate in enumerate(rates):
        whole = sim.time_shared_capacity(t, 1)
        per_compute = max((sim.serve_rate[t] / compute).max(), whole / workload.gpu.compute_slices)
        per_slot = max((sim.serve_rate[t] / slots).max(), whole / workload.gpu.slots)
        if rate > 0 and per_compute > 0:
            by_compute += rate / per_compute / workload.gpu.compute_slices
            by_slots += rate / per_slot / workload.gpu.slots
    return float(max(by_compute, by_slots))


def lower_bounds(workload: Workload) -> dict[str, float | int]:
    """Both bounds: fractional (``lp_value``, ``slices_value``) and in whole GPUs (``lp``, ``slices``)."""
    sim = Simulator(workload)
    lp, slices = lp_bound(workload, sim), slice_bound(workload, sim)
    return {
        "lp": math.ceil(lp - _EPS),
        "lp_value": lp,
        "slices": math.ceil(slices - _EPS),
        "slices_value": slices,
    }


def serve_table(evaluation: Evaluation, seed: int = 0) -> TableData:
    """Per serve scenario: the bounds, ParvaGPU's published count and each planner's GPUs (a star: the
    planner left some load unserved)."""
    scenarios = [s for s in evaluation.scenarios if any(r.mode == "serve" for r in evaluation.select(s))]
    columns = ["scenario", "LP bound", "slice bound", "ParvaGPU (paper)", *evaluation.planners]
    rows, bold = [], set()
    for r_index, scenario in enumerate(scenarios):
        results = {r.planner: r for r in evaluation.select(scenario, seed=seed)}
        workload = next(r.workload for r in results.values() if r.workload is not None)
        bounds = lower_bounds(workload)
        row = [
            scenario,
            f"{bounds['lp']} ({bounds['lp_value']:.2f})",
            f"{bounds['slices']} ({bounds['slices_value']:.2f})",
            str(PARVAGPU_GPUS.get(scenario, "-")),
        ]
        carried = [r.gpus for r in results.values() if r.slo_attainment >= 1 - 1e-9]
        best = min(carried) if carried else None
        for c_index, planner in enumerate(evaluation.planners, start=4):
            result = results.get(planner)
            if result is None:
                failed = any(f.scenario == scenario and f.planner == planner for f in evaluation.failures)
                row.append("failed" if failed else "-")
                continue
            full = result.slo_attainment >= 1 - 1e-9
            proven = result.run is not None and all(d.optimal for d in result.run.decisions)
            cell = f"{result.gpus:.0f}" + ("" if full else f"* ({result.slo_attainment:.3f})")
            row.append(cell + (" (optimal)" if proven and full else ""))
            if full and result.gpus == best:
                bold.add((r_index, c_index))
        rows.append(row)
    notes = [
        "GPUs used by each planner's serve-mode plan for the peak load. LP bound: ceil of the LP relaxation "
        "of the serve ILP (whole GPUs with MIG off included; its fractional optimum in brackets), a lower "
        "bound for any configuration that carries the load in rlmig's model. Slice bound: the weaker "
        "compute-slice / memory-slot bound. ParvaGPU (paper): GPUs ParvaGPU reports (SC24). "
        "* = the plan leaves load unserved (SLO attainment in brackets). (optimal): the planner proved its "
        "plan optimal (the serve ILP: fewest GPUs among MIG configurations in rlmig's model). Bold: fewest "
        "GPUs among the plans that carry the whole load. failed: the planner stopped with an error (see the "
        "failures)."
    ]
    return TableData("serve mode: GPUs used", columns, rows, right=set(columns[1:]), notes=notes, bold=bold)
