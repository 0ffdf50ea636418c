"""What the baseline planners share: a cluster of GPUs being packed with segments (`Cluster`), ParvaGPU's
placement order, per-size capacities, the jobs of the window, and handing spare room to retraining.

Every speed figure comes from the one simulator's tables (`Simulator.serve_rate`, ``train_rate``,
``time_shared_capacity``), so a baseline sees exactly what the simulator will score.
"""

from __future__ import annotations

from bisect import insort
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
    """A configuration under construction: per GPU (fixed indices) a layout and the owner of each instance.

    GPUs in use are indexed by layout, so that a best-fit placement looks at each distinct layout once
    rather than at every GPU (the packing heuristics stay near-linear in the cluster size). Change
    layouts through `add`, `remove` and `set_gpu` only; `mark` and `undo` take changes back."""

    def __init__(self, gpu: GpuModel, count: int) -> None:
        self.gpu = gpu
        self.layouts: list[Layout] = [gpu.empty_layout()] * count
        self.owners: list[dict[Instance, Owner | None]] = [{} for _ in range(count)]
        self._by_layout: dict[tuple[Instance, ...], list[int]] = {}  # used GPUs per layout, ascending
        self._empty: list[int] = list(range(count))  # unused GPUs, ascending
        self._fits: dict[tuple[tuple[Instance, ...], Profile], Instance | None] = {}
        self._log: list[tuple[int, Layout, dict[Instance, Owner | None]]] = []

    def used(self) -> int:
        """GPUs with at least one instance."""
        return len(self.layouts) - len(self._empty)

    def _fit(self, layout: Layout, profile: Profile) -> Instance | None:
        key = (layout.instances, profile)
        if key not in self._fits:
            self._fits[key] = fit_instance(layout, profile)
        return self._fits[key]

    def place(self, profile: Profile) -> tuple[int, Instance] | None:
        """Best fit: the GPU already in use that `profile` fits with the fewest compute slices left over
        (the lowest index on a tie), else the first unused GPU; None when no GPU has room."""
        best: tuple[tuple[int, int], Instance] | None = None
        for gpus in self._by_layout.values():
            layout = self.layouts[gpus[0]]
            inst = self._fit(layout, profile)
            if inst is not None and (best is None or (layout.free_compute, gpus[0]) < best[0]):
                best = ((layout.free_compute, gpus[0]), inst)
        if best is not None:
            return best[0][1], best[1]
        if self._empty:
            inst = self._fit(self.layouts[self._empty[0]], profile)
            if inst is not None:
                return self._empty[0], inst
        return None

    def _set_layout(self, g: int, layout: Layout) -> None:
        old = self.layouts[g]
        if old.instances:
            gpus = self._by_layout[old.instances]
            gpus.remove(g)
            if not gpus:
                del self._by_layout[old.instances]
        else:
            self._empty.remove(g)
        if layout.instances:
            insort(self._by_layout.setdefault(layout.instances, []), g)
        else:
            insort(self._empty, g)
        self.layouts[g] = layout

    def set_gpu(self, g: int, layout: Layout, owners: dict[Instance, Owner | None]) -> None:
        """Give GPU `g` a layout and the owners of its instances."""
        self._log.append((g, self.layouts[g], self.owners[g]))
        self._set_layout(g, layout)
        self.owners[g] = owners

    def add(self, g: int, inst: Instance, owner: Owner | None) -> None:
        self.set_gpu(g, self.layouts[g].plus(inst), {**self.owners[g], inst: owner})

    def remove(self, g: int, inst: Instance) -> None:
        owners = dict(self.owners[g])
        del owners[inst]
        self.set_gpu(g, self.layouts[g].minus(inst), owners)

    def mark(self) -> int:
        """A point to come back to with `undo` (layout changes; owners given to instances in place are
        not recorded)."""
        return len(self._log)

    def undo(self, mark: int) -> None:
        """Take back every `add`, `remove` and `set_gpu` since `mark`."""
        while len(self._log) > mark:
            g, layout, owners = self._log.pop()
            self._set_layout(g, layout)
            self.owners[g] = owners

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
    _, progress, active, left = state.upcoming()
    remaining = sim.samples - progress
    jobs = [t for t in range(len(sim.workload.tenants)) if active[t] and remaining[t] > 0]
    jobs.sort(key=lambda t: -remaining[t] / left[t])
    previous: dict[int, tuple[int, Instance]] = {}
    if state.current is not None:
        for placed in state.current.placed():
            if placed.owner is not None and placed.owner.role == "retraining":
                previous[sim.tenant_index[placed.owner.tenant]] = (placed.gpu, placed.instance)
    every = gpu.candidates(gpu.base_profiles())
    creatable: dict[tuple[Instance, ...], list[Instance]] = {}
    for served, t in enumerate(jobs):
        # GPUs with the same layout and the same idle instances offer the same options: only the first
        # of each kind is offered (and the GPU in use of the job's previous instance, which wins a tie)
        free = 0
        offered: dict[tuple[tuple[Instance, ...], tuple[Instance, ...]], int] = {}
        gpus: list[int] = []
        for g, layout in enumerate(cluster.layouts):
            idle = tuple(i for i, o in cluster.owners[g].items() if o is None)
            free += layout.free_compute + sum(i.profile.compute for i in idle)
            kind = (layout.instances, idle)
            if kind not in offered or (layout.instances and g == previous.get(t, (None,))[0]):
                offered.setdefault(kind, g)
                gpus.append(g)
        options: list[tuple[int, Instance, bool]] = []  # gpu, instance, whether it must be created
        for g in gpus:
            layout = cluster.layouts[g]
            if layout.instances not in creatable:
                creatable[layout.instances] = [c for c in every if layout.can_add(c)]
            options += [(g, i, False) for i, o in cluster.owners[g].items() if o is None]
            options += [(g, c, True) for c in creatable[layout.instances]]
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
