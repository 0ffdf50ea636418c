"""The latency model (after iGniter, arXiv 2211.01713): host time + scheduling delay + GPU time, with
MPS interference from a mean-value analysis of the co-located processes, fitted per model by
Levenberg-Marquardt in log-parameter space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

import numpy as np


def rounded(value: float, digits: int = 6) -> float:
    """``value`` to ``digits`` significant digits (shipped JSON stays short and byte-stable)."""
    return float(f"{value:.{digits}g}")


@dataclass(frozen=True)
class LatencyModel:
    """Interference-aware latency of a segment, in the spirit of iGniter (arXiv 2211.01713).

    iGniter writes the latency of a co-located inference workload as t = t_load + t_sched + t_act,
    with t_act growing with the co-located workloads' demand. Here, for a batch of ``b`` on an
    instance of ``c`` compute slices shared by ``p`` MPS processes (ParvaGPU, arXiv 2409.14447):

    - t_load = load_s + load_item_s·b: host work per batch (input copy, pre- and post-processing),
      which overlaps freely across processes;
    - t_sched = sched_s·(p - 1): scheduling delay that grows with the co-located processes;
    - t_act = smax(floor_s, D·(1 + Q)): the GPU phase. D = (work_s + work_item_s·b) / c^alpha /
      (m / c)^beta · (1 + gamma·(p - 1)) is the batch's demand on the instance's SMs, where m is the
      instance's memory slots (`MEMORY_SLOTS`: a 3g instance has the 4 slots, and so the memory
      bandwidth, of a 4g one; a 7g the 8 of the whole GPU), inflated by interference
      (cache and memory-bandwidth contention) among co-located processes; Q is the mean number of
      other processes' batches sharing the SMs, from exact mean-value analysis of the closed loop of
      p processes that alternate host work and GPU work (processor sharing); floor_s is the
      launch-bound minimum of a batch that cannot fill the SMs; smax(a, x) = (a^k + x^k)^(1/k)
      with k = ``sharpness``.

    For any positive parameters latency increases with batch and processes and never increases with
    compute (it falls strictly once a batch's SM work outweighs the launch floor). At small batches
    extra processes overlap almost for free; at large batches the instance saturates and total
    throughput levels off, as ParvaGPU measured. Parameters are fitted per model by
    `fit_latency_model`.
    """

    load_s: float
    load_item_s: float
    sched_s: float
    floor_s: float
    work_s: float
    work_item_s: float
    alpha: float
    gamma: float
    sharpness: float
    beta: float = 1e-6  # memory-slot (bandwidth) exponent; ~0 in profiles fitted before it existed

    def latency_s(self, compute: Any, batch: Any, processes: Any) -> np.ndarray:
        """Latency in seconds of one batch; arguments broadcast as numpy arrays."""
        c, b, p = np.broadcast_arrays(
            np.asarray(compute, dtype=float),
            np.asarray(batch, dtype=float),
            np.asarray(processes, dtype=float),
        )
        return _mva_latency(self.as_array(), c, b, p)

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in _PARAMS])

    def scaled(self, gpu_time: float) -> LatencyModel:
        """The same model with the SM work (not host time, not the launch floor) scaled by ``gpu_time``."""
        return replace(self, work_s=self.work_s * gpu_time, work_item_s=self.work_item_s * gpu_time)

    def to_json(self) -> dict[str, float]:
        return {name: rounded(getattr(self, name)) for name in _PARAMS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyModel:
        defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        return cls(**{name: float(data[name] if name in data else defaults[name]) for name in _PARAMS})


_PARAMS: tuple[str, ...] = tuple(f.name for f in fields(LatencyModel))


_BOUNDS: dict[str, tuple[float, float]] = {
    "load_s": (1e-9, 100.0),
    "load_item_s": (1e-12, 10.0),
    "sched_s": (1e-9, 10.0),
    "floor_s": (1e-6, 100.0),
    "work_s": (1e-9, 100.0),
    "work_item_s": (1e-12, 10.0),
    "alpha": (0.05, 2.0),
    "gamma": (1e-6, 10.0),
    "sharpness": (1.0, 32.0),
    "beta": (1e-6, 3.0),
}

MEMORY_SLOTS: dict[int, int] = {1: 1, 2: 2, 3: 4, 4: 4, 7: 8}
"""Memory slots of the base MIG profile of each compute size, on every MIG GPU (DESIGN.md §2); a size
not listed has as many slots as compute slices."""


def _slot_ratio(c: np.ndarray) -> np.ndarray:
    """Memory slots per compute slice of an instance of `c` compute slices."""
    slots = np.array(c, dtype=float, copy=True)
    for compute, count in MEMORY_SLOTS.items():
        slots = np.where(c == compute, float(count), slots)
    return slots / c


_LOG_LO = np.log([_BOUNDS[n][0] for n in _PARAMS])


_LOG_HI = np.log([_BOUNDS[n][1] for n in _PARAMS])


def _mva_latency(theta: np.ndarray, c: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    load_s, load_item_s, sched_s, floor_s, work_s, work_item_s, alpha, gamma, k, beta = theta
    host = load_s + load_item_s * b + sched_s * (p - 1.0)
    demand = (work_s + work_item_s * b) / c**alpha / _slot_ratio(c) ** beta * (1.0 + gamma * (p - 1.0))
    queue = np.zeros_like(host)
    gpu = np.zeros_like(host)
    top = int(p.max()) if p.size else 0
    for n in range(1, top + 1):
        active = p >= n
        contended = demand * (1.0 + queue)
        big = np.maximum(floor_s, contended)
        phase = big * ((floor_s / big) ** k + (contended / big) ** k) ** (1.0 / k)
        queue = np.where(active, n / (host + phase) * contended, queue)
        gpu = np.where(active, phase, gpu)
    return host + gpu


def fit_latency_model(
    compute: Sequence[float] | np.ndarray,
    batch: Sequence[float] | np.ndarray,
    processes: Sequence[float] | np.ndarray,
    latency_s: Sequence[float] | np.ndarray,
    *,
    fixed: Mapping[str, float] | None = None,
) -> LatencyModel:
    """Least-squares fit of a `LatencyModel` to measured latencies (seconds), numpy only.

    Minimises the squared log ratio of model to measurement (relative error) with Levenberg-Marquardt
    over the logarithms of the parameters (which keeps them positive and inside `_BOUNDS`), from a few
    deterministic starting points scaled to the data. Parameters named in ``fixed`` keep their value
    (used for interference when only single-process measurements exist).
    """
    c, b, p, t = (np.asarray(x, dtype=float) for x in (compute, batch, processes, latency_s))
    fixed = dict(fixed or {})
    free = np.array([name not in fixed for name in _PARAMS])
    base = float(np.min(t))
    per_item = float(np.median(t * c / (b * p)))
    starts = []
    for alpha, beta in ((0.7, 0.05), (1.0, 0.5)):
        for gamma in (0.02, 0.2):
            for floor in (0.3, 0.8):
                guess = {
                    "load_s": 0.2 * base,
                    "load_item_s": 0.01 * per_item,
                    "sched_s": 0.02 * base,
                    "floor_s": floor * base,
                    "work_s": 0.1 * base,
                    "work_item_s": 0.5 * per_item,
                    "alpha": alpha,
                    "gamma": gamma,
                    "sharpness": 4.0,
                    "beta": beta,
                } | fixed
                starts.append(np.log([guess[name] for name in _PARAMS]))
    unique = {tuple(np.round(s, 12)) for s in starts}
    log_t = np.log(t)

    def residual(theta: np.ndarray) -> np.ndarray:
        return np.log(_mva_latency(np.exp(theta), c, b, p)) - log_t

    best: tuple[float, np.ndarray] | None = None
    for start in sorted(unique):
        theta, cost = _levenberg_marquardt(residual, np.clip(np.array(start), _LOG_LO, _LOG_HI), free)
        if best is None or cost < best[0] - 1e-12:
            best = (cost, theta)
    assert best is not None
    values = dict(zip(_PARAMS, np.exp(best[1]), strict=True)) | fixed
    return LatencyModel(**{name: float(values[name]) for name in _PARAMS})


def _levenberg_marquardt(
    residual: Any, theta: np.ndarray, free: np.ndarray, *, iterations: int = 200
) -> tuple[np.ndarray, float]:
    r = residual(theta)
    cost = float(r @ r)
    damping = 1e-2
    index = np.flatnonzero(free)
    for _ in range(iterations):
        jac = np.empty((r.size, index.size))
        for j, i in enumerate(index):
            step = np.zeros_like(theta)
            step[i] = 1e-6
            jac[:, j] = (residual(theta + step) - r) / 1e-6
        normal = jac.T @ jac
        gradient = jac.T @ r
        improved = False
        while damping < 1e10:
            delta = np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-9), -gradient)
            trial = theta.copy()
            trial[index] = np.clip(theta[index] + delta, _LOG_LO[index], _LOG_HI[index])
            r_trial = residual(trial)
            cost_trial = float(r_trial @ r_trial)
            if np.isfinite(cost_trial) and cost_trial < cost:
                gain = cost - cost_trial
                theta, r, cost = trial, r_trial, cost_trial
                damping = max(damping / 3.0, 1e-9)
                improved = True
                break
            damping *= 4.0
        if not improved or gain < 1e-12 * max(cost, 1e-30):
            break
    return theta, cost
