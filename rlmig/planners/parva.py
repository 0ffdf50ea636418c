"""parva: ParvaGPU (arXiv 2409.14447): optimal triplets, demand matching, best-fit segment allocation."""

from __future__ import annotations

import math

import numpy as np

from rlmig.configuration import Owner
from rlmig.geometry import Profile
from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.planners.packing import (
    EPS,
    Cluster,
    add_retraining,
    allocate,
    largest_fitting,
    size_points,
)
from rlmig.simulator import Simulator


def parva_segments(sim: Simulator, tenant: int, rate: float) -> list[Profile]:
    """ParvaGPU's segment configurator for one tenant: the optimal triplet's instance size (highest
    throughput per compute slice, ties to the smaller size) repeated while the demand exceeds it, then
    the smallest size whose best segment covers the remainder (demand matching)."""
    points = size_points(sim, tenant)
    if rate <= 0 or not points:
        return []
    size = max(points, key=lambda c: (points[c][1] / c, -c))
    profile, cap = points[size]
    count = max(math.ceil(rate / cap - EPS) - 1, 0)
    rest = rate - count * cap
    last = next(points[c][0] for c in points if points[c][1] >= rest - EPS)
    return [profile] * count + [last]


def parva_optimize(cluster: Cluster, sim: Simulator) -> Cluster:
    """ParvaGPU's allocation optimization: from the last GPU back, a GPU at most 4/7 full has its
    segments re-expressed as 2- and 1-slice segments of the same tenants (2s when they beat two 1s per
    slice), placed best-fit, which fills the holes of fuller GPUs. The rate freed and not yet re-placed
    carries over per tenant, as in ParvaGPU. A GPU whose segments cannot all be re-placed, or whose
    re-placement would open a GPU, is left as it was."""
    pending = np.zeros(len(sim.workload.tenants))
    threshold = sim.gpu.compute_slices * 4 // 7
    points = [size_points(sim, t) for t in range(len(sim.workload.tenants))]
    for g in reversed(range(len(cluster.layouts))):
        layout = cluster.layouts[g]
        if not layout.instances or layout.compute_used > threshold:
            continue
        before, saved_pending, used = cluster.mark(), pending.copy(), cluster.used()
        ok = True
        for inst in layout.instances:
            owner = cluster.owners[g][inst]
            if owner is None or owner.role != "inference":
                continue
            t = sim.tenant_index[owner.tenant]
            one, two = points[t].get(1), points[t].get(2)
            if one is None and two is None:
                continue
            pending[t] += sim.serve_rate[t, sim.profile_index[inst.profile.id]]
            cluster.remove(g, inst)
            small: list[Profile] = []
            if two is not None and (one is None or two[1] / 2 > one[1]):
                n2 = math.ceil(pending[t] / two[1] - EPS) if one is None else math.floor(pending[t] / two[1])
                small += [two[0]] * max(n2, 0)
                pending[t] -= max(n2, 0) * two[1]
            if one is not None:
                n1 = max(math.ceil(pending[t] / one[1] - EPS), 0)
                small += [one[0]] * n1
                pending[t] -= n1 * one[1]
            if not allocate(cluster, [(p, owner) for p in small]):
                ok = False
                break
        if not ok or cluster.used() > used:
            cluster.undo(before)
            pending = saved_pending
    return cluster


class ParvaPlanner(Planner):
    """ParvaGPU (Lee et al., SC24, arXiv 2409.14447): MIG instances shared by MPS processes, sized per
    tenant and packed to use the fewest GPUs.

    1. Segment configurator: per tenant the optimal triplet (instance size, batch, processes) is the
       SLO-feasible segment of highest throughput per compute slice (`parva_segments`; the simulator's
       best segment per profile is already the best (batch, processes) of that size).
    2. Demand matching: as many optimal segments as the demand fills, plus the smallest segment that
       covers the remainder.
    3. Segment allocator: segments largest first, each best-fit into the GPU it leaves fewest free
       slices on, at ParvaGPU's placement order (`_PARVA_STARTS`) checked against rlmig's geometry
       (so two 3g instances may share a GPU, which ParvaGPU's allocator forbids); then the allocation
       optimization (`parva_optimize`) dissolves lightly used GPUs into the holes of the others.

    In dynamic mode it plans from scratch every interval, as ParvaGPU has no notion of reconfiguration
    cost. When the plan needs more GPUs than the workload has, every tenant's demand is scaled down by
    the same factor until it fits (ParvaGPU assumes enough GPUs). Retraining jobs get the room left over
    (`add_retraining`) unless ``retraining=False``.
    """

    name = "parva"
    objective = (
        "the forecast load with the fewest GPUs (ParvaGPU's triplets and best-fit); spare room to "
        "running retraining jobs"
    )

    def __init__(self, retraining: bool = True, optimize: bool = True) -> None:
        self.retraining = retraining
        self.optimize = optimize

    def plan(self, state: ClusterState) -> Decision:
        sim, workload = state.simulator, state.workload
        demand = state.forecast[0]

        def build(share: float) -> Cluster | None:
            cluster = Cluster(workload.gpu, workload.gpu_count)
            segments = [
                (p, Owner(tenant.name))
                for t, tenant in enumerate(workload.tenants)
                for p in parva_segments(sim, t, float(demand[t]) * share)
            ]
            if not allocate(cluster, segments):
                return None
            return parva_optimize(cluster, sim) if self.optimize else cluster

        cluster = largest_fitting(build)
        if self.retraining:
            add_retraining(cluster, state)
        return Decision(cluster.configuration())
