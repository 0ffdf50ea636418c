"""The published baselines as planners: as-is, static-best (PARIS), parva (ParvaGPU), greedy (MIG-serving)
and ekya (Ekya), each reproducing its paper's behaviour in rlmig's model.

Usage::

    from rlmig.planners.base import run_planner
    from rlmig.planners.baselines import BASELINES
    from rlmig.workload import load_workload

    workload = load_workload("eval/scenarios/parvagpu-slo1.yaml")
    run = run_planner(workload, BASELINES["parva"]())
    print(run.result.intervals[0].gpus_used, run.result.metrics.goodput_ratio)

Every speed figure comes from the one simulator's tables (`Simulator.capacity`, ``train_rate``,
``time_shared_capacity``), so a baseline sees exactly what the simulator will score. A planner plans
for ``state.forecast[0]`` (in serve mode each tenant's peak); only static-best looks at the whole run's
average load, as PARIS provisions from the load distribution it expects.

| name | after | what it does |
|---|---|---|
| ``as-is`` | unpartitioned A100s (MIG-serving's baseline) | whole GPUs, MIG off, tenants time-share them |
| ``static-best`` | PARIS, arXiv 2202.13481 | one heterogeneous layout from the average load, never changed |
| ``parva`` | ParvaGPU, arXiv 2409.14447 | optimal triplets, demand matching, best-fit segment allocation |
| ``greedy`` | MIG-serving, arXiv 2109.11067 | most effective GPU configuration first, until demand is met |
| ``ekya`` | Ekya, NSDI'22, arXiv 2012.10557 | fixed layout; thief scheduler at each retraining window start |

The inference-only systems (ParvaGPU, MIG-serving) know nothing of retraining. In dynamic mode, parva
and greedy hand the room their plan leaves (idle instances, free slots, unused GPUs) to the retraining
jobs that are running (`_add_retraining`, on by default, ``retraining=False`` turns it off); as-is has
no MIG instance to retrain on.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from rlmig.configuration import Configuration, GpuConfig, Owner, settle
from rlmig.errors import RlmigError
from rlmig.geometry import GpuModel, Instance, Layout, Profile
from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.simulator import Simulator
from rlmig.workload import Workload

_EPS = 1e-9
_PARVA_STARTS: dict[int, tuple[int, ...]] = {1: (0, 6, 4, 1, 2, 3, 5), 2: (0, 4, 2), 3: (4, 0)}
"""ParvaGPU's placement order per instance size (its ``find_fit_placement``); other starts follow."""


# -- shared helpers ------------------------------------------------------------------------------


def _starts(profile: Profile) -> tuple[int, ...]:
    preferred = [s for s in _PARVA_STARTS.get(profile.compute, ()) if s in profile.starts]
    return (*preferred, *(s for s in profile.starts if s not in preferred))


def _fit(layout: Layout, profile: Profile) -> Instance | None:
    """The instance of `profile` to add to `layout` at the first free start in ParvaGPU's order."""
    for start in _starts(profile):
        inst = Instance(profile, start)
        if layout.can_add(inst):
            return inst
    return None


def _columns(sim: Simulator) -> list[tuple[Profile, int]]:
    """The base profiles (no media extensions) with their column in the simulator's tables."""
    return [(p, sim.profile_index[p.id]) for p in sim.gpu.base_profiles()]


def _size_points(sim: Simulator, tenant: int) -> dict[int, tuple[Profile, float]]:
    """Per instance size (compute slices) the profile of highest capacity for `tenant`, and that capacity.

    The profiles of one size differ only in memory (1g.10gb, 1g.20gb); ties go to fewer memory slots.
    Sizes on which no segment meets the SLO are left out.
    """
    points: dict[int, tuple[Profile, float]] = {}
    for profile, j in _columns(sim):
        cap = float(sim.capacity[tenant, j])
        if cap <= 0:
            continue
        best = points.get(profile.compute)
        if best is None or (cap, -profile.slots) > (best[1], -best[0].slots):
            points[profile.compute] = (profile, cap)
    return dict(sorted(points.items()))


def _upcoming(state: ClusterState) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, retraining progress, active jobs and seconds left in the window, as they will be at the
    start of ``state.interval`` (a window starting then drifts the model and starts a fresh job)."""
    sim, k = state.simulator, state.interval
    window = np.maximum(sim.window_intervals, 1)
    start = sim.window_start(k, state.tenants)
    left = (window - k % window) * state.workload.interval_s
    return start.accuracy, start.progress, start.active & sim.has_retraining, left.astype(float)


def _window_starts(state: ClusterState) -> bool:
    sim = state.simulator
    return bool((sim.has_retraining & (state.interval % np.maximum(sim.window_intervals, 1) == 0)).any())


def _inference_capacity(sim: Simulator, gpu_config: GpuConfig) -> np.ndarray:
    """req/s per tenant of the inference instances of one MIG GPU (downtime not counted)."""
    cap = np.zeros(len(sim.workload.tenants))
    for inst, owner in gpu_config.items():
        if owner is not None and owner.role == "inference":
            t = sim.tenant_index[owner.tenant]
            cap[t] += sim.capacity[t, sim.profile_index[inst.profile.id]]
    return cap


class _Cluster:
    """A configuration under construction: per GPU (fixed indices) a layout and the owner of each instance."""

    def __init__(self, gpu: GpuModel, count: int) -> None:
        self.gpu = gpu
        self.layouts: list[Layout] = [gpu.empty_layout()] * count
        self.owners: list[dict[Instance, Owner | None]] = [{} for _ in range(count)]

    def copy(self) -> _Cluster:
        other = _Cluster(self.gpu, 0)
        other.layouts = list(self.layouts)
        other.owners = [dict(o) for o in self.owners]
        return other

    def used(self) -> int:
        """GPUs with at least one instance."""
        return sum(1 for layout in self.layouts if layout.instances)

    def place(self, profile: Profile) -> tuple[int, Instance] | None:
        """Best fit: the GPU already in use that `profile` fits with the fewest compute slices left over,
        else the first unused GPU; None when no GPU has room."""
        best: tuple[int, int, Instance] | None = None
        empty: int | None = None
        for g, layout in enumerate(self.layouts):
            if not layout.instances:
                if empty is None:
                    empty = g
                continue
            inst = _fit(layout, profile)
            if inst is not None and (best is None or layout.free_compute < best[0]):
                best = (layout.free_compute, g, inst)
        if best is not None:
            return best[1], best[2]
        if empty is not None:
            inst = _fit(self.layouts[empty], profile)
            if inst is not None:
                return empty, inst
        return None

    def add(self, g: int, inst: Instance, owner: Owner | None) -> None:
        self.layouts[g] = self.layouts[g].plus(inst)
        self.owners[g][inst] = owner

    def remove(self, g: int, inst: Instance) -> None:
        self.layouts[g] = self.layouts[g].minus(inst)
        del self.owners[g][inst]

    def configuration(self) -> Configuration:
        gpus = tuple(
            GpuConfig(layout, tuple(owners[i] for i in layout.instances))
            for layout, owners in zip(self.layouts, self.owners, strict=True)
        )
        return Configuration(self.gpu, gpus)


def _largest_fitting(build: Callable[[float], _Cluster | None], steps: int = 10) -> _Cluster:
    """`build(1.0)`, or when that does not fit the GPUs, `build(f)` for the largest share f of the demand
    (bisection) that fits: the demand is scaled down evenly rather than some tenants dropped."""
    full = build(1.0)
    if full is not None:
        return full
    low, best = 0.0, build(0.0)
    assert best is not None
    high = 1.0
    for _ in range(steps):
        mid = (low + high) / 2
        trial = build(mid)
        if trial is None:
            high = mid
        else:
            low, best = mid, trial
    return best


def _add_retraining(cluster: _Cluster, state: ClusterState) -> None:
    """Give each running retraining job one instance of the room the plan left: idle instances, free
    slots, unused GPUs. Jobs that need the highest rate to finish in time choose first; each takes the
    fastest instance no larger than its fair share of the free compute slices (the room divided among
    the jobs still to serve, and at least the smallest instance that finishes the job in time), the one
    it already has on a tie, else one placed to leave the most room."""
    sim, gpu = state.simulator, state.simulator.gpu
    _, progress, active, left = _upcoming(state)
    remaining = sim.samples - progress
    jobs = [t for t in range(len(sim.workload.tenants)) if active[t] and remaining[t] > 0]
    jobs.sort(key=lambda t: -remaining[t] / left[t])
    previous: dict[int, tuple[int, Instance]] = {}
    if state.current is not None:
        for placed in state.current.placed():
            if placed.owner is not None and placed.owner.role == "retraining":
                previous[sim.tenant_index[placed.owner.tenant]] = (placed.gpu, placed.instance)
    every = gpu.candidates(gpu.base_profiles())
    for served, t in enumerate(jobs):
        options: list[tuple[int, Instance, bool]] = []  # gpu, instance, whether it must be created
        free = 0
        seen_empty = False
        for g, layout in enumerate(cluster.layouts):
            if not layout.instances:
                free += gpu.compute_slices
                if seen_empty:
                    continue  # unused GPUs are alike: offer the first only
                seen_empty = True
            idle = [i for i, o in cluster.owners[g].items() if o is None]
            if layout.instances:
                free += layout.free_compute + sum(i.profile.compute for i in idle)
            options += [(g, i, False) for i in idle]
            options += [(g, c, True) for c in every if layout.can_add(c)]
        rate = {o: float(sim.train_rate[t, sim.profile_index[o[1].profile.id]]) for o in options}
        viable = [o for o in options if rate[o] > 0]
        if not viable:
            continue
        finishing = [o[1].profile.compute for o in viable if remaining[t] / rate[o] <= left[t]]
        share = max(free / (len(jobs) - served), min(finishing, default=0))
        within = [o for o in viable if o[1].profile.compute <= share]
        if not within:
            within = [min(viable, key=lambda o: (o[1].profile.compute, -rate[o]))]
        top = max(rate[o] for o in within)

        def key(option: tuple[int, Instance, bool], t: int = t) -> tuple[float, ...]:
            g, inst, new = option
            room = sum(cluster.layouts[g].plus(inst).can_add(c) for c in every) if new else len(every)
            return (previous.get(t) != (g, inst), new, -room, not cluster.layouts[g].instances, g)

        g, inst, new = min((o for o in within if rate[o] >= top * (1 - 1e-9)), key=key)
        owner = Owner(sim.workload.tenants[t].name, "retraining")
        if new:
            cluster.add(g, inst, owner)
        else:
            cluster.owners[g][inst] = owner


# -- as-is: whole GPUs, time-shared ------------------------------------------------------------


class AsIsPlanner(Planner):
    """Whole GPUs with MIG disabled, tenants time-sharing them: A100s used as they are, the baseline
    MIG-serving (arXiv 2109.11067) and ParvaGPU compare against.

    Each tenant gets as many dedicated GPUs as its demand fills (`Simulator.time_shared_capacity` with
    one sharer); the remainders are packed first-fit decreasing onto shared GPUs, a tenant joining a GPU
    only when every sharer's slice of it (its capacity among k + 1 sharers) still covers its remainder:
    the bin-packing heuristic for the fewest GPUs, which is what serve mode asks. When that needs more
    GPUs than there are, the GPUs are shared greedily instead: repeatedly the (GPU, tenant) pairing
    that raises the total served req/s most. In dynamic mode it replans each interval but keeps the
    running assignment while that still covers the forecast on as many GPUs, and lines new GPUs up
    with the old ones so that tenants stay where they were. Whole GPUs have no instance to retrain on:
    retraining tenants only drift.
    """

    name = "as-is"

    def plan(self, state: ClusterState) -> Decision:
        sim, workload = state.simulator, state.workload
        demand = state.forecast[0]
        groups = _cover_time_shared(sim, demand)
        if len(groups) > workload.gpu_count:
            groups = _share_greedily(sim, demand, workload.gpu_count)
        names = workload.tenant_names
        current = state.current
        if current is not None and all(not g.mig_enabled or not g.layout.instances for g in current.gpus):
            capacity = np.zeros(len(names))
            for g in current.gpus:
                for name in g.time_shared:
                    t = sim.tenant_index[name]
                    capacity[t] += sim.time_shared_capacity(t, len(g.time_shared))
            in_use = sum(1 for g in current.gpus if g.time_shared)
            if (capacity >= demand - _EPS).all() and len(groups) >= in_use:
                return Decision(current)
        slots: list[tuple[str, ...]] = [()] * workload.gpu_count
        previous = [set(g.time_shared) for g in current.gpus] if current is not None else []
        previous += [set()] * (workload.gpu_count - len(previous))
        members = [{names[t] for t in group} for group in groups]
        pairs = sorted(
            ((len(previous[g] & m), -g, i) for i, m in enumerate(members) for g in range(workload.gpu_count)),
            reverse=True,
        )
        done: set[int] = set()
        for _, neg_g, i in pairs:
            g = -neg_g
            if i in done or slots[g]:
                continue
            slots[g] = tuple(names[t] for t in groups[i])
            done.add(i)
        gpus = tuple(GpuConfig.whole(workload.gpu, members) for members in slots)
        return Decision(Configuration(workload.gpu, gpus))


def _cover_time_shared(sim: Simulator, demand: np.ndarray) -> list[tuple[int, ...]]:
    """Dedicated GPUs per tenant plus first-fit-decreasing sharing of the remainders."""
    groups: list[tuple[int, ...]] = []
    remainders: list[tuple[float, int, float]] = []
    for t in np.argsort(-demand, kind="stable"):
        t = int(t)
        alone = sim.time_shared_capacity(t, 1)
        if demand[t] <= 0 or alone <= 0:
            continue
        full = math.ceil(demand[t] / alone - _EPS) - 1
        rest = demand[t] - full * alone
        groups += [(t,)] * full
        remainders.append((rest / alone, t, rest))
    shared: list[list[int]] = []
    need: dict[int, float] = {}
    for _, t, rest in sorted(remainders, key=lambda r: -r[0]):
        need[t] = rest
        for group in shared:
            k = len(group) + 1
            if all(sim.time_shared_capacity(s, k) >= need[s] - _EPS for s in [*group, t]):
                group.append(t)
                break
        else:
            shared.append([t])
    groups += [tuple(g) for g in shared]
    return groups


def _share_greedily(sim: Simulator, demand: np.ndarray, count: int) -> list[tuple[int, ...]]:
    """Up to `count` time-shared GPUs: repeatedly add the tenant to the GPU that raises served req/s most."""
    n = len(demand)
    groups: list[list[int]] = [[] for _ in range(count)]
    capacity = np.zeros(n)
    tsc = sim.time_shared_capacity

    def served(t: int, cap: float) -> float:
        return min(float(demand[t]), cap)

    while True:
        best: tuple[float, int, int] | None = None
        for g, group in enumerate(groups):
            k = len(group)
            loss = sum(
                served(s, capacity[s] - tsc(s, k) + tsc(s, k + 1)) - served(s, capacity[s]) for s in group
            )
            for t in range(n):
                if t in group or demand[t] <= 0:
                    continue
                gain = served(t, capacity[t] + tsc(t, k + 1)) - served(t, capacity[t]) + loss
                if gain > _EPS and (best is None or gain > best[0]):
                    best = (gain, g, t)
            if not group:
                break  # every empty GPU is alike: look at the first only
        if best is None:
            break
        _, g, t = best
        k = len(groups[g])
        for s in groups[g]:
            capacity[s] += tsc(s, k + 1) - tsc(s, k)
        capacity[t] += tsc(t, k + 1)
        groups[g].append(t)
    return [tuple(g) for g in groups if g]


# -- parva: ParvaGPU -----------------------------------------------------------------------------


def _parva_segments(sim: Simulator, tenant: int, rate: float) -> list[Profile]:
    """ParvaGPU's segment configurator for one tenant: the optimal triplet's instance size (highest
    throughput per compute slice, ties to the smaller size) repeated while the demand exceeds it, then
    the smallest size whose best segment covers the remainder (demand matching)."""
    points = _size_points(sim, tenant)
    if rate <= 0 or not points:
        return []
    size = max(points, key=lambda c: (points[c][1] / c, -c))
    profile, cap = points[size]
    count = max(math.ceil(rate / cap - _EPS) - 1, 0)
    rest = rate - count * cap
    last = next(points[c][0] for c in points if points[c][1] >= rest - _EPS)
    return [profile] * count + [last]


def _allocate(cluster: _Cluster, segments: Iterable[tuple[Profile, Owner]]) -> bool:
    """ParvaGPU's segment allocator: largest instances first, each best-fit (False: out of GPUs)."""
    for profile, owner in sorted(segments, key=lambda s: -s[0].compute):
        spot = cluster.place(profile)
        if spot is None:
            return False
        cluster.add(*spot, owner)
    return True


def _parva_optimize(cluster: _Cluster, sim: Simulator) -> _Cluster:
    """ParvaGPU's allocation optimization: from the last GPU back, a GPU at most 4/7 full has its
    segments re-expressed as 2- and 1-slice segments of the same tenants (2s when they beat two 1s per
    slice), placed best-fit, which fills the holes of fuller GPUs. The rate freed and not yet re-placed
    carries over per tenant, as in ParvaGPU. A GPU whose segments cannot all be re-placed, or whose
    re-placement would open a GPU, is left as it was."""
    pending = np.zeros(len(sim.workload.tenants))
    threshold = sim.gpu.compute_slices * 4 // 7
    points = [_size_points(sim, t) for t in range(len(sim.workload.tenants))]
    for g in reversed(range(len(cluster.layouts))):
        layout = cluster.layouts[g]
        if not layout.instances or layout.compute_used > threshold:
            continue
        before, saved_pending, used = cluster.copy(), pending.copy(), cluster.used()
        ok = True
        for inst in layout.instances:
            owner = cluster.owners[g][inst]
            if owner is None or owner.role != "inference":
                continue
            t = sim.tenant_index[owner.tenant]
            one, two = points[t].get(1), points[t].get(2)
            if one is None and two is None:
                continue
            pending[t] += sim.capacity[t, sim.profile_index[inst.profile.id]]
            cluster.remove(g, inst)
            small: list[Profile] = []
            if two is not None and (one is None or two[1] / 2 > one[1]):
                n2 = math.ceil(pending[t] / two[1] - _EPS) if one is None else math.floor(pending[t] / two[1])
                small += [two[0]] * max(n2, 0)
                pending[t] -= max(n2, 0) * two[1]
            if one is not None:
                n1 = max(math.ceil(pending[t] / one[1] - _EPS), 0)
                small += [one[0]] * n1
                pending[t] -= n1 * one[1]
            if not _allocate(cluster, [(p, owner) for p in small]):
                ok = False
                break
        if not ok or cluster.used() > used:
            cluster, pending = before, saved_pending
    return cluster


class ParvaPlanner(Planner):
    """ParvaGPU (Lee et al., SC24, arXiv 2409.14447): MIG instances shared by MPS processes, sized per
    tenant and packed to use the fewest GPUs.

    1. Segment configurator: per tenant the optimal triplet (instance size, batch, processes) is the
       SLO-feasible segment of highest throughput per compute slice (`_parva_segments`; the simulator's
       best segment per profile is already the best (batch, processes) of that size).
    2. Demand matching: as many optimal segments as the demand fills, plus the smallest segment that
       covers the remainder.
    3. Segment allocator: segments largest first, each best-fit into the GPU it leaves fewest free
       slices on, at ParvaGPU's placement order (`_PARVA_STARTS`) checked against rlmig's geometry
       (so two 3g instances may share a GPU, which ParvaGPU's allocator forbids); then the allocation
       optimization (`_parva_optimize`) dissolves lightly used GPUs into the holes of the others.

    In dynamic mode it plans from scratch every interval, as ParvaGPU has no notion of reconfiguration
    cost. When the plan needs more GPUs than the workload has, every tenant's demand is scaled down by
    the same factor until it fits (ParvaGPU assumes enough GPUs). Retraining jobs get the room left over
    (`_add_retraining`) unless ``retraining=False``.
    """

    name = "parva"

    def __init__(self, retraining: bool = True, optimize: bool = True) -> None:
        self.retraining = retraining
        self.optimize = optimize

    def plan(self, state: ClusterState) -> Decision:
        sim, workload = state.simulator, state.workload
        demand = state.forecast[0]

        def build(share: float) -> _Cluster | None:
            cluster = _Cluster(workload.gpu, workload.gpu_count)
            segments = [
                (p, Owner(tenant.name))
                for t, tenant in enumerate(workload.tenants)
                for p in _parva_segments(sim, t, float(demand[t]) * share)
            ]
            if not _allocate(cluster, segments):
                return None
            return _parva_optimize(cluster, sim) if self.optimize else cluster

        cluster = _largest_fitting(build)
        if self.retraining:
            _add_retraining(cluster, state)
        return Decision(cluster.configuration())


# -- static-best: PARIS --------------------------------------------------------------------------


def _paris_cluster(
    state: ClusterState, *, retraining: bool = True, finish_within: float = 0.5, fill: bool | None = None
) -> _Cluster:
    """The PARIS-style static configuration of `StaticBestPlanner` (see there)."""
    sim, workload = state.simulator, state.workload
    average = workload.rates.mean(axis=0)
    reserved: list[tuple[Profile, Owner]] = []
    if retraining:
        for t, tenant in enumerate(workload.tenants):
            if tenant.retraining is None:
                continue
            rt = tenant.retraining
            fast = [
                (p.compute, -sim.train_rate[t, j], p)
                for p, j in _columns(sim)
                if sim.train_rate[t, j] * rt.window_s * finish_within >= rt.samples
            ]
            if fast:
                reserved.append((min(fast, key=lambda f: f[:2])[2], Owner(tenant.name, "retraining")))

    def build(share: float, reserve: list[tuple[Profile, Owner]]) -> _Cluster | None:
        cluster = _Cluster(workload.gpu, workload.gpu_count)
        segments = [
            (p, Owner(tenant.name))
            for t, tenant in enumerate(workload.tenants)
            for p in _parva_segments(sim, t, float(average[t]) * share)
        ]
        return cluster if _allocate(cluster, [*reserve, *segments]) else None

    if build(0.0, reserved) is None:
        reserved = []
    cluster = _largest_fitting(lambda share: build(share, reserved))
    if workload.mode == "dynamic" if fill is None else fill:
        _fill_proportionally(cluster, sim, average)
    return cluster


def _fill_proportionally(cluster: _Cluster, sim: Simulator, demand: np.ndarray) -> None:
    """Partition the rest of the server: one instance at a time (holes first, then unused GPUs) to the
    tenant whose capacity is the smallest multiple of its average load, so the headroom each tenant
    gets over its average is proportional to that average."""
    n = len(demand)
    capacity = np.zeros(n)
    for layout, owners in zip(cluster.layouts, cluster.owners, strict=True):
        for inst in layout.instances:
            owner = owners[inst]
            if owner is not None and owner.role == "inference":
                t = sim.tenant_index[owner.tenant]
                capacity[t] += sim.capacity[t, sim.profile_index[inst.profile.id]]
    points = [_size_points(sim, t) for t in range(n)]
    while True:
        order = sorted((capacity[t] / demand[t], t) for t in range(n) if demand[t] > 0 and points[t])
        for _, t in order:
            spot = next((s for p, _ in points[t].values() if (s := cluster.place(p)) is not None), None)
            if spot is not None:
                g, inst = spot
                cluster.add(g, inst, Owner(sim.workload.tenants[t].name))
                capacity[t] += sim.capacity[t, sim.profile_index[inst.profile.id]]
                break
        else:
            return


class StaticBestPlanner(Planner):
    """A static heterogeneous partition after PARIS (Kim, Choi and Rhu, DAC'22, arXiv 2202.13481):
    chosen once, from the load expected over the whole run, then never changed.

    PARIS gives each load class the partition size at which its model runs most efficiently within the
    SLO and as many partitions of each size as the load of that class needs, so that the server holds
    a heterogeneous mix of sizes. Here a tenant is a load class, and its expected load is its average
    rate over the run (``workload.rates``; the only baseline that looks at the whole run): its
    instances are the size of highest throughput per slice within the SLO, as many as the average
    needs plus a right-sized last one, packed best-fit. In dynamic mode the rest of the server is then
    partitioned too (PARIS partitions every GPU), one instance at a time to the tenant with the least
    headroom over its average (`_fill_proportionally`); in serve mode it keeps to the fewest GPUs.

    Retraining is provisioned statically as well (``retraining=True``, a choice: PARIS is inference
    only, and a partition with no room to retrain would leave the model drifting all run): each
    retraining tenant gets one fixed retraining instance, the smallest that completes a window's job
    within `finish_within` of the window, reserved before inference; none when no instance can.
    """

    name = "static-best"

    def __init__(self, retraining: bool = True, finish_within: float = 0.5) -> None:
        self.retraining = retraining
        self.finish_within = finish_within
        self._config: Configuration | None = None

    def reset(self, workload: Workload) -> None:
        self._config = None

    def plan(self, state: ClusterState) -> Decision:
        if self._config is None or len(self._config.gpus) != state.workload.gpu_count:
            cluster = _paris_cluster(state, retraining=self.retraining, finish_within=self.finish_within)
            self._config = cluster.configuration()
        return Decision(self._config)


# -- greedy: MIG-serving -------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _mixes(gpu: GpuModel) -> tuple[tuple[tuple[Profile, ...], tuple[Layout, ...]], ...]:
    """The distinct profile mixes of the maximal layouts (base profiles), each with its instances'
    profiles largest first and every layout (placement) that realises it."""
    by_mix: dict[tuple[Profile, ...], list[Layout]] = defaultdict(list)
    for layout in gpu.layouts(maximal=True):
        mix = tuple(sorted((i.profile for i in layout.instances), key=lambda p: (-p.compute, p.slots, p.id)))
        by_mix[mix].append(layout)
    return tuple((mix, tuple(layouts)) for mix, layouts in by_mix.items())


def _assign_owners(
    layout: Layout, wanted: Sequence[tuple[Profile, int]], previous: GpuConfig | None, names: Sequence[str]
) -> tuple[tuple[Owner | None, ...], int]:
    """Owners for `layout`'s instances from the (profile, tenant or -1) list, keeping the previous owner
    of an instance in place wherever the list allows; also returns how many were kept."""
    left: dict[Profile, list[int]] = defaultdict(list)
    for profile, t in wanted:
        left[profile].append(t)
    before: dict[Instance, Owner | None] = dict(previous.items()) if previous is not None else {}
    owners: dict[Instance, Owner | None] = {}
    kept = 0
    for inst in layout.instances:
        old = before.get(inst)
        if old is not None and old.role == "inference" and names.index(old.tenant) in left[inst.profile]:
            left[inst.profile].remove(names.index(old.tenant))
            owners[inst] = old
            kept += 1
    for inst in layout.instances:
        if inst not in owners:
            t = left[inst.profile].pop(0)
            owners[inst] = Owner(names[t]) if t >= 0 else None
    return tuple(owners[i] for i in layout.instances), kept


class GreedyPlanner(Planner):
    """MIG-serving's greedy algorithm (Tan et al., arXiv 2109.11067) for the Reconfigurable Machine
    Scheduling problem: GPU by GPU, pick the GPU configuration (a maximal layout and an owner for each
    of its instances) that is the most effective for the demand still unmet, until the demand is met or
    the GPUs run out.

    Effectiveness is MIG-serving's completion-rate utility: the sum over tenants of the share of the
    tenant's demand the configuration serves, Σ_t min(C_t, unmet_t) / demand_t. Every distinct profile
    mix of the maximal layouts is tried; its instances, largest first, go each to the tenant it raises
    the utility of most; the best mix wins, ties to fewer slices used. Instances of the chosen layout
    that no one needs are not created (`rlmig.configuration.settle`). MIG-serving's genetic and MCTS
    refinements are not reproduced.

    Dynamic mode reruns the greedy every interval, and keeps what still works (MIG-serving moves to a
    new deployment keeping instances in place where it can): at each step a GPU of the running
    configuration, left as it is, is chosen over the best new configuration when its utility is at least
    (1 - downtime/interval) of the new one's (a changed instance loses that share of the interval); a
    new configuration goes to the free GPU and placement that keep the most (instance, owner) pairs of
    the running one. Retraining jobs get the room left over (`_add_retraining`) unless
    ``retraining=False``.
    """

    name = "greedy"

    def __init__(self, retraining: bool = True, keep: bool = True) -> None:
        self.retraining = retraining
        self.keep = keep

    def plan(self, state: ClusterState) -> Decision:
        sim, workload = state.simulator, state.workload
        names = workload.tenant_names
        demand = np.maximum(state.forecast[0], 0.0)
        scale = np.divide(1.0, demand, out=np.zeros_like(demand), where=demand > 0)
        unmet = demand.copy()
        current = state.current if self.keep else None
        keepable: dict[int, np.ndarray] = {}
        if current is not None:
            for g, gpu_config in enumerate(current.gpus[: workload.gpu_count]):
                if gpu_config.mig_enabled and gpu_config.layout.instances:
                    cap = _inference_capacity(sim, gpu_config)
                    if cap.any():
                        keepable[g] = cap
        tolerance = 1.0 - workload.downtime_s / workload.interval_s
        chosen: dict[int, GpuConfig] = {}
        free = list(range(workload.gpu_count))
        mixes = _mixes(workload.gpu)
        columns = [[sim.profile_index[p.id] for p in mix] for mix, _ in mixes]
        while free and (unmet > _EPS).any():
            fresh = self._best_mix(sim.capacity, columns, mixes, unmet, scale)
            kept = max(
                ((float(np.minimum(cap, unmet) @ scale), g) for g, cap in keepable.items()),
                default=None,
            )
            if kept is not None and kept[0] > _EPS and (fresh is None or kept[0] >= fresh[0] * tolerance):
                g = kept[1]
                assert current is not None
                chosen[g] = current.gpus[g]
                unmet = np.maximum(unmet - keepable.pop(g), 0.0)
                free.remove(g)
                continue
            if fresh is None:
                break
            _, m, wanted = fresh
            best: tuple[tuple[int, bool, int], int, GpuConfig] | None = None
            for layout in mixes[m][1]:
                for g in free:
                    previous = current.gpus[g] if current is not None and g < len(current.gpus) else None
                    owners, kept_pairs = _assign_owners(layout, wanted, previous, names)
                    score = (kept_pairs, g not in keepable, -g)
                    if best is None or score > best[0]:
                        best = (score, g, GpuConfig(layout, owners))
            assert best is not None
            _, g, gpu_config = best
            chosen[g] = gpu_config
            unmet = np.maximum(unmet - _inference_capacity(sim, gpu_config), 0.0)
            free.remove(g)
            keepable.pop(g, None)
        cluster = _Cluster(workload.gpu, workload.gpu_count)
        for g, gpu_config in chosen.items():
            cluster.layouts[g] = gpu_config.layout
            cluster.owners[g] = {
                i: o if o is not None and o.role == "inference" else None for i, o in gpu_config.items()
            }
        if self.retraining:
            _add_retraining(cluster, state)
        gpus = []
        for g, (layout, owners) in enumerate(zip(cluster.layouts, cluster.owners, strict=True)):
            before = current.gpus[g].layout if current is not None and g < len(current.gpus) else None
            owned = {i: o for i, o in owners.items() if o is not None}
            gpus.append(settle(layout, owned, before or workload.gpu.empty_layout()))
        return Decision(Configuration(workload.gpu, tuple(gpus)))

    @staticmethod
    def _best_mix(
        capacity: np.ndarray,
        columns: list[list[int]],
        mixes: Sequence[tuple[tuple[Profile, ...], tuple[Layout, ...]]],
        unmet: np.ndarray,
        scale: np.ndarray,
    ) -> tuple[float, int, list[tuple[Profile, int]]] | None:
        """The most effective mix for the unmet demand: (utility, mix index, (profile, tenant) list)."""
        best: tuple[float, int, int, list[tuple[Profile, int]]] | None = None
        for m, ((mix, _), cols) in enumerate(zip(mixes, columns, strict=True)):
            left = unmet.copy()
            utility, used = 0.0, 0
            wanted: list[tuple[Profile, int]] = []
            for profile, j in zip(mix, cols, strict=True):
                gains = np.minimum(capacity[:, j], left) * scale
                t = int(gains.argmax())
                if gains[t] <= _EPS:
                    wanted.append((profile, -1))
                    continue
                wanted.append((profile, t))
                utility += float(gains[t])
                used += profile.compute
                left[t] = max(left[t] - capacity[t, j], 0.0)
            if utility > _EPS and (
                best is None
                or (utility > best[0] + _EPS)
                or (abs(utility - best[0]) <= _EPS and used < best[1])
            ):
                best = (utility, used, m, wanted)
        return None if best is None else (best[0], best[2], best[3])


# -- ekya: thief scheduler -----------------------------------------------------------------------


class EkyaPlanner(Planner):
    """Ekya's thief scheduler (Bhardwaj et al., NSDI'22, arXiv 2012.10557) on a fixed MIG layout.

    The layout is static-best's (`StaticBestPlanner`, PARIS), or the one given as ``layout`` (per GPU a
    list of ``PROFILE@START``, for example an even split): Ekya does not partition, it shares a fixed
    set of resources among inference and retraining jobs. At each retraining window start (of any
    tenant), and when a job has completed so that its instance would idle, the thief reallocates the
    layout's instances: starting from a fair allocation (instances, largest first, each to the job with
    the fewest compute slices so far; one instance at most per retraining job), it repeatedly makes the
    single steal (one instance from one job to another; `_Thief` says how a retraining job grows) that
    most improves the estimated accuracy-weighted goodput, until no steal improves it. The estimate,
    per tenant, is min(forecast, inference capacity) × the mean accuracy over the rest of its window,
    the job finishing after remaining samples / training rate (the simulator's tables and the tenants'
    Retraining parameters). Ekya's choice among retraining configurations (epochs, layers) has no
    counterpart here: a job is its samples. Between reallocations the configuration stays as it is.
    """

    name = "ekya"

    def __init__(self, layout: Sequence[Sequence[str]] | None = None, max_steals: int = 500) -> None:
        self.layout = layout
        self.max_steals = max_steals
        self._base: list[tuple[int, Instance]] | None = None
        self._layouts: list[Layout] = []

    def reset(self, workload: Workload) -> None:
        self._base = None

    def plan(self, state: ClusterState) -> Decision:
        sim, workload = state.simulator, state.workload
        if self._base is None or len(self._layouts) != workload.gpu_count:
            if self.layout is None:
                self._layouts = list(_paris_cluster(state).layouts)
            else:
                if len(self.layout) > workload.gpu_count:
                    raise RlmigError(
                        f"ekya: layout has {len(self.layout)} GPUs, the workload {workload.gpu_count}"
                    )
                given = [workload.gpu.layout(specs) for specs in self.layout]
                self._layouts = given + [workload.gpu.empty_layout()] * (workload.gpu_count - len(given))
            self._base = [(g, i) for g, layout in enumerate(self._layouts) for i in layout.instances]
        _, _, active, _ = _upcoming(state)
        current = state.current
        if current is not None and not _window_starts(state):
            retraining = [
                p.owner.tenant for p in current.placed() if p.owner and p.owner.role == "retraining"
            ]
            idle_job = any(not active[sim.tenant_index[name]] for name in retraining)
            if not idle_job:
                return Decision(current)
        owners = self._thief(state)
        cluster = _Cluster(workload.gpu, workload.gpu_count)
        cluster.layouts = list(self._layouts)
        for (g, inst), owner in zip(self._base, owners, strict=True):
            cluster.owners[g][inst] = owner
        return Decision(cluster.configuration())

    def _thief(self, state: ClusterState) -> list[Owner | None]:
        """Fair allocation, then the best single steal (or exchange, see `_Thief`) while one improves."""
        assert self._base is not None
        thief = _Thief(state, self._base)
        for _ in range(self.max_steals):
            if not thief.steal():
                break
        names = state.workload.tenant_names
        n = len(names)
        return [
            None if j < 0 else Owner(names[j]) if j < n else Owner(names[j - n], "retraining")
            for j in thief.job_of.tolist()
        ]


class _Thief:
    """The state of Ekya's thief scheduler over a fixed set of instances.

    Jobs are numbered t (inference of tenant t, for tenants with a positive forecast) and n + t (the
    running retraining job of tenant t, one instance at most). A steal moves one instance from one job
    to another. A retraining job cannot hold a second instance, so it grows by exchanging its instance
    for a larger one of another job: that job gets the smaller instance back, the same resource
    movement as an Ekya steal of the difference. The estimate of a tenant's goodput rate is
    min(forecast, inference capacity) × its mean accuracy over the rest of its window.
    """

    def __init__(self, state: ClusterState, base: Sequence[tuple[int, Instance]]) -> None:
        sim = state.simulator
        n = self.n = len(state.workload.tenants)
        accuracy, progress, active, left = _upcoming(state)
        self.accuracy, self.active, self.left = accuracy, active, left
        self.remaining = sim.samples - progress
        self.after = sim.accuracy_after
        self.rate = np.maximum(state.forecast[0], 0.0)
        cols = [sim.profile_index[inst.profile.id] for _, inst in base]
        self.cap_tab = sim.capacity[:, cols]  # (tenants, instances)
        self.train_tab = sim.train_rate[:, cols]
        count = len(base)
        self.has_inference = self.rate > 0
        self.has_job = active & (self.remaining > 0)
        jobs = [t for t in range(n) if self.has_inference[t]] + [n + t for t in range(n) if self.has_job[t]]

        # the running owners: on equal estimates a steal that undoes a change wins
        running = dict.fromkeys(base, -1)
        if state.current is not None:
            for p in state.current.placed():
                if p.owner is not None and (p.gpu, p.instance) in running:
                    t = sim.tenant_index[p.owner.tenant]
                    running[(p.gpu, p.instance)] = t if p.owner.role == "inference" else n + t
        self.running = np.array(list(running.values()), dtype=np.int64)
        self.tie = 1e-9 * max(float(self.rate.sum()), 1.0)

        # fair start: largest instances first, each to the job with the fewest slices so far
        computes = [inst.profile.compute for _, inst in base]
        self.job_of = np.full(count, -1, dtype=np.int64)
        given = dict.fromkeys(jobs, 0)
        for i in sorted(range(count), key=lambda i: -computes[i]):
            open_jobs = [j for j in jobs if j < n or given[j] == 0]
            if not open_jobs:
                break
            j = min(open_jobs, key=lambda j: (given[j], jobs.index(j)))
            self.job_of[i] = j
            given[j] += computes[i]
        self.cap = np.zeros(n)
        self.train = np.zeros(n)
        self.holder = np.full(n, -1, dtype=np.int64)  # the instance retraining each tenant
        for i, j in enumerate(self.job_of.tolist()):
            self._move(i, -1, j)

    def _move(self, i: int, a: int, b: int) -> None:
        n = self.n
        if 0 <= a < n:
            self.cap[a] -= self.cap_tab[a, i]
        elif a >= n:
            self.train[a - n], self.holder[a - n] = 0.0, -1
        if 0 <= b < n:
            self.cap[b] += self.cap_tab[b, i]
        elif b >= n:
            self.train[b - n], self.holder[b - n] = self.train_tab[b - n, i], i
        self.job_of[i] = b

    def value(self, t: np.ndarray | int, cap: np.ndarray | float, train: np.ndarray | float) -> np.ndarray:
        """Estimated accuracy-weighted goodput rate of tenant(s) t with this capacity and training rate."""
        t, cap, train = np.broadcast_arrays(np.asarray(t), np.asarray(cap, float), np.asarray(train, float))
        with np.errstate(divide="ignore", invalid="ignore"):
            finish = np.where(train > 0, self.remaining[t] / train, np.inf)
        left = self.left[t]
        done = self.active[t] & (finish < left)
        finish = np.minimum(finish, left)
        mean = np.where(
            done, (finish * self.accuracy[t] + (left - finish) * self.after[t]) / left, self.accuracy[t]
        )
        return np.minimum(self.rate[t], cap) * mean

    def steal(self) -> bool:
        """Make the best improving steal or exchange; False when none improves the estimate."""
        n, count = self.n, len(self.job_of)
        tenants = np.arange(n)
        now = self.value(tenants, self.cap, self.train)
        a = self.job_of
        owned = a >= 0
        ta = np.where(owned, a % n, 0)
        inference = owned & (a < n)
        index = np.arange(count)
        # what the giving job loses
        kept_cap = self.cap[ta] - np.where(inference, self.cap_tab[ta, index], 0.0)
        kept_train = np.where(inference, self.train[ta], 0.0)
        lose = np.where(owned, self.value(ta, kept_cap, kept_train) - now[ta], -np.inf)
        # what each receiving job gains: inference (instances x tenants), then retraining
        gain_inf = self.value(tenants[None, :], self.cap[None, :] + self.cap_tab.T, self.train[None, :])
        gain_ret = self.value(tenants[None, :], self.cap[None, :], self.train_tab.T)
        delta = np.concatenate([gain_inf, gain_ret], axis=1) - np.concatenate([now, now])[None, :]
        delta += lose[:, None]
        # a job moving between the inference and the retraining of one tenant: both at once
        own = index[owned]
        t = ta[owned]
        delta[own, np.where(inference[owned], n + t, t)] = (
            np.where(
                inference[owned],
                self.value(t, self.cap[t] - self.cap_tab[t, own], self.train_tab[t, own]),
                self.value(t, self.cap[t] + self.cap_tab[t, own], 0.0),
            )
            - now[t]
        )
        jobs = np.arange(2 * n)
        undo = (a != self.running)[:, None].astype(float) - (jobs[None, :] != self.running[:, None])
        delta += self.tie * undo
        valid = np.concatenate([self.has_inference, self.has_job & (self.holder < 0)])
        delta[:, ~valid] = -np.inf
        delta[own, a[owned]] = -np.inf  # not to the job it is with
        i, b = np.unravel_index(int(np.argmax(delta)), delta.shape)
        best = (float(delta[i, b]), [(int(i), int(b))])
        # exchanges: retraining job n + u gives its instance h to job a[i] and takes instance i
        for u in np.flatnonzero(self.holder >= 0).tolist():
            h = int(self.holder[u])
            other = owned & (index != h)
            same = inference & (ta == u)
            into_u = self.value(u, self.cap[u], self.train_tab[u]) - now[u]
            cap_v = self.cap[ta] - self.cap_tab[ta, index] + self.cap_tab[ta, h]
            change = np.where(
                same,
                self.value(u, self.cap[u] - self.cap_tab[u] + self.cap_tab[u, h], self.train_tab[u]) - now[u],
                into_u
                + np.where(
                    inference,
                    self.value(ta, cap_v, self.train[ta]),
                    self.value(ta, self.cap[ta], self.train_tab[ta, h]),
                )
                - now[ta],
            )
            undo_i = (a != self.running).astype(float) - (n + u != self.running)
            undo_h = float(n + u != self.running[h]) - (a != self.running[h])
            change = np.where(other, change + self.tie * (undo_i + undo_h), -np.inf)
            i = int(np.argmax(change))
            if change[i] > best[0]:
                best = (float(change[i]), [(i, n + u), (h, int(a[i]))])
        if not best[0] > self.tie / 2:
            return False
        moves = [(i, int(self.job_of[i]), b) for i, b in best[1]]
        for i, a_, _ in moves:
            self._move(i, a_, -1)
        for i, _, b in moves:
            self._move(i, -1, b)
        return True


BASELINES: dict[str, type[Planner]] = {
    "as-is": AsIsPlanner,
    "static-best": StaticBestPlanner,
    "parva": ParvaPlanner,
    "greedy": GreedyPlanner,
    "ekya": EkyaPlanner,
}
"""The baselines by CLI name."""
