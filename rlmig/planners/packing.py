"""What the baseline planners share: a cluster of GPUs being packed with segments (`Cluster`), ParvaGPU's
placement order, per-size capacities, the jobs of the window, and handing spare room to retraining.

Every speed figure comes from the one simulator's tables (`Simulator.serve_rate`, ``train_rate``,
``time_shared_capacity``), so a baseline sees exactly what the simulator will score.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.geometry import GpuModel, Instance, Layout, Profile
from rlmig.planners.base import ClusterState
from rlmig.simulator import Simulator

EPS = 1e-9


_PARVA_STARTS: dict[int, tuple[int, ...]] = {1: (0, 6, 4, 1, 2, 3, 5), 2: (0, 4, 2), 3: (4, 0)}
"""ParvaGPU's placement order per instance size (its ``find_fit_placement``); other starts follow."""


def _starts(profile: Profile) -> tuple[int, ...]:
    preferred = [s for s in _PARVA_STARTS.get(profile.compute, ()) if s in profile.starts]
    return (*preferred, *(s for s in profile.starts if s not in preferred))


def fit_instance(layout: Layout, profile: Profile) -> Instance | None:
    """The instance of `profile` to add to `layout` at the first free start in ParvaGPU's order."""
    for start in _starts(profile):
        inst = Instance(profile, start)
        if layout.can_add(inst):
            return inst
    return None


def base_columns(sim: Simulator) -> list[tuple[Profile, int]]:
    """The base profiles (no media extensions) with their column in the simulator's tables."""
    return [(p, sim.profile_index[p.id]) for p in sim.gpu.base_profiles()]


def size_points(sim: Simulator, tenant: int) -> dict[int, tuple[Profile, float]]:
    """Per instance size (compute slices) the profile of highest capacity for `tenant`, and that capacity.

    The profiles of one size differ only in memory (1g.10gb, 1g.20gb); ties go to fewer memory slots.
    Sizes on which no segment meets the SLO are left out.
    """
    points: dict[int, tuple[Profile, float]] = {}
    for profile, j in base_columns(sim):
        cap = float(sim.serve_rate[tenant, j])
        if cap <= 0:
            continue
        best = points.get(profile.compute)
        if best is None or (cap, -profile.slots) > (best[1], -best[0].slots):
            points[profile.compute] = (profile, cap)
    return dict(sorted(points.items()))


def upcoming(state: ClusterState) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, retraining progress, active jobs and seconds left in the window, as they will be at the
    start of ``state.interval`` (a window starting then drifts the model and starts a fresh job)."""
    sim, k = state.simulator, state.interval
    start = sim.window_start(k, state.tenants)
    left = sim.dynamics.seconds_left(k)
    return start.accuracy, start.progress, start.active & sim.has_retraining, left


def window_starts(state: ClusterState) -> bool:
    """Whether any tenant's retraining window starts with ``state.interval``."""
    return bool(state.simulator.dynamics.window_starts(state.interval).any())


def inference_capacity(sim: Simulator, gpu_config: GpuConfig) -> np.ndarray:
    """req/s per tenant of the inference instances of one MIG GPU (downtime not counted)."""
    cap = np.zeros(len(sim.workload.tenants))
    for inst, owner in gpu_config.items():
        if owner is not None and owner.role == "inference":
            t = sim.tenant_index[owner.tenant]
            cap[t] += sim.serve_rate[t, sim.profile_index[inst.profile.id]]
    return cap


class Cluster:
    """A configuration under construction: per GPU (fixed indices) a layout and the owner of each instance."""

    def __init__(self, gpu: GpuModel, count: int) -> None:
        self.gpu = gpu
        self.layouts: list[Layout] = [gpu.empty_layout()] * count
        self.owners: list[dict[Instance, Owner | None]] = [{} for _ in range(count)]

    def copy(self) -> Cluster:
        other = Cluster(self.gpu, 0)
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
            inst = fit_instance(layout, profile)
            if inst is not None and (best is None or layout.free_compute < best[0]):
                best = (layout.free_compute, g, inst)
        if best is not None:
            return best[1], best[2]
        if empty is not None:
            inst = fit_instance(self.layouts[empty], profile)
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


def largest_fitting(build: Callable[[float], Cluster | None], steps: int = 10) -> Cluster:
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


def add_retraining(cluster: Cluster, state: ClusterState) -> None:
    """Give each running retraining job one instance of the room the plan left: idle instances, free
    slots, unused GPUs. Jobs that need the highest rate to finish in time choose first; each takes the
    fastest instance no larger than its fair share of the free compute slices (the room divided among
    the jobs still to serve, and at least the smallest instance that finishes the job in time), the one
    it already has on a tie, else one placed to leave the most room."""
    sim, gpu = state.simulator, state.simulator.gpu
    _, progress, active, left = upcoming(state)
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


def allocate(cluster: Cluster, segments: Iterable[tuple[Profile, Owner]]) -> bool:
    """ParvaGPU's segment allocator: largest instances first, each best-fit (False: out of GPUs)."""
    for profile, owner in sorted(segments, key=lambda s: -s[0].compute):
        spot = cluster.place(profile)
        if spot is None:
            return False
        cluster.add(*spot, owner)
    return True
