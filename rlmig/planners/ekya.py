"""ekya: Ekya (NSDI'22, arXiv 2012.10557): a fixed layout, and the thief scheduler at each retraining
window start."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.errors import RlmigError
from rlmig.geometry import Layout
from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.planners.packing import window_starts
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
    most improves the estimated accuracy-weighted goodput, until no steal improves it, at most
    `max_rounds` rounds. On equal estimates a steal that gives an instance back to its owner in place
    wins (fewer reconfigurations; not in Ekya, which does not reconfigure MIG); once only such steals
    are left, a round makes every one between tenants no other touches (`_Thief._restores`). The estimate,
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

    def __init__(self, layout: Sequence[Sequence[str]] | None = None, max_rounds: int = 500) -> None:
        self.layout = layout
        self.max_rounds = max_rounds
        self._layouts: list[Layout] = []

    def reset(self, workload: Workload) -> None:
        self._layouts = []

    def plan(self, state: ClusterState) -> Decision:
        sim, workload = state.simulator, state.workload
        if len(self._layouts) != workload.gpu_count:
            if self.layout is None:
                self._layouts = list(paris_cluster(state).layouts)
            else:
                if len(self.layout) > workload.gpu_count:
                    raise RlmigError(
                        f"ekya: layout has {len(self.layout)} GPUs, the workload {workload.gpu_count}"
                    )
                given = [workload.gpu.layout(specs) for specs in self.layout]
                self._layouts = given + [workload.gpu.empty_layout()] * (workload.gpu_count - len(given))
        _, _, active, _ = state.upcoming()
        current = state.current
        if current is not None and not window_starts(state):
            retraining = [
                p.owner.tenant for p in current.placed() if p.owner and p.owner.role == "retraining"
            ]
            idle_job = any(not active[sim.tenant_index[name]] for name in retraining)
            if not idle_job:
                return Decision(current)
        owners = iter(self._thief(state))  # GPU by GPU, each layout's instances in order
        gpus = tuple(
            GpuConfig(layout, tuple(next(owners) for _ in layout.instances)) for layout in self._layouts
        )
        return Decision(Configuration(workload.gpu, gpus))

    def _thief(self, state: ClusterState) -> list[Owner | None]:
        """Fair allocation, then the best single steal (or exchange, see `_Thief`) while one improves,
        at most `max_rounds` rounds."""
        thief = _Thief(state, self._layouts)
        for _ in range(self.max_rounds):
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

    def __init__(self, state: ClusterState, layouts: Sequence[Layout]) -> None:
        sim = state.simulator
        base = [inst for layout in layouts for inst in layout.instances]
        n = self.n = len(state.workload.tenants)
        accuracy, progress, active, left = state.upcoming()
        self.accuracy, self.active, self.left = accuracy, active, left
        self.remaining = sim.samples - progress
        self.after = sim.accuracy_after
        self.rate = np.maximum(state.forecast[0], 0.0)
        cols = [sim.profile_index[inst.profile.id] for inst in base]
        self.col = np.array(cols, dtype=np.int64)
        self.cap_tab = sim.serve_rate[:, cols]  # (tenants, instances)
        self.serve_rate = sim.serve_rate  # (tenants, profiles)
        self.profiles = sim.train_rate.shape[1]
        # per tenant and retraining profile (the last column: none), its mean accuracy over the rest of
        # its window: the estimate is min(forecast, capacity) x that
        self.means = self._mean(np.arange(n)[:, None], np.column_stack([sim.train_rate, np.zeros(n)]))
        count = len(base)
        self.has_inference = self.rate > 0
        self.has_job = active & (self.remaining > 0)
        jobs = [t for t in range(n) if self.has_inference[t]] + [n + t for t in range(n) if self.has_job[t]]

        # the running owners: on equal estimates a steal that undoes a change wins
        self.running = self._running_owners(state, layouts)
        self.tie = 1e-9 * max(float(self.rate.sum()), 1.0)

        # fair start: largest instances first, each to the job with the fewest slices so far
        computes = [inst.profile.compute for inst in base]
        self.job_of = np.full(count, -1, dtype=np.int64)
        heap = [(0, order, j) for order, j in enumerate(jobs)]  # (slices given, order in `jobs`, job)
        for i in sorted(range(count), key=lambda i: -computes[i]):
            if not heap:
                break
            given, order, j = heapq.heappop(heap)  # the fewest slices; the first in `jobs` on a tie
            self.job_of[i] = j
            if j < n:  # a retraining job holds one instance
                heapq.heappush(heap, (given + computes[i], order, j))
        held = np.flatnonzero(self.job_of >= 0)
        serving = held[self.job_of[held] < n]
        self.cap = np.bincount(
            self.job_of[serving], weights=self.cap_tab[self.job_of[serving], serving], minlength=n
        ).astype(float)
        self.train = np.full(n, -1, dtype=np.int64)  # the profile retraining each tenant (-1: none)
        self.holder = np.full(n, -1, dtype=np.int64)  # the instance retraining each tenant
        for i in held[self.job_of[held] >= n].tolist():
            u = int(self.job_of[i]) - n
            self.train[u], self.holder[u] = self.col[i], i

    def _running_owners(self, state: ClusterState, layouts: Sequence[Layout]) -> np.ndarray:
        """Per instance of `layouts`, its job in the configuration in place (-1: idle or not in place)."""
        n, sim, current = self.n, state.simulator, state.current
        running = np.full(sum(len(layout.instances) for layout in layouts), -1, dtype=np.int64)
        if current is None:
            return running
        offset = 0
        for layout, gpu in zip(layouts, current.gpus, strict=True):
            where = {inst: offset + k for k, inst in enumerate(layout.instances)}
            for inst, owner in zip(gpu.layout.instances, gpu.owners, strict=True):
                i = where.get(inst)
                if i is not None and owner is not None:
                    t = sim.tenant_index[owner.tenant]
                    running[i] = t if owner.role == "inference" else n + t
            offset += len(layout.instances)
        return running

    def _kinds(self) -> np.ndarray:
        """Instances alike in (profile, job, running owner) are alike in every steal: each steal looks
        at one of each kind, the lowest-numbered (so it picks what looking at every instance would).
        Those, in order."""
        jobs = 2 * self.n + 1
        kind = (self.col * jobs + self.job_of + 1) * jobs + self.running + 1
        return np.sort(np.unique(kind, return_index=True)[1])

    def _move(self, i: int, a: int, b: int) -> None:
        n = self.n
        if 0 <= a < n:
            self.cap[a] -= self.cap_tab[a, i]
        elif a >= n:
            self.train[a - n], self.holder[a - n] = -1, -1
        if 0 <= b < n:
            self.cap[b] += self.cap_tab[b, i]
        elif b >= n:
            self.train[b - n], self.holder[b - n] = self.col[i], i
        self.job_of[i] = b

    def _gains(self, now: np.ndarray) -> np.ndarray:
        """Per profile (rows) and receiving job (columns: inference of each tenant, then retraining), the
        estimate's change for that job if it received an instance of that profile."""
        tenants = np.arange(self.n)
        gain_inf = self.value(tenants[None, :], self.cap[None, :] + self.serve_rate.T, self.train[None, :])
        gain_ret = self.value(tenants[None, :], self.cap[None, :], np.arange(self.profiles)[:, None])
        return np.concatenate([gain_inf, gain_ret], axis=1) - np.concatenate([now, now])[None, :]

    def value(self, t: np.ndarray | int, cap: np.ndarray | float, train: np.ndarray | int) -> np.ndarray:
        """Estimated accuracy-weighted goodput rate of tenant(s) t with this inference capacity and
        retraining on an instance of profile `train` (-1: none)."""
        return np.minimum(self.rate[t], cap) * self.means[t, train]

    def _mean(self, t: np.ndarray, train: np.ndarray) -> np.ndarray:
        """Mean accuracy of tenant(s) t over the rest of the window, retraining at rate `train`."""
        remaining, left, accuracy = self.remaining[t], self.left[t], self.accuracy[t]
        with np.errstate(divide="ignore", invalid="ignore"):  # no training: inf (or nan), never done
            finish = remaining / np.asarray(train, float)
        done = self.active[t] & (finish < left)
        finish = np.minimum(finish, left)
        return np.where(done, (finish * accuracy + (left - finish) * self.after[t]) / left, accuracy)

    def _restores(
        self, delta: np.ndarray, real: np.ndarray, index: np.ndarray, job: np.ndarray
    ) -> list[tuple[int, int]]:
        """When the best steal only gives an instance back to its running owner (the estimate stays),
        that steal and the others like it that it does not interact with, made in one round: in the
        order the thief would choose them (highest `delta` first, then row by row), each between
        tenants no earlier one touches. Each then changes the estimate exactly as it would alone (an
        improving steal when made; the thief still stops only where none improves), and the round
        costs one evaluation instead of one per steal. Among give-backs of equal value the order may
        differ from one steal at a time, and so may the configuration of equal estimate it ends in."""
        n, width = self.n, delta.shape[1]
        wanted = np.flatnonzero(((delta > self.tie / 2) & (real <= self.tie / 2)).ravel())
        touched: set[int] = set()
        rows: set[int] = set()
        moves: list[tuple[int, int]] = []
        for flat in wanted[np.argsort(-delta.ravel()[wanted], kind="stable")].tolist():
            r, b = divmod(flat, width)
            a = int(job[r])
            tenants = {b % n, a % n if a >= 0 else -1} - {-1}  # (-1: an idle instance, no giver)
            if r in rows or not touched.isdisjoint(tenants):
                continue
            rows.add(r)
            touched |= tenants
            moves.append((int(index[r]), b))
            if len(touched) == n:
                break
        return moves

    def steal(self) -> bool:
        """Make the best improving steal or exchange; False when none improves the estimate."""
        n = self.n
        if len(self.job_of) == 0:  # a layout without instances: nothing to steal
            return False
        tenants = np.arange(n)
        now = self.value(tenants, self.cap, self.train)
        index = self._kinds()
        a = self.job_of[index]
        running = self.running[index]
        owned = a >= 0
        ta = np.where(owned, a % n, 0)
        inference = owned & (a < n)
        rows = np.arange(len(index))
        # what the giving job loses
        kept_cap = self.cap[ta] - np.where(inference, self.cap_tab[ta, index], 0.0)
        kept_train = np.where(inference, self.train[ta], -1)
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
                self.value(t, self.cap[t] - self.cap_tab[t, own_index], self.col[own_index]),
                self.value(t, self.cap[t] + self.cap_tab[t, own_index], -1),
            )
            - now[t]
        )
        jobs = np.arange(2 * n)
        real = delta
        # per instance and job: 1 where the move would undo a change from the running owner, -1 where
        # it would make one
        undo = (a != running)[:, None].astype(float) - (jobs[None, :] != running[:, None])
        delta = real + self.tie * undo
        valid = np.concatenate([self.has_inference, self.has_job & (self.holder < 0)])
        delta[:, ~valid] = -np.inf
        delta[own, a[owned]] = -np.inf  # not to the job it is with
        r, b = np.unravel_index(int(np.argmax(delta)), delta.shape)
        best = (float(delta[r, b]), [(int(index[r]), int(b))])
        restore = bool(real[r, b] <= self.tie / 2)  # the best steal only gives an instance back
        # exchanges: retraining job n + u gives its instance h to job a[i] and takes instance i (every
        # retraining job u at once: rows are jobs, columns instances)
        u = np.flatnonzero(self.holder >= 0)
        if len(u):
            h = self.holder[u][:, None]
            uc = u[:, None]
            other = owned & (index != h)
            same = inference & (ta == uc)
            into_u = self.value(uc, self.cap[uc], self.col[index][None, :]) - now[uc]
            cap_v = self.cap[ta] - self.cap_tab[ta, index] + self.cap_tab[ta, h]
            regrown = self.cap[uc] - self.cap_tab[uc, index] + self.cap_tab[uc, h]
            change = np.where(
                same,
                self.value(uc, regrown, self.col[index][None, :]) - now[uc],
                into_u
                + np.where(
                    inference,
                    self.value(ta, cap_v, self.train[ta]),
                    self.value(ta, self.cap[ta], self.col[h]),
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
                    restore = False
        if not best[0] > self.tie / 2:
            return False
        if restore:
            best = (best[0], self._restores(delta, real, index, a))
        moves = [(i, int(self.job_of[i]), b) for i, b in best[1]]
        for i, a_, _ in moves:
            self._move(i, a_, -1)
        for i, _, b in moves:
            self._move(i, -1, b)
        return True
