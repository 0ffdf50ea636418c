"""Workload files: the GPUs, the run's timing, and the tenants with their SLOs, load and retraining.

A workload file is YAML::

    name: two-tenants                # optional, defaults to the file name
    gpu: A100-80GB                   # GPU model, as `rlmig gpus` lists them
    gpus: 2                          # GPUs available
    interval_s: 60                   # one decision per interval
    duration_s: 3600                 # a multiple of interval_s
    downtime_s: 5                    # downtime of a changed instance (MIG operations + model load)
    mode: dynamic                    # serve (one-shot, fewest GPUs) or dynamic (reconfigure every interval)
    slo_fraction: 0.5                # optional: share of the SLO a segment's latency may take
    max_processes: 3                 # optional: MPS processes per segment at most
    exclude_flagged: false           # optional: plan without measured rows `rlmig profiles check` flags
    tenants:
      - name: chat
        model: bert                  # a model of the catalog (`rlmig profiles list`)
        slo_ms: 400
        load: 120                    # constant req/s, or one of:
        #   {series: azure-llm-2023, tenant: conv, scale: 8}      a shipped trace
        #   {series: rates.csv, tenant: chat, scale: 1}            a CSV time_s,tenant,rate (relative path)
        #   {series: ..., offset_s: 600, span_s: 1200}             only that stretch of the series, repeated
        #   {synthetic: diurnal, mean: 100, amplitude: 0.5, period_s: 3600, seed: 3}
        retraining:                  # optional: continuous learning (DESIGN.md §3)
          window_s: 600              # a multiple of interval_s
          samples: 60000             # samples to retrain on per window
          drift: 0.08                # accuracy lost at each window start
          accuracy: 0.92             # accuracy after retraining (also the starting accuracy)
    configuration:                   # optional: the static planner's configuration, per GPU (GPUs
                                     # after the last list are left empty)
      - ["4g.40gb@0=chat", "3g.40gb@4=chat:retraining"]
      - ["7g.80gb@0"]

Every error names the file, the field and what is wrong, on one line.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rlmig.catalog import ModelProfile, catalog, model_profile
from rlmig.configuration import Configuration
from rlmig.errors import ConfigError, RlmigError
from rlmig.geometry import GpuModel, gpu_model
from rlmig.inputs import one_line, quote, read_yaml
from rlmig.traces import RateSeries, builtin_series, synthetic

Mode = Literal["serve", "dynamic"]
_TOP_FIELDS = {
    "name", "gpu", "gpus", "interval_s", "duration_s", "downtime_s", "mode", "slo_fraction",
    "max_processes", "exclude_flagged", "tenants", "configuration", "description",
}  # fmt: skip
_TENANT_FIELDS = {"name", "model", "slo_ms", "load", "retraining"}
_RETRAINING_FIELDS = {"window_s", "samples", "drift", "accuracy"}
_SYNTHETIC_STEP_S = 1.0


@dataclass(frozen=True, slots=True)
class Retraining:
    """Continuous learning of one tenant (after Ekya and MIGRator): a job of `samples` per window."""

    window_s: float
    samples: float
    drift: float
    accuracy: float


@dataclass(frozen=True, slots=True)
class Load:
    """How a tenant's requests arrive: a constant rate, a rate series, or a synthetic generator."""

    rate: float | None = None
    series: RateSeries | None = None
    series_tenant: str | None = None
    scale: float = 1.0
    synthetic: Mapping[str, Any] | None = None

    def per_interval(self, interval_s: float, count: int) -> np.ndarray:
        """The mean arrival rate (req/s) of each of `count` intervals of `interval_s` seconds."""
        if self.rate is not None:
            return np.full(count, float(self.rate))
        if self.series is not None:
            tenant = self.series_tenant or self.series.tenants[0]
            return (
                np.array(
                    [self.series.rate(tenant, k * interval_s, (k + 1) * interval_s) for k in range(count)]
                )
                * self.scale
            )
        assert self.synthetic is not None
        params = dict(self.synthetic)
        kind = params.pop("synthetic")
        seed = params.pop("seed", 0)
        fine = synthetic(kind, count * interval_s, _SYNTHETIC_STEP_S, seed, **params)
        per_bin = round(interval_s / _SYNTHETIC_STEP_S)
        return fine[: count * per_bin].reshape(count, per_bin).mean(axis=1) * self.scale


@dataclass(frozen=True, slots=True)
class Tenant:
    """One DNN tenant: its model, latency SLO, load and optional retraining."""

    name: str
    model: str
    slo_ms: float
    load: Load
    retraining: Retraining | None = None


@dataclass(frozen=True, eq=False)
class Workload:
    """A validated workload. Build it with `load_workload` (file) or `parse_workload` (mapping)."""

    name: str
    gpu: GpuModel
    gpu_count: int
    interval_s: float
    duration_s: float
    downtime_s: float
    mode: Mode
    tenants: tuple[Tenant, ...]
    slo_fraction: float = 0.5
    max_processes: int = 3
    exclude_flagged: bool = False  # plan without the measured rows `rlmig.catalog.check` flags
    configuration: Configuration | None = None
    source: str = "<memory>"

    @property
    def intervals(self) -> int:
        """Number of decision intervals in the run."""
        return round(self.duration_s / self.interval_s)

    @property
    def tenant_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tenants)

    @functools.cached_property
    def rates(self) -> np.ndarray:
        """Mean arrival rate per interval and tenant, shape (intervals, tenants), req/s (read-only)."""
        rates = np.stack([t.load.per_interval(self.interval_s, self.intervals) for t in self.tenants], 1)
        rates.setflags(write=False)
        return rates

    def profiles(self) -> tuple[ModelProfile, ...]:
        """Each tenant's latency model, for this workload's GPU model."""
        models = catalog(self.gpu)  # the GPU model resolved, the user folder read, once
        return tuple(model_profile(t.model, self.gpu, models) for t in self.tenants)


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}
MAX_GPUS = 4096
"""The most GPUs a workload may name (the latency sweeps go to 1,024)."""
MAX_TENANTS = 1024
"""The most tenants a workload may list."""
MAX_INTERVALS = 100_000
"""The most decision intervals a run may span (69 days of minutes): rates are held per interval."""
MAX_PROCESSES = 48
"""The most MPS processes a segment may use (CUDA MPS serves at most 48 clients per GPU)."""


def load_workload(path: str | Path) -> Workload:
    """Read and validate a workload YAML file; `ConfigError` names the file and field at fault."""
    path = Path(path)
    data = read_yaml(path, "workload file")
    return parse_workload(data, source=str(path), base_dir=path.parent, default_name=path.stem)


def parse_workload(
    data: Any, *, source: str = "<memory>", base_dir: Path | None = None, default_name: str = "workload"
) -> Workload:
    """Validate a workload given as a mapping (the parsed YAML)."""
    p = _Parser(source, base_dir or Path.cwd())
    if not isinstance(data, Mapping):
        raise p.error("", "must be a mapping of workload fields")
    p.no_unknown(data, _TOP_FIELDS, "")
    gpu = p.get(data, "gpu", str)
    try:
        model = gpu_model(gpu)
    except RlmigError as exc:
        raise p.error("gpu", str(exc)) from None
    interval_s = p.positive(data, "interval_s")
    duration_s = p.positive(data, "duration_s")
    if not _is_multiple(duration_s, interval_s):
        raise p.error("duration_s", f"must be a multiple of interval_s ({interval_s:g}), got {duration_s:g}")
    if duration_s / interval_s > MAX_INTERVALS:
        raise p.error(
            "duration_s", f"must span at most {MAX_INTERVALS} intervals, got {duration_s / interval_s:.3g}"
        )
    downtime_s = p.number(data, "downtime_s", default=5.0, low=0.0)
    if downtime_s > interval_s:
        raise p.error("downtime_s", f"must not exceed interval_s ({interval_s:g}), got {downtime_s:g}")
    mode = p.get(data, "mode", str, default="dynamic")
    if mode not in ("serve", "dynamic"):
        raise p.error("mode", f"must be serve or dynamic, got {mode!r}")
    slo_fraction = p.number(data, "slo_fraction", default=0.5, low=0.0)
    if not 0 < slo_fraction <= 1:
        raise p.error("slo_fraction", f"must be in (0, 1], got {slo_fraction:g}")
    max_processes = p.integer(data, "max_processes", default=3, low=1, high=MAX_PROCESSES)
    exclude_flagged = p.get(data, "exclude_flagged", bool, default=False)
    gpu_count = p.integer(data, "gpus", low=1, high=MAX_GPUS)

    raw_tenants = p.get(data, "tenants", list)
    if not raw_tenants:
        raise p.error("tenants", "must list at least one tenant")
    if len(raw_tenants) > MAX_TENANTS:
        raise p.error("tenants", f"must list at most {MAX_TENANTS} tenants, got {len(raw_tenants)}")
    tenants = tuple(p.tenant(raw, f"tenants[{i}]", model, interval_s) for i, raw in enumerate(raw_tenants))
    names = [t.name for t in tenants]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise p.error(f"tenants[{i}].name", f"duplicate tenant name {name!r}")

    configuration = None
    if "configuration" in data:
        configuration = p.configuration(data["configuration"], model, gpu_count, set(names), tenants)

    return Workload(
        name=str(data.get("name", default_name)),
        gpu=model,
        gpu_count=gpu_count,
        interval_s=interval_s,
        duration_s=duration_s,
        downtime_s=downtime_s,
        mode=mode,  # type: ignore[arg-type]
        tenants=tenants,
        slo_fraction=slo_fraction,
        max_processes=max_processes,
        exclude_flagged=exclude_flagged,
        configuration=configuration,
        source=source,
    )


def _is_multiple(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1


class _Parser:
    """Field readers that turn every problem into one line naming the file and the field."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def error(self, where: str, message: str) -> ConfigError:
        return ConfigError(one_line(f"{self.source}: {where + ': ' if where else ''}{message}"))

    def no_unknown(self, data: Mapping[str, Any], known: set[str], where: str) -> None:
        for key in data:
            if key not in known:
                prefix = f"{where}." if where else ""
                raise self.error(f"{prefix}{key}", f"unknown field (known: {', '.join(sorted(known))})")

    def get(self, data: Mapping[str, Any], key: str, kind: type, where: str = "", default: Any = ...) -> Any:
        name = f"{where}.{key}" if where else key
        if key not in data:
            if default is ...:
                raise self.error(name, "missing")
            return default
        value = data[key]
        if kind is int and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)  # 1e3 in YAML
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.error(name, f"must be {_KIND_NAMES.get(kind, kind.__name__)}, got {quote(value)}")
        return value

    def number(
        self, data: Mapping[str, Any], key: str, where: str = "", default: Any = ..., low: float | None = None
    ) -> float:
        name = f"{where}.{key}" if where else key
        if key not in data and default is not ...:
            return float(default)
        value = data.get(key)
        if key not in data:
            raise self.error(name, "missing")
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise self.error(name, f"must be a number, got {value!r}")
        if low is not None and value < low:
            raise self.error(name, f"must be at least {low:g}, got {value!r}")
        return float(value)

    def positive(self, data: Mapping[str, Any], key: str, where: str = "") -> float:
        value = self.number(data, key, where)
        if value <= 0:
            raise self.error(f"{where}.{key}" if where else key, f"must be positive, got {value:g}")
        return value

    def integer(
        self, data: Mapping[str, Any], key: str, default: Any = ..., low: int = 0, high: int | None = None
    ) -> int:
        value = self.get(data, key, int, default=default)
        if value < low:
            raise self.error(key, f"must be at least {low}, got {quote(value)}")
        if high is not None and value > high:
            raise self.error(key, f"must be at most {high}, got {quote(value)}")
        return int(value)

    def tenant(self, raw: Any, where: str, gpu: GpuModel, interval_s: float) -> Tenant:
        if not isinstance(raw, Mapping):
            raise self.error(where, "must be a mapping with name, model, slo_ms and load")
        self.no_unknown(raw, _TENANT_FIELDS, where)
        name = self.get(raw, "name", str, where)
        if not name.strip() or any(c in name for c in "=:,@ "):
            raise self.error(
                f"{where}.name", f"must be non-empty without spaces or any of '=:,@', got {name!r}"
            )
        model_name = self.get(raw, "model", str, where)
        try:
            model_profile(model_name, gpu.name)
        except RlmigError as exc:
            raise self.error(f"{where}.model", str(exc)) from None
        slo_ms = self.positive(raw, "slo_ms", where)
        if "load" not in raw:
            raise self.error(f"{where}.load", "missing")
        load = self.load(raw["load"], f"{where}.load")
        retraining = None
        if raw.get("retraining") is not None:
            retraining = self.retraining(raw["retraining"], f"{where}.retraining", interval_s)
        return Tenant(name, model_name, slo_ms, load, retraining)

    def load(self, raw: Any, where: str) -> Load:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            if raw < 0 or not np.isfinite(raw):
                raise self.error(where, f"a constant rate must be a non-negative number, got {raw!r}")
            return Load(rate=float(raw))
        if not isinstance(raw, Mapping):
            raise self.error(
                where, f"must be a rate (req/s), {{series: ...}} or {{synthetic: ...}}, got {raw!r}"
            )
        scale = self.number(raw, "scale", where, default=1.0, low=0.0)
        if "series" in raw:
            self.no_unknown(raw, {"series", "tenant", "scale", "offset_s", "span_s"}, where)
            ref = self.get(raw, "series", str, where)
            series = self.series(ref, f"{where}.series")
            if "offset_s" in raw or "span_s" in raw:
                offset = self.number(raw, "offset_s", where, default=0.0, low=0.0)
                rest = series.duration_s - offset
                span = self.number(raw, "span_s", where, default=rest, low=series.step_s)
                first, count = round(offset / series.step_s), round(span / series.step_s)
                if first + count > series.n_bins:
                    raise self.error(where, f"offset_s + span_s run past the series' {series.duration_s:g} s")
                series = RateSeries(
                    series.step_s,
                    {name: series.rates[name][first : first + count] for name in series.tenants},
                    series.source,
                )
            tenant = raw.get("tenant")
            if tenant is None:
                if len(series.tenants) != 1:
                    raise self.error(
                        f"{where}.tenant", f"missing: the series has {', '.join(series.tenants)}"
                    )
            elif tenant not in series.tenants:
                raise self.error(
                    f"{where}.tenant", f"{tenant!r} is not in the series (has {', '.join(series.tenants)})"
                )
            return Load(series=series, series_tenant=tenant, scale=scale)
        if "synthetic" in raw:
            params = {k: v for k, v in raw.items() if k != "scale"}
            try:  # generate a short stretch to validate the kind and parameters now
                synthetic(
                    params["synthetic"], 10.0, _SYNTHETIC_STEP_S, params.get("seed", 0), **_params(params)
                )
            except (RlmigError, TypeError) as exc:
                raise self.error(where, str(exc).splitlines()[0]) from None
            return Load(synthetic=params, scale=scale)
        raise self.error(where, "must hold 'series' or 'synthetic'")

    def series(self, ref: str, where: str) -> RateSeries:
        try:
            return builtin_series(ref)
        except RlmigError:
            pass
        path = Path(ref) if Path(ref).is_absolute() else self.base_dir / ref
        if not path.exists():
            raise self.error(where, f"{ref!r} is neither a shipped trace nor a file ({path} does not exist)")
        try:
            return RateSeries.read_csv(path)
        except RlmigError as exc:
            raise self.error(where, str(exc)) from None

    def retraining(self, raw: Any, where: str, interval_s: float) -> Retraining:
        if not isinstance(raw, Mapping):
            raise self.error(where, "must be a mapping with window_s, samples, drift and accuracy")
        self.no_unknown(raw, _RETRAINING_FIELDS, where)
        window_s = self.positive(raw, "window_s", where)
        if not _is_multiple(window_s, interval_s):
            raise self.error(f"{where}.window_s", f"must be a multiple of interval_s ({interval_s:g})")
        samples = self.positive(raw, "samples", where)
        drift = self.number(raw, "drift", where, low=0.0)
        accuracy = self.number(raw, "accuracy", where, low=0.0)
        if accuracy > 1:
            raise self.error(f"{where}.accuracy", f"must be in [0, 1], got {accuracy:g}")
        if drift > accuracy:
            raise self.error(f"{where}.drift", f"must not exceed accuracy ({accuracy:g}), got {drift:g}")
        return Retraining(window_s, samples, drift, accuracy)

    def configuration(
        self, raw: Any, gpu: GpuModel, gpu_count: int, names: set[str], tenants: tuple[Tenant, ...]
    ) -> Configuration:
        if not isinstance(raw, list):
            raise self.error("configuration", "must be a list with one list of instances per GPU")
        if len(raw) > gpu_count:
            raise self.error("configuration", f"configures {len(raw)} GPUs, the workload has {gpu_count}")
        try:
            config = Configuration.parse(gpu, [*raw, *([[]] * (gpu_count - len(raw)))])
        except RlmigError as exc:
            raise self.error("", str(exc)) from None
        retraining = {t.name for t in tenants if t.retraining is not None}
        for index, gpu_config in enumerate(config.gpus):
            for name in gpu_config.time_shared:
                if name not in names:
                    raise self.error(f"configuration[{index}]", f"unknown tenant {name!r}")
        for placed in config.placed():
            owner = placed.owner
            if owner is None:
                continue
            where = f"configuration[{placed.gpu}]: {placed.instance}"
            if owner.tenant not in names:
                raise self.error(where, f"unknown tenant {owner.tenant!r}")
            if owner.role == "retraining" and owner.tenant not in retraining:
                raise self.error(where, f"tenant {owner.tenant!r} has no retraining")
        return config


def _params(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in ("synthetic", "seed", "scale")}
