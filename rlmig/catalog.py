"""Model catalog: latency, throughput, memory and retraining speed of DNN models on MIG instances.

Usage::

    >>> from rlmig.catalog import catalog, model_profile
    >>> resnet = model_profile("resnet50")                 # A100-80GB, fitted on ParvaGPU's measurements
    >>> seg = resnet.best_segment(3, slo_ms=100)           # best (batch, processes) on a 3g instance
    >>> seg.latency_ms <= 50 and seg.processes <= 3
    True
    >>> resnet.latency_ms(7, 32, 2) < resnet.latency_ms(1, 32, 2)
    True
    >>> h100 = model_profile("resnet50", "H100-80GB")      # scaled from A100-80GB: an estimate
    >>> h100.estimate, h100.throughput(3, 64, 1) > resnet.throughput(3, 64, 1)
    (True, True)
    >>> "bert" in catalog("A100-80GB")
    True

A `ModelProfile` answers, for one model on one GPU model, the latency and throughput of a *segment*
(ParvaGPU's term, DESIGN.md §3): one MIG instance of ``compute`` slices serving the model with batch
size ``batch`` and ``processes`` MPS processes. Every figure comes from a fitted latency model
(`LatencyModel`), never from a table lookup, so it extends to batch sizes and process counts that
were not measured and stays monotone.

The shipped profiles are JSON files in ``rlmig/data/catalog/``, derived from public measurements
(ParvaGPU, MIGPerf) by ``python -m rlmig.catalog_build --data ../shared/data``; each names its source,
licence and file. The runtime never reads the raw measurements. Profiles for GPU models that were not
measured are scaled from a measured one (`scale_profile`) and flagged ``estimate``. Users add their
own measurements in ParvaGPU's CSV format with `import_profile` (``rlmig profiles import``); those
are stored under ``$RLMIG_HOME/profiles`` (default ``~/.local/share/rlmig/profiles``).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rlmig.errors import ProfileDataError, RlmigError, UnknownModelError
from rlmig.geometry import GpuModel, gpu_model

BATCHES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""The batch sizes `ModelProfile.best_segment` considers (ParvaGPU's profiling grid)."""

PARVAGPU_COLUMNS: tuple[str, ...] = ("Mig instance", "Batch size", "Workload Number", "Throughput", "Latency")
"""The header of a ParvaGPU profile CSV, the format `import_profile` reads."""

PROFILE_FORMAT = "rlmig-model-profile/1"
CALIBRATION_FORMAT = "rlmig-catalog-calibration/1"
REFERENCE_GPU = "A100-80GB"
COMPUTE_SHARE = 0.5
"""Share of a segment's GPU time taken as compute-bound when scaling to another GPU (`scale_profile`)."""

_MIN_MEASURED_ROWS = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


# -- the latency model ------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyModel:
    """Interference-aware latency of a segment, in the spirit of iGniter (arXiv 2211.01713).

    iGniter writes the latency of a co-located inference workload as t = t_load + t_sched + t_act,
    with t_act growing with the co-located workloads' demand. Here, for a batch of ``b`` on an
    instance of ``c`` compute slices shared by ``p`` MPS processes (ParvaGPU, arXiv 2409.14447):

    - t_load = load_s + load_item_s·b: host work per batch (input copy, pre- and post-processing),
      which overlaps freely across processes;
    - t_sched = sched_s·(p - 1): scheduling delay that grows with the co-located processes;
    - t_act = smax(floor_s, D·(1 + Q)): the GPU phase. D = (work_s + work_item_s·b) / c^alpha ·
      (1 + gamma·(p - 1)) is the batch's demand on the instance's SMs, inflated by interference
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
        return {name: _round(getattr(self, name)) for name in _PARAMS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyModel:
        return cls(**{name: float(data[name]) for name in _PARAMS})


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
}
_LOG_LO = np.log([_BOUNDS[n][0] for n in _PARAMS])
_LOG_HI = np.log([_BOUNDS[n][1] for n in _PARAMS])


def _mva_latency(theta: np.ndarray, c: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    load_s, load_item_s, sched_s, floor_s, work_s, work_item_s, alpha, gamma, k = theta
    host = load_s + load_item_s * b + sched_s * (p - 1.0)
    demand = (work_s + work_item_s * b) / c**alpha * (1.0 + gamma * (p - 1.0))
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
    for alpha in (0.7, 1.0):
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


# -- measurements and fit errors ---------------------------------------------------------------


@dataclass(frozen=True)
class Measurements:
    """Measured segments of one model: one row per (compute, batch, processes) that ran."""

    compute: np.ndarray
    batch: np.ndarray
    processes: np.ndarray
    latency_s: np.ndarray
    throughput: np.ndarray
    """Total requests per second of the segment, all processes."""
    file: str = ""

    def __len__(self) -> int:
        return int(self.compute.size)

    @property
    def multi_process(self) -> bool:
        """Whether any row has more than one MPS process (so interference can be fitted)."""
        return bool(np.any(self.processes > 1))

    @property
    def cycle_s(self) -> np.ndarray:
        """Each process's time per batch, batch / per-process throughput: the latency of a closed loop.

        ParvaGPU rounds its latencies to 1 ms while its throughputs keep three decimals; fits use this.
        """
        return self.batch * self.processes / self.throughput


@dataclass(frozen=True)
class FitError:
    """Relative error of a fitted profile against the measurements it was fitted on."""

    points: int
    latency_median: float
    latency_p90: float
    throughput_median: float
    throughput_p90: float

    def to_json(self) -> dict[str, float | int]:
        return {
            "points": self.points,
            "latency_median": _round(self.latency_median, 4),
            "latency_p90": _round(self.latency_p90, 4),
            "throughput_median": _round(self.throughput_median, 4),
            "throughput_p90": _round(self.throughput_p90, 4),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FitError:
        return cls(
            int(data["points"]),
            float(data["latency_median"]),
            float(data["latency_p90"]),
            float(data["throughput_median"]),
            float(data["throughput_p90"]),
        )


def fit_error(model: LatencyModel, data: Measurements) -> FitError:
    """Median and 90th percentile of |model / measured - 1| for latency and total throughput."""
    predicted = model.latency_s(data.compute, data.batch, data.processes)
    latency = np.abs(predicted / data.latency_s - 1.0)
    throughput = np.abs(data.batch * data.processes / predicted / data.throughput - 1.0)
    return FitError(
        len(data),
        float(np.median(latency)),
        float(np.percentile(latency, 90)),
        float(np.median(throughput)),
        float(np.percentile(throughput, 90)),
    )


def compute_sizes(gpu: str | GpuModel) -> tuple[int, ...]:
    """The instance sizes (compute slices) of a GPU model, for example (1, 2, 3, 4, 7)."""
    return tuple(sorted({p.compute for p in gpu_model(gpu).base_profiles()}))


def read_parvagpu_csv(path: str | Path, gpu: str | GpuModel) -> Measurements:
    """Read and validate a profile CSV in ParvaGPU's format (`PARVAGPU_COLUMNS`).

    One row per (``Mig instance`` compute slices, ``Batch size``, ``Workload Number`` MPS processes);
    ``Throughput`` is requests per second of ONE process, ``Latency`` seconds per batch; both 0 when
    the segment was not measured. Every compute size of the GPU model needs a measured row. Any
    problem raises `ProfileDataError` naming the file, the line and the field.
    """
    model = gpu_model(gpu)
    sizes = compute_sizes(model)
    where = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise ProfileDataError(f"cannot read {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProfileDataError(f"{where}: not a text CSV file (expected UTF-8)") from None
    expected = ",".join(PARVAGPU_COLUMNS)
    if not rows:
        raise ProfileDataError(f"{where}:1: empty file, expected the header {expected}")
    header = [cell.strip() for cell in rows[0]]
    for i, want in enumerate(PARVAGPU_COLUMNS):
        got = header[i] if i < len(header) else None
        if got != want:
            shown = "missing" if got is None else repr(got)
            raise ProfileDataError(
                f"{where}:1: column {i + 1} is {shown}, expected {want!r} (header: {expected})"
            )
    if len(header) > len(PARVAGPU_COLUMNS):
        raise ProfileDataError(
            f"{where}:1: unexpected column {header[len(PARVAGPU_COLUMNS)]!r} (header: {expected})"
        )
    seen: dict[tuple[int, int, int], int] = {}
    measured: list[tuple[int, int, int, float, float]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(PARVAGPU_COLUMNS):
            raise ProfileDataError(f"{where}:{line}: expected {len(PARVAGPU_COLUMNS)} fields, got {len(row)}")
        values = []
        for column, cell in zip(PARVAGPU_COLUMNS, row, strict=True):
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ProfileDataError(f"{where}:{line}: field {column!r} is not a number: {cell.strip()!r}")
            values.append(value)
        compute, batch, processes, throughput, latency = values
        for column, value in zip(PARVAGPU_COLUMNS[:3], values[:3], strict=True):
            if value < 1 or value != int(value):
                raise ProfileDataError(
                    f"{where}:{line}: field {column!r} must be a positive integer, got {value:g}"
                )
        if int(compute) not in sizes:
            known = ", ".join(map(str, sizes))
            raise ProfileDataError(
                f"{where}:{line}: field 'Mig instance' is {compute:g}, "
                f"not a compute size of {model.name} ({known})"
            )
        for column, value in (("Throughput", throughput), ("Latency", latency)):
            if value < 0:
                raise ProfileDataError(
                    f"{where}:{line}: field {column!r} must not be negative, got {value:g}"
                )
        if (throughput > 0) != (latency > 0):
            raise ProfileDataError(
                f"{where}:{line}: fields 'Throughput' and 'Latency' must both be 0 (not measured) "
                "or both positive"
            )
        key = (int(compute), int(batch), int(processes))
        if key in seen:
            raise ProfileDataError(
                f"{where}:{line}: duplicate row for Mig instance {key[0]}, Batch size {key[1]}, "
                f"Workload Number {key[2]} (first on line {seen[key]})"
            )
        seen[key] = line
        if throughput > 0:
            measured.append((*key, latency, throughput * processes))
    missing = sorted(set(sizes) - {row[0] for row in measured})
    if missing:
        need = ", ".join(map(str, sizes))
        raise ProfileDataError(
            f"{where}: field 'Mig instance' has no measured rows for compute sizes "
            f"{', '.join(map(str, missing))} ({model.name} needs {need})"
        )
    if len(measured) < _MIN_MEASURED_ROWS or len({row[1] for row in measured}) < 2:
        raise ProfileDataError(
            f"{where}: {len(measured)} measured rows; the fit needs at least {_MIN_MEASURED_ROWS} "
            "over at least 2 batch sizes"
        )
    table = np.array(measured, dtype=float)
    return Measurements(*(table[:, i] for i in range(5)), file=where)


# -- profiles ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One MIG instance serving one model: batch size, MPS processes, latency and total throughput."""

    compute: int
    batch: int
    processes: int
    latency_ms: float
    throughput: float
    """Total requests per second of the segment, all processes together."""


@dataclass(frozen=True)
class Footprint:
    """GPU memory of one serving process: base_mb (context, weights) + per_item_mb per batch item."""

    base_mb: float
    per_item_mb: float

    def memory_mb(self, batch: Any) -> Any:
        return self.base_mb + self.per_item_mb * batch


class ModelProfile:
    """One model on one GPU model: segment latency and throughput, memory footprint, retraining speed."""

    def __init__(
        self,
        name: str,
        gpu: str,
        *,
        source: str,
        estimate: bool,
        latency: LatencyModel,
        footprint: Footprint,
        training: Mapping[int, float],
        fit: FitError | None = None,
        details: Mapping[str, Any] | None = None,
        user: bool = False,
    ) -> None:
        self.name = name
        self.gpu = gpu
        self.source = source
        self.estimate = estimate
        self.latency = latency
        self.footprint = footprint
        self.training = {int(c): float(v) for c, v in sorted(training.items())}
        self.fit = fit
        self.details: dict[str, Any] = dict(details or {})
        self.user = user
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._best: dict[tuple[int, float, float, int, float | None], Segment | None] = {}

    def __repr__(self) -> str:
        flag = ", estimate" if self.estimate else ""
        return f"ModelProfile({self.name!r}, {self.gpu!r}{flag})"

    # -- figures ------------------------------------------------------------------------------

    def latency_ms(self, compute: int, batch: int, processes: int) -> float:
        """Latency of one batch in ms on an instance of ``compute`` slices shared by ``processes``."""
        _check_positive(compute=compute, batch=batch, processes=processes)
        return float(self.latency.latency_s(compute, batch, processes)) * 1e3

    def throughput(self, compute: int, batch: int, processes: int) -> float:
        """Total requests per second of the segment (all processes together)."""
        return batch * processes / self.latency_ms(compute, batch, processes) * 1e3

    def memory_mb(self, batch: int) -> float:
        """GPU memory (MiB) of ONE serving process at this batch size."""
        _check_positive(batch=batch)
        return float(self.footprint.memory_mb(batch))

    def train_throughput(self, compute: int) -> float:
        """Retraining samples per second on an instance of ``compute`` slices.

        The shipped figure for the GPU model's instance sizes (measured where MIGPerf measured it,
        otherwise estimated, see ``details['training']``); other sizes follow a power law in compute
        fitted through them.
        """
        _check_positive(compute=compute)
        if compute in self.training:
            return self.training[compute]
        sizes = np.array(list(self.training), dtype=float)
        rates = np.array(list(self.training.values()))
        if sizes.size == 1:
            return float(rates[0] * compute / sizes[0])
        slope, intercept = np.polyfit(np.log(sizes), np.log(rates), 1)
        return float(np.exp(intercept) * compute**slope)

    # -- segments -----------------------------------------------------------------------------

    def best_segment(
        self,
        compute: int,
        slo_ms: float,
        *,
        slo_fraction: float = 0.5,
        max_processes: int = 3,
        memory_gb: float | None = None,
    ) -> Segment | None:
        """The SLO-feasible segment of highest total throughput on an instance of ``compute`` slices.

        Feasible: latency <= slo_fraction·slo_ms and, when ``memory_gb`` is given, processes × the
        footprint of one process fits in it (memory_gb × 1000 MiB: profile names round the capacity
        up). Searched over batch sizes `BATCHES` and 1..max_processes processes; ties go to fewer
        processes, then smaller batches. None when nothing is feasible. Results are cached.
        """
        key = (
            compute,
            float(slo_ms),
            float(slo_fraction),
            max_processes,
            None if memory_gb is None else float(memory_gb),
        )
        if key in self._best:
            return self._best[key]
        _check_positive(compute=compute, max_processes=max_processes)
        latency, throughput, memory = self._grid(compute, max_processes)
        feasible = latency <= slo_fraction * slo_ms * (1 + 1e-12)
        if memory_gb is not None:
            feasible &= memory <= memory_gb * 1000.0 * (1 + 1e-12)
        result: Segment | None = None
        if feasible.any():
            scores = np.where(feasible, throughput, -np.inf)
            # processes-major order: on equal throughput the fewest processes, then the smallest batch
            p_index, b_index = np.unravel_index(int(np.argmax(scores.T)), scores.T.shape)
            result = Segment(
                compute,
                BATCHES[b_index],
                int(p_index) + 1,
                float(latency[b_index, p_index]),
                float(throughput[b_index, p_index]),
            )
        self._best[key] = result
        return result

    def _grid(self, compute: int, max_processes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = (compute, max_processes)
        grid = self._grids.get(key)
        if grid is None:
            b = np.array(BATCHES, dtype=float)[:, None]
            p = np.arange(1, max_processes + 1, dtype=float)[None, :]
            latency_ms = self.latency.latency_s(compute, b, p) * 1e3
            grid = (latency_ms, b * p / latency_ms * 1e3, p * self.footprint.memory_mb(b))
            self._grids[key] = grid
        return grid

    # -- JSON ---------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The profile as its catalog JSON record (`PROFILE_FORMAT`)."""
        details = dict(self.details)
        memory = dict(details.pop("memory", {}))
        training = dict(details.pop("training", {}))
        record: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "name": self.name,
            "gpu": self.gpu,
            "source": self.source,
            "estimate": self.estimate,
            "latency_model": self.latency.to_json(),
            "fit_error": self.fit.to_json() if self.fit else None,
            "memory": memory
            | {"base_mb": _round(self.footprint.base_mb), "per_item_mb": _round(self.footprint.per_item_mb)},
            "training": training | {"samples_per_s": {str(c): _round(v) for c, v in self.training.items()}},
        }
        record.update(details)
        return record

    @classmethod
    def from_json(
        cls, record: Mapping[str, Any], *, origin: str = "<memory>", user: bool = False
    ) -> ModelProfile:
        """A profile from its JSON record; `ProfileDataError` naming ``origin`` when malformed."""
        try:
            if record.get("format") != PROFILE_FORMAT:
                raise ValueError(f"format is {record.get('format')!r}, expected {PROFILE_FORMAT!r}")
            memory = dict(record["memory"])
            training = dict(record["training"])
            rates = {int(c): float(v) for c, v in training.pop("samples_per_s").items()}
            if not rates:
                raise ValueError("training.samples_per_s is empty")
            footprint = Footprint(float(memory.pop("base_mb")), float(memory.pop("per_item_mb")))
            details = {k: v for k, v in record.items() if k not in _CORE_KEYS}
            details["memory"] = memory
            details["training"] = training
            fit = record.get("fit_error")
            return cls(
                str(record["name"]),
                gpu_model(str(record["gpu"])).name,
                source=str(record["source"]),
                estimate=bool(record["estimate"]),
                latency=LatencyModel.from_json(record["latency_model"]),
                footprint=footprint,
                training=rates,
                fit=FitError.from_json(fit) if fit else None,
                details=details,
                user=user,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ProfileDataError(f"{origin}: malformed model profile: {what}") from None


_CORE_KEYS = {
    "format",
    "name",
    "gpu",
    "source",
    "estimate",
    "latency_model",
    "fit_error",
    "memory",
    "training",
}


def _check_positive(**values: int | float) -> None:
    for name, value in values.items():
        if not value >= 1:
            raise RlmigError(f"{name} must be at least 1, got {value}")


def _round(value: float, digits: int = 6) -> float:
    """``value`` to ``digits`` significant digits (shipped JSON stays short and byte-stable)."""
    return float(f"{value:.{digits}g}")


# -- building profiles from measurements -------------------------------------------------------


def footprint_within_measurements(
    footprint: Footprint, data: Measurements, gpu: str | GpuModel
) -> tuple[Footprint, float]:
    """Scale a footprint estimate down until every measured segment fits its instance.

    A measured segment of p processes at batch b on c slices proves p·memory(b) <= the memory of the
    smallest instance with c slices (taken as the one measured). Returns the footprint and the scale
    applied (1.0 when the estimate already agrees with the measurements).
    """
    model = gpu_model(gpu)
    capacity = {
        c: min(_profile_memory_mb(p) for p in model.base_profiles() if p.compute == c)
        for c in compute_sizes(model)
    }
    limit = np.array([capacity[int(c)] for c in data.compute]) / data.processes
    scale = float(min(1.0, np.min(limit / footprint.memory_mb(data.batch))))
    return Footprint(footprint.base_mb * scale, footprint.per_item_mb * scale), scale


def _profile_memory_mb(profile: Any) -> float:
    return float(profile.memory_mb) if profile.memory_mb else profile.memory_gb * 1000.0


def estimated_training(latency: LatencyModel, sizes: Sequence[int], ratio: float) -> dict[int, float]:
    """Retraining samples/s estimated as ``ratio`` × the best single-process inference throughput.

    Forward plus backward costs about three forwards; ``ratio`` is calibrated on MIGPerf's models
    measured both ways (``calibration()['train_infer_ratio']``).
    """
    b = np.array(BATCHES, dtype=float)
    return {c: float(ratio * np.max(b / latency.latency_s(c, b, 1))) for c in sizes}


def fit_measurements(data: Measurements, calib: Mapping[str, Any] | None = None) -> LatencyModel:
    """The latency model of measured segments, with parameters rounded as the catalog ships them.

    Interference (gamma, sched_s) is fitted when the data has several processes per instance; else it
    does not affect the fit and is set to the catalog default (median of the ParvaGPU fits, sched_s
    relative to the launch floor).
    """
    if data.multi_process:
        latency = fit_latency_model(data.compute, data.batch, data.processes, data.cycle_s)
    else:
        latency = fit_latency_model(
            data.compute, data.batch, data.processes, data.cycle_s, fixed={"gamma": 1e-6, "sched_s": 1e-9}
        )
        default = (calibration() if calib is None else calib)["interference"]
        latency = replace(
            latency, gamma=default["gamma"], sched_s=default["sched_over_floor"] * latency.floor_s
        )
    return LatencyModel.from_json(latency.to_json())


def profile_from_measurements(
    name: str,
    gpu: str,
    data: Measurements,
    *,
    source: str,
    details: Mapping[str, Any] | None = None,
    latency: LatencyModel | None = None,
    footprint: Footprint | None = None,
    training: Mapping[int, float] | None = None,
    calib: Mapping[str, Any] | None = None,
    user: bool = False,
) -> ModelProfile:
    """A profile of one model on one GPU model from its measured segments.

    Without ``latency``, `fit_measurements`; without ``footprint``, the catalog's default footprint
    scaled down to agree with the measurements (`footprint_within_measurements`); without
    ``training``, `estimated_training`. The fit error is measured against ``data``.
    """
    calib = calibration() if calib is None else calib
    latency = fit_measurements(data, calib) if latency is None else latency
    info = dict(details or {})
    info.setdefault(
        "interference", "fitted" if data.multi_process else "default (median of the ParvaGPU fits)"
    )
    memory_info = dict(info.pop("memory", {}))
    if footprint is None:
        default_fp = Footprint(calib["memory"]["default_base_mb"], calib["memory"]["default_per_item_mb"])
        footprint, scale = footprint_within_measurements(default_fp, data, gpu)
        memory_info = {
            "estimate": True,
            "method": "catalog default footprint (median of the built-in models), scaled by "
            f"{scale:.3g} so every measured segment fits its instance",
        }
    training_info = dict(info.pop("training", {}))
    if training is None:
        training = estimated_training(latency, compute_sizes(gpu), calib["train_infer_ratio"])
        training_info = {
            "estimate": True,
            "method": f"{calib['train_infer_ratio']:.3g} x best single-process inference throughput "
            "(train/infer ratio measured by MIGPerf)",
        }
    info["memory"] = memory_info
    info["training"] = training_info
    return ModelProfile(
        name,
        gpu,
        source=source,
        estimate=False,
        latency=latency,
        footprint=footprint,
        training={c: _round(v) for c, v in training.items()},
        fit=fit_error(latency, data),
        details=info,
        user=user,
    )


# -- other GPU models -------------------------------------------------------------------------


def sms_per_slice(gpu: str | GpuModel) -> float:
    """SMs per compute slice: from the profiles' SM counts where known, else SMs / memory slots."""
    model = gpu_model(gpu)
    known = [p.sms / p.compute for p in model.base_profiles() if p.sms]
    if known:
        return float(min(known))
    if not model.sms:
        raise RlmigError(f"{model.name} has no SM count in rlmig/data/gpus.yaml; cannot scale profiles to it")
    return model.sms / model.slots


def bandwidth_per_slot(gpu: str | GpuModel) -> float:
    """Memory bandwidth (GB/s) per memory slot: an instance gets its slots' share."""
    model = gpu_model(gpu)
    if not model.memory_bandwidth_gbps:
        raise RlmigError(f"{model.name} has no memory bandwidth in rlmig/data/gpus.yaml; cannot scale to it")
    return model.memory_bandwidth_gbps / model.slots


def gpu_time_factor(source: str | GpuModel, target: str | GpuModel) -> float:
    """Ratio of a segment's GPU time on ``target`` to that on ``source`` (see `scale_profile`)."""
    compute = sms_per_slice(source) / sms_per_slice(target)
    memory = bandwidth_per_slot(source) / bandwidth_per_slot(target)
    return COMPUTE_SHARE * compute + (1.0 - COMPUTE_SHARE) * memory


def scale_profile(profile: ModelProfile, gpu: str | GpuModel) -> ModelProfile:
    """Estimate a profile on another GPU model from one measured on ``profile.gpu``.

    The SM work of the latency model (work_s, work_item_s) is multiplied by

        f = COMPUTE_SHARE · sms_src / sms_dst + (1 - COMPUTE_SHARE) · bw_src / bw_dst

    where sms is the SM count per compute slice and bw the memory bandwidth per memory slot (an
    instance of c slices gets c slices' SMs and its memory slots' bandwidth), COMPUTE_SHARE = 0.5: half
    the GPU time taken as compute-bound, half as memory-bound. Retraining throughput is divided by f.
    Host time, scheduling delay, the launch floor and the memory footprint are kept. This is an
    ESTIMATE (``estimate=True``): it ignores per-SM architectural gains (H100 and later do more per SM
    and clock), so it understates newer GPUs' speed, which errs on the safe side for SLOs.
    """
    target = gpu_model(gpu)
    factor = gpu_time_factor(profile.gpu, target)
    details = dict(profile.details)
    details["scaled_from"] = {"gpu": profile.gpu, "gpu_time_factor": _round(factor, 4)}
    details["training"] = dict(details.get("training", {})) | {"estimate": True}
    return ModelProfile(
        profile.name,
        target.name,
        source=f"estimate scaled from {profile.gpu} (SMs per slice, memory bandwidth): {profile.source}",
        estimate=True,
        latency=profile.latency.scaled(factor),
        footprint=profile.footprint,
        training={c: profile.train_throughput(c) / factor for c in compute_sizes(target)},
        fit=profile.fit,
        details=details,
        user=profile.user,
    )


# -- the catalog ------------------------------------------------------------------------------


def _catalog_dir() -> Any:
    return resources.files("rlmig").joinpath("data/catalog")


@functools.cache
def calibration() -> dict[str, Any]:
    """Constants the catalog builder derived from the data: interference and footprint defaults,
    the train/infer throughput ratio (``rlmig/data/catalog/calibration.json``)."""
    entry = _catalog_dir().joinpath("calibration.json")
    record = json.loads(entry.read_text())
    if record.get("format") != CALIBRATION_FORMAT:
        raise ProfileDataError(f"{entry}: not a catalog calibration file")
    return record


@functools.cache
def builtin_profiles() -> tuple[ModelProfile, ...]:
    """The shipped, measured profiles (not scaled), in name order."""
    found = []
    for entry in _catalog_dir().iterdir():
        if entry.name.endswith(".json") and entry.name != "calibration.json":
            found.append(ModelProfile.from_json(json.loads(entry.read_text()), origin=str(entry)))
    return tuple(sorted(found, key=lambda p: (p.name.lower(), p.gpu)))


def user_profile_dir() -> Path:
    """Where imported profiles live: ``$RLMIG_HOME/profiles``, else ``$XDG_DATA_HOME/rlmig/profiles``
    (default ``~/.local/share/rlmig/profiles``)."""
    home = os.environ.get("RLMIG_HOME")
    if home:
        return Path(home).expanduser() / "profiles"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "rlmig" / "profiles"


def user_profile_path(name: str, gpu: str) -> Path:
    """The file an imported profile of model ``name`` for this GPU model is stored in."""
    return user_profile_dir() / f"{name}@{gpu_model(gpu).name}.json"


def user_profiles() -> tuple[ModelProfile, ...]:
    """The imported profiles of the user profile directory."""
    return _user_profiles(*_user_signature())


def _user_signature() -> tuple[str, tuple[tuple[str, int], ...]]:
    folder = user_profile_dir()
    if not folder.is_dir():
        return str(folder), ()
    files = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.json") if p.is_file()))
    return str(folder), files


@functools.lru_cache(maxsize=8)
def _user_profiles(folder: str, files: tuple[tuple[str, int], ...]) -> tuple[ModelProfile, ...]:
    found = []
    for name, _ in files:
        path = Path(folder) / name
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ProfileDataError(f"{path}: unreadable model profile: {exc}") from None
        found.append(ModelProfile.from_json(record, origin=str(path), user=True))
    return tuple(sorted(found, key=lambda p: (p.name.lower(), p.gpu)))


def measured_profiles() -> dict[str, dict[str, ModelProfile]]:
    """Every measured profile (built-in, then imported ones overriding on name and GPU), by name and GPU."""
    found: dict[str, dict[str, ModelProfile]] = {}
    names: dict[str, str] = {}
    for profile in (*builtin_profiles(), *user_profiles()):
        key = names.setdefault(profile.name.lower(), profile.name)
        found.setdefault(key, {})[profile.gpu] = profile
    return found


def catalog(gpu: str = REFERENCE_GPU) -> dict[str, ModelProfile]:
    """Every model for this GPU model, by name: built-in and imported, measured on it or scaled to it."""
    target = gpu_model(gpu).name
    return dict(_catalog(target, *_user_signature()))


@functools.lru_cache(maxsize=32)
def _catalog(
    gpu: str, folder: str, files: tuple[tuple[str, int], ...]
) -> tuple[tuple[str, ModelProfile], ...]:
    del folder, files  # cache key only: the user directory and its files' modification times
    result = []
    for name, by_gpu in sorted(measured_profiles().items(), key=lambda item: item[0].lower()):
        if gpu in by_gpu:
            result.append((name, by_gpu[gpu]))
        else:
            source = by_gpu.get(REFERENCE_GPU) or by_gpu[sorted(by_gpu)[0]]
            result.append((name, scale_profile(source, gpu)))
    return tuple(result)


def model_profile(name: str, gpu: str = REFERENCE_GPU) -> ModelProfile:
    """The profile of model ``name`` (case-insensitive) for this GPU model; `UnknownModelError` if none."""
    models = catalog(gpu)
    wanted = name.strip().lower()
    for known, profile in models.items():
        if known.lower() == wanted:
            return profile
    raise UnknownModelError(f"unknown model {name!r} for {gpu_model(gpu).name} (known: {', '.join(models)})")


def import_profile(csv_path: str | Path, gpu: str, name: str | None = None) -> ModelProfile:
    """Fit a profile to a ParvaGPU-format CSV (`read_parvagpu_csv`) and store it as a user profile.

    The profile is saved as ``<name>@<gpu>.json`` in `user_profile_dir`, in the built-in format, and
    from then on is part of `catalog` (replacing a built-in profile of the same name on that GPU).
    """
    model = gpu_model(gpu)
    path = Path(csv_path)
    name = path.stem if name is None else name.strip()
    if not _NAME.match(name):
        raise RlmigError(
            f"bad model name {name!r}: use letters, digits and . _ + - "
            "(at most 64, starting with a letter or digit)"
        )
    data = read_parvagpu_csv(path, model)
    profile = profile_from_measurements(
        name,
        model.name,
        data,
        source=f"user measurements, {path.name}",
        details={
            "provenance": {
                "dataset": "user-supplied",
                "license": "user-supplied",
                "files": [str(path.resolve())],
            }
        },
        user=True,
    )
    target = user_profile_path(name, model.name)
    record = profile.to_json()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=1) + "\n")
    except OSError as exc:
        raise RlmigError(f"cannot write the profile to {target.parent}: {exc.strerror or exc}") from None
    _user_profiles.cache_clear()
    _catalog.cache_clear()
    return ModelProfile.from_json(record, origin=str(target), user=True)  # exactly as the catalog loads it
