"""as-is: unpartitioned GPUs (MIG-serving's baseline, arXiv 2109.11067): whole GPUs with MIG off, the
tenants time-sharing them."""

from __future__ import annotations

import math

import numpy as np

from rlmig.configuration import Configuration, GpuConfig
from rlmig.errors import RlmigError
from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.planners.packing import (
    EPS,
)
from rlmig.simulator import Simulator


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
    objective = "nothing: whole GPUs with MIG off, the tenants time-sharing them (the unpartitioned baseline)"

    def forbid_mig_off(self) -> None:
        """as-is is MIG off on every GPU: where no GPU may change its mode it cannot plan at all."""
        raise RlmigError(
            "as-is runs every GPU with MIG off: it needs --allow-mode-change (or the mig-parted backend)"
        )

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
            if (capacity >= demand - EPS).all() and len(groups) >= in_use:
                return Decision(current)
        slots: list[tuple[str, ...]] = [()] * workload.gpu_count
        previous = [set(g.time_shared) for g in current.gpus] if current is not None else []
        previous += [set()] * (workload.gpu_count - len(previous))
        members = [{names[t] for t in group} for group in groups]
        # Groups go to the GPUs they share the most tenants with (then the lower GPU, the later group);
        # only the pairs that share a tenant are listed, then the rest in that same order.
        holders: dict[str, list[int]] = {}
        for g, before in enumerate(previous):
            for name in before:
                holders.setdefault(name, []).append(g)
        pairs = sorted(
            (
                (len(previous[g] & m), -g, i)
                for i, m in enumerate(members)
                for g in sorted({g for name in m for g in holders.get(name, ())})
            ),
            reverse=True,
        )
        done: set[int] = set()
        for _, neg_g, i in pairs:
            g = -neg_g
            if i in done or slots[g]:
                continue
            slots[g] = tuple(names[t] for t in groups[i])
            done.add(i)
        left = [i for i in reversed(range(len(groups))) if i not in done]
        for g, i in zip((g for g in range(workload.gpu_count) if not slots[g]), left, strict=False):
            slots[g] = tuple(names[t] for t in groups[i])
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
        full = math.ceil(demand[t] / alone - EPS) - 1
        rest = demand[t] - full * alone
        groups += [(t,)] * full
        remainders.append((rest / alone, t, rest))
    shared: list[list[int]] = []
    need: dict[int, float] = {}
    for _, t, rest in sorted(remainders, key=lambda r: -r[0]):
        need[t] = rest
        for group in shared:
            k = len(group) + 1
            if all(sim.time_shared_capacity(s, k) >= need[s] - EPS for s in [*group, t]):
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
                if gain > EPS and (best is None or gain > best[0]):
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
