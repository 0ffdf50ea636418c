"""Measurements of a model on MIG instances (ParvaGPU's CSV format) and the fit error of a latency model
against them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlmig.catalog.latency import LatencyModel, rounded
from rlmig.errors import ProfileDataError
from rlmig.geometry import GpuModel, gpu_model

BATCHES: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""The batch sizes `ModelProfile.best_segment` considers (ParvaGPU's profiling grid)."""


PARVAGPU_COLUMNS: tuple[str, ...] = ("Mig instance", "Batch size", "Workload Number", "Throughput", "Latency")
"""The header of a ParvaGPU profile CSV, the format `import_profile` reads."""


_MIN_MEASURED_ROWS = 10


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
    not_run: tuple[tuple[int, int, int], ...] = ()
    """(compute, batch, processes) rows measured as 0: the segment did not run or did not fit."""

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
            "latency_median": rounded(self.latency_median, 4),
            "latency_p90": rounded(self.latency_p90, 4),
            "throughput_median": rounded(self.throughput_median, 4),
            "throughput_p90": rounded(self.throughput_p90, 4),
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
    not_run: list[tuple[int, int, int]] = []
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
        else:
            not_run.append(key)
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
    return Measurements(*(table[:, i] for i in range(5)), file=where, not_run=tuple(sorted(not_run)))
