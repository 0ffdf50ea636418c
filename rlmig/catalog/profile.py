"""A model's profile: its measured segments, the latency model fitted to them, segments (batch size, MPS
processes) per instance size, memory footprint and training throughput, in the project's JSON format.

Measured data is the truth: a segment (compute slices, batch, processes) that was measured on the
profile's GPU model has its measured latency and throughput; one measured as 0 ("did not run or did
not fit") is never feasible; the fitted latency model fills only what was not measured (and every
segment of GPU models scaled from the measured one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlmig.catalog.latency import LatencyModel, rounded
from rlmig.catalog.measurements import BATCHES, FitError, Measurements
from rlmig.errors import ProfileDataError, RlmigError
from rlmig.geometry import gpu_model

PROFILE_FORMAT = "rlmig-model-profile/1"


@dataclass(frozen=True)
class Segment:
    """One MIG instance serving one model: batch size, MPS processes, latency and total throughput."""

    compute: int
    batch: int
    processes: int
    latency_ms: float
    throughput: float
    """Total requests per second of the segment, all processes together."""
    measured: bool = False
    """Whether latency and throughput are a measured row (else the fitted model's)."""


Key = tuple[int, int, int]
"""A segment's (compute slices, batch size, MPS processes)."""


@dataclass(frozen=True)
class MeasuredPoints:
    """The segments measured on the profile's own GPU model: latency (ms) and total throughput (req/s,
    all processes) of each row that ran, and the rows measured as 0 (did not run or did not fit)."""

    rows: Mapping[Key, tuple[float, float]]
    not_run: frozenset[Key] = frozenset()

    @classmethod
    def of(cls, data: Measurements) -> MeasuredPoints:
        """The points of a set of measurements (the first row of a repeated segment counts)."""
        rows: dict[Key, tuple[float, float]] = {}
        for c, b, p, lat, thr in zip(
            data.compute, data.batch, data.processes, data.latency_s, data.throughput, strict=True
        ):
            rows.setdefault((int(c), int(b), int(p)), (float(lat) * 1e3, float(thr)))
        return cls(rows, frozenset(data.not_run))

    def to_json(self) -> dict[str, Any]:
        """The rows as measured: latency in seconds and throughput of ONE process, ParvaGPU's units."""

        def exact(value: float) -> float:  # the measured decimal, without float noise
            return float(f"{value:.10g}")

        rows = [
            [c, b, p, exact(lat / 1e3), exact(thr / p)] for (c, b, p), (lat, thr) in sorted(self.rows.items())
        ]
        return {
            "columns": ["compute", "batch", "processes", "latency_s", "throughput_per_process"],
            "rows": rows,
            "not_run": [list(key) for key in sorted(self.not_run)],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MeasuredPoints:
        rows = {}
        for row in data["rows"]:
            c, b, p, latency_s, per_process = row
            if not (latency_s > 0 and per_process > 0):
                raise ValueError(f"measured row {row}: latency and throughput must be positive")
            rows[int(c), int(b), int(p)] = (float(latency_s) * 1e3, float(per_process) * int(p))
        return cls(rows, frozenset((int(c), int(b), int(p)) for c, b, p in data.get("not_run", [])))


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
        measured: MeasuredPoints | None = None,
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
        self.measured = measured or MeasuredPoints({})
        self._grids: dict[tuple[int, int, bool], tuple[np.ndarray, ...]] = {}
        self._best: dict[tuple[int, float, float, int, float | None, bool], Segment | None] = {}
        self._flags: dict[Key, str] | None = None

    def __repr__(self) -> str:
        flag = ", estimate" if self.estimate else ""
        return f"ModelProfile({self.name!r}, {self.gpu!r}{flag})"

    # -- figures ------------------------------------------------------------------------------

    def latency_ms(self, compute: int, batch: int, processes: int) -> float:
        """The fitted model's latency of one batch in ms on an instance of ``compute`` slices shared by
        ``processes`` (`segment` gives the measured figure where there is one)."""
        _check_positive(compute=compute, batch=batch, processes=processes)
        return float(self.latency.latency_s(compute, batch, processes)) * 1e3

    def throughput(self, compute: int, batch: int, processes: int) -> float:
        """The fitted model's total requests per second of the segment (all processes together)."""
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

    @property
    def flags(self) -> dict[Key, str]:
        """Measured rows that contradict the others, with why (`rlmig.catalog.check`)."""
        if self._flags is None:
            from rlmig.catalog.check import check_points

            self._flags = {f.key: f.reason for f in check_points(self.measured, self.throughput)}
        return self._flags

    def segment(self, compute: int, batch: int, processes: int) -> Segment | None:
        """The segment as measured where it was (None: measured as not run), else as the model fits it."""
        key = (compute, batch, processes)
        if key in self.measured.not_run:
            return None
        if key in self.measured.rows:
            latency, throughput = self.measured.rows[key]
            return Segment(compute, batch, processes, latency, throughput, measured=True)
        latency = self.latency_ms(compute, batch, processes)
        return Segment(compute, batch, processes, latency, batch * processes / latency * 1e3)

    def best_segment(
        self,
        compute: int,
        slo_ms: float,
        *,
        slo_fraction: float = 0.5,
        max_processes: int = 3,
        memory_gb: float | None = None,
        exclude_flagged: bool = False,
    ) -> Segment | None:
        """The SLO-feasible segment of highest total throughput on an instance of ``compute`` slices.

        Feasible: latency <= slo_fraction·slo_ms and, when ``memory_gb`` is given, processes × the
        footprint of one process fits in it (memory_gb × 1000 MiB: profile names round the capacity
        up; the catalog's footprints are scaled so that every measured row fits its instance).
        Searched over batch sizes `BATCHES` and 1..max_processes processes, each measured where it was
        (`segment`); a row measured as not run is never feasible, nor, with ``exclude_flagged``, a
        flagged row (`flags`). Ties go to fewer processes, then smaller
        batches. None when nothing is feasible. Results are cached.
        """
        key = (
            compute,
            float(slo_ms),
            float(slo_fraction),
            max_processes,
            None if memory_gb is None else float(memory_gb),
            exclude_flagged,
        )
        if key in self._best:
            return self._best[key]
        _check_positive(compute=compute, max_processes=max_processes)
        latency, throughput, memory, measured = self._grid(compute, max_processes, exclude_flagged)
        feasible = latency <= slo_fraction * slo_ms * (1 + 1e-12)
        if memory_gb is not None:
            feasible &= memory <= memory_gb * 1000.0 * (1 + 1e-12)
        result: Segment | None = None
        cell = _best_cell(np.where(feasible, throughput, -np.inf))
        if cell is not None:
            b_index, p_index = cell
            result = Segment(
                compute,
                BATCHES[b_index],
                int(p_index) + 1,
                float(latency[b_index, p_index]),
                float(throughput[b_index, p_index]),
                bool(measured[b_index, p_index]),
            )
        self._best[key] = result
        return result

    def error_at_chosen(self, max_processes: int = 3) -> tuple[int, float, float]:
        """How wrong the fitted model is where an optimiser trusting it would go: for every instance size
        and every SLO bound at a measured row's latency, the segment of highest *modelled* throughput
        within the bound (by the model alone) is compared with its measured row. Returns the number of
        distinct segments so chosen, the median of model / measured - 1 over them (positive:
        optimistic) and its 90th percentile of the absolute value; (0, nan, nan) with no measurement.

        Planners now use the measured rows themselves, so on the measured GPU this is the error they
        no longer make; it is what remains on GPU models scaled from this one."""
        chosen: set[Key] = set()
        sizes = sorted({c for c, _, _ in self.measured.rows})
        for compute in sizes:
            latency, throughput = self._model_grid(compute, max_processes)
            bounds = {lat for (c, _, _), (lat, _) in self.measured.rows.items() if c == compute}
            for bound in bounds:
                cell = _best_cell(np.where(latency <= bound, throughput, -np.inf))
                if cell is not None:
                    chosen.add((compute, BATCHES[cell[0]], cell[1] + 1))
        errors = [
            self.throughput(*key) / self.measured.rows[key][1] - 1
            for key in chosen
            if key in self.measured.rows
        ]
        if not errors:
            return 0, float("nan"), float("nan")
        return len(errors), float(np.median(errors)), float(np.percentile(np.abs(errors), 90))

    def _model_grid(self, compute: int, max_processes: int) -> tuple[np.ndarray, np.ndarray]:
        """The fitted model's latency (ms) and total throughput per (batch in `BATCHES`, processes)."""
        b = np.array(BATCHES, dtype=float)[:, None]
        p = np.arange(1, max_processes + 1, dtype=float)[None, :]
        latency_ms = np.array(self.latency.latency_s(compute, b, p) * 1e3, dtype=float)
        return latency_ms, b * p / latency_ms * 1e3

    def _grid(self, compute: int, max_processes: int, exclude_flagged: bool) -> tuple[np.ndarray, ...]:
        """Latency, throughput, memory and whether measured, per (batch, processes): the model's
        figures overwritten by the measured rows; not-run (and excluded flagged) rows infeasible."""
        key = (compute, max_processes, exclude_flagged)
        grid = self._grids.get(key)
        if grid is None:
            latency_ms, throughput = self._model_grid(compute, max_processes)
            measured = np.zeros(latency_ms.shape, dtype=bool)
            excluded = self.flags if exclude_flagged else {}
            for i, batch in enumerate(BATCHES):
                for j in range(max_processes):
                    cell = (compute, batch, j + 1)
                    if cell in self.measured.not_run or cell in excluded:
                        latency_ms[i, j], throughput[i, j] = np.inf, 0.0
                    elif cell in self.measured.rows:
                        latency_ms[i, j], throughput[i, j] = self.measured.rows[cell]
                        measured[i, j] = True
            b = np.array(BATCHES, dtype=float)[:, None]
            p = np.arange(1, max_processes + 1, dtype=float)[None, :]
            grid = (latency_ms, throughput, p * self.footprint.memory_mb(b), measured)
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
            | {
                "base_mb": rounded(self.footprint.base_mb),
                "per_item_mb": rounded(self.footprint.per_item_mb),
            },
            "training": training | {"samples_per_s": {str(c): rounded(v) for c, v in self.training.items()}},
        }
        record.update(details)
        if self.measured.rows or self.measured.not_run:
            record["measured"] = self.measured.to_json()
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
            points = record.get("measured")
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
                measured=MeasuredPoints.from_json(points) if points else None,
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
    "measured",
}


def _best_cell(scores: np.ndarray) -> tuple[int, int] | None:
    """(batch index, processes index) of the highest finite score, None when there is none. Ties go to
    the fewest processes, then the smallest batch (processes-major order)."""
    if not np.isfinite(scores).any():
        return None
    p_index, b_index = np.unravel_index(int(np.argmax(scores.T)), scores.T.shape)
    return int(b_index), int(p_index)


def _check_positive(**values: int | float) -> None:
    for name, value in values.items():
        if not value >= 1:
            raise RlmigError(f"{name} must be at least 1, got {value}")
