"""A model's profile: its latency model, segments (batch size, MPS processes) per instance size, memory
footprint and training throughput, in the project's JSON format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlmig.catalog.latency import LatencyModel, rounded
from rlmig.catalog.measurements import BATCHES, FitError
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
            | {
                "base_mb": rounded(self.footprint.base_mb),
                "per_item_mb": rounded(self.footprint.per_item_mb),
            },
            "training": training | {"samples_per_s": {str(c): rounded(v) for c, v in self.training.items()}},
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
