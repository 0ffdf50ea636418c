"""The interval simulator: what one interval under a configuration yields (DESIGN.md §3).

Every planner, the environment and the evaluation use this one simulator; the terms of an interval
(downtime, which instance changed, windows, job progress) are `rlmig.dynamics`. For an interval of
length Δ under configuration X with arrival rates λ_t:

- capacity C_t = Σ over t's inference instances of the best segment's throughput × (1 - downtime/Δ),
  where an instance pays the downtime when its placement or owner changed since the last interval;
- served_t = min(λ_t, C_t); the rest misses its SLO;
- retraining progress grows by the training throughput of t's retraining instances, each from the
  moment its own downtime ends; a job that completes mid-interval lifts the accuracy from that moment;
- goodput_t = served_t × Δ × accuracy_t, accuracy time-weighted within the interval.

Continuous learning (after Ekya, NSDI'22, and MIGRator, arXiv 2407.13126): at each window start the
accuracy drops by the drift (never below 0) and a job of N samples starts; when it completes the
accuracy becomes the post-retraining value; a job unfinished at the window's end is abandoned.
Retraining windows and the run are multiples of the interval (the workload loader checks it). The
run starts with its first configuration already in place: the first interval pays no downtime. A
tenant retrains on at most one instance at a time (see `rlmig.configuration`).

A GPU with MIG disabled (the as-is baseline) time-slices its k tenants, an estimate: each gets 1/k of
the GPU's time and a request waits for the others' slices, so the tenant's segment is the best one
for the whole GPU under an SLO budget divided by k, at 1/k of its throughput; the whole GPU runs
faster than the full MIG instance by the ratio of their SMs where both are known (108/98 on A100).

Usage::

    sim = Simulator(load_workload("eval/scenarios/azure-retrain.yaml"))
    result = sim.run(lambda k, state, previous: my_configuration)
    print(result.metrics)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from rlmig.catalog import ModelProfile, Segment
from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.dynamics import Dynamics, changed_instances
from rlmig.geometry import Instance
from rlmig.workload import Workload

INFERENCE, RETRAINING = 0, 1


@dataclass(frozen=True, slots=True)
class EncodedConfig:
    """A configuration as flat arrays over its instances, for the vectorised interval step."""

    gpu: np.ndarray  # GPU index of each instance
    profile: np.ndarray  # index into GpuModel.profiles
    tenant: np.ndarray  # tenant index, -1 when idle
    role: np.ndarray  # INFERENCE or RETRAINING (meaningless when idle)
    key: np.ndarray  # identity of (gpu, start, profile, tenant, role): equal keys = unchanged instance
    serve_rate: np.ndarray  # req/s of the owner's best segment on the instance (0 when idle or retraining)
    train: np.ndarray  # samples/s of retraining on the instance (0 unless it is a retraining instance)
    gpus_used: int  # GPUs with at least one owned instance


@dataclass(slots=True)
class TenantState:
    """Retraining state of every tenant (arrays over tenants)."""

    accuracy: np.ndarray
    progress: np.ndarray  # samples of the current window's job done so far
    active: np.ndarray  # whether the current window's job is still running

    def copy(self) -> TenantState:
        return TenantState(self.accuracy.copy(), self.progress.copy(), self.active.copy())


@dataclass(frozen=True, slots=True)
class IntervalOutcome:
    """What one interval yielded, per tenant (arrays over tenants) and in total."""

    index: int
    rate: np.ndarray  # mean arrival rate, req/s
    capacity: np.ndarray  # req/s the inference instances could serve within the SLO, downtime included
    served: np.ndarray  # req/s served within the SLO
    accuracy: np.ndarray  # time-weighted accuracy of the serving model over the interval
    goodput: np.ndarray  # accurate requests served within the SLO over the interval
    progress: np.ndarray  # retraining samples done in the current window, at the interval's end
    completed: np.ndarray  # whether a retraining job completed in this interval
    reconfigured: int  # instances created or given a new owner at the interval's start
    gpus_used: int

    def to_json(self, tenants: Sequence[str], interval_s: float) -> dict[str, object]:
        return {
            "index": self.index,
            "start_s": self.index * interval_s,
            "reconfigured": self.reconfigured,
            "gpus_used": self.gpus_used,
            "tenants": {
                name: {
                    "rate": float(self.rate[i]),
                    "capacity": float(self.capacity[i]),
                    "served": float(self.served[i]),
                    "accuracy": float(self.accuracy[i]),
                    "goodput": float(self.goodput[i]),
                    "retraining_progress": float(self.progress[i]),
                    "retraining_completed": bool(self.completed[i]),
                }
                for i, name in enumerate(tenants)
            },
        }


@dataclass(frozen=True, slots=True)
class Metrics:
    """Figures every planner is reported on (DESIGN.md §3)."""

    goodput_ratio: float  # accuracy-weighted SLO attainment: total goodput / total arrivals
    slo_attainment: float  # requests served within the SLO / arrivals
    accuracy: float  # mean accuracy of the requests served within the SLO (goodput / served)
    gpu_seconds: float  # Σ over intervals of the GPUs with an owned instance × Δ
    reconfigs: int  # instances created or given a new owner, over the run

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class RunResult:
    """A whole run: its metrics, every interval's outcome and the configuration of each interval."""

    metrics: Metrics
    intervals: list[IntervalOutcome]
    configurations: list[Configuration] = field(repr=False)

    def to_json(self, workload: Workload) -> dict[str, object]:
        return {
            "metrics": self.metrics.to_json(),
            "intervals": [o.to_json(workload.tenant_names, workload.interval_s) for o in self.intervals],
        }


Decide = Callable[[int, TenantState, Configuration | None], Configuration]
"""Chooses the configuration of interval k, given the tenants' state and the previous configuration."""


class Simulator:
    """The one interval simulator over a workload's tenants and GPU model."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.gpu = workload.gpu
        self.tenant_index = {t.name: i for i, t in enumerate(workload.tenants)}
        self.profile_index = {p.id: j for j, p in enumerate(self.gpu.profiles)}
        n_tenants, n_profiles = len(workload.tenants), len(self.gpu.profiles)
        self.segments: list[list[Segment | None]] = []
        self.serve_rate = np.zeros((n_tenants, n_profiles))  # req/s of t's best segment on profile j
        self.train_rate = np.zeros((n_tenants, n_profiles))
        self.models = workload.profiles()
        for i, (tenant, model) in enumerate(zip(workload.tenants, self.models, strict=True)):
            row = [
                self._segment(model, p.compute, tenant.slo_ms, workload.slo_fraction, p.memory_gb)
                for p in self.gpu.profiles
            ]
            self.segments.append(row)
            self.serve_rate[i] = [s.throughput if s else 0.0 for s in row]
            if tenant.retraining is not None:
                self.train_rate[i] = [model.train_throughput(p.compute) for p in self.gpu.profiles]
        rt = [t.retraining for t in workload.tenants]
        self.dynamics = Dynamics.of(workload)
        self.has_retraining = self.dynamics.has_retraining
        self.window_intervals = self.dynamics.window_intervals
        self.samples = np.array([r.samples if r else 0.0 for r in rt])
        self.drift = np.array([r.drift if r else 0.0 for r in rt])
        self.accuracy_after = np.array([r.accuracy if r else 1.0 for r in rt])
        self._encoded: dict[Configuration, EncodedConfig] = {}
        self._shared: dict[tuple[int, int], float] = {}
        self.full_profile = max(self.gpu.base_profiles(), key=lambda p: (p.compute, p.slots))
        self._full = self.profile_index[self.full_profile.id]

    def _segment(
        self, model: ModelProfile, compute: int, slo_ms: float, slo_fraction: float, memory_gb: float | None
    ) -> Segment | None:
        """The model's best segment under the workload's limits (processes, flagged rows)."""
        return model.best_segment(
            compute,
            slo_ms,
            slo_fraction=slo_fraction,
            max_processes=self.workload.max_processes,
            memory_gb=memory_gb,
            exclude_flagged=self.workload.exclude_flagged,
        )

    # -- state and encoding ------------------------------------------------------------------

    def initial_state(self) -> TenantState:
        """Every tenant at its post-retraining accuracy, no job running yet."""
        n = len(self.workload.tenants)
        return TenantState(self.accuracy_after.copy(), np.zeros(n), np.zeros(n, dtype=bool))

    def encode(self, config: Configuration, cache: bool = True) -> EncodedConfig:
        """The configuration as arrays; rows are instances, plus one row per tenant of a time-shared
        GPU. Cached per configuration unless `cache` is False (a caller that never repeats one)."""
        cached = self._encoded.get(config) if cache else None
        if cached is not None:
            return cached
        if config.gpu != self.gpu:
            raise ValueError(f"configuration is for {config.gpu.name}, the workload for {self.gpu.name}")
        if len(config.gpus) > self.workload.gpu_count:
            raise ValueError(
                f"configuration uses {len(config.gpus)} GPUs, the workload has {self.workload.gpu_count}"
            )
        rows: list[tuple[int, int, int, int, int, float, float]] = []  # gpu, start, profile, tenant, role
        for placed in config.placed():
            p = self.profile_index[placed.instance.profile.id]
            t = self._tenant(placed.owner)
            retraining = placed.owner is not None and placed.owner.role == "retraining"
            cap = self.serve_rate[t, p] if t >= 0 and not retraining else 0.0
            train = self.train_rate[t, p] if retraining else 0.0
            rows.append((placed.gpu, placed.instance.start, p, t, int(retraining), cap, train))
        for index, gpu_config in enumerate(config.gpus):
            k = len(gpu_config.time_shared)
            for name in gpu_config.time_shared:
                t = self._tenant(Owner(name))
                rows.append(
                    (index, self.gpu.slots, self._full, t, INFERENCE, self.time_shared_capacity(t, k), 0.0)
                )
        columns = list(zip(*rows, strict=True)) if rows else [()] * 7
        g, start, p, t, r = (np.array(c, dtype=np.int64) for c in columns[:5])
        cap, train = (np.array(c, dtype=float) for c in columns[5:])
        retrainers = t[(r == RETRAINING) & (t >= 0)]
        if len(retrainers) != len(set(retrainers.tolist())):
            twice = self.workload.tenants[int(np.bincount(retrainers).argmax())].name
            raise ValueError(f"tenant {twice!r} retrains on two instances; a job runs on one MIG instance")
        key = self.instance_key(g, start, p, t, r)
        used = len({index for index, gpu_config in enumerate(config.gpus) if gpu_config.used})
        encoded = EncodedConfig(g, p, t, r, key, cap, train, used)
        if cache:
            if len(self._encoded) > 4096:
                self._encoded.clear()
            self._encoded[config] = encoded
        return encoded

    def instance_key(self, gpu: Any, start: Any, profile: Any, tenant: Any, role: Any) -> Any:
        """The identity of an instance (GPU index, start slot, profile index, tenant index or -1, role)
        as one integer, elementwise on arrays: equal keys in two intervals = an unchanged instance."""
        n_tenants, n_profiles = len(self.workload.tenants), len(self.gpu.profiles)
        placed = (gpu * (self.gpu.slots + 1) + start) * n_profiles + profile
        return ((placed * (n_tenants + 1) + tenant + 1) * 2) + role

    def time_shared_capacity(self, tenant: int, sharers: int) -> float:
        """req/s tenant `tenant` gets on a whole GPU (MIG disabled) time-sliced among `sharers` tenants."""
        key = (tenant, sharers)
        if key not in self._shared:
            full = self.gpu.profiles[self._full]
            model = self.models[tenant]
            slo_ms, fraction = self.workload.tenants[tenant].slo_ms, self.workload.slo_fraction / sharers
            segment = self._segment(model, full.compute, slo_ms, fraction, self.gpu.memory_gb / sharers)
            speedup = self.gpu.sms / full.sms if self.gpu.sms and full.sms else 1.0
            self._shared[key] = segment.throughput * speedup / sharers if segment else 0.0
        return self._shared[key]

    def _tenant(self, owner: Owner | None) -> int:
        if owner is None:
            return -1
        index = self.tenant_index.get(owner.tenant)
        if index is None:
            raise ValueError(f"configuration names unknown tenant {owner.tenant!r}")
        if owner.role == "retraining" and not self.has_retraining[index]:
            raise ValueError(f"tenant {owner.tenant!r} has no retraining but owns a retraining instance")
        return index

    # -- one interval ----------------------------------------------------------------------------

    def window_start(self, index: int, state: TenantState) -> TenantState:
        """The tenants' state as interval `index` starts: where a retraining window begins, the model
        drifts (accuracy minus drift, never below 0) and a fresh job starts (progress 0, running)."""
        new_window = self.dynamics.window_starts(index)
        return TenantState(
            np.where(new_window, np.maximum(state.accuracy - self.drift, 0.0), state.accuracy),
            np.where(new_window, 0.0, state.progress),
            new_window | state.active,
        )

    def step(
        self,
        index: int,
        state: TenantState,
        config: EncodedConfig,
        previous: EncodedConfig | None,
        rates: np.ndarray,
        downtime_s: float | None = None,
    ) -> tuple[IntervalOutcome, TenantState]:
        """Simulate interval `index` under `config` (coming from `previous`); returns a new state.
        `downtime_s` replaces the workload's downtime of a changed instance for this interval (a
        node agent accounts what its apply really took)."""
        n = len(self.workload.tenants)
        dt = self.workload.interval_s
        dynamics = self.dynamics
        if downtime_s is not None:
            dynamics = replace(dynamics, downtime_s=min(max(float(downtime_s), 0.0), dt))

        start = self.window_start(index, state)
        accuracy, progress, active = start.accuracy, start.progress, start.active

        owned = config.tenant >= 0
        changed = changed_instances(config, previous)
        tenant = np.where(owned, config.tenant, 0)
        up = dynamics.uptime(changed)  # share of the interval each instance works

        capacity = np.bincount(tenant, weights=config.serve_rate * up, minlength=n)
        served = np.minimum(rates, capacity)

        steady = np.bincount(tenant, weights=config.train * ~changed, minlength=n)
        delayed = np.bincount(tenant, weights=config.train * changed, minlength=n)
        gain, completes, finish = dynamics.job_progress(self.samples - progress, steady, delayed, active)
        mean_accuracy = np.where(
            completes, (finish * accuracy + (dt - finish) * self.accuracy_after) / dt, accuracy
        )
        progress = np.where(active, np.minimum(progress + gain, self.samples), progress)
        accuracy = np.where(completes, self.accuracy_after, accuracy)
        active = active & ~completes

        outcome = IntervalOutcome(
            index=index,
            rate=rates,
            capacity=capacity,
            served=served,
            accuracy=mean_accuracy,
            goodput=served * dt * mean_accuracy,
            progress=progress,
            completed=completes,
            reconfigured=int(changed.sum()),
            gpus_used=config.gpus_used,
        )
        return outcome, TenantState(accuracy, progress, active)

    # -- a whole run -----------------------------------------------------------------------------

    def run(
        self, decide: Decide | Sequence[Configuration] | Configuration, intervals: int | None = None
    ) -> RunResult:
        """Simulate the workload's run (or its first `intervals`); `decide` gives each configuration."""
        if isinstance(decide, Configuration):
            fixed = decide
            decide = lambda k, state, previous: fixed  # noqa: E731
        elif not callable(decide):
            configs = list(decide)
            if len(configs) != self.workload.intervals:
                raise ValueError(f"{len(configs)} configurations for {self.workload.intervals} intervals")
            decide = lambda k, state, previous: configs[k]  # noqa: E731
        rates = self.workload.rates
        state = self.initial_state()
        previous: Configuration | None = None
        outcomes: list[IntervalOutcome] = []
        configurations: list[Configuration] = []
        for k in range(self.workload.intervals if intervals is None else intervals):
            config = decide(k, state.copy(), previous)
            outcome, state = self.step(
                k, state, self.encode(config), self.encode(previous) if previous else None, rates[k]
            )
            outcomes.append(outcome)
            configurations.append(config)
            previous = config
        return RunResult(self.metrics(outcomes), outcomes, configurations)

    def metrics(self, outcomes: Sequence[IntervalOutcome]) -> Metrics:
        """Totals over a run (or any stretch of intervals)."""
        dt = self.workload.interval_s
        arrivals = sum(float(o.rate.sum()) for o in outcomes) * dt
        served = sum(float(o.served.sum()) for o in outcomes) * dt
        goodput = sum(float(o.goodput.sum()) for o in outcomes)
        return Metrics(
            goodput_ratio=goodput / arrivals if arrivals else 1.0,
            slo_attainment=served / arrivals if arrivals else 1.0,
            accuracy=goodput / served if served else 0.0,
            gpu_seconds=sum(o.gpus_used for o in outcomes) * dt,
            reconfigs=sum(o.reconfigured for o in outcomes),
        )


def whole_gpus(simulator: Simulator) -> Configuration:
    """The default static configuration: each GPU one full-GPU instance, owned by one tenant.

    GPUs go, one at a time, to the tenant whose served load it raises most (greedy on served req/s,
    ties to the tenant listed first); tenants no full GPU can serve within the SLO get none, and GPUs
    that would serve nobody more stay idle.
    """
    workload = simulator.workload
    gpu = workload.gpu
    full = simulator.full_profile
    per_gpu = simulator.serve_rate[:, simulator.profile_index[full.id]]
    unmet = workload.rates.mean(axis=0).copy()
    layout = gpu.layout([Instance(full, 0)])
    gpus: list[GpuConfig] = []
    for _ in range(workload.gpu_count):
        gain = np.minimum(per_gpu, np.maximum(unmet, 0.0))
        if gain.max(initial=0.0) <= 0:
            gpus.append(GpuConfig(layout, (None,)))
            continue
        chosen = int(np.argmax(gain))
        unmet[chosen] -= per_gpu[chosen]
        gpus.append(GpuConfig(layout, (Owner(workload.tenants[chosen].name),)))
    return Configuration(gpu, tuple(gpus))
