"""The ILP oracle: exact MIG planning with PuLP (HiGHS by default, CBC when HiGHS is absent).

Serve mode (MIG-serving's and ParvaGPU's problem: the fewest GPUs that carry every tenant's load within
its SLO) is a pattern formulation in the manner of Gilmore & Gomory's cutting stock (Oper. Res. 1961):
an integer count of GPUs per profile mix (the mixes of the GPU model's maximal layouts, placements
included, so only mixes that really fit are counted) and an integer count of instances of each profile
per tenant, each serving with the tenant's best SLO-feasible segment (MPS included). GPUs are
interchangeable, so the aggregate is exact; load no configuration can carry is reported as unmet.

Dynamic mode is MIGRator's problem (arXiv 2407.13126): choose, per GPU and interval of a horizon of H
intervals, a maximal layout and an owner per instance so as to maximise goodput, where a changed
instance pays the reconfiguration downtime and retraining completes as the simulator says. The model
is exact with respect to `rlmig.simulator`:

- capacity counts an instance kept from the previous interval (same GPU, placement, tenant and role)
  in full and a changed one for (1 - downtime/Δ) of the interval;
- a retraining job runs on one instance per interval (see `rlmig.configuration`), so the time after
  its completion inside the interval is e = (work so far - samples) / rate of that instance, a linear
  constraint per instance profile under a big-M switch;
- goodput = min(λ, C) × accuracy = min(λ × accuracy, C × accuracy), and the products of C with the
  completion indicator and with e are linearised exactly (products of a binary and a bounded variable);
- a window boundary inside the horizon sets the next window's accuracy to post-retraining minus drift
  when the current job completed and to the current level minus drift otherwise: both cases are
  constrained under a big-M switch on the completion binary. H is capped at the shortest window so that
  at most one boundary falls inside the horizon.

The planner reports the optimum's goodput as its objective (tested equal to the simulator's goodput of
the returned plan); tiny penalties on changed and owned instances break ties towards stability.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pulp

from rlmig.configuration import Configuration, GpuConfig, Owner, settle
from rlmig.errors import RlmigError
from rlmig.geometry import GpuModel, Instance, Layout
from rlmig.planners.base import ClusterState, Decision, Planner, pad_forecast
from rlmig.planners.greedy import GreedyPlanner
from rlmig.planners.mip import SolveResult, solve
from rlmig.planners.parva import ParvaPlanner
from rlmig.simulator import INFERENCE, RETRAINING, Simulator

_ROLE_NAMES = {INFERENCE: "inference", RETRAINING: "retraining"}


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
        shortfall = pulp.lpSum(u[t] * (1.0 / float(rates[t])) for t in tenants if rates[t] > 0)
        if unmet_bound is None:
            problem += shortfall
        else:
            problem += shortfall <= unmet_bound + 1e-6
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
    result = solve(problem, time_limit=time_limit, gap=gap, start=second_start)
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


@dataclass
class _Var:
    """One owner binary: instance `inst` of GPU `g` in horizon step `h`, owned by tenant `t` in role `r`."""

    g: int
    h: int
    inst: Instance
    j: int  # profile index
    t: int
    r: int
    x: pulp.LpVariable
    kept: (
        pulp.LpVariable | float
    )  # h = 0: x itself if the previous configuration had it, else 0; later a variable


class DynamicModel:
    """The dynamic-mode MILP for one decision (see the module docstring)."""

    def __init__(
        self, state: ClusterState, horizon: int, fixed: FixedChoices | None = None, terminal: float = 0.0
    ) -> None:
        self.terminal = terminal  # weight of the value of retraining progress past the horizon
        self.terminal_terms: list[pulp.LpAffineExpression] = []
        self.state = state
        self.sim = state.simulator
        self.workload = state.workload
        self.gpu = self.workload.gpu
        self.horizon = horizon
        self.fixed = fixed or FixedChoices()
        self.rates = pad_forecast(np.asarray(state.forecast[:horizon], dtype=float), horizon)
        self.dyn = self.sim.dynamics  # downtime, windows: the simulator's terms (rlmig.dynamics)
        self.dt = self.dyn.interval_s
        self.problem = pulp.LpProblem("dynamic", pulp.LpMaximize)
        self.vars: list[_Var] = []
        self.layout_vars: dict[tuple[int, int], dict[Layout, pulp.LpVariable]] = {}
        self.goodput: dict[tuple[int, int], pulp.LpVariable] = {}
        self.by_slot: dict[tuple[int, int, Instance], list[_Var]] = {}
        self.done_vars: list[pulp.LpVariable] = []  # retraining completion binaries
        self._names = itertools.count()
        self._build()

    def _var(self, low: float, high: float | None, cat: str = "Continuous") -> pulp.LpVariable:
        return self.problem.add_variable(f"v{next(self._names)}", low, high, cat=cat)

    def _previous_keys(self) -> set[int]:
        """The identities of the current configuration's owned instances (`rlmig.dynamics`: an instance
        is unchanged when its identity was in the previous interval)."""
        current = self.state.current
        if current is None:
            return set()
        encoded = self.sim.encode(current)
        return set(encoded.key[encoded.tenant >= 0].tolist())

    def _build(self) -> None:
        sim, gpu, H = self.sim, self.gpu, self.horizon
        n_gpus, tenants = self.workload.gpu_count, range(len(self.workload.tenants))
        layouts = maximal_layouts(gpu)
        candidates = gpu.candidates(gpu.base_profiles())
        previous = self._previous_keys()

        # Layouts and owners.
        by_slot = self.by_slot
        for g in range(n_gpus):
            for h in range(H):
                choices = layouts
                if h == 0 and g in self.fixed.layouts:
                    choices = [self.fixed.layouts[g]]
                y = {lay: self._var(0, 1, "Binary") for lay in choices}
                self.layout_vars[g, h] = y
                self.problem += pulp.lpSum(y.values()) == 1
                for inst in candidates:
                    j = sim.profile_index[inst.profile.id]
                    hosting = [y[lay] for lay in choices if inst in lay.instances]
                    if not hosting:
                        continue
                    owned: list[_Var] = []
                    for t in tenants:
                        for r in (INFERENCE, RETRAINING):
                            useful = sim.serve_rate[t, j] > 0 if r == INFERENCE else sim.train_rate[t, j] > 0
                            if not useful:
                                continue
                            x = self._var(0, 1, "Binary")
                            kept: pulp.LpVariable | float
                            if h == 0:  # unchanged iff the same owner had it in the previous configuration;
                                # the run's first configuration is in place from the start (no downtime)
                                key = sim.instance_key(g, inst.start, j, t, r)
                                kept = x if self.state.current is None or key in previous else 0.0
                            else:
                                kept = self._var(0, 1)
                            var = _Var(g, h, inst, j, t, r, x, kept)
                            owned.append(var)
                            self.vars.append(var)
                    if owned:
                        self.problem += pulp.lpSum(v.x for v in owned) <= pulp.lpSum(hosting)
                    by_slot[g, h, inst] = owned
                    if h == 0 and (g, inst) in self.fixed.owners:
                        self._fix_owner(owned, self.fixed.owners[g, inst])
        for var in self.vars:
            if var.h > 0:
                before = next(
                    (
                        v
                        for v in by_slot.get((var.g, var.h - 1, var.inst), [])
                        if (v.t, v.r) == (var.t, var.r)
                    ),
                    None,
                )
                self.problem += var.kept <= var.x
                if before is None:
                    self.problem += var.kept <= 0
                else:
                    self.problem += var.kept <= before.x
        self.by_tenant: dict[tuple[int, int, int], list[_Var]] = {}
        for var in self.vars:
            self.by_tenant.setdefault((var.t, var.h, var.r), []).append(var)
        for t in tenants:
            for h in range(H):
                retraining = self.by_tenant.get((t, h, RETRAINING), [])
                if retraining:
                    self.problem += pulp.lpSum(v.x for v in retraining) <= 1

        for t in tenants:
            self._tenant_goodput(t)

        # Objective: goodput, then fewer changes and fewer owned instances (tie-breaking).
        arrivals = max(float(self.rates.sum()) * self.dt, 1.0)
        changes = pulp.lpSum(v.x - v.kept for v in self.vars)
        owned_count = pulp.lpSum(v.x for v in self.vars)
        self.goodput_expr = pulp.lpSum(self.goodput.values())
        self.terminal_expr = pulp.lpSum(self.terminal_terms)
        self.problem += (
            self.goodput_expr + self.terminal_expr - 1e-6 * arrivals * changes - 1e-8 * arrivals * owned_count
        )

    def _fix_owner(self, owned: list[_Var], owner: Owner | None) -> None:
        for var in owned:
            wanted = (
                owner is not None
                and self.workload.tenants[var.t].name == owner.tenant
                and _ROLE_NAMES[var.r] == owner.role
            )
            self.problem += var.x == (1 if wanted else 0)
        if owner is not None and not any(
            self.workload.tenants[v.t].name == owner.tenant and _ROLE_NAMES[v.r] == owner.role for v in owned
        ):
            raise RlmigError(f"fixed owner {owner} cannot use this instance (no segment or no retraining)")

    @staticmethod
    def _pieces(v: _Var, changed: float, kept: float) -> list[tuple[float, pulp.LpVariable]]:
        """An instance's contribution as (weight, binary) pairs: `kept` when it is unchanged since the
        previous interval and `changed` otherwise (x - kept changed, kept unchanged)."""
        if v.kept is v.x:
            return [(kept, v.x)]
        if isinstance(v.kept, float):
            return [(changed, v.x)]
        return [(changed, v.x), (kept - changed, v.kept)]

    def _capacity(self, t: int, h: int) -> pulp.LpAffineExpression:
        """C[t, h]: req/s of t's inference instances in step h, a changed one for 1 - downtime/Δ."""
        return pulp.lpSum(
            self.sim.serve_rate[t, v.j] * w * ind
            for v in self.by_tenant.get((t, h, INFERENCE), [])
            for w, ind in self._pieces(v, self.dyn.changed_uptime, 1.0)
        )

    def _capacity_times(
        self, t: int, h: int, other: pulp.LpVariable | float, bound: float
    ) -> pulp.LpAffineExpression | float:
        """C[t, h] × `other` (a variable in [0, bound], or a constant), linearised exactly: each binary
        of C times `other` is a variable under both (maximisation pushes it to their product)."""
        if not isinstance(other, pulp.LpVariable):
            return other * self._capacity(t, h) if other else 0.0
        terms = []
        for v in self.by_tenant.get((t, h, INFERENCE), []):
            for weight, indicator in self._pieces(v, self.dyn.changed_uptime, 1.0):
                product = self._var(0, bound)
                self.problem += product <= bound * indicator
                self.problem += product <= other
                terms.append(self.sim.serve_rate[t, v.j] * weight * product)
        return pulp.lpSum(terms)

    def _tenant_goodput(self, t: int) -> None:
        H, dt, dyn = self.horizon, self.dt, self.dyn
        rates = self.rates[:, t]
        sim, state = self.sim, self.state
        capacity = [self._capacity(t, h) for h in range(H)]
        goodput = [self._var(0, None) for _ in range(H)]
        for h in range(H):
            self.goodput[t, h] = goodput[h]
        if not sim.has_retraining[t]:
            for h in range(H):
                self.problem += goodput[h] <= dt * float(rates[h])
                self.problem += goodput[h] <= dt * capacity[h]
            return

        a1, drift, samples = float(sim.accuracy_after[t]), float(sim.drift[t]), float(sim.samples[t])
        boundaries = {h for h in range(H) if dyn.window_starts(state.interval + h)[t]}
        starts = sorted({0} | boundaries)
        segments = [range(a, b) for a, b in zip(starts, [*starts[1:], H], strict=True)]

        # The first segment continues the current window (or starts a fresh one at h = 0).
        fresh = 0 in boundaries
        accuracy = float(state.tenants.accuracy[t])
        level_cases: list[tuple[float, pulp.LpAffineExpression | None]] = [
            (max(accuracy - drift, 0.0) if fresh else accuracy, None)
        ]
        remaining = samples if fresh else samples - float(state.tenants.progress[t])
        running = fresh or bool(state.tenants.active[t])
        done_end: pulp.LpVariable | float = 0.0  # the job's state at the end of the previous segment
        for s, segment in enumerate(segments):
            if s > 0:
                # A window boundary inside the horizon (at most one: H <= the shortest window).
                level = level_cases[0][0]
                if isinstance(done_end, pulp.LpVariable):
                    level_cases = [(max(a1 - drift, 0.0), done_end), (max(level - drift, 0.0), 1 - done_end)]
                else:
                    level_cases = [(max((a1 if done_end else level) - drift, 0.0), None)]
                remaining, running = samples, True
            done_prev: pulp.LpVariable | float = 0.0
            work = pulp.LpAffineExpression()
            for h in segment:
                retraining = self.by_tenant.get((t, h, RETRAINING), []) if running else []
                e: pulp.LpVariable | float = 0.0
                done: pulp.LpVariable | float = done_prev
                if retraining:
                    for v in retraining:
                        pieces = self._pieces(v, dyn.train_seconds(True), dyn.train_seconds(False))
                        work += pulp.lpSum(sim.train_rate[t, v.j] * w * ind for w, ind in pieces)
                    done = self._var(0, 1, "Binary")
                    self.done_vars.append(done)
                    self.problem += done >= done_prev
                    self.problem += remaining * done <= work
                    e = self._var(0, dt)
                    self.problem += e <= dt * (done - done_prev)
                    self.problem += e <= dt * pulp.lpSum(v.x for v in retraining)
                    # e = (work - samples) / rate of the job's instance, binding only in the interval
                    # where the job completes (elsewhere e = 0 and the work may fall short).
                    completes = done - done_prev
                    for j in {v.j for v in retraining}:
                        rate = float(sim.train_rate[t, j])
                        on_j = pulp.lpSum(v.x for v in retraining if v.j == j)
                        slack = (rate * dt + remaining) * (1 - on_j) + remaining * (1 - completes)
                        self.problem += rate * e <= work - remaining + slack
                lam = float(rates[h])
                c_done = self._capacity_times(t, h, done_prev, 1.0)
                c_e = self._capacity_times(t, h, e, dt)
                for level, condition in level_cases:
                    slack = 0.0 if condition is None else dt * lam * a1 * (1 - condition)
                    gain = a1 - level
                    self.problem += (
                        goodput[h] <= dt * lam * (level + gain * done_prev) + lam * gain * e + slack
                    )
                    self.problem += (
                        goodput[h] <= dt * (level * capacity[h] + gain * c_done) + gain * c_e + slack
                    )
                done_prev = done
            # The job's state at the segment's end: done (1), not done (0) or a binary of the model.
            done_end = done_prev if running else 1.0
        if self.terminal > 0 and running and isinstance(done_end, pulp.LpVariable):
            # Progress that pays off after the horizon: a job still running at the horizon's end will
            # lift the accuracy for the rest of its window; its work so far is valued pro rata.
            rest_s = float(dyn.seconds_left(state.interval + H)[t])
            if not dyn.window_starts(state.interval + H)[t] and rest_s > 0 and remaining > 0:
                level = level_cases[0][0]
                per_sample = self.terminal * (a1 - level) * float(rates[-1]) * rest_s / remaining
                credited = self._var(0, remaining)
                self.problem += credited <= work
                self.problem += credited <= remaining * (1 - done_end)
                self.terminal_terms.append(per_sample * credited)

    # -- the starting solution ------------------------------------------------------------------

    def start(self, current: Configuration | None) -> dict[pulp.LpVariable, float]:
        """A feasible solution to start the solver from: `current` (the configuration in place, or a
        heuristic's) within the fixed choices in every step, no retraining job counted as complete.
        Every integer variable is given; the solver completes the continuous ones.

        Per GPU the layout is the fixed one, else the maximal layout holding the most of the current
        instances (a MIG-disabled or empty GPU: any, all idle). An instance keeps its fixed owner,
        else its current owner where that owner has a variable there (a segment, or retraining), at
        most one retraining instance per tenant."""
        layouts = maximal_layouts(self.gpu)
        owners: dict[tuple[int, Instance], tuple[int, int]] = {}
        chosen: dict[int, Layout] = {}
        for g in range(self.workload.gpu_count):
            gpu_config = current.gpus[g] if current is not None else None
            existing = gpu_config.layout.instances if gpu_config is not None else ()
            chosen[g] = self.fixed.layouts.get(g) or _containing_layout(layouts, existing)
        retraining: set[int] = set()
        for (g, inst), owner in self.fixed.owners.items():
            if owner is not None:
                key = (self.sim.tenant_index[owner.tenant], _role(owner))
                owners[g, inst] = key
                if key[1] == RETRAINING:
                    retraining.add(key[0])
        if current is not None:
            for placed in current.placed():
                g, inst, owner = placed.gpu, placed.instance, placed.owner
                if owner is None or (g, inst) in self.fixed.owners or inst not in chosen[g].instances:
                    continue
                t, r = self.sim.tenant_index[owner.tenant], _role(owner)
                if r == RETRAINING and t in retraining:
                    continue
                if any((v.t, v.r) == (t, r) for v in self.by_slot.get((g, 0, inst), [])):
                    owners[g, inst] = (t, r)
                    if r == RETRAINING:
                        retraining.add(t)
        values: dict[pulp.LpVariable, float] = {}
        step_layout: dict[tuple[int, int], Layout] = {}
        for (g, h), y in self.layout_vars.items():
            # A fixed layout binds the first step only; later steps take a maximal layout holding it.
            layout = chosen[g] if chosen[g] in y else _containing_layout(list(y), chosen[g].instances)
            step_layout[g, h] = layout
            for candidate, var in y.items():
                values[var] = 1.0 if candidate == layout else 0.0
        for var in self.vars:
            mine = owners.get((var.g, var.inst)) == (var.t, var.r)
            values[var.x] = 1.0 if mine and var.inst in step_layout[var.g, var.h].instances else 0.0
        for var in self.done_vars:
            values[var] = 0.0
        return values

    # -- reading the solution -------------------------------------------------------------------

    def configurations(self) -> list[Configuration]:
        """The planned configuration of every horizon step. Idle instances are kept only where they
        already exist (the previous configuration's layout), so no instance is created for nothing."""
        gpu = self.gpu
        previous_layouts: dict[int, Layout] = {}
        if self.state.current is not None:
            previous_layouts = {i: g.layout for i, g in enumerate(self.state.current.gpus)}
        owner_of: dict[tuple[int, int, Instance], Owner] = {}
        for var in self.vars:
            if _value(var.x) > 0.5:
                owner_of[var.g, var.h, var.inst] = Owner(
                    self.workload.tenants[var.t].name, _ROLE_NAMES[var.r]
                )
        plans: list[Configuration] = []
        for h in range(self.horizon):
            gpus: list[GpuConfig] = []
            for g in range(self.workload.gpu_count):
                chosen = self.chosen_layout(g, h)
                if h == 0 and g in self.fixed.layouts:
                    gpus.append(GpuConfig(chosen, tuple(owner_of.get((g, h, i)) for i in chosen.instances)))
                    continue
                existing = previous_layouts.get(g, gpu.empty_layout()) if h == 0 else plans[-1].gpus[g].layout
                owners = {i: owner_of[g, h, i] for i in chosen.instances if (g, h, i) in owner_of}
                gpus.append(settle(chosen, owners, existing))
            plans.append(Configuration(gpu, tuple(gpus)))
        return plans

    def owner_of(self) -> dict[tuple[int, int, Instance], Owner]:
        """The owner the solution gives each owned (GPU, step, instance)."""
        return {
            (v.g, v.h, v.inst): Owner(self.workload.tenants[v.t].name, _ROLE_NAMES[v.r])
            for v in self.vars
            if _value(v.x) > 0.5
        }

    def chosen_layout(self, g: int, h: int) -> Layout:
        """The (maximal) layout the solution chose for GPU `g` in step `h`."""
        return max(self.layout_vars[g, h].items(), key=lambda kv: _value(kv[1]))[0]


class IlpPlanner(Planner):
    """The ILP oracle behind the planner interface: serve mode (fewest GPUs) or dynamic mode (goodput
    over `horizon` intervals; `foresight=True` plans on the true future).

    `terminal` > 0 also values retraining progress that pays off after the horizon: the work a job
    still running at the horizon's end has done is credited pro rata with the accuracy gain its
    completion would bring over the rest of its window (gain x forecast rate x seconds left / samples
    left, times `terminal`). The solver's objective then differs from the goodput it reports (the
    simulator's goodput of the plan over the horizon). Off by default: it makes decisions markedly
    slower, and its weight is not yet tuned against the hindsight bound (`rlmig.bound`)."""

    name = "ilp"
    objective = (
        "goodput of the next interval on the forecast, proven optimal within the gap: a retraining job "
        "counts only if it completes within that interval"
    )

    def __init__(
        self,
        horizon: int = 1,
        foresight: bool = False,
        time_limit: float | None = 10.0,
        gap: float | None = 1e-3,
        terminal: float = 0.0,
    ) -> None:
        if horizon < 1:
            raise RlmigError(f"the ILP horizon must be at least 1, got {horizon}")
        self.terminal = terminal
        self.horizon = horizon
        self.foresight = foresight
        self.time_limit = time_limit
        self.gap = gap
        if foresight:
            self.name = "ilp-foresight"

    def effective_horizon(self, state: ClusterState) -> int:
        """The horizon, capped at the shortest retraining window (at most one boundary inside it)."""
        windows = [int(w) for w in state.simulator.window_intervals if w > 0]
        return max(1, min([self.horizon, *windows]))

    def plan(self, state: ClusterState) -> Decision:
        return self.expert(state)

    def expert(self, state: ClusterState, fixed: FixedChoices | None = None) -> Decision:
        """The best configuration from `state`, respecting `fixed` choices of the first interval."""
        if state.workload.mode == "serve":
            start = time.perf_counter()
            config, result, gpus = plan_serve(
                state.simulator,
                state.forecast[0],
                time_limit=self.time_limit,
                gap=0.0,
                start=heuristic_start(state),
            )
            return Decision(config, result.optimal, gpus, time.perf_counter() - start, gap=result.gap)
        return self.expert_choices(state, fixed).decision

    def expert_choices(self, state: ClusterState, fixed: FixedChoices | None = None) -> ExpertChoices:
        """`expert` in dynamic mode, with the layout chosen for each GPU (before idle instances are
        dropped) and the owner of each of its instances: what an environment's sub-actions need."""
        start = time.perf_counter()
        model = DynamicModel(state, self.effective_horizon(state), fixed, self.terminal)
        begin = model.start(state.current if state.current is not None else heuristic_start(state))
        result = solve(model.problem, time_limit=self.time_limit, gap=self.gap, start=begin)
        plans = model.configurations()
        decision = Decision(
            plans[0],
            result.optimal,
            _value(model.goodput_expr),
            time.perf_counter() - start,
            tuple(plans),
            gap=result.gap,
        )
        layouts = tuple(model.chosen_layout(g, 0) for g in range(state.workload.gpu_count))
        owners = {(g, inst): owner for (g, h, inst), owner in model.owner_of().items() if h == 0}
        return ExpertChoices(state.interval, layouts, owners, decision)


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

    plans = []
    for heuristic in (ParvaPlanner(), GreedyPlanner()):
        heuristic.reset(state.workload)
        plans.append(heuristic.plan(state).configuration)
    return min(plans, key=score)


class IlpForesightPlanner(IlpPlanner):
    """The dynamic ILP on the true future rates (perfect foresight), by default 3 intervals ahead."""

    name = "ilp-foresight"
    objective = (
        "goodput of the next intervals on the true future rates, within a horizon shorter than a window"
    )

    def __init__(self, horizon: int = 3, time_limit: float | None = 20.0, gap: float | None = 1e-3) -> None:
        super().__init__(horizon=horizon, foresight=True, time_limit=time_limit, gap=gap)
