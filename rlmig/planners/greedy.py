"""greedy: MIG-serving's greedy (arXiv 2109.11067): the most effective GPU configuration first, until
demand is met (the genetic and MCTS refinements are not reproduced)."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from rlmig.configuration import Configuration, GpuConfig, Owner, settle
from rlmig.geometry import GpuModel, Instance, Layout, Profile
from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.planners.packing import (
    EPS,
    Cluster,
    add_retraining,
    inference_capacity,
)


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
    the running one. Retraining jobs get the room left over (`add_retraining`) unless
    ``retraining=False``.
    """

    name = "greedy"
    objective = (
        "the forecast load with the GPU configurations that serve the most first (MIG-serving's greedy);"
        " spare room to running retraining jobs"
    )

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
                    cap = inference_capacity(sim, gpu_config)
                    if cap.any():
                        keepable[g] = cap
        tolerance = sim.dynamics.changed_uptime  # a changed instance works this share of the interval
        chosen: dict[int, GpuConfig] = {}
        free = list(range(workload.gpu_count))
        mixes = _mixes(workload.gpu)
        width = max(len(mix) for mix, _ in mixes)
        columns = np.array(
            [[sim.profile_index[p.id] for p in mix] + [-1] * (width - len(mix)) for mix, _ in mixes]
        )
        # the GPUs of the running configuration that hold an inference instance of each (profile, tenant)
        holders: dict[tuple[Profile, int], set[int]] = defaultdict(set)
        for g, gpu_config in enumerate(current.gpus if current is not None else ()):
            for inst, owner in gpu_config.items():
                if owner is not None and owner.role == "inference":
                    holders[inst.profile, sim.tenant_index[owner.tenant]].add(g)
        keep_gpus = np.array(list(keepable), dtype=np.int64)
        keep_caps = np.array(list(keepable.values())).reshape(len(keep_gpus), len(names))
        keep_row = {g: i for i, g in enumerate(keepable)}
        gone = np.zeros(len(keep_gpus), dtype=bool)  # rows of GPUs no longer keepable
        while free and (unmet > EPS).any():
            fresh = self._best_mix(sim.serve_rate, columns, mixes, unmet, scale)
            kept = None
            if keepable:
                values = np.minimum(keep_caps, unmet) @ scale
                values[gone] = -np.inf
                top = values.max()
                if top > -np.inf:  # the highest value, the highest GPU index on a tie
                    kept = (float(top), int(keep_gpus[values == top].max()))
            if kept is not None and kept[0] > EPS and (fresh is None or kept[0] >= fresh[0] * tolerance):
                g = kept[1]
                assert current is not None
                chosen[g] = current.gpus[g]
                unmet = np.maximum(unmet - keepable.pop(g), 0.0)
                gone[keep_row[g]] = True
                free.remove(g)
                continue
            if fresh is None:
                break
            _, m, wanted = fresh
            # A GPU can keep an (instance, owner) pair only if it holds one of the wanted pairs; every
            # other free GPU keeps none, and of those the lowest one not keepable scores best.
            candidates = set().union(*(holders.get((p, t), ()) for p, t in wanted if t >= 0))
            plain = next((g for g in free if g not in candidates and g not in keepable), None)
            if plain is None:
                plain = next((g for g in free if g not in candidates), None)
            best: tuple[tuple[int, bool, int], int, GpuConfig] | None = None
            for layout in mixes[m][1]:
                for g in sorted(candidates.intersection(free)) + ([] if plain is None else [plain]):
                    previous = current.gpus[g] if current is not None and g < len(current.gpus) else None
                    owners, kept_pairs = _assign_owners(layout, wanted, previous, names)
                    score = (kept_pairs, g not in keepable, -g)
                    if best is None or score > best[0]:
                        best = (score, g, GpuConfig(layout, owners))
            assert best is not None
            _, g, gpu_config = best
            chosen[g] = gpu_config
            unmet = np.maximum(unmet - inference_capacity(sim, gpu_config), 0.0)
            free.remove(g)
            if keepable.pop(g, None) is not None:
                gone[keep_row[g]] = True
        cluster = Cluster(workload.gpu, workload.gpu_count)
        for g, gpu_config in chosen.items():
            owners = {i: o if o and o.role == "inference" else None for i, o in gpu_config.items()}
            cluster.set_gpu(g, gpu_config.layout, owners)
        if self.retraining:
            add_retraining(cluster, state)
        gpus = []
        for g, (layout, owners) in enumerate(zip(cluster.layouts, cluster.owners, strict=True)):
            before = current.gpus[g].layout if current is not None and g < len(current.gpus) else None
            owned = {i: o for i, o in owners.items() if o is not None}
            gpus.append(settle(layout, owned, before or workload.gpu.empty_layout()))
        return Decision(Configuration(workload.gpu, tuple(gpus)))

    @staticmethod
    def _best_mix(
        capacity: np.ndarray,
        columns: np.ndarray,
        mixes: Sequence[tuple[tuple[Profile, ...], tuple[Layout, ...]]],
        unmet: np.ndarray,
        scale: np.ndarray,
    ) -> tuple[float, int, list[tuple[Profile, int]]] | None:
        """The most effective mix for the unmet demand: (utility, mix index, (profile, tenant) list).

        Every mix is scored at once, instance position by position (`columns`: per mix the simulator
        column of each instance, largest first, -1 past its last): each instance goes to the tenant it
        raises the utility of most, as in a mix-by-mix loop, with the same sums in the same order."""
        count, width = columns.shape
        computes = np.array([[p.compute for p in mix] + [0] * (width - len(mix)) for mix, _ in mixes])
        rows = np.arange(count)
        left = np.repeat(unmet[None, :], count, axis=0)
        utility = np.zeros(count)
        used = np.zeros(count, dtype=np.int64)
        chosen = np.full((count, width), -1, dtype=np.int64)
        for k in range(width):
            valid = columns[:, k] >= 0
            cap = capacity[:, np.maximum(columns[:, k], 0)].T  # (mixes, tenants)
            gains = np.minimum(cap, left) * scale
            t = gains.argmax(axis=1)
            gain = gains[rows, t]
            take = valid & (gain > EPS)
            chosen[take, k] = t[take]
            utility[take] += gain[take]
            used[take] += computes[take, k]
            m = rows[take]
            left[m, t[take]] = np.maximum(left[m, t[take]] - cap[m, t[take]], 0.0)
        best: tuple[float, int, int] | None = None
        for m in range(count):
            if utility[m] > EPS and (
                best is None
                or (utility[m] > best[0] + EPS)
                or (abs(utility[m] - best[0]) <= EPS and used[m] < best[1])
            ):
                best = (float(utility[m]), int(used[m]), m)
        if best is None:
            return None
        mix = mixes[best[2]][0]
        return best[0], best[2], [(profile, int(chosen[best[2], k])) for k, profile in enumerate(mix)]
