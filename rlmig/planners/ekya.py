"""ekya: Ekya (NSDI'22, arXiv 2012.10557): a fixed layout, and the thief scheduler at each retraining
window start."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.errors import RlmigError
from rlmig.geometry import Instance, Layout
from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.planners.packing import upcoming, window_starts
from rlmig.planners.static_best import paris_cluster
from rlmig.workload import Workload


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
    objective = (
        "one fixed layout; at each window start, Ekya's thief moves instances between inference and "
        "retraining to raise the estimated accuracy-weighted goodput of the window"
    )

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
                self._layouts = list(paris_cluster(state).layouts)
            else:
                if len(self.layout) > workload.gpu_count:
                    raise RlmigError(
                        f"ekya: layout has {len(self.layout)} GPUs, the workload {workload.gpu_count}"
                    )
                given = [workload.gpu.layout(specs) for specs in self.layout]
                self._layouts = given + [workload.gpu.empty_layout()] * (workload.gpu_count - len(given))
            self._base = [(g, i) for g, layout in enumerate(self._layouts) for i in layout.instances]
        _, _, active, _ = upcoming(state)
        current = state.current
        if current is not None and not window_starts(state):
            retraining = [
                p.owner.tenant for p in current.placed() if p.owner and p.owner.role == "retraining"
            ]
            idle_job = any(not active[sim.tenant_index[name]] for name in retraining)
            if not idle_job:
                return Decision(current)
        owners = self._thief(state)
        per_gpu: list[dict[Instance, Owner | None]] = [{} for _ in self._layouts]
        for (g, inst), owner in zip(self._base, owners, strict=True):
            per_gpu[g][inst] = owner
        gpus = tuple(
            GpuConfig(layout, tuple(per_gpu[g].get(i) for i in layout.instances))
            for g, layout in enumerate(self._layouts)
        )
        return Decision(Configuration(workload.gpu, gpus))

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
        accuracy, progress, active, left = upcoming(state)
        self.accuracy, self.active, self.left = accuracy, active, left
        self.remaining = sim.samples - progress
        self.after = sim.accuracy_after
        self.rate = np.maximum(state.forecast[0], 0.0)
        cols = [sim.profile_index[inst.profile.id] for _, inst in base]
        self.col = np.array(cols, dtype=np.int64)
        self.cap_tab = sim.serve_rate[:, cols]  # (tenants, instances)
        self.train_tab = sim.train_rate[:, cols]
        self.serve_rate, self.train_rate = sim.serve_rate, sim.train_rate  # (tenants, profiles)
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
            j = min(open_jobs, key=given.__getitem__)  # the first in `jobs` order on a tie
            self.job_of[i] = j
            given[j] += computes[i]
        self.cap = np.zeros(n)
        self.train = np.zeros(n)
        self.holder = np.full(n, -1, dtype=np.int64)  # the instance retraining each tenant
        # Instances alike in (profile, job, running owner) are alike in every steal: each steal looks
        # at one of each kind, the lowest-numbered (so it picks what looking at every instance would)
        self._kinds: dict[tuple[int, int, int], list[int]] = {}
        for i in range(count):
            self._kinds.setdefault(self._kind(i), []).append(i)
        for i, j in enumerate(self.job_of.tolist()):
            self._move(i, -1, j)

    def _kind(self, i: int) -> tuple[int, int, int]:
        return int(self.col[i]), int(self.job_of[i]), int(self.running[i])

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
        kind = self._kind(i)
        members = self._kinds[kind]
        members.remove(i)
        if not members:
            del self._kinds[kind]
        self.job_of[i] = b
        bisect.insort(self._kinds.setdefault(self._kind(i), []), i)

    def _gains(self, now: np.ndarray) -> np.ndarray:
        """Per profile (rows) and receiving job (columns: inference of each tenant, then retraining), the
        estimate's change for that job if it received an instance of that profile."""
        tenants = np.arange(self.n)
        gain_inf = self.value(tenants[None, :], self.cap[None, :] + self.serve_rate.T, self.train[None, :])
        gain_ret = self.value(tenants[None, :], self.cap[None, :], self.train_rate.T)
        return np.concatenate([gain_inf, gain_ret], axis=1) - np.concatenate([now, now])[None, :]

    def value(self, t: np.ndarray | int, cap: np.ndarray | float, train: np.ndarray | float) -> np.ndarray:
        """Estimated accuracy-weighted goodput rate of tenant(s) t with this capacity and training rate."""
        remaining, left, accuracy = self.remaining[t], self.left[t], self.accuracy[t]
        train = np.asarray(train, float)
        shape = np.broadcast_shapes(np.shape(t), np.shape(cap), train.shape)
        finish = np.divide(remaining, train, out=np.full(shape, np.inf), where=train > 0)
        done = self.active[t] & (finish < left)
        finish = np.minimum(finish, left)
        mean = np.where(done, (finish * accuracy + (left - finish) * self.after[t]) / left, accuracy)
        return np.minimum(self.rate[t], cap) * mean

    def steal(self) -> bool:
        """Make the best improving steal or exchange; False when none improves the estimate."""
        n = self.n
        if len(self.job_of) == 0:  # a layout without instances: nothing to steal
            return False
        tenants = np.arange(n)
        now = self.value(tenants, self.cap, self.train)
        index = np.array(sorted(members[0] for members in self._kinds.values()), dtype=np.int64)
        a = self.job_of[index]
        running = self.running[index]
        owned = a >= 0
        ta = np.where(owned, a % n, 0)
        inference = owned & (a < n)
        rows = np.arange(len(index))
        # what the giving job loses
        kept_cap = self.cap[ta] - np.where(inference, self.cap_tab[ta, index], 0.0)
        kept_train = np.where(inference, self.train[ta], 0.0)
        lose = np.where(owned, self.value(ta, kept_cap, kept_train) - now[ta], -np.inf)
        # what each receiving job gains: inference (instances x tenants), then retraining
        delta = self._gains(now)[self.col[index]] + lose[:, None]
        # a job moving between the inference and the retraining of one tenant: both at once
        own = rows[owned]
        t = ta[owned]
        own_index = index[owned]
        delta[own, np.where(inference[owned], n + t, t)] = (
            np.where(
                inference[owned],
                self.value(t, self.cap[t] - self.cap_tab[t, own_index], self.train_tab[t, own_index]),
                self.value(t, self.cap[t] + self.cap_tab[t, own_index], 0.0),
            )
            - now[t]
        )
        # per instance and job: 1 where the move would undo a change from the running owner, -1 where
        # it would make one
        jobs = np.arange(2 * n)
        delta += self.tie * ((a != running)[:, None].astype(float) - (jobs[None, :] != running[:, None]))
        valid = np.concatenate([self.has_inference, self.has_job & (self.holder < 0)])
        delta[:, ~valid] = -np.inf
        delta[own, a[owned]] = -np.inf  # not to the job it is with
        r, b = np.unravel_index(int(np.argmax(delta)), delta.shape)
        best = (float(delta[r, b]), [(int(index[r]), int(b))])
        # exchanges: retraining job n + u gives its instance h to job a[i] and takes instance i (every
        # retraining job u at once: rows are jobs, columns instances)
        u = np.flatnonzero(self.holder >= 0)
        if len(u):
            h = self.holder[u][:, None]
            uc = u[:, None]
            other = owned & (index != h)
            same = inference & (ta == uc)
            into_u = self.value(uc, self.cap[uc], self.train_tab[uc, index]) - now[uc]
            cap_v = self.cap[ta] - self.cap_tab[ta, index] + self.cap_tab[ta, h]
            regrown = self.cap[uc] - self.cap_tab[uc, index] + self.cap_tab[uc, h]
            change = np.where(
                same,
                self.value(uc, regrown, self.train_tab[uc, index]) - now[uc],
                into_u
                + np.where(
                    inference,
                    self.value(ta, cap_v, self.train[ta]),
                    self.value(ta, self.cap[ta], self.train_tab[ta, h]),
                )
                - now[ta],
            )
            undo_i = (a != running).astype(float) - (n + uc != running)
            undo_h = (n + uc != self.running[h]).astype(float) - (a != self.running[h])
            change = np.where(other, change + self.tie * (undo_i + undo_h), -np.inf)
            top = change.argmax(axis=1)
            for row, (job, c) in enumerate(zip(u.tolist(), top.tolist(), strict=True)):
                if change[row, c] > best[0]:
                    i = int(index[c])
                    best = (float(change[row, c]), [(i, n + job), (int(h[row, 0]), int(self.job_of[i]))])
        if not best[0] > self.tie / 2:
            return False
        moves = [(i, int(self.job_of[i]), b) for i, b in best[1]]
        for i, a_, _ in moves:
            self._move(i, a_, -1)
        for i, _, b in moves:
            self._move(i, -1, b)
        return True
