"""Scenario samplers: random workloads for training, and fixed held-out lists for evaluation.

Usage::

    import numpy as np
    from rlmig.envs.scenarios import ScenarioSampler

    train = ScenarioSampler(split="train")
    workload = train(np.random.default_rng(0))      # a random tenant mix, loads, SLOs, GPU count
    held_out = ScenarioSampler(split="eval").fixed(20, seed=0)   # the same 20 workloads every time

Training and evaluation never share a seed or a stretch of real trace: a scenario's synthetic loads
are seeded with even numbers in the training split and odd numbers in the evaluation split, and the
Azure LLM 2023 trace is cut in two halves (the first hour's first half trains, the second evaluates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rlmig.catalog import catalog
from rlmig.geometry import DEFAULT_GPU_MODEL, gpu_model
from rlmig.traces import builtin_series
from rlmig.workload import Workload, parse_workload

Split = Literal["train", "eval"]
SHAPES = ("constant", "diurnal", "bursty", "step", "spike", "ramp", "azure")


@dataclass(frozen=True)
class ScenarioSampler:
    """Draws workloads for `gpu`: 1 to `max_gpus` GPUs, 1 to `max_tenants` tenants of the catalog's
    models, SLOs around each model's latency, loads of random shapes scaled so the cluster runs between
    `utilisation` bounds of its full-GPU capacity, and retraining with probability `retraining` on
    windows of `window_intervals` intervals, at most half the episode (so an episode spans at least two
    windows) unless the episode is shorter than two of the shortest windows, whose windows then all have
    the shortest length. A retraining job trains `job_share` (a range) of what one 3-slice instance of
    its model trains in a window. `interval_s` and `intervals` may give ranges to draw each workload's from.
    Episodes of 20 intervals or more with the default windows draw what they did before the ranges
    existed; shorter ones now draw windows that end within them (4 intervals, not 4 to 10)."""

    split: Split = "train"
    gpu: str = DEFAULT_GPU_MODEL
    min_gpus: int = 1
    max_gpus: int = 8
    min_tenants: int = 1
    max_tenants: int = 8
    interval_s: float | tuple[float, ...] = 60.0  # one value, or the values to draw from
    intervals: int | tuple[int, int] = 20  # one episode length, or the range to draw it from
    window_intervals: tuple[int, int] = (4, 10)  # retraining windows (see the class docstring)
    downtime_s: float = 5.0
    retraining: float = 0.5
    job_share: tuple[float, float] = (0.1, 0.6)  # a job's samples per window (see the class docstring)
    utilisation: tuple[float, float] = (0.3, 1.2)
    models: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        """The ranges are checked here, so that a bad training config fails when it is read."""
        intervals, interval_s = self.intervals, self.interval_s
        for name, given in (("intervals", intervals), ("window_intervals", self.window_intervals)):
            pair = (given, given) if isinstance(given, int) else given
            if len(pair) != 2 or not 1 <= pair[0] <= pair[1]:
                raise ValueError(f"{name}: {given} is not a count >= 1 nor a range [low, high] of them")
        share = self.job_share
        if not (
            isinstance(share, list | tuple)
            and len(share) == 2
            and all(isinstance(v, int | float) and math.isfinite(v) for v in share)
            and 0 < share[0] <= share[1]
        ):
            raise ValueError(f"job_share: {share} is not a range [low, high] of finite shares above 0")
        values = [interval_s] if isinstance(interval_s, int | float) else list(interval_s)
        if not values or min(values) <= 0:
            raise ValueError(f"interval_s: {interval_s} must be one or more lengths above 0 seconds")

    def __call__(self, rng: np.random.Generator) -> Workload:
        return parse_workload(self.spec(rng), source=f"<sampled {self.split} scenario>")

    def fixed(self, count: int, seed: int = 0) -> list[Workload]:
        """`count` workloads that are the same on every call with the same seed."""
        rng = np.random.default_rng([seed, 1 if self.split == "eval" else 0])
        return [self(rng) for _ in range(count)]

    def spec(self, rng: np.random.Generator) -> dict[str, Any]:
        """The workload as a mapping (what a YAML file would hold)."""
        models = catalog(self.gpu)
        names = sorted(self.models or models)
        intervals, interval_s = self.intervals, self.interval_s
        if not isinstance(intervals, int):  # drawn only when ranges are given (no draw otherwise)
            intervals = int(rng.integers(intervals[0], intervals[1] + 1))
        if not isinstance(interval_s, int | float):
            interval_s = float(interval_s[int(rng.integers(len(interval_s)))])
        gpus = int(rng.integers(self.min_gpus, self.max_gpus + 1))
        n_tenants = int(rng.integers(self.min_tenants, self.max_tenants + 1))
        duration = interval_s * intervals
        longest = max(self.window_intervals[0], min(self.window_intervals[1], intervals // 2))
        full = max(p.compute for p in gpu_model(self.gpu).base_profiles())
        util = rng.uniform(*self.utilisation)
        shares = rng.dirichlet(np.ones(n_tenants))
        tenants = []
        for i in range(n_tenants):
            name = names[int(rng.integers(len(names)))]
            model = models[name]
            base = model.latency_ms(3, 8, 1)
            slo = float(np.round(base / 0.5 * rng.uniform(0.8, 3.0), 1))
            seg = model.best_segment(full, slo)
            per_gpu = seg.throughput if seg else 1.0
            mean = float(util * gpus * per_gpu * shares[i])
            tenant: dict[str, Any] = {
                "name": f"t{i}",
                "model": name,
                "slo_ms": slo,
                "load": self._load(rng, mean, duration, interval_s),
            }
            if rng.random() < self.retraining:
                window = interval_s * int(rng.integers(self.window_intervals[0], longest + 1))
                train = model.train_throughput(3)
                accuracy = float(np.round(rng.uniform(0.8, 0.95), 3))
                tenant["retraining"] = {
                    "window_s": window,
                    "samples": float(np.round(train * window * rng.uniform(*self.job_share))),
                    "drift": float(np.round(rng.uniform(0.02, 0.15), 3)),
                    "accuracy": accuracy,
                }
            tenants.append(tenant)
        return {
            "gpu": self.gpu,
            "gpus": gpus,
            "interval_s": interval_s,
            "duration_s": duration,
            "downtime_s": self.downtime_s,
            "tenants": tenants,
        }

    def _seed(self, rng: np.random.Generator) -> int:
        return int(rng.integers(0, 2**30)) * 2 + (1 if self.split == "eval" else 0)

    def _load(self, rng: np.random.Generator, mean: float, duration: float, interval_s: float) -> Any:
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        if shape == "constant":
            return round(mean, 3)
        if shape == "azure":
            series = builtin_series("azure-llm-2023")
            half = series.duration_s / 2
            service = ("code", "conv")[int(rng.integers(2))]
            span = min(half, duration)
            start = 0.0 if self.split == "train" else half
            offset = start + float(rng.uniform(0, half - span))
            first, count = round(offset / series.step_s), round(span / series.step_s)
            level = float(series.rates[service][first : first + count].mean()) or 1.0
            return {
                "series": "azure-llm-2023",
                "tenant": service,
                "offset_s": float(first * series.step_s),
                "span_s": float(count * series.step_s),
                "scale": mean / level,
            }
        seed = self._seed(rng)
        if shape == "diurnal":
            return {
                "synthetic": "diurnal",
                "mean": mean,
                "amplitude": float(rng.uniform(0.2, 0.8)),
                "period_s": float(duration * rng.uniform(0.5, 2.0)),
                "phase": float(rng.uniform(0, 2 * np.pi)),
                "noise": 0.05,
                "seed": seed,
            }
        if shape == "bursty":
            low, high = mean * rng.uniform(0.3, 0.8), mean * rng.uniform(1.2, 2.5)
            switch = [float(1 / rng.uniform(60, 600)), float(1 / rng.uniform(60, 300))]
            return {
                "synthetic": "bursty",
                "rates": [float(low), float(high)],
                "switch_rates": switch,
                "seed": seed,
            }
        at = float(rng.uniform(0.2, 0.8) * duration)
        if shape == "step":
            return {
                "synthetic": "step",
                "before": mean,
                "after": float(mean * rng.uniform(0.3, 2.5)),
                "at_s": at,
            }
        if shape == "spike":
            peak, width = float(mean * rng.uniform(1.5, 4.0)), float(rng.uniform(1, 4) * interval_s)
            return {"synthetic": "spike", "base": mean, "peak": peak, "at_s": at, "width_s": width}
        start, end = float(mean * rng.uniform(0.2, 1.0)), float(mean * rng.uniform(1.0, 2.5))
        return {"synthetic": "ramp", "start": start, "end": end}
