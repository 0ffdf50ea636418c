"""The ILP oracle: exact MIG planning with PuLP (HiGHS by default, CBC when HiGHS is absent).

Serve mode (MIG-serving's and ParvaGPU's problem: the fewest GPUs that carry every tenant's load within
its SLO) is a pattern formulation in the manner of Gilmore & Gomory's cutting stock (Oper. Res. 1961):
an integer count of GPUs per profile mix (the mixes of the GPU model's maximal layouts, placements
included, so only mixes that really fit are counted) and an integer count of instances of each profile
per tenant, each serving with the tenant's best SLO-feasible segment (MPS included). GPUs are
interchangeable, so the aggregate is exact; load no configuration can carry is reported as unmet.
Serve plans use MIG instances only, whose segments are measured rows where the catalog has them (a
whole GPU with MIG off has no measurement). Two families of valid cuts, per tenant the fewest compute
slices and the fewest memory slots of any integer set of instances carrying its rate
(`_fewest_slices`), close most of the LP's looseness, and the solve stops once the bound proves the
GPU count (an absolute gap below one GPU): 176 to 198 tenants are proven in about 2 s
(`benchmarks/serve_scale.py`).

Dynamic mode is MIGRator's problem (arXiv 2407.13126): choose each GPU's layout and each instance's
owner so as to maximise goodput, where a changed instance pays the reconfiguration downtime and a
retraining job lifts its tenant's accuracy from the moment it completes to the end of its window. One
decision plans over steps (`plan_steps`): the decided interval, then, by default (window-aware), steps
of 1, 1, 2, 2, 4, ... intervals to the end of the longest current retraining window, so that a job
that pays off only after several intervals is valued (the myopic variant, ``horizon=k``, plans k
one-interval steps).

- The decided interval is modelled per GPU: a maximal layout each, a binary per owned instance in
  place (kept: same GPU, placement, tenant and role, working the whole interval), and per (profile,
  tenant, role) an integer count of changed instances (working 1 - downtime/Δ of it). Any free instance
  of a profile serves any owner alike, so the counts are exact and the model has no GPU symmetry in
  its owners; `DynamicModel.owner_of` places the counts on free instances.
- Later steps are aggregated, as in the serve model: integer GPUs per profile mix, binary retraining
  instances, continuous inference instances (a fluid approximation of packing that only values the
  future: the decision is the first step's), unchanged up to as many as the step before had.
- A retraining job runs on one instance per step; it completes when its work reaches its samples (a
  binary per step), the seconds after completion e = (work - samples) / rate of its instance under a
  big-M switch. Goodput = min(λ, C) × (level × L + gain × seconds after completion); the product of
  min(λ, C) with those seconds is bounded above by McCormick's envelope, exact except in the step
  where a job completes while capacity falls short of the load.
- A window start inside the plan (at most one per tenant: the plan is cut short otherwise) sets the
  next window's accuracy to post-retraining minus drift when the job completed and to the current
  level minus drift otherwise, both cases under a big-M switch on the completion binary.
- Forecast error: goodput is the expectation over rate cases (`DynamicModel.rate_cases`): the
  forecast plus quantiles of the recent interval-to-interval changes (`rate_scenarios`), so headroom
  for a bursty tenant is worth what it is expected to serve, and a burst case (`BURST`: twice the
  forecast, one interval in fifty) that no history predicts, so that spare capacity goes to the
  tenants with the least headroom instead of staying idle.

The objective the planner reports is the solver's: expected goodput over the planned steps on the
forecast (requests), not the simulated goodput of the run. With one step it equals the simulator's
goodput of the plan averaged over the rate cases (tested against brute force without the burst case,
and with it) except when a job completes in the interval under a capacity shortfall (then it is an
upper bound). Ties break towards fewer changed instances, then more inference capacity (spare instances
serve a burst beyond every case weighed; a node brought up changes nothing that runs).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pulp

from rlmig.configuration import Configuration, GpuConfig, Owner, settle
from rlmig.errors import RlmigError
from rlmig.geometry import GpuModel, Instance, Layout
from rlmig.loop import predicted_goodput
from rlmig.planners.base import ClusterState, Decision, Planner, pad_forecast
from rlmig.planners.greedy import GreedyPlanner
from rlmig.planners.mip import SolveResult, solve
from rlmig.planners.parva import ParvaPlanner
from rlmig.simulator import INFERENCE, RETRAINING, Simulator
from rlmig.workload import Workload

_ROLE_NAMES = {INFERENCE: "inference", RETRAINING: "retraining"}

Burst = tuple[float, float]
"""(probability, factor): an interval's rate is `factor` times the forecast with that probability."""

BURST: Burst = (0.02, 2.0)
"""The default burst case of the dynamic model: a load spike no forecast sees coming (a step, a
spike) doubles the rate in one interval of fifty. It gives capacity beyond the forecast a value (2% of
that of serving at the forecast, up to twice the forecast), so that spare instances go to the tenants
with the least headroom instead of staying idle. A modelling prior, not a measurement (the shipped
Azure trace, 57 minutes, is too short to estimate how often a rate doubles); 5% was tried and cost
azure-retrain 0.007 of goodput (see the closing note of issue 15)."""


def _role(owner: Owner) -> int:
    return RETRAINING if owner.role == "retraining" else INFERENCE


def _value(var: pulp.LpVariable | pulp.LpAffineExpression | float) -> float:
    value = pulp.value(var)
    return float(value) if value is not None else 0.0


def maximal_layouts(gpu: GpuModel) -> list[Layout]:
    """The layouts the oracle chooses among: the maximal layouts of the base profiles."""
    return gpu.layouts(maximal=True)


def mix_of(layout: Layout) -> tuple[int, ...]:
    """A layout's profile mix: how many instances of each of its GPU model's profiles it holds."""
    counts = layout.counts()
    return tuple(counts.get(p, 0) for p in layout.gpu.profiles)


def layout_mixes(gpu: GpuModel) -> dict[tuple[int, ...], Layout]:
    """The distinct profile mixes of the maximal layouts, each with the first layout that has it: what a
    GPU can hold, when GPUs are counted by mix (the serve ILP, its LP bound, the hindsight bound)."""
    mixes: dict[tuple[int, ...], Layout] = {}
    for layout in maximal_layouts(gpu):
        mixes.setdefault(mix_of(layout), layout)
    return mixes


# -- serve mode ---------------------------------------------------------------------------------


def _containing_layout(layouts: list[Layout], instances: tuple[Instance, ...]) -> Layout:
    """The layout among `layouts` holding the most of `instances` (all of them when one can)."""
    wanted = set(instances)
    return max(layouts, key=lambda lay: len(wanted.intersection(lay.instances)))


_UNMET_TOLERANCE = 1e-6
"""How much more unmet load (relative to the rates) the serve ILP's second stage allows than the first's."""


def _fewest_slices(units: list[tuple[int, float]], rate: float, most: int) -> int | None:
    """The fewest slices of any multiset of `units` ((slices, req/s) each, any number of each) whose
    req/s sum to at least `rate` (None beyond `most` slices): an unbounded knapsack by dynamic
    programming over the slices."""
    if rate <= 0:
        return 0
    best = [0.0] * (most + 1)  # the most req/s within s slices
    for s in range(1, most + 1):
        best[s] = max([best[s - 1], *(best[s - c] + r for c, r in units if c <= s)])
        if best[s] >= rate:
            return s
    return None


def plan_serve(
    simulator: Simulator,
    rates: np.ndarray,
    *,
    time_limit: float | None = None,
    gap: float = 0.0,
    start: Configuration | None = None,
) -> tuple[Configuration, SolveResult, float]:
    """The fewest GPUs (at most the workload's) carrying `rates` (req/s per tenant), load that cannot
    be carried left unmet. `start` (a heuristic's plan) is the solver's first incumbent, so a binding
    time limit returns at least as good a plan. Returns the configuration, how the solve ended, and
    the GPUs used."""
    workload = simulator.workload
    gpu = workload.gpu
    budget = workload.gpu_count
    profiles = list(gpu.profiles)
    layouts = maximal_layouts(gpu)
    mixes = layout_mixes(gpu)
    tenants = range(len(workload.tenants))
    cap = simulator.serve_rate
    pairs = [(j, t) for j in range(len(profiles)) for t in tenants if cap[t, j] > 0 and rates[t] > 0]

    def model(unmet_bound: float | None) -> tuple[pulp.LpProblem, dict, dict, dict]:
        problem = pulp.LpProblem("serve", pulp.LpMinimize)
        n = {m: problem.add_variable(f"n_{i}", 0, budget, cat="Integer") for i, m in enumerate(mixes)}
        z = {(j, t): problem.add_variable(f"z_{j}_{t}", 0, None, cat="Integer") for j, t in pairs}
        u = {t: problem.add_variable(f"u_{t}", 0, float(rates[t])) for t in tenants}
        for j in range(len(profiles)):
            assigned = [z[j, t] for t in tenants if (j, t) in z]
            if assigned:
                problem += pulp.lpSum(assigned) <= pulp.lpSum(m[j] * n[m] for m in mixes if m[j])
        for t in tenants:
            served = pulp.lpSum(cap[t, j] * z[j, t] for j in range(len(profiles)) if (j, t) in z)
            problem += served + u[t] >= float(rates[t])
        problem += pulp.lpSum(n.values()) <= budget
        if unmet_bound is not None and unmet_bound <= 1e-9:
            # Every tenant served in full: its instances hold at least the fewest compute slices (and
            # memory slots) of any integer set of instances carrying its rate: valid cuts, which close
            # most of the LP's looseness (fractional instances)
            for t in tenants:
                mine = [j for j in range(len(profiles)) if (j, t) in z]
                for size, full in ((lambda p: p.compute, gpu.compute_slices), (lambda p: p.slots, gpu.slots)):
                    units = [(size(profiles[j]), float(cap[t, j])) for j in mine]
                    # (a tenant may fall short by the stage's tolerance: the cut asks for a little less)
                    least = _fewest_slices(units, float(rates[t]) * (1 - 2 * _UNMET_TOLERANCE), full * budget)
                    if least:
                        problem += pulp.lpSum(size(profiles[j]) * z[j, t] for j in mine) >= least
        shortfall = pulp.lpSum(u[t] * (1.0 / float(rates[t])) for t in tenants if rates[t] > 0)
        if unmet_bound is None:
            problem += shortfall
        else:
            problem += shortfall <= unmet_bound + _UNMET_TOLERANCE
            problem += pulp.lpSum(n.values())
        return problem, n, z, u

    def start_of(config: Configuration, n: dict, z: dict) -> dict[pulp.LpVariable, float]:
        """`config` as values of the model's integer variables: each used MIG GPU counts as the mix of
        a maximal layout holding its instances, each inference instance as one of its tenant's."""
        mix_count = dict.fromkeys(n, 0)
        owned = dict.fromkeys(z, 0)
        for g in config.gpus:
            if not (g.mig_enabled and g.used):
                continue
            layout = _containing_layout(layouts, g.layout.instances)
            mix_count[mix_of(layout)] += 1
            for inst, owner in g.items():
                if owner is None or owner.role != "inference" or inst not in layout.instances:
                    continue
                key = (simulator.profile_index[inst.profile.id], simulator.tenant_index[owner.tenant])
                if key in owned:
                    owned[key] += 1
        values: dict[pulp.LpVariable, float] = {n[m]: float(c) for m, c in mix_count.items()}
        values.update({z[k]: float(c) for k, c in owned.items()})
        return values

    # Lexicographic: first the least unmet load (relative to each tenant's rate), then the fewest GPUs;
    # the first stage's solution starts the second (it is feasible there by construction).
    first, n1, z1, _ = model(None)
    first_start = start_of(start, n1, z1) if start is not None else None
    first_result = solve(first, time_limit=time_limit, gap=gap, start=first_start)
    least_unmet = max(0.0, _value(first.objective))
    problem, n, z, _u = model(least_unmet)
    second_start = {n[m]: round(_value(n1[m])) for m in mixes}
    second_start.update({z[k]: round(_value(z1[k])) for k in z})
    # GPUs are whole: a bound within one GPU of the plan proves its count, so the solve stops there
    result = solve(problem, time_limit=time_limit, gap=gap, start=second_start, abs_gap=1 - 1e-6)
    result = SolveResult(
        result.optimal and first_result.optimal,
        None if result.gap is None or first_result.gap is None else max(result.gap, first_result.gap),
        result.status,
    )
    counts = {m: round(_value(var)) for m, var in n.items()}
    left = {(j, t): round(_value(var)) for (j, t), var in z.items()}
    gpus: list[GpuConfig] = []
    for mix, count in counts.items():
        for _ in range(count):
            layout = mixes[mix]
            owners: dict[Instance, Owner] = {}
            for inst in layout.instances:
                j = simulator.profile_index[inst.profile.id]
                tenant = next((t for t in tenants if left.get((j, t), 0) > 0), None)
                if tenant is not None:
                    left[j, tenant] -= 1
                    owners[inst] = Owner(workload.tenants[tenant].name)
            gpus.append(settle(layout, owners, gpu.empty_layout()))  # no idle instance is created
    gpus.extend(GpuConfig(gpu.empty_layout(), ()) for _ in range(budget - len(gpus)))
    return Configuration(gpu, tuple(gpus)), result, float(sum(counts.values()))


# -- dynamic mode -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedChoices:
    """Choices of the first planned interval that an expert query must respect (DAgger's partial states):
    per GPU a layout, and per (GPU, instance) an owner (None: idle)."""

    layouts: Mapping[int, Layout] = field(default_factory=dict)
    owners: Mapping[tuple[int, Instance], Owner | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ExpertChoices:
    """An expert answer for interval `interval`: per GPU the layout chosen (maximal, or the fixed one)
    and the owner of each owned instance, with the resulting decision."""

    interval: int
    layouts: tuple[Layout, ...]
    owners: Mapping[tuple[int, Instance], Owner]
    decision: Decision


@dataclass(frozen=True)
class PlanStep:
    """One step of a plan: `length` intervals from `offset` intervals after the decided one."""

    offset: int
    length: int


def _next_boundaries(state: ClusterState) -> dict[int, int]:
    """Per retraining tenant, the intervals from ``state.interval`` to its next window start after it."""
    dyn = state.simulator.dynamics
    phase = state.interval % np.maximum(dyn.window_intervals, 1)
    return {t: int(dyn.window_intervals[t] - phase[t]) for t in np.flatnonzero(dyn.has_retraining).tolist()}


def plan_steps(state: ClusterState, horizon: int | None, max_span: int = 30) -> list[PlanStep]:
    """The steps the dynamic model plans over from ``state``.

    `horizon` given (the myopic variant): that many one-interval steps. None (window-aware): the decided
    interval alone, then steps of 1, 1, 2, 2, 4, 4, ... intervals up to the end of the longest current
    retraining window, cut at every window start so that none falls inside a step. Either way the plan
    spans at most `max_span` intervals, stops at the run's end, and holds at most one window start of
    each tenant (so each tenant's accuracy after it has two cases only)."""
    boundaries = _next_boundaries(state)
    windows = state.simulator.dynamics.window_intervals
    left = max(1, state.workload.intervals - state.interval)
    cap = min([max_span, left, *(b + int(windows[t]) for t, b in boundaries.items())])
    if horizon is not None:
        return [PlanStep(h, 1) for h in range(max(1, min(horizon, cap)))]
    span = max(1, min(cap, max(boundaries.values(), default=1)))
    cuts = {0, 1, span} | {b for b in boundaries.values() if b < span}
    edge, length, repeat = 1, 1, 0
    while edge < span:  # steps of 1, 1, 2, 2, 4, 4, ... intervals
        cuts.add(edge)
        edge += length
        repeat += 1
        if repeat == 2:
            length, repeat = 2 * length, 0
    edges = sorted(c for c in cuts if c <= span)
    return [PlanStep(a, b - a) for a, b in itertools.pairwise(edges)]


_Key = tuple[int, int, int]  # (profile index, tenant, role)


class DynamicModel:
    """The dynamic-mode MILP for one decision over `steps` (see the module docstring)."""

    def __init__(
        self,
        state: ClusterState,
        steps: Sequence[PlanStep],
        fixed: FixedChoices | None = None,
        spread: np.ndarray | None = None,
        hint: Configuration | None = None,
        burst: Burst | None = None,
        mig_off: bool = False,
    ) -> None:
        self.state = state
        self.sim = state.simulator
        self.workload = state.workload
        self.gpu = self.workload.gpu
        self.steps = list(steps)
        self.fixed = fixed or FixedChoices()
        self.dyn = self.sim.dynamics  # downtime, windows: the simulator's terms (rlmig.dynamics)
        self.dt = self.dyn.interval_s
        span = self.steps[-1].offset + self.steps[-1].length
        future = pad_forecast(np.asarray(state.forecast, dtype=float), span)
        self.rates = np.array([future[s.offset : s.offset + s.length].mean(axis=0) for s in self.steps])
        self.seconds = [s.length * self.dt for s in self.steps]
        n_tenants = len(self.workload.tenants)
        self.spread = np.zeros((n_tenants, 1)) if spread is None else np.asarray(spread, dtype=float)
        self.burst = burst
        self.problem = pulp.LpProblem("dynamic", pulp.LpMaximize)
        self._names = itertools.count()
        # MIG off (`mig_off`): a GPU may instead run MIG disabled, one tenant serving on the whole GPU
        # (`Simulator.time_shared_capacity` with one sharer: all its SMs, 108 where 7g has 98 on
        # A100s). It is the pseudo-profile `whole` = len(profiles): inference only, one per GPU.
        n_profiles = len(self.gpu.profiles)
        n_tenants = len(self.workload.tenants)
        # Without `mig_off` no GPU changes its MIG mode: those MIG-disabled in place stay so.
        current = state.current
        self.stays_off = [
            g
            for g in range(self.workload.gpu_count)
            if current is not None and not current.gpus[g].mig_enabled
        ]
        whole_rate = [self.sim.time_shared_capacity(t, 1) for t in range(n_tenants)]
        self.turns_off = mig_off  # whether a GPU may be turned MIG off
        has_whole = (mig_off and any(r > 0 for r in whole_rate)) or bool(self.stays_off)
        self.whole = n_profiles if has_whole else None
        self.serve_rate = (
            np.column_stack([self.sim.serve_rate, whole_rate]) if has_whole else self.sim.serve_rate
        )
        self.train_rate = (
            np.column_stack([self.sim.train_rate, np.zeros(n_tenants)]) if has_whole else self.sim.train_rate
        )
        self.profiles = range(n_profiles + (1 if has_whole else 0))
        self.layout_vars: dict[int, dict[Layout, pulp.LpVariable]] = {}
        self.off_vars: dict[int, pulp.LpVariable] = {}  # per GPU that may run MIG disabled: whether it does
        # current owners kept: (GPU, instance), or (GPU, None) for a MIG-disabled GPU's one tenant
        self.keep: dict[tuple[int, Instance | None], tuple[_Key, pulp.LpVariable]] = {}
        self.new: list[dict[_Key, pulp.LpVariable]] = []  # per step: changed instances (step 0) or all
        self.kept: list[dict[_Key, pulp.LpVariable]] = [{}]  # per step >= 1: instances unchanged since
        self.mix_vars: list[list[pulp.LpVariable]] = [[]]  # per step >= 1: GPUs per profile mix
        self.reserved: dict[_Key, int] = {}  # fixed owners on instances that change
        self.goodput: dict[tuple[int, int], pulp.LpVariable] = {}
        self.binaries: list[pulp.LpVariable] = []  # retraining completion binaries
        # The start's configuration (by default the one in place): its layouts stay choices, and the
        # owners of changed instances follow its placement.
        self.hint: Configuration | None = hint if hint is not None else state.current
        self._build()

    def _var(self, low: float, high: float | None, cat: str = "Continuous") -> pulp.LpVariable:
        return self.problem.add_variable(f"v{next(self._names)}", low, high, cat=cat)

    def _running(self, t: int) -> list[bool]:
        """Per step, whether tenant t has a retraining job to run (its current one, or a fresh one
        after a window start)."""
        running = bool(self.state.tenants.active[t])
        flags = []
        for step in self.steps:
            running = running or bool(self.dyn.window_starts(self.state.interval + step.offset)[t])
            flags.append(running)
        return flags

    def _keys(self, k: int) -> list[_Key]:
        """The (profile, tenant, role) triples that can own an instance in step k: inference where the
        tenant has a segment, retraining where its job runs (or, in step 0, where it has an instance)."""
        keys = []
        may_retrain = self.state.may_retrain() if k == 0 else None
        for t in range(len(self.workload.tenants)):
            running = bool(may_retrain[t]) if may_retrain is not None else self.running[t][k]
            for j in self.profiles:
                if self.serve_rate[t, j] > 0:
                    keys.append((j, t, INFERENCE))
                if running and self.train_rate[t, j] > 0:
                    keys.append((j, t, RETRAINING))
        return keys

    def _build(self) -> None:
        sim, gpu = self.sim, self.gpu
        n_gpus, n_tenants = self.workload.gpu_count, len(self.workload.tenants)
        layouts = maximal_layouts(gpu)
        mixes = list(layout_mixes(gpu))
        if self.whole is not None:  # a MIG-disabled GPU is one more mix: one whole-GPU "instance"
            mixes = [(*m, 0) for m in mixes] + [(0,) * len(gpu.profiles) + (1,)]
        most = [max(m[j] for m in mixes) * n_gpus for j in self.profiles]
        self.running = [self._running(t) for t in range(n_tenants)]
        first = self.state.current is None  # the run's first configuration is in place from the start

        # Step 0, per GPU: a layout; an owned instance of the configuration in place is kept (same
        # owner, same place) or not; changed instances are counted per (profile, tenant, role): any
        # free instance of a profile serves any owner alike, so the counts are exact.
        slots = [pulp.LpAffineExpression() for _ in self.profiles]  # instances of each profile
        for g in range(n_gpus):
            choices = [self.fixed.layouts[g]] if g in self.fixed.layouts else self._distinct(g, layouts)
            y = {lay: self._var(0, 1, "Binary") for lay in choices}
            self.layout_vars[g] = y
            off: list[pulp.LpVariable] = []
            if (
                self.whole is not None
                and g not in self.fixed.layouts
                and (self.turns_off or g in self.stays_off)
            ):
                off = [self._var(0, 1, "Binary")]
                self.off_vars[g] = off[0]
                slots[self.whole] += off[0]
                if not self.turns_off:
                    self.problem += off[0] == 1
            self.problem += pulp.lpSum([*y.values(), *off]) == 1
            for lay, var in y.items():
                for inst in lay.instances:
                    slots[sim.profile_index[inst.profile.id]] += var
        keys0 = set(self._keys(0))
        if self.state.current is not None:
            for placed in self.state.current.placed():
                if placed.owner is None:
                    continue
                g, inst = placed.gpu, placed.instance
                key = (
                    sim.profile_index[inst.profile.id],
                    sim.tenant_index[placed.owner.tenant],
                    _role(placed.owner),
                )
                hosting = [v for lay, v in self.layout_vars[g].items() if inst in lay.instances]
                if key not in keys0 or not hosting:
                    continue
                if self.fixed.owners.get((g, inst), placed.owner) != placed.owner:
                    continue
                var = self._var(0, 1, "Binary")
                self.problem += var <= pulp.lpSum(hosting)
                if (g, inst) in self.fixed.owners:
                    self.problem += var == 1
                self.keep[g, inst] = (key, var)
            for g, gpu_config in enumerate(self.state.current.gpus):
                # a MIG-disabled GPU of one tenant is kept (unchanged) when the GPU stays MIG-disabled
                if g in self.off_vars and len(gpu_config.time_shared) == 1:
                    key = (self.whole, sim.tenant_index[gpu_config.time_shared[0]], INFERENCE)
                    if key in keys0:
                        var = self._var(0, 1, "Binary")
                        self.problem += var <= self.off_vars[g]
                        self.keep[g, None] = (key, var)
        idle = [0] * len(self.profiles)
        for (g, inst), owner in self.fixed.owners.items():
            hosting = [v for lay, v in self.layout_vars[g].items() if inst in lay.instances]
            if not hosting:
                raise RlmigError(f"fixed owner of {inst} on GPU {g}: no layout allowed there holds it")
            self.problem += pulp.lpSum(hosting) == 1
            if (g, inst) in self.keep:
                continue
            j = sim.profile_index[inst.profile.id]
            if owner is None:
                idle[j] += 1
                continue
            key = (j, sim.tenant_index[owner.tenant], _role(owner))
            if key not in keys0:
                raise RlmigError(
                    f"fixed owner {owner} cannot use this instance (no segment or no retraining)"
                )
            self.reserved[key] = self.reserved.get(key, 0) + 1
        new0 = {
            key: self._var(self.reserved.get(key, 0), 1 if key[2] == RETRAINING else most[key[0]], "Integer")
            for key in sorted(keys0)
        }
        self.new.append(new0)
        for j in self.profiles:
            used = [v for key, v in new0.items() if key[0] == j]
            used += [v for (key, v) in self.keep.values() if key[0] == j]
            if used:
                self.problem += pulp.lpSum(used) <= slots[j] - idle[j]
        owned0: dict[_Key, pulp.LpAffineExpression] = {
            key: pulp.LpAffineExpression(v) for key, v in new0.items()
        }
        for key, var in self.keep.values():
            owned0.setdefault(key, pulp.LpAffineExpression())
            owned0[key] += var
        self.owned: list[dict[_Key, pulp.LpAffineExpression]] = [owned0]

        # Steps 1 ..: GPUs counted per profile mix, instances per (profile, tenant, role); an instance
        # is unchanged up to as many as the previous step had of its kind.
        for k in range(1, len(self.steps)):
            n = [self._var(0, n_gpus) for _ in mixes]
            self.mix_vars.append(n)
            self.problem += pulp.lpSum(n) <= n_gpus
            if self.whole is not None and not self.turns_off:  # modes stay: as many MIG-off GPUs as now
                self.problem += n[-1] == len(self.off_vars)
            z = {
                key: self._var(0, 1, "Binary") if key[2] == RETRAINING else self._var(0, most[key[0]])
                for key in self._keys(k)
            }
            kept = {}
            for key, var in z.items():
                before = self.owned[k - 1].get(key)
                if before is None:
                    continue
                kept[key] = self._var(0, None)
                self.problem += kept[key] <= var
                self.problem += kept[key] <= before
            for j in self.profiles:
                used = [v for key, v in z.items() if key[0] == j]
                if used:
                    self.problem += pulp.lpSum(used) <= pulp.lpSum(
                        m[j] * v for m, v in zip(mixes, n, strict=True)
                    )
            self.new.append(z)
            self.kept.append(kept)
            self.owned.append({key: pulp.LpAffineExpression(v) for key, v in z.items()})

        for t in range(n_tenants):
            for k in range(len(self.steps)):
                jobs = [v for key, v in self.owned[k].items() if key[1] == t and key[2] == RETRAINING]
                if len(jobs) > 1:
                    self.problem += pulp.lpSum(jobs) <= 1  # one retraining instance per job
            self._tenant_goodput(t, first)

        # Objective: goodput, then fewer changes and more capacity (tie-breaking). Bringing a node up
        # (nothing in place) changes nothing that runs.
        arrivals = max(float((self.rates.sum(axis=1) * np.array(self.seconds)).sum()), 1.0)
        bring_up = self.state.current is None
        changes = (0 if bring_up else pulp.lpSum(new0.values())) + pulp.lpSum(
            self.new[k][key] - v for k in range(1, len(self.steps)) for key, v in self.kept[k].items()
        )
        # Inference capacity counts a little for itself (spare capacity serves load beyond any case the
        # model weighs: 1e-5 of a request per request/s-second), owned retraining instances a little
        # against (a job's instance is worth only its progress).
        # A MIG-disabled GPU counts here as its full-GPU instance would (what it serves beyond counts
        # in the goodput, the burst case included), and each costs a little (a mode change resets the
        # GPU): only goodput turns MIG off.
        full = sim.profile_index[sim.full_profile.id]
        capacity = pulp.lpSum(
            self.seconds[k] * float(self.serve_rate[key[1], full if key[0] == self.whole else key[0]]) * e
            for k, step in enumerate(self.owned)
            for key, e in step.items()
            if key[2] == INFERENCE
        )
        off_gpus = pulp.lpSum(self.off_vars.values())
        retraining = pulp.lpSum(e for step in self.owned for key, e in step.items() if key[2] == RETRAINING)
        self.goodput_expr = pulp.lpSum(self.goodput.values())
        self.problem += (
            self.goodput_expr
            - 1e-6 * arrivals * changes
            + 1e-5 * capacity
            - 1e-8 * arrivals * retraining
            - 1e-7 * arrivals * off_gpus
        )

    # -- per-tenant terms -------------------------------------------------------------------------

    def _distinct(self, g: int, layouts: list[Layout]) -> list[Layout]:
        """The layouts GPU g may take, one per profile mix and set of instances it keeps of those in
        place (or fixed), that set maximal: the others do no better in any respect the model counts."""
        relevant = {inst for (gg, inst) in self.fixed.owners if gg == g}
        for config in (self.state.current, self.hint):
            if config is not None:
                relevant |= {i for i, owner in config.gpus[g].items() if owner is not None}
        first: dict[tuple[tuple[int, ...], frozenset[Instance]], Layout] = {}
        for lay in layouts:
            first.setdefault((mix_of(lay), frozenset(relevant.intersection(lay.instances))), lay)
        return [
            lay
            for (mix, held), lay in first.items()
            if not any(other_mix == mix and held < other for other_mix, other in first)
        ]

    def rate_cases(self, k: int, t: int) -> list[tuple[float, float]]:
        """Tenant t's arrival rate in step k as (rate, probability) cases: the forecast plus each
        offset of `spread` (equally likely), and with `burst` = (p, x) also x times the forecast with
        probability p (the others scaled by 1 - p)."""
        lam = float(self.rates[k, t])
        offsets = self.spread[t]
        share = 1.0 if self.burst is None else 1.0 - self.burst[0]
        cases = [(max(lam + float(o), 0.0), share / len(offsets)) for o in offsets]
        if self.burst is not None:
            cases.append((self.burst[1] * lam, self.burst[0]))
        return cases

    def _uptime(self, k: int, first: bool) -> float:
        """The share of step k a changed instance works (the downtime is paid once per step)."""
        if k == 0 and first:
            return 1.0
        return 1.0 - self.dyn.downtime_s / self.seconds[k]

    def _per_profile(self, k: int, t: int, r: int, first: bool) -> dict[int, pulp.LpAffineExpression]:
        """Per profile j, tenant t's instances in role r during step k, a changed one counted for the
        share of the step it works."""
        up = self._uptime(k, first)
        out: dict[int, pulp.LpAffineExpression] = {}
        if k == 0:
            for (j, tt, rr), var in self.keep.values():
                if (tt, rr) == (t, r):
                    out.setdefault(j, pulp.LpAffineExpression())
                    out[j] += var
            for (j, tt, rr), var in self.new[0].items():
                if (tt, rr) == (t, r):
                    out.setdefault(j, pulp.LpAffineExpression())
                    out[j] += up * var
            return out
        for (j, tt, rr), var in self.new[k].items():
            if (tt, rr) == (t, r):
                kept = self.kept[k].get((j, tt, rr))
                out[j] = up * var + ((1 - up) * kept if kept is not None else 0)
        return out

    def _tenant_goodput(self, t: int, first: bool) -> None:
        sim, state, dyn = self.sim, self.state, self.dyn
        K = len(self.steps)
        goodput = [self._var(0, None) for _ in range(K)]
        for k in range(K):
            self.goodput[t, k] = goodput[k]
        capacity = [
            pulp.lpSum(
                self.serve_rate[t, j] * e for j, e in self._per_profile(k, t, INFERENCE, first).items()
            )
            for k in range(K)
        ]
        if not sim.has_retraining[t]:
            for k in range(K):
                served = []
                for rate, weight in self.rate_cases(k, t):
                    part = self._var(0, self.seconds[k] * rate)
                    self.problem += part <= self.seconds[k] * capacity[k]
                    served.append(weight * part)
                self.problem += goodput[k] <= pulp.lpSum(served)
            return

        a1, drift, samples = float(sim.accuracy_after[t]), float(sim.drift[t]), float(sim.samples[t])
        starts = [dyn.window_starts(state.interval + s.offset)[t] for s in self.steps]
        fresh = bool(starts[0])
        accuracy = float(state.tenants.accuracy[t])
        level_cases: list[tuple[float, pulp.LpVariable | pulp.LpAffineExpression | None]] = [
            (max(accuracy - drift, 0.0) if fresh else accuracy, None)
        ]
        remaining = samples if fresh else samples - float(state.tenants.progress[t])
        running = fresh or bool(state.tenants.active[t])
        done_prev: pulp.LpVariable | float = 0.0 if running else 1.0
        gain_free = not running  # the current job completed before: the level is already the post one
        work = pulp.LpAffineExpression()
        for k in range(K):
            seconds = self.seconds[k]
            if k > 0 and starts[k]:
                # A window start (at most one inside the plan): the model drifts from the level the
                # previous job left (post-retraining if it completed) and a fresh job starts.
                level = level_cases[0][0]
                if isinstance(done_prev, pulp.LpVariable):
                    level_cases = [
                        (max(a1 - drift, 0.0), done_prev),
                        (max(level - drift, 0.0), 1 - done_prev),
                    ]
                else:
                    level_cases = [(max((a1 if done_prev else level) - drift, 0.0), None)]
                remaining, done_prev, gain_free, work = samples, 0.0, False, pulp.LpAffineExpression()
            jobs = self._per_profile(k, t, RETRAINING, first) if not gain_free else {}
            post: pulp.LpAffineExpression | float = seconds * done_prev  # seconds after completion
            if jobs:
                # instances of each profile the job runs on (0/1), and the samples it gains: the
                # seconds each works (a changed one loses the downtime) times its training rate
                on = {j: self.owned[k][j, t, RETRAINING] for j in jobs}
                work += pulp.lpSum(float(self.train_rate[t, j]) * seconds * e for j, e in jobs.items())
                done = self._var(0, 1, "Binary")
                self.binaries.append(done)
                self.problem += done >= done_prev
                self.problem += remaining * done <= work
                e = self._var(0, seconds)
                self.problem += e <= seconds * (done - done_prev)
                self.problem += e <= seconds * pulp.lpSum(on.values())
                # e = (work - samples) / rate of the job's instance: the seconds of the step after the job
                # completes, binding only in the step where it completes.
                completes = done - done_prev
                for j, on_j in on.items():
                    rate = float(self.train_rate[t, j])
                    slack = (rate * seconds + remaining) * (1 - on_j) + remaining * (1 - completes)
                    self.problem += rate * e <= work - remaining + slack
                post = seconds * done_prev + e
                done_prev = done
            # min(rate, capacity) x accuracy, the expectation over the rate cases (forecast errors)
            cases = []
            rate_cases = self.rate_cases(k, t)
            for rate, weight in rate_cases:
                served = self._var(0, rate)  # min(rate, capacity) within the step
                self.problem += served <= capacity[k]
                after = self._var(0, None)  # served x seconds after completion, over-estimated within
                self.problem += after <= rate * post  # the step of completion only (McCormick)
                self.problem += after <= seconds * served
                cases.append((served, after, weight))
            highest = max(rate for rate, _ in rate_cases)
            for level, condition in level_cases:
                gain = 0.0 if gain_free else a1 - level
                slack = 0.0 if condition is None else seconds * highest * a1 * (1 - condition)
                self.problem += (
                    goodput[k]
                    <= pulp.lpSum(
                        weight * (seconds * level * served + gain * after) for served, after, weight in cases
                    )
                    + slack
                )

    # -- the starting solution ------------------------------------------------------------------

    def start(self, config: Configuration | None) -> dict[pulp.LpVariable, float]:
        """A feasible solution to start the solver from: `config` (the configuration in place, or a
        heuristic's: `dynamic_start`) within the fixed choices, held over every step, no retraining
        job counted as complete. Every integer variable is given; the solver completes the continuous
        ones.

        Per GPU the layout is the fixed one, else the maximal layout holding the most of `config`'s
        instances (among those holding the instances of its fixed owners). An instance keeps its fixed
        owner, else its owner in `config` where that owner has a use there, at most one retraining
        instance per tenant."""
        sim = self.sim
        self.hint = config
        layouts = maximal_layouts(self.gpu)
        values: dict[pulp.LpVariable, float] = {}
        chosen: dict[int, Layout] = {}
        off: dict[int, str | None] = {}  # GPUs that stay MIG-disabled, with their one tenant (or none)
        for g, y in self.layout_vars.items():
            shared = config.gpus[g].time_shared if config is not None else ()
            one = len(shared) == 1 and (self.whole, sim.tenant_index[shared[0]], INFERENCE) in self.new[0]
            if g in self.off_vars and not self.turns_off:  # its mode stays MIG-off
                off[g] = shared[0] if one else None
            elif g in self.off_vars and one and not any(gg == g for gg, _ in self.fixed.owners):
                off[g] = shared[0]  # (fixed owners need a layout)
            existing = config.gpus[g].layout.instances if config is not None else ()
            need = {inst for gg, inst in self.fixed.owners if gg == g}  # fixed owners' instances
            hosts = [lay for lay in y if need <= set(lay.instances)] or list(y)
            chosen[g] = self.fixed.layouts.get(g) or _containing_layout(hosts, existing)
            for lay, var in y.items():
                values[var] = 1.0 if lay == chosen[g] and g not in off else 0.0
            if g in self.off_vars:
                values[self.off_vars[g]] = 1.0 if g in off else 0.0
        counts = dict.fromkeys(self.new[0], 0)
        counts.update(self.reserved)
        retraining = {key[1] for key, c in self.reserved.items() if c and key[2] == RETRAINING}
        for (g, inst), (key, var) in self.keep.items():
            values[var] = 1.0 if (g, inst) in self.fixed.owners else 0.0
            if (g, inst) in self.fixed.owners and key[2] == RETRAINING:
                retraining.add(key[1])
        for g, name in off.items():
            if name is None:
                continue
            kept = self.keep.get((g, None))
            if kept is not None and kept[0][1] == sim.tenant_index[name]:
                values[kept[1]] = 1.0
            else:
                counts[self.whole, sim.tenant_index[name], INFERENCE] += 1
        if config is not None:
            for placed in config.placed():
                g, inst, owner = placed.gpu, placed.instance, placed.owner
                if (
                    owner is None
                    or (g, inst) in self.fixed.owners
                    or g in off
                    or inst not in chosen[g].instances
                ):
                    continue
                key = (sim.profile_index[inst.profile.id], sim.tenant_index[owner.tenant], _role(owner))
                if key[2] == RETRAINING and key[1] in retraining:
                    continue
                kept = self.keep.get((g, inst))
                if kept is not None and kept[0] == key:
                    values[kept[1]] = 1.0
                elif key in counts:
                    counts[key] += 1
                else:
                    continue
                if key[2] == RETRAINING:
                    retraining.add(key[1])
        for key, var in self.new[0].items():
            values[var] = float(counts[key])
        mixes = list(layout_mixes(self.gpu))
        held = [0] * (len(mixes) + (1 if self.whole is not None else 0))
        for g, lay in chosen.items():
            if g in off:
                held[-1] += 1
            else:
                held[mixes.index(mix_of(_containing_layout(layouts, lay.instances)))] += 1
        owned0 = {key: float(c) for key, c in counts.items()}
        for key, var in self.keep.values():
            owned0[key] = owned0.get(key, 0.0) + values[var]
        for k in range(1, len(self.steps)):
            values.update({var: float(c) for var, c in zip(self.mix_vars[k], held, strict=True)})
            values.update({var: owned0.get(key, 0.0) for key, var in self.new[k].items()})
        for var in self.binaries:
            values[var] = 0.0
        return values

    # -- reading the solution -------------------------------------------------------------------

    def chosen_layout(self, g: int) -> Layout:
        """The (maximal, or fixed) layout the solution chose for GPU `g` in the decided interval (the
        empty layout where it runs MIG disabled, `whole_owners`)."""
        if g in self.off_vars and _value(self.off_vars[g]) > 0.5:
            return self.gpu.empty_layout()
        return max(self.layout_vars[g].items(), key=lambda kv: _value(kv[1]))[0]

    def whole_owners(self) -> dict[int, str | None]:
        """The GPUs the solution runs MIG disabled, each with its tenant (None: left idle): kept ones
        where they are, then the changed whole-GPU counts in GPU order."""
        off = [g for g, var in self.off_vars.items() if _value(var) > 0.5]
        owners: dict[int, str | None] = dict.fromkeys(off)
        names = self.workload.tenant_names
        for g in off:
            kept = self.keep.get((g, None))
            if kept is not None and _value(kept[1]) > 0.5:
                owners[g] = names[kept[0][1]]
        left = [
            key[1]
            for key, var in self.new[0].items()
            if key[0] == self.whole
            for _ in range(round(_value(var)))
        ]
        for g in off:
            if owners[g] is None and left:
                owners[g] = names[left.pop(0)]
        return owners

    def owner_of(self) -> dict[tuple[int, Instance], Owner]:
        """The owner the solution gives each owned instance of the decided interval: kept owners and
        fixed ones where they are, then each changed (profile, tenant, role) count on free instances
        of that profile, GPU by GPU in slot order."""
        sim, tenants = self.sim, self.workload.tenants
        owners: dict[tuple[int, Instance], Owner] = {}
        current = (
            {(p.gpu, p.instance): p.owner for p in self.state.current.placed()}
            if self.state.current is not None
            else {}
        )
        hint = {(p.gpu, p.instance): p.owner for p in self.hint.placed()} if self.hint is not None else {}
        for (g, inst), (_key, var) in self.keep.items():
            if inst is not None and _value(var) > 0.5:
                owner = current[g, inst]
                assert owner is not None
                owners[g, inst] = owner
        left = {key: round(_value(var)) for key, var in self.new[0].items()}
        for (g, inst), owner in self.fixed.owners.items():
            if owner is not None and (g, inst) not in owners:
                owners[g, inst] = owner
                key = (sim.profile_index[inst.profile.id], sim.tenant_index[owner.tenant], _role(owner))
                left[key] -= 1
        for g in self.layout_vars:
            for inst in self.chosen_layout(g).instances:
                if (g, inst) in owners or (g, inst) in self.fixed.owners:
                    continue
                j = sim.profile_index[inst.profile.id]
                wanted = [key for key, c in left.items() if key[0] == j and c > 0]
                if not wanted:
                    continue
                # the instance's owner in the start first (in place: it is then unchanged after all)
                was = hint.get((g, inst))
                mine = next(
                    (
                        key
                        for key in wanted
                        if was is not None and key[1:] == (sim.tenant_index[was.tenant], _role(was))
                    ),
                    wanted[0],
                )
                left[mine] -= 1
                owners[g, inst] = Owner(tenants[mine[1]].name, _ROLE_NAMES[mine[2]])
        return owners

    def configuration(self) -> Configuration:
        """The decided interval's configuration. Idle instances are kept only where they already exist
        (the configuration in place), so no instance is created for nothing; a fixed layout is kept
        whole."""
        owners = self.owner_of()
        whole = self.whole_owners()
        gpus: list[GpuConfig] = []
        for g in range(self.workload.gpu_count):
            in_place = self.state.current.gpus[g] if self.state.current is not None else None
            if g in whole and (whole[g] is not None or (in_place is not None and not in_place.mig_enabled)):
                # (a MIG-off GPU left idle stays as it is, or comes up MIG-enabled: no mode change for
                # nothing)
                gpus.append(GpuConfig.whole(self.gpu, [whole[g]] if whole[g] is not None else []))
                continue
            chosen = self.chosen_layout(g)
            mine = {inst: owners[g, inst] for inst in chosen.instances if (g, inst) in owners}
            if g in self.fixed.layouts:
                gpus.append(GpuConfig(chosen, tuple(mine.get(i) for i in chosen.instances)))
                continue
            existing = (
                self.state.current.gpus[g].layout
                if self.state.current is not None
                else self.gpu.empty_layout()
            )
            gpus.append(settle(chosen, mine, existing))
        return Configuration(self.gpu, tuple(gpus))


SERVE_TIME_LIMIT = 10.0
"""Seconds a serve-mode plan may take by default (one plan per run)."""
DYNAMIC_TIME_LIMIT = 2.0
"""Seconds a dynamic-mode decision may take by default, model building included: the best plan found
by then is returned with its gap (`benchmarks/oracle.py` measures the latency and what it costs)."""


DYNAMIC_GAP = 1e-3
"""Relative optimality gap at which a dynamic-mode solve stops. Proving it can take longer than the
time limit (then the best plan found is returned with its gap); a gap of 1% is proven within the limit
almost always but, the objective spanning up to 30 intervals, lets worse first intervals through: on
eval/scenarios it scored 0.930 / 0.902 / 0.953 / 0.923 (azure-retrain / spike-shift / diurnal-mix /
migrator-8x8) against 0.927 / 0.913 / 0.961 / 0.929 at 0.1%."""


class IlpPlanner(Planner):
    """The ILP oracle behind the planner interface: serve mode (fewest GPUs) or dynamic mode.

    Dynamic mode is window-aware by default: it plans the decided interval per GPU and the rest of the
    longest current retraining window in aggregated steps (`plan_steps`), so a retraining job that
    pays off only after several intervals is valued. `horizon` = k gives the myopic variant: k
    one-interval steps (k = 1: the next interval alone). `foresight=True` plans on the true future.

    In dynamic mode a GPU may run MIG disabled, one tenant on the whole GPU (all its SMs: more than
    the 7g instance, in the simulator's model of it, as for the as-is baseline), where that serves
    best; applying it is a MIG mode change, which a node makes only when allowed to (`rlmig
    apply/agent --allow-mode-change`). `mig_off=False` changes no GPU's mode: MIG layouts, and GPUs
    MIG-disabled in place stay so, one tenant each (the node agent's default without that flag, and
    the policy's expert: its actions are layouts). Serve plans are MIG layouts always (see the module
    docstring).

    The decision's objective is the solver's: the predicted goodput over the planned steps (requests,
    on the forecast), not the simulated goodput of the run."""

    name = "ilp"
    objective = (
        "expected goodput of the next interval and of the rest of each retraining window (later "
        "intervals aggregated) over the forecast, its recent errors and a 2x burst, each GPU MIG-partitioned "
        "or MIG off, optimal within 0.1% or 2 s"
    )

    def __init__(
        self,
        horizon: int | None = None,
        foresight: bool = False,
        time_limit: float | Literal["auto"] | None = "auto",
        gap: float | None = DYNAMIC_GAP,
        max_span: int = 30,
        burst: Burst | None = BURST,
        mig_off: bool = True,
    ) -> None:
        if horizon is not None and horizon < 1:
            raise RlmigError(f"the ILP horizon must be at least 1, got {horizon}")
        if max_span < 1:
            raise RlmigError(f"the ILP's span must be at least 1 interval, got {max_span}")
        self.steps = horizon
        self.max_span = max_span
        self.horizon = horizon if horizon is not None else max_span  # forecast intervals wanted
        self.foresight = foresight
        self.mig_off = mig_off
        self.burst = None if foresight else burst
        if burst is not None and not (0.0 <= burst[0] < 1.0 and burst[1] >= 1.0):
            raise RlmigError(f"the ILP's burst must be (probability in [0, 1), factor >= 1), got {burst}")
        self.time_limit = time_limit
        self.gap = gap
        if time_limit != "auto" and time_limit is not None and not time_limit >= 0:
            raise RlmigError(f"the ILP's time limit must be a number of seconds >= 0, got {time_limit}")
        if horizon is not None:
            self.name = "ilp-myopic"
            self.objective = (
                f"expected goodput of the next {horizon} interval(s) over the forecast, its recent errors "
                "and a 2x burst, optimal within 0.1% or 2 s: a retraining job counts only if it completes "
                "within them"
            )
        if foresight:
            self.name = "ilp-foresight"
        if not mig_off:
            self.forbid_mig_off()

    def forbid_mig_off(self) -> None:
        """Turn no GPU MIG off (`mig_off=False`): no GPU's MIG mode changes."""
        self.mig_off = False
        self.objective = self.objective.replace(", each GPU MIG-partitioned or MIG off", "")

    def limit(self, mode: str) -> float | None:
        """The time limit in `mode`: the one given, else `SERVE_TIME_LIMIT` or `DYNAMIC_TIME_LIMIT`. In
        serve mode it bounds each solve; in dynamic mode the whole decision (building the model
        included: the solver gets what is left of 85% of it)."""
        if self.time_limit == "auto":
            return SERVE_TIME_LIMIT if mode == "serve" else DYNAMIC_TIME_LIMIT
        return self.time_limit

    def reset(self, workload: Workload) -> None:
        """Ask for a forecast as long as the longest plan this workload can need."""
        if self.steps is None:
            windows = [
                round(t.retraining.window_s / workload.interval_s) for t in workload.tenants if t.retraining
            ]
            self.horizon = max(1, min(self.max_span, 2 * max(windows, default=1)))

    def plan(self, state: ClusterState) -> Decision:
        return self.expert(state)

    def expert(self, state: ClusterState, fixed: FixedChoices | None = None) -> Decision:
        """The best configuration from `state`, respecting `fixed` choices of the first interval."""
        if state.workload.mode == "serve":
            start = time.perf_counter()
            config, result, gpus = plan_serve(
                state.simulator,
                state.forecast[0],
                time_limit=self.limit("serve"),
                gap=0.0,
                start=heuristic_start(state),
            )
            return Decision(config, result.optimal, gpus, time.perf_counter() - start, gap=result.gap)
        return self.expert_choices(state, fixed).decision

    def expert_choices(self, state: ClusterState, fixed: FixedChoices | None = None) -> ExpertChoices:
        """`expert` in dynamic mode, with the layout chosen for each GPU (before idle instances are
        dropped) and the owner of each of its instances: what an environment's sub-actions need."""
        start = time.perf_counter()
        spread = None if self.foresight else rate_scenarios(state.history)
        steps = plan_steps(state, self.steps, self.max_span)
        first = dynamic_start(state, steps[-1].offset + steps[-1].length)
        # the layouts each GPU may take are told apart by what they keep of the configuration in
        # place (the start's placement only where nothing is in place: more choices, a slower solve)
        hint = state.current if state.current is not None else first
        model = DynamicModel(state, steps, fixed, spread, hint, self.burst, self.mig_off)
        begin = model.start(first)
        budget = self.limit("dynamic")  # the whole decision's: what building the model took is spent
        # 15% of the budget is kept for reading the solution back (about 0.1 s at 8 GPUs x 8 tenants)
        left = None if budget is None else max(0.0, 0.85 * budget - (time.perf_counter() - start))
        result = solve(model.problem, time_limit=left, gap=self.gap, start=begin)
        config = model.configuration()
        decision = Decision(
            config,
            result.optimal,
            _value(model.goodput_expr),
            time.perf_counter() - start,
            (config,),
            gap=result.gap,
        )
        layouts = tuple(model.chosen_layout(g) for g in range(state.workload.gpu_count))
        return ExpertChoices(state.interval, layouts, model.owner_of(), decision)


SCENARIO_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def rate_scenarios(history: np.ndarray, window: int = 30) -> np.ndarray | None:
    """Per tenant, offsets (req/s) of the forecast rate that stand for its error: the quantiles
    `SCENARIO_QUANTILES` of the change of the observed rate from one interval to the next over the last
    `window` intervals, over sqrt(2) (None before there are three changes). The model averages goodput
    over the forecast plus each offset (a sample average approximation of the expected goodput;
    Kleywegt, Shapiro & Homem-de-Mello, SIAM J. Optim. 2002), so capacity beyond the point forecast is
    worth what it is expected to serve: much for a bursty tenant, little for a steady one."""
    recent = np.asarray(history, dtype=float)[-window - 1 :]
    if len(recent) < 4:
        return None
    # A change between two intervals carries the noise of both (variance 2 sigma^2 around a level); the
    # error of a forecast of the level carries about one: hence the 1/sqrt(2).
    return np.sqrt(0.5) * np.quantile(np.diff(recent, axis=0), SCENARIO_QUANTILES, axis=0).T


def heuristic_start(state: ClusterState) -> Configuration:
    """A first incumbent where no configuration is in place yet (serve mode, a run's first interval):
    the better of the ParvaGPU and MIG-serving greedy plans for ``state.forecast[0]`` (least unmet load
    relative to each tenant's rate, then fewest GPUs)."""
    sim, rates = state.simulator, state.forecast[0]

    def score(config: Configuration) -> tuple[float, int]:
        capacity = np.zeros(len(rates))
        for placed in config.placed():
            if placed.owner is not None and placed.owner.role == "inference":
                t = sim.tenant_index[placed.owner.tenant]
                capacity[t] += sim.serve_rate[t, sim.profile_index[placed.instance.profile.id]]
        with np.errstate(divide="ignore", invalid="ignore"):
            short = np.where(rates > 0, np.maximum(rates - capacity, 0.0) / rates, 0.0)
        return float(short.sum()), sum(1 for g in config.gpus if g.used)

    return min(_heuristic_plans(state), key=score)


def _heuristic_plans(state: ClusterState) -> list[Configuration]:
    """The ParvaGPU and MIG-serving greedy plans for `state`: the starts' candidates."""
    plans = []
    for heuristic in (ParvaPlanner(), GreedyPlanner()):
        heuristic.reset(state.workload)
        plans.append(heuristic.plan(state).configuration)
    return plans


def dynamic_start(state: ClusterState, horizon: int) -> Configuration:
    """The dynamic model's start (its first incumbent, and the placement its changed owners follow): of
    the configuration in place and the ParvaGPU and MIG-serving greedy plans for ``state``, the one the
    simulator predicts to serve the most goodput held over the next `horizon` forecast intervals
    (`predicted_goodput`: downtime and retraining included; a tie keeps the configuration in place).
    A binding time limit returns a plan at least as good in the model as the start, so a strong start
    is what the decision keeps when the solver runs out of time (at 8 GPUs x 8 tenants it mostly does)."""
    candidates = [state.current] if state.current is not None else []
    candidates += _heuristic_plans(state)
    horizon = max(1, min(horizon, len(state.forecast)))
    values = [predicted_goodput(state, config, horizon) for config in candidates]
    return candidates[int(np.argmax(values))]


class IlpForesightPlanner(IlpPlanner):
    """The window-aware ILP on the true future rates (perfect foresight): what forecast errors cost."""

    name = "ilp-foresight"
    objective = "as ilp, on the true future rates instead of the forecast"

    def __init__(
        self,
        horizon: int | None = None,
        time_limit: float | Literal["auto"] | None = "auto",
        gap: float | None = DYNAMIC_GAP,
        mig_off: bool = True,
    ) -> None:
        super().__init__(horizon=horizon, foresight=True, time_limit=time_limit, gap=gap, mig_off=mig_off)
