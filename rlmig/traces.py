"""Load traces: rate series, trace loaders, the traces rlmig ships, and seeded synthetic generators.

Usage::

    >>> from rlmig.traces import RateSeries, builtin_series, synthetic
    >>> azure = builtin_series("azure-llm-2023")
    >>> azure.tenants, azure.step_s
    (('code', 'conv'), 1.0)
    >>> per_minute = azure.resample(60.0)
    >>> per_minute.n_bins, float(per_minute.counts("conv").sum()), float(azure.counts("conv").sum())
    (58, 19095.0, 19095.0)
    >>> azure.rate("code", 3420.0, 3430.0)  # wraps around past the end (3424 s)
    4.5
    >>> load = RateSeries(10.0, {"resnet50": synthetic("diurnal", 3600, 10.0, seed=1, mean=40.0,
    ...                                                   amplitude=0.5, period_s=3600)})
    >>> round(load.rate("resnet50", 0, 3600), 6)
    40.0

A `RateSeries` holds, per tenant, the arrival rate (requests per second) of each bin of a uniform time
grid; bin k covers [k * step_s, (k + 1) * step_s). `RateSeries.rate` wraps around past the end, so an
hour-long trace can drive a day-long run. On disk a series is a CSV in long format with the header
``time_s,tenant,rate`` (time_s = bin start), one row per (bin, tenant), in any order.

Loaders turn request timestamps into rates: `load_azure_llm` for the Azure LLM inference trace (2023),
`load_timestamp_csv` for any CSV with a timestamp column. `builtin_series` reads the series rlmig ships
in ``rlmig/data/traces`` (listed by `builtin_names`); they are derived, not copied, from public traces
(``rlmig/data/traces/SOURCES.md``). Regenerate the Azure one, deterministically, with::

    rlmig traces build --data ../shared/data

which reads ``<data>/traces/azure-llm-2023/AzureLLMInferenceTrace_{code,conv}.csv``, keeps the window in
which both services were recorded, counts arrivals in 1 s bins and rewrites the CSV and SOURCES.md.

Synthetic generators (`diurnal`, `bursty`, `step`, `spike`, `ramp`, or `synthetic` by name) return the
rates of ``ceil(duration_s / step_s)`` bins as a numpy array, deterministic given the seed. The shapes are
integrated exactly over each bin; `bursty` is a Markov-modulated Poisson process and so already carries
Poisson noise, the others take an optional multiplicative noise, and `poisson_rates` samples Poisson
arrival counts from any expected rates.
"""

from __future__ import annotations

import csv
import functools
import inspect
import itertools
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from rlmig.errors import ConfigError, RlmigError

HEADER = ("time_s", "tenant", "rate")
AZURE_LLM_2023 = "azure-llm-2023"
_AZURE_FILES = {"code": "AzureLLMInferenceTrace_code.csv", "conv": "AzureLLMInferenceTrace_conv.csv"}
_GRID_TOL = 1e-6  # relative tolerance on a uniform time grid
_BIN_TOL = 1e-9  # how close duration / step must be to an integer to count as one

TimestampUnit = Literal["s", "ms", "us", "datetime"]


# -- rate series ------------------------------------------------------------------------------


@dataclass(eq=False)
class RateSeries:
    """Arrival rates (req/s) of several tenants on one uniform time grid of `step_s` seconds.

    Every tenant's array has one entry per bin, the same number for all tenants. The arrays are
    copied to read-only float64 on construction: treat a series as a value, derive new ones with
    `resample`, `scaled` and `select`. Two series are equal when their steps, tenants (in order) and
    rates are; the source does not count.
    """

    step_s: float
    rates: dict[str, np.ndarray]
    source: str = ""
    _cumulative: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.step_s = float(self.step_s)
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise RlmigError(f"rate series step must be a positive number of seconds, got {self.step_s}")
        if not self.rates:
            raise RlmigError("a rate series needs at least one tenant")
        lengths: set[int] = set()
        checked: dict[str, np.ndarray] = {}
        for name, values in self.rates.items():
            if not isinstance(name, str) or not name.strip():
                raise RlmigError(f"tenant names must be non-empty strings, got {name!r}")
            arr = np.array(values, dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0:
                raise RlmigError(f"rates of tenant {name!r} must be a non-empty 1-D array")
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise RlmigError(f"rates of tenant {name!r} must be finite and non-negative")
            arr.setflags(write=False)
            checked[name] = arr
            lengths.add(arr.size)
        if len(lengths) > 1:
            sizes = ", ".join(f"{n}: {a.size}" for n, a in checked.items())
            raise RlmigError(f"every tenant needs the same number of bins ({sizes})")
        self.rates = checked

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RateSeries):
            return NotImplemented
        return (
            self.step_s == other.step_s
            and self.tenants == other.tenants
            and all(np.array_equal(v, other.rates[k]) for k, v in self.rates.items())
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def tenants(self) -> tuple[str, ...]:
        """The tenant names, in insertion order."""
        return tuple(self.rates)

    @property
    def n_bins(self) -> int:
        """The number of bins."""
        return next(iter(self.rates.values())).size

    @property
    def duration_s(self) -> float:
        """The length of the series in seconds (bins × step)."""
        return self.n_bins * self.step_s

    @property
    def times(self) -> np.ndarray:
        """The start of every bin, in seconds."""
        return np.arange(self.n_bins) * self.step_s

    def counts(self, tenant: str) -> np.ndarray:
        """The expected number of requests in each bin (rate × step)."""
        return self._tenant_rates(tenant) * self.step_s

    def _tenant_rates(self, tenant: str) -> np.ndarray:
        found = self.rates.get(tenant)
        if found is None:
            raise RlmigError(f"unknown tenant {tenant!r} in rate series (tenants: {', '.join(self.rates)})")
        return found

    def _cumulative_counts(self, tenant: str) -> np.ndarray:
        """Requests from 0 to each bin edge (n + 1 values), cached per tenant array."""
        rates = self._tenant_rates(tenant)
        cached = self._cumulative.get(tenant)
        if cached is None or cached[0] is not rates:
            cum = np.concatenate(([0.0], np.cumsum(rates * self.step_s)))
            self._cumulative[tenant] = (rates, cum)
            return cum
        return cached[1]

    def _requests_until(self, tenant: str, t: float) -> float:
        """Requests in [0, t), the series repeating itself past its end (and before 0)."""
        cum = self._cumulative_counts(tenant)
        rates = self.rates[tenant]
        duration = self.duration_s
        laps = math.floor(t / duration)
        rest = t - laps * duration
        k = min(int(rest // self.step_s), rates.size - 1)
        return laps * float(cum[-1]) + float(cum[k]) + float(rates[k]) * (rest - k * self.step_s)

    def rate(self, tenant: str, t0: float, t1: float) -> float:
        """The mean rate of `tenant` over [t0, t1), weighting partial bins by the time they overlap.

        Past the end of the series (or before 0) time wraps around: the series repeats with period
        `duration_s`, so a short trace can drive a long run. With t1 == t0 this is the rate of the
        bin holding t0.
        """
        if not (math.isfinite(t0) and math.isfinite(t1)):
            raise RlmigError(f"rate interval must be finite, got [{t0}, {t1})")
        if t1 < t0:
            raise RlmigError(f"rate interval ends before it starts: [{t0}, {t1})")
        if t1 == t0:
            rates = self._tenant_rates(tenant)
            rest = t0 - math.floor(t0 / self.duration_s) * self.duration_s
            return float(rates[min(int(rest // self.step_s), rates.size - 1)])
        return (self._requests_until(tenant, t1) - self._requests_until(tenant, t0)) / (t1 - t0)

    def resample(self, step_s: float, *, drop_partial: bool = False) -> RateSeries:
        """The series on a grid of `step_s` seconds, conserving the number of requests.

        When the duration is not a multiple of `step_s`, the last new bin extends past the end and
        holds the remaining requests spread over a full bin; with `drop_partial` that bin is dropped
        instead (and its requests with it). At least one bin is always kept.
        """
        step_s = float(step_s)
        if not (math.isfinite(step_s) and step_s > 0):
            raise RlmigError(f"resample step must be a positive number of seconds, got {step_s}")
        ratio = self.duration_s / step_s
        whole = round(ratio)
        if abs(ratio - whole) <= _BIN_TOL * max(1.0, ratio):
            n = max(whole, 1)
        else:
            n = max(math.floor(ratio), 1) if drop_partial else math.ceil(ratio)
        old_edges = np.arange(self.n_bins + 1) * self.step_s
        new_edges = np.minimum(np.arange(n + 1) * step_s, self.duration_s)
        rates = {
            name: np.diff(np.interp(new_edges, old_edges, self._cumulative_counts(name))) / step_s
            for name in self.rates
        }
        return RateSeries(step_s, _clip_negative_zero(rates), self.source)

    def scaled(self, factor: float | Mapping[str, float]) -> RateSeries:
        """The series with every rate multiplied by `factor` (one number, or one per tenant: others x1)."""
        factors = dict(factor) if isinstance(factor, Mapping) else dict.fromkeys(self.rates, factor)
        unknown = set(factors) - set(self.rates)
        if unknown:
            raise RlmigError(f"cannot scale unknown tenant(s) {', '.join(sorted(unknown))}")
        for name, f in factors.items():
            if not (math.isfinite(f) and f >= 0):
                raise RlmigError(f"scale factor of tenant {name!r} must be finite and non-negative, got {f}")
        rates = {name: values * float(factors.get(name, 1.0)) for name, values in self.rates.items()}
        return RateSeries(self.step_s, rates, self.source)

    def select(self, tenant: str, as_name: str | None = None) -> RateSeries:
        """The series of one tenant, renamed to `as_name` when given."""
        return RateSeries(self.step_s, {as_name or tenant: self._tenant_rates(tenant)}, self.source)

    @classmethod
    def combine(cls, series: Iterable[RateSeries], source: str = "") -> RateSeries:
        """One series holding the tenants of several, which must share their step and bin count."""
        items = list(series)
        if not items:
            raise RlmigError("nothing to combine: no rate series given")
        rates: dict[str, np.ndarray] = {}
        first = items[0]
        for s in items:
            if not math.isclose(s.step_s, first.step_s, rel_tol=_GRID_TOL) or s.n_bins != first.n_bins:
                raise RlmigError(
                    f"cannot combine a {s.n_bins} x {s.step_s:g} s series with a "
                    f"{first.n_bins} x {first.step_s:g} s one: resample them to one grid first"
                )
            for name, values in s.rates.items():
                if name in rates:
                    raise RlmigError(f"tenant {name!r} appears in more than one series")
                rates[name] = values
        sources = "; ".join(dict.fromkeys(s.source for s in items if s.source))
        return cls(first.step_s, rates, source or sources)

    # -- CSV --------------------------------------------------------------------------------

    def write_csv(self, path: str | Path) -> None:
        """Write the series as a long-format CSV: header ``time_s,tenant,rate``, rows by time, tenant."""
        times = [_fmt(t) for t in self.times]
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(HEADER)
            columns = [(name, [_fmt(r) for r in values]) for name, values in self.rates.items()]
            for k, t in enumerate(times):
                for name, values in columns:
                    writer.writerow((t, name, values[k]))

    @classmethod
    def read_csv(cls, path: str | Path, *, step_s: float | None = None) -> RateSeries:
        """Read a long-format CSV (columns time_s, tenant, rate; rows in any order).

        Time is taken relative to the earliest time_s, which becomes bin 0. The step is inferred from
        the times unless `step_s` is given. Raises `ConfigError` naming the file and line for a missing
        column, a malformed or negative value, a duplicate (time, tenant), a non-uniform step, or a
        tenant without a rate in some bin.
        """
        name = str(path)
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = _read_long_rows(f, name)
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read rate series: {exc.strerror or exc}") from exc
        return _series_from_rows(rows, name, step_s)


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    time: float
    tenant: str
    rate: float


def _read_long_rows(lines: Iterable[str], name: str) -> list[_Row]:
    reader = csv.reader(lines)
    header: list[str] | None = None
    for header in reader:
        if any(cell.strip() for cell in header):
            break
    else:
        raise ConfigError(f"{name}: empty file, expected the header {','.join(HEADER)}")
    columns = [cell.strip() for cell in header]
    for col in HEADER:
        if col not in columns:
            raise ConfigError(
                f"{name}, line {reader.line_num}: missing column {col!r} (header must be {','.join(HEADER)})"
            )
    index = [columns.index(col) for col in HEADER]
    rows: list[_Row] = []
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) < len(columns):
            raise ConfigError(f"{name}, line {line}: expected {len(columns)} fields, got {len(cells)}")
        time_text, tenant, rate_text = (cells[i].strip() for i in index)
        time = _parse_number(time_text, "time_s", name, line)
        rate = _parse_number(rate_text, "rate", name, line)
        if not tenant:
            raise ConfigError(f"{name}, line {line}: empty tenant")
        if rate < 0:
            raise ConfigError(f"{name}, line {line}: negative rate {rate_text} for tenant {tenant!r}")
        rows.append(_Row(line, time, tenant, rate))
    if not rows:
        raise ConfigError(f"{name}: no data rows after the header")
    return rows


def _parse_number(text: str, column: str, name: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}, line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}, line {line}: {column} {text!r} is not finite")
    return value


def _series_from_rows(rows: list[_Row], name: str, step_s: float | None) -> RateSeries:
    first_line: dict[float, int] = {}
    for row in rows:
        first_line.setdefault(row.time, row.line)
    times = np.array(sorted(first_line))
    if step_s is None:
        if times.size < 2:
            raise ConfigError(f"{name}: a single time_s value ({_fmt(times[0])}); cannot infer the step")
        step = float(np.min(np.diff(times)))
    else:
        step = float(step_s)
        if not (math.isfinite(step) and step > 0):
            raise ConfigError(f"{name}: step must be a positive number of seconds, got {step_s}")
    for prev, cur in itertools.pairwise(times):
        if not math.isclose(cur - prev, step, rel_tol=_GRID_TOL, abs_tol=_GRID_TOL * step):
            raise ConfigError(
                f"{name}, line {first_line[float(cur)]}: non-uniform step: time_s {_fmt(cur)} comes "
                f"{_fmt(cur - prev)} s after {_fmt(prev)}, the step is {_fmt(step)} s"
            )
    if step_s is None and times.size > 1:
        step = float(times[-1] - times[0]) / (times.size - 1)
    bin_of = {float(t): k for k, t in enumerate(times)}
    rates: dict[str, np.ndarray] = {}
    seen: dict[tuple[int, str], int] = {}
    for row in rows:
        k = bin_of[row.time]
        if (k, row.tenant) in seen:
            raise ConfigError(
                f"{name}, line {row.line}: duplicate row for tenant {row.tenant!r} at time_s "
                f"{_fmt(row.time)} (first on line {seen[k, row.tenant]})"
            )
        seen[k, row.tenant] = row.line
        rates.setdefault(row.tenant, np.full(times.size, np.nan))[k] = row.rate
    for tenant, values in rates.items():
        missing = np.flatnonzero(np.isnan(values))
        if missing.size:
            raise ConfigError(
                f"{name}: tenant {tenant!r} has no row at time_s {_fmt(times[missing[0]])} "
                f"({missing.size} bin(s) missing; every tenant needs a rate in every bin)"
            )
    return RateSeries(step, rates, source=name)


def _fmt(x: float) -> str:
    """The shortest text that reads back as the same float (no exponent, no trailing .0)."""
    return np.format_float_positional(float(x), trim="-")


def _clip_negative_zero(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rates with round-off negatives (from differencing cumulative sums) set to zero."""
    return {name: np.where(values < 0, 0.0, values) for name, values in rates.items()}


# -- loading timestamps -----------------------------------------------------------------------


def rates_from_timestamps(
    timestamps_s: np.ndarray, step_s: float, start_s: float | None = None, end_s: float | None = None
) -> np.ndarray:
    """Arrival rates (req/s) per bin of `step_s` seconds from request timestamps in seconds.

    Bins start at `start_s` (default: the first timestamp). Without `end_s` they run until the bin that
    holds the last timestamp; with it, until the first bin edge at or after `end_s`. Timestamps outside
    [start_s, end_s) are dropped. Timestamps need not be sorted.
    """
    ts = np.asarray(timestamps_s, dtype=np.float64).ravel()
    step_s = float(step_s)
    if not (math.isfinite(step_s) and step_s > 0):
        raise RlmigError(f"bin step must be a positive number of seconds, got {step_s}")
    if ts.size and not np.all(np.isfinite(ts)):
        raise RlmigError("timestamps must be finite")
    if ts.size == 0 and (start_s is None or end_s is None):
        raise RlmigError("no timestamps: give start_s and end_s to get an all-zero series")
    start = float(np.min(ts)) if start_s is None else float(start_s)
    if end_s is None:
        n = math.floor((float(np.max(ts)) - start) / step_s) + 1
    else:
        ratio = (float(end_s) - start) / step_s
        n = round(ratio) if abs(ratio - round(ratio)) <= _BIN_TOL * max(1.0, ratio) else math.ceil(ratio)
    if n <= 0:
        raise RlmigError(f"empty time range: start {start} is not before the end")
    index = np.floor((ts - start) / step_s)
    keep = (index >= 0) & (index < n)
    if end_s is not None:
        keep &= ts < float(end_s)
    return np.bincount(index[keep].astype(np.int64), minlength=n).astype(np.float64) / step_s


def _read_column(path: str | Path, column: str) -> list[tuple[int, str]]:
    """(line, text) of every non-empty value of `column` in a CSV with a header line."""
    name = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ConfigError(f"{name}: empty file, expected a header naming column {column!r}")
            columns = [cell.strip() for cell in header]
            if column not in columns:
                known = ", ".join(columns)
                raise ConfigError(f"{name}, line 1: missing column {column!r} (columns: {known})")
            i = columns.index(column)
            values: list[tuple[int, str]] = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) <= i:
                    raise ConfigError(f"{name}, line {reader.line_num}: no field for column {column!r}")
                values.append((reader.line_num, cells[i].strip()))
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read timestamps: {exc.strerror or exc}") from exc
    if not values:
        raise ConfigError(f"{name}: no data rows after the header")
    return values


def read_timestamps(path: str | Path, column: str, unit: TimestampUnit = "s") -> np.ndarray:
    """The timestamps in one column of a CSV: float seconds, or datetime64[ns] when unit="datetime".

    Datetimes are ISO 8601 as numpy reads them (``2023-11-16 18:17:03.9799600`` or with a ``T``),
    taken as UTC; numbers are seconds, milliseconds or microseconds per `unit`.
    """
    values = _read_column(path, column)
    texts = [text for _, text in values]
    if unit == "datetime":
        try:
            return np.array(texts, dtype="datetime64[ns]")
        except ValueError:
            for line, text in values:
                try:
                    np.datetime64(text, "ns")
                except ValueError:
                    raise ConfigError(f"{path}, line {line}: {column} {text!r} is not a datetime") from None
            raise
    scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6}.get(unit)
    if scale is None:
        raise RlmigError(f"unknown timestamp unit {unit!r} (known: s, ms, us, datetime)")
    numbers = np.empty(len(values))
    for i, (line, text) in enumerate(values):
        try:
            numbers[i] = float(text)
        except ValueError:
            numbers[i] = math.nan
        if not math.isfinite(numbers[i]):
            raise ConfigError(f"{path}, line {line}: {column} {text!r} is not a finite number")
    return numbers * scale


def _seconds_since(stamps: np.ndarray, origin: np.datetime64) -> np.ndarray:
    """Float seconds of datetime64 stamps after `origin`, subtracted exactly in integer nanoseconds."""
    return (stamps.astype("datetime64[ns]") - origin).astype(np.int64) / 1e9


def load_timestamp_csv(
    path: str | Path,
    column: str,
    step_s: float = 1.0,
    tenant: str | None = None,
    unit: TimestampUnit = "s",
) -> RateSeries:
    """A one-tenant rate series from a CSV with one request timestamp per row.

    Bins start at the first timestamp and run until the bin holding the last one, which is partial
    (its rate counts the requests in it over a full step). The tenant defaults to the file's stem.
    """
    stamps = read_timestamps(path, column, unit)
    seconds = _seconds_since(stamps, stamps.min()) if unit == "datetime" else stamps - stamps.min()
    name = tenant or Path(path).stem
    return RateSeries(step_s, {name: rates_from_timestamps(seconds, step_s, 0.0)}, source=str(path))


def load_azure_llm(path: str | Path, step_s: float = 1.0, tenant: str | None = None) -> RateSeries:
    """A rate series from one file of the Azure LLM inference trace 2023 (CC-BY 4.0).

    The tenant defaults to the service in the file name (``AzureLLMInferenceTrace_code.csv`` -> code).
    Bins start at the file's first request.
    """
    stem = Path(path).stem
    name = tenant or stem.removeprefix("AzureLLMInferenceTrace_")
    return load_timestamp_csv(path, "TIMESTAMP", step_s, tenant=name, unit="datetime")


@dataclass(frozen=True, slots=True)
class AzureWindow:
    """Where the shipped Azure series sits in the raw trace, and how many requests it keeps."""

    start: np.datetime64
    n_bins: int
    step_s: float
    kept: dict[str, int]
    total: dict[str, int]


def build_azure_llm(data: str | Path, step_s: float = 1.0) -> tuple[RateSeries, AzureWindow]:
    """The Azure LLM 2023 series of both services over the window in which both were recorded.

    `data` is the shared data folder (holding ``traces/azure-llm-2023``) or that trace folder itself.
    The window starts at the later of the two services' first requests and holds the whole bins that
    end by the earlier of their last requests, so neither service shows an artificial lull.
    """
    folder = Path(data)
    if not (folder / _AZURE_FILES["code"]).exists():
        folder = folder / "traces" / AZURE_LLM_2023
    stamps = {name: read_timestamps(folder / f, "TIMESTAMP", "datetime") for name, f in _AZURE_FILES.items()}
    start = max(s.min() for s in stamps.values())
    end = min(s.max() for s in stamps.values())
    n = math.floor(float(_seconds_since(np.array([end]), start)[0]) / step_s)
    if n <= 0:
        raise RlmigError(f"the services of {folder} share no whole {step_s:g} s bin")
    rates = {
        name: rates_from_timestamps(_seconds_since(s, start), step_s, 0.0, n * step_s)
        for name, s in stamps.items()
    }
    kept = {name: round(float(r.sum()) * step_s) for name, r in rates.items()}
    total = {name: int(s.size) for name, s in stamps.items()}
    series = RateSeries(step_s, rates, source=f"Azure LLM inference trace 2023 ({AZURE_LLM_2023}, CC-BY 4.0)")
    return series, AzureWindow(start, n, step_s, kept, total)


# -- shipped series ---------------------------------------------------------------------------


def _builtin_dir() -> Path:
    return Path(str(resources.files("rlmig") / "data" / "traces"))


def builtin_names() -> tuple[str, ...]:
    """The names of the rate series rlmig ships."""
    folder = _builtin_dir()
    return tuple(sorted(p.stem for p in folder.glob("*.csv"))) if folder.is_dir() else ()


@functools.lru_cache(maxsize=16)
def _read_builtin(name: str) -> RateSeries:
    path = _builtin_dir() / f"{name}.csv"
    if not path.is_file():
        known = ", ".join(builtin_names()) or "none"
        raise RlmigError(f"unknown built-in trace {name!r} (known: {known})")
    series = RateSeries.read_csv(path)
    series.source = name
    return series


def builtin_series(name: str) -> RateSeries:
    """A rate series rlmig ships, for example ``builtin_series("azure-llm-2023")`` (tenants code, conv)."""
    cached = _read_builtin(name)
    return RateSeries(cached.step_s, dict(cached.rates), cached.source)


_SOURCES_MD = """\
# Shipped traces

Rate series derived from public traces; the raw files are not redistributed here.

## azure-llm-2023.csv

- **Dataset:** Azure LLM inference trace 2023 (Azure public dataset, `AzureLLMInferenceTrace_code.csv` and
  `AzureLLMInferenceTrace_conv.csv`), published by Microsoft Azure with the Splitwise paper (Patel et al.,
  ISCA 2024), https://github.com/Azure/AzurePublicDataset.
- **License:** Creative Commons Attribution 4.0 International (CC-BY 4.0). This file is an adaptation:
  arrival counts per bin, without token counts.
- **What was derived:** request arrival rates (req/s) of the two services, tenants `code` and `conv`,
  in {step} s bins, in rlmig's long format (`time_s,tenant,rate`, time_s = bin start, rate = requests
  in the bin / {step} s).
- **Window:** time 0 is the later of the two services' first requests,
  {start} as the trace records it; the series holds the {n_bins} whole bins that end by
  the earlier of their last requests, so both services are observed throughout.
  Requests kept: {kept}.
- **Regenerate:** `rlmig traces build --data ../shared/data` (deterministic; rewrites this file
  and the CSV).
"""


def write_builtin_azure(data: str | Path, out: str | Path | None = None, step_s: float = 1.0) -> Path:
    """Build the shipped Azure series from the raw trace and write it, with SOURCES.md, to `out`."""
    folder = Path(out) if out is not None else Path(__file__).resolve().parent / "data" / "traces"
    folder.mkdir(parents=True, exist_ok=True)
    series, window = build_azure_llm(data, step_s)
    path = folder / f"{AZURE_LLM_2023}.csv"
    series.write_csv(path)
    kept = ", ".join(f"{name} {window.kept[name]} of {window.total[name]}" for name in window.kept)
    text = _SOURCES_MD.format(
        step=_fmt(step_s), start=str(window.start).replace("T", " "), n_bins=window.n_bins, kept=kept
    )
    (folder / "SOURCES.md").write_text(text, encoding="utf-8")
    _read_builtin.cache_clear()
    return path


# -- synthetic load ---------------------------------------------------------------------------


def _n_bins(duration_s: float, step_s: float) -> int:
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise RlmigError(f"duration must be a positive number of seconds, got {duration_s}")
    if not (math.isfinite(step_s) and step_s > 0):
        raise RlmigError(f"step must be a positive number of seconds, got {step_s}")
    ratio = duration_s / step_s
    return max(round(ratio) if abs(ratio - round(ratio)) <= _BIN_TOL * ratio else math.ceil(ratio), 1)


def _check_rate(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise RlmigError(f"{name} must be a finite, non-negative rate, got {value}")
    return value


def _bin_means(cumulative: Callable[[np.ndarray], np.ndarray], n: int, step_s: float) -> np.ndarray:
    """Exact mean of a rate over each bin, from its integral from 0 to each bin edge."""
    rates = np.diff(cumulative(np.arange(n + 1) * step_s)) / step_s
    return np.maximum(rates, 0.0)  # only round-off can make a mean of a non-negative rate negative


def _noisy(rates: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Rates times independent gamma noise of mean 1 and coefficient of variation `noise`."""
    noise = float(noise)
    if not (math.isfinite(noise) and noise >= 0):
        raise RlmigError(f"noise must be a finite, non-negative coefficient of variation, got {noise}")
    if noise == 0:
        return rates
    shape = 1.0 / noise**2
    return rates * rng.gamma(shape, 1.0 / shape, size=rates.size)


def diurnal(
    duration_s: float,
    step_s: float,
    mean: float,
    amplitude: float,
    period_s: float = 86400.0,
    phase: float = 0.0,
    noise: float = 0.0,
    seed: int | None = None,
) -> np.ndarray:
    """A sinusoidal rate, mean * (1 + amplitude * sin(2 pi t / period_s + phase)), averaged over each bin.

    `amplitude` is relative to the mean, in [0, 1] (0.5: the rate swings between 0.5 and 1.5 times
    the mean), so the rate stays non-negative; `phase` is in radians. `noise` is the coefficient of
    variation of multiplicative gamma noise (mean 1) per bin.
    """
    n = _n_bins(duration_s, step_s)
    mean, amplitude = _check_rate("mean", mean), float(amplitude)
    if not (0 <= amplitude <= 1):
        raise RlmigError(f"diurnal amplitude is relative to the mean and must lie in [0, 1], got {amplitude}")
    if not (math.isfinite(period_s) and period_s > 0):
        raise RlmigError(f"period must be a positive number of seconds, got {period_s}")
    omega = 2 * math.pi / period_s

    def cumulative(t: np.ndarray) -> np.ndarray:
        return mean * (t + amplitude * (math.cos(phase) - np.cos(omega * t + phase)) / omega)

    return _noisy(_bin_means(cumulative, n, step_s), noise, np.random.default_rng(seed))


def step(
    duration_s: float,
    step_s: float,
    before: float,
    after: float,
    at_s: float,
    noise: float = 0.0,
    seed: int | None = None,
) -> np.ndarray:
    """A rate of `before` req/s until `at_s`, then `after` (the bin holding `at_s` gets the mix)."""
    n = _n_bins(duration_s, step_s)
    before, after = _check_rate("before", before), _check_rate("after", after)

    def cumulative(t: np.ndarray) -> np.ndarray:
        return before * t + (after - before) * np.maximum(t - at_s, 0.0)

    return _noisy(_bin_means(cumulative, n, step_s), noise, np.random.default_rng(seed))


def spike(
    duration_s: float,
    step_s: float,
    base: float,
    peak: float,
    at_s: float,
    width_s: float,
    noise: float = 0.0,
    seed: int | None = None,
) -> np.ndarray:
    """A rate of `base` req/s with a flash crowd of `peak` req/s during [at_s, at_s + width_s)."""
    n = _n_bins(duration_s, step_s)
    base, peak = _check_rate("base", base), _check_rate("peak", peak)
    if not (math.isfinite(width_s) and width_s >= 0):
        raise RlmigError(f"spike width must be a non-negative number of seconds, got {width_s}")

    def cumulative(t: np.ndarray) -> np.ndarray:
        return base * t + (peak - base) * np.clip(t - at_s, 0.0, width_s)

    return _noisy(_bin_means(cumulative, n, step_s), noise, np.random.default_rng(seed))


def ramp(
    duration_s: float,
    step_s: float,
    start: float,
    end: float,
    t0_s: float = 0.0,
    t1_s: float | None = None,
    noise: float = 0.0,
    seed: int | None = None,
) -> np.ndarray:
    """A rate of `start` req/s until `t0_s`, rising (or falling) linearly to `end` at `t1_s`, then flat.

    `t1_s` defaults to the end of the series.
    """
    n = _n_bins(duration_s, step_s)
    start, end = _check_rate("start", start), _check_rate("end", end)
    t1 = float(duration_s) if t1_s is None else float(t1_s)
    if not (math.isfinite(t0_s) and math.isfinite(t1) and t1 > t0_s):
        raise RlmigError(f"ramp must end after it starts, got t0_s={t0_s}, t1_s={t1}")
    length = t1 - t0_s

    def cumulative(t: np.ndarray) -> np.ndarray:
        u = np.clip(t, t0_s, t1) - t0_s
        return start * t + (end - start) * (u**2 / (2 * length) + np.maximum(t - t1, 0.0))

    return _noisy(_bin_means(cumulative, n, step_s), noise, np.random.default_rng(seed))


def _mmpp_generator(rates: Sequence[float], switch_rates: Sequence[float] | np.ndarray) -> np.ndarray:
    n = len(rates)
    if n < 2:
        raise RlmigError(f"a bursty load needs at least two states, got {n}")
    for i, r in enumerate(rates):
        _check_rate(f"rate of state {i}", r)
    switch = np.asarray(switch_rates, dtype=np.float64)
    if switch.shape == (n,):
        q = np.repeat(switch[:, None] / (n - 1), n, axis=1)
    elif switch.shape == (n, n):
        q = switch.copy()
    else:
        raise RlmigError(
            f"switch_rates must hold one leaving rate per state ({n}) or be a {n}x{n} matrix, "
            f"got shape {switch.shape}"
        )
    np.fill_diagonal(q, 0.0)
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise RlmigError("switch rates must be finite and non-negative")
    np.fill_diagonal(q, -q.sum(axis=1))
    return q


def mmpp_stationary(rates: Sequence[float], switch_rates: Sequence[float] | np.ndarray) -> np.ndarray:
    """The stationary distribution of the states of a Markov-modulated Poisson process (see `bursty`)."""
    q = _mmpp_generator(rates, switch_rates)
    n = q.shape[0]
    a = np.vstack([q.T, np.ones(n)])
    b = np.concatenate([np.zeros(n), [1.0]])
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    pi = np.maximum(pi, 0.0)
    return pi / pi.sum()


def mmpp_mean(rates: Sequence[float], switch_rates: Sequence[float] | np.ndarray) -> float:
    """The long-run mean rate (req/s) of a Markov-modulated Poisson process (see `bursty`)."""
    return float(mmpp_stationary(rates, switch_rates) @ np.asarray(rates, dtype=np.float64))


def bursty(
    duration_s: float,
    step_s: float,
    rates: Sequence[float],
    switch_rates: Sequence[float] | np.ndarray,
    seed: int | None = None,
) -> np.ndarray:
    """Bursty load from a Markov-modulated Poisson process (MMPP; Fischer & Meier-Hellstern 1993).

    A continuous-time Markov chain moves between states; in state i requests arrive as a Poisson
    process of `rates[i]` req/s. `switch_rates` is either one leaving rate per state (1/s; state i
    leaves to a uniformly chosen other state, so for two states (r01, r10)) or a matrix of the rates
    from state i to state j. The chain starts from its stationary distribution, so the long-run mean
    is `mmpp_mean(rates, switch_rates)`. Each bin's count is Poisson with mean the integral of the
    modulated rate over the bin (exact given the path); the result is counts / step_s.

    W. Fischer and K. Meier-Hellstern, "The Markov-modulated Poisson process (MMPP) cookbook",
    Performance Evaluation 18(2), 1993.
    """
    n = _n_bins(duration_s, step_s)
    q = _mmpp_generator(rates, switch_rates)
    lam = np.asarray(rates, dtype=np.float64)
    rng = np.random.default_rng(seed)
    end = n * step_s
    leave = -np.diag(q)
    jump = np.where(leave[:, None] > 0, q / np.where(leave > 0, leave, 1.0)[:, None], 0.0)
    np.fill_diagonal(jump, 0.0)
    jump_cdf = np.cumsum(jump, axis=1)
    state = int(rng.choice(len(lam), p=mmpp_stationary(rates, switch_rates)))
    switch_times = [0.0]
    states = [state]
    t = 0.0
    while leave[state] > 0:
        holds = rng.standard_exponential(256)
        picks = rng.random(256)
        for hold, pick in zip(holds, picks, strict=True):
            t += hold / leave[state]
            if t >= end:
                break
            row = jump_cdf[state]
            state = min(int(np.searchsorted(row, pick * row[-1], side="right")), len(lam) - 1)
            switch_times.append(t)
            states.append(state)
            if leave[state] == 0:
                break
        if t >= end or leave[state] == 0:
            break
    knots = np.array([*switch_times, end])
    intensity = np.concatenate(([0.0], np.cumsum(lam[states] * np.diff(knots))))
    expected = np.diff(np.interp(np.arange(n + 1) * step_s, knots, intensity))
    return rng.poisson(np.maximum(expected, 0.0)) / step_s


def poisson_rates(rates: np.ndarray, step_s: float, seed: int | None = None) -> np.ndarray:
    """Realised rates: Poisson arrival counts per bin with the given expected rates, over step_s."""
    expected = np.asarray(rates, dtype=np.float64) * float(step_s)
    if np.any(~np.isfinite(expected)) or np.any(expected < 0):
        raise RlmigError("expected rates must be finite and non-negative")
    return np.random.default_rng(seed).poisson(expected) / float(step_s)


GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "bursty": bursty,
    "diurnal": diurnal,
    "ramp": ramp,
    "spike": spike,
    "step": step,
}


def synthetic(
    kind: str, duration_s: float, step_s: float, seed: int | None = None, **params: object
) -> np.ndarray:
    """The rates of the synthetic load `kind` (bursty, diurnal, ramp, spike, step) with these parameters.

    >>> synthetic("step", 4, 1.0, before=1.0, after=3.0, at_s=1.5).tolist()
    [1.0, 2.0, 3.0, 3.0]
    """
    generator = GENERATORS.get(kind)
    if generator is None:
        raise RlmigError(f"unknown synthetic load {kind!r} (known: {', '.join(sorted(GENERATORS))})")
    signature = inspect.signature(generator)
    accepted = [p for p in signature.parameters if p not in ("duration_s", "step_s", "seed")]
    for key in params:
        if key not in accepted:
            raise RlmigError(
                f"synthetic load {kind!r} has no parameter {key!r} (parameters: {', '.join(accepted)})"
            )
    for key in accepted:
        if signature.parameters[key].default is inspect.Parameter.empty and key not in params:
            raise RlmigError(f"synthetic load {kind!r} needs parameter {key!r}")
    try:
        return generator(duration_s, step_s, seed=seed, **params)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, RlmigError):
            raise
        raise RlmigError(f"bad parameter for synthetic load {kind!r}: {exc}") from None


# -- command line -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rlmig.traces build --data DIR``: ``rlmig traces build``."""
    from rlmig.cli import main as rlmig_main

    return rlmig_main(["traces", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
