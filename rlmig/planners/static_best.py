"""static-best: PARIS (arXiv 2202.13481): one heterogeneous layout from the average load, never changed."""

from __future__ import annotations

import heapq

import numpy as np

from rlmig.configuration import Configuration, Owner
from rlmig.geometry import Profile
from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.planners.packing import (
    Cluster,
    allocate,
    base_columns,
    largest_fitting,
    size_points,
)
from rlmig.planners.parva import parva_segments
from rlmig.simulator import Simulator
from rlmig.workload import Workload


def paris_cluster(
    state: ClusterState, *, retraining: bool = True, finish_within: float = 0.5, fill: bool | None = None
) -> Cluster:
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
                for p, j in base_columns(sim)
                if sim.train_rate[t, j] * rt.window_s * finish_within >= rt.samples
            ]
            if fast:
                reserved.append((min(fast, key=lambda f: f[:2])[2], Owner(tenant.name, "retraining")))

    def build(share: float, reserve: list[tuple[Profile, Owner]]) -> Cluster | None:
        cluster = Cluster(workload.gpu, workload.gpu_count)
        segments = [
            (p, Owner(tenant.name))
            for t, tenant in enumerate(workload.tenants)
            for p in parva_segments(sim, t, float(average[t]) * share)
        ]
        return cluster if allocate(cluster, [*reserve, *segments]) else None

    if build(0.0, reserved) is None:
        reserved = []
    cluster = largest_fitting(lambda share: build(share, reserved))
    if workload.mode == "dynamic" if fill is None else fill:
        _fill_proportionally(cluster, sim, average)
    return cluster


def _fill_proportionally(cluster: Cluster, sim: Simulator, demand: np.ndarray) -> None:
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
                capacity[t] += sim.serve_rate[t, sim.profile_index[inst.profile.id]]
    points = [size_points(sim, t) for t in range(n)]
    # The cluster only fills: a profile that fits nowhere never will, nor a tenant none of whose fits.
    no_room: set[int] = set()
    heap = [(capacity[t] / demand[t], t) for t in range(n) if demand[t] > 0 and points[t]]
    heapq.heapify(heap)
    while heap:
        _, t = heapq.heappop(heap)  # the least headroom (the lowest index on a tie)
        spot = None
        for p, _ in points[t].values():
            if p.id not in no_room:
                spot = cluster.place(p)
                if spot is not None:
                    break
                no_room.add(p.id)
        if spot is not None:
            g, inst = spot
            cluster.add(g, inst, Owner(sim.workload.tenants[t].name))
            capacity[t] += sim.serve_rate[t, sim.profile_index[inst.profile.id]]
            heapq.heappush(heap, (capacity[t] / demand[t], t))


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
    objective = "one layout for the run's average load, never changed (PARIS)"

    def __init__(self, retraining: bool = True, finish_within: float = 0.5) -> None:
        self.retraining = retraining
        self.finish_within = finish_within
        self._config: Configuration | None = None

    def reset(self, workload: Workload) -> None:
        self._config = None

    def plan(self, state: ClusterState) -> Decision:
        if self._config is None or len(self._config.gpus) != state.workload.gpu_count:
            cluster = paris_cluster(state, retraining=self.retraining, finish_within=self.finish_within)
            self._config = cluster.configuration()
        return Decision(self._config)
