"""Building a profile from measurements: the fit (with the shipped calibration as its prior), footprints
within the measurements, training throughput estimates.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib import resources
from typing import Any

import numpy as np

from rlmig.catalog.latency import LatencyModel, fit_latency_model, rounded
from rlmig.catalog.measurements import BATCHES, Measurements, compute_sizes, fit_error
from rlmig.catalog.profile import Footprint, MeasuredPoints, ModelProfile
from rlmig.errors import ProfileDataError
from rlmig.geometry import GpuModel, gpu_model

CALIBRATION_FORMAT = "rlmig-catalog-calibration/1"


def catalog_dir() -> Any:
    return resources.files("rlmig").joinpath("data/catalog")


@functools.cache
def calibration() -> dict[str, Any]:
    """Constants the catalog builder derived from the data: interference and footprint defaults,
    the train/infer throughput ratio (``rlmig/data/catalog/calibration.json``)."""
    entry = catalog_dir().joinpath("calibration.json")
    record = json.loads(entry.read_text())
    if record.get("format") != CALIBRATION_FORMAT:
        raise ProfileDataError(f"{entry}: not a catalog calibration file")
    return record


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
        training={c: rounded(v) for c, v in training.items()},
        fit=fit_error(latency, data),
        details=info,
        user=user,
        measured=MeasuredPoints.of(data),
    )
