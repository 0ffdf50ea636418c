"""Rate series: per tenant the arrival rate of each bin of a uniform time grid, and their CSV form."""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlmig.errors import ConfigError, RlmigError

HEADER = ("time_s", "tenant", "rate")


_GRID_TOL = 1e-6  # relative tolerance on a uniform time grid


BIN_TOL = 1e-9  # how close duration / step must be to an integer to count as one


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
        if abs(ratio - whole) <= BIN_TOL * max(1.0, ratio):
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
        times = [fmt(t) for t in self.times]
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(HEADER)
            columns = [(name, [fmt(r) for r in values]) for name, values in self.rates.items()]
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
            raise ConfigError(f"{name}: a single time_s value ({fmt(times[0])}); cannot infer the step")
        step = float(np.min(np.diff(times)))
    else:
        step = float(step_s)
        if not (math.isfinite(step) and step > 0):
            raise ConfigError(f"{name}: step must be a positive number of seconds, got {step_s}")
    for prev, cur in itertools.pairwise(times):
        if not math.isclose(cur - prev, step, rel_tol=_GRID_TOL, abs_tol=_GRID_TOL * step):
            raise ConfigError(
                f"{name}, line {first_line[float(cur)]}: non-uniform step: time_s {fmt(cur)} comes "
                f"{fmt(cur - prev)} s after {fmt(prev)}, the step is {fmt(step)} s"
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
                f"{fmt(row.time)} (first on line {seen[k, row.tenant]})"
            )
        seen[k, row.tenant] = row.line
        rates.setdefault(row.tenant, np.full(times.size, np.nan))[k] = row.rate
    for tenant, values in rates.items():
        missing = np.flatnonzero(np.isnan(values))
        if missing.size:
            raise ConfigError(
                f"{name}: tenant {tenant!r} has no row at time_s {fmt(times[missing[0]])} "
                f"({missing.size} bin(s) missing; every tenant needs a rate in every bin)"
            )
    return RateSeries(step, rates, source=name)


def fmt(x: float) -> str:
    """The shortest text that reads back as the same float (no exponent, no trailing .0)."""
    return np.format_float_positional(float(x), trim="-")


def _clip_negative_zero(rates: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rates with round-off negatives (from differencing cumulative sums) set to zero."""
    return {name: np.where(values < 0, 0.0, values) for name, values in rates.items()}


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
        n = round(ratio) if abs(ratio - round(ratio)) <= BIN_TOL * max(1.0, ratio) else math.ceil(ratio)
    if n <= 0:
        raise RlmigError(f"empty time range: start {start} is not before the end")
    index = np.floor((ts - start) / step_s)
    keep = (index >= 0) & (index < n)
    if end_s is not None:
        keep &= ts < float(end_s)
    return np.bincount(index[keep].astype(np.int64), minlength=n).astype(np.float64) / step_s
