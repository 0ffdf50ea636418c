"""Where the node agent gets each tenant's request rate: Prometheus, a file, or the workload itself.

Usage::

    >>> from rlmig.node.rates import parse_prometheus_text
    >>> text = '''# TYPE nv_inference_request_success counter
    ... nv_inference_request_success{model="bert",version="1"} 120
    ... nv_inference_request_success{model="bert",version="2"} 30
    ... nv_inference_request_success{model="resnet",version="1"} 7
    ... '''
    >>> family = parse_prometheus_text(text)["nv_inference_request_success"]
    >>> family.type, [(s.labels["model"], s.value) for s in family.samples]
    ('counter', [('bert', 120.0), ('bert', 30.0), ('resnet', 7.0)])

Every source offers ``read() -> {tenant: req/s}``, the mean rate since its previous read (the agent
reads once per interval, at the interval's end), and raises `RatesUnavailable` when it cannot say:

- `PrometheusRates` scrapes a text-format endpoint (a Triton server's ``/metrics``, or Prometheus's
  federation endpoint) and takes the metric named `metric` (default Triton's
  ``nv_inference_request_success``) with the label `label` naming the tenant (default ``model``).
  A counter's rate is its increase over the elapsed time between two scrapes, summed over the series of
  a tenant (model versions, GPUs); a series that went down was reset and counts from zero, and a
  series seen for the first time is a baseline (its cumulative value is not an increase), as in
  PromQL's ``rate()``. A gauge is taken as a rate already (a recording rule's output). The first read
  scrapes twice, `prime_s` apart, to have a first increase. A tenant without any series (its model is
  not loaded, so nothing serves it) has rate 0.
- `FileRates` re-reads a file every round: a CSV ``time_s,tenant,rate`` (each tenant's latest row
  counts, so a writer may append) or JSON ``{"tenant": rate, ...}`` (or ``{"rates": {...}}``). A
  tenant the file does not name has rate 0; a file that is missing or malformed is an outage.
- `SimulatedRates` replays the workload's own rates, interval by interval: the first read gives the
  first interval's rate (the load as the agent starts: the same seed as every run of `rlmig.loop`
  uses), read k >= 1 the rate of interval k - 1. `done` turns True with the last interval's rate.

`make_rate_source("prometheus:URL" | "file:PATH" | "simulated", workload)` builds one from the
command line's ``--rates``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rlmig.errors import ConfigError, RlmigError
from rlmig.inputs import load_json, quote, read_text
from rlmig.workload import Workload

DEFAULT_METRIC = "nv_inference_request_success"
DEFAULT_LABEL = "model"
_ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"


class RatesUnavailable(RlmigError):
    """The source cannot give rates now (an outage); the agent holds the last ones for a while."""


class RateSource(Protocol):
    """Gives each tenant's mean request rate (req/s) since the previous read."""

    def read(self) -> dict[str, float]:
        """{tenant: req/s}; raises `RatesUnavailable` during an outage."""


# -- the Prometheus text exposition format ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of a scrape: a sample name, its labels and its value."""

    name: str
    labels: dict[str, str]
    value: float


@dataclass(slots=True)
class Family:
    """A metric family: its declared type (``untyped`` when none) and its samples."""

    name: str
    type: str = "untyped"
    samples: list[Sample] = field(default_factory=list)


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})\s*(\{{.*\}})?\s*(\S+)(?:\s+(-?\d+))?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket", "_gcount", "_gsum", "_info")


def _parse_labels(text: str, line: int) -> dict[str, str]:
    body = text[1:-1].strip()
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        match = _LABEL.match(body, pos)
        if match is None:
            raise RlmigError(f"line {line}: malformed labels {text!r}")
        labels[match.group(1)] = re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group(0)], match.group(2))
        pos = match.end()
    return labels


def _parse_value(text: str, line: int) -> float:
    special = {"+inf": math.inf, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}
    if text.lower() in special:
        return special[text.lower()]
    try:
        return float(text)
    except ValueError:
        raise RlmigError(f"line {line}: malformed value {text!r}") from None


def parse_prometheus_text(text: str) -> dict[str, Family]:
    """Families by name from the Prometheus text format (0.0.4; OpenMetrics' ``# EOF`` is accepted).

    A sample belongs to the family declared by ``# TYPE`` whose name it extends by a standard suffix
    (``_total``, ``_count``, ...), else to a family of its own name. Raises `RlmigError` naming the line
    of a malformed sample.
    """
    families: dict[str, Family] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                families.setdefault(parts[2], Family(parts[2])).type = parts[3].strip().lower()
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise RlmigError(f"line {n}: malformed sample {line[:80]!r}")
        name, labels, value = match.group(1), match.group(2), match.group(3)
        sample = Sample(name, _parse_labels(labels, n) if labels else {}, _parse_value(value, n))
        owner = name
        if name not in families:
            owner = next(
                (name[: -len(s)] for s in _SUFFIXES if name.endswith(s) and name[: -len(s)] in families),
                name,
            )
        families.setdefault(owner, Family(owner)).samples.append(sample)
    return families


def _fetch(url: str, timeout_s: float) -> str:
    request = urllib.request.Request(url, headers={"Accept": _ACCEPT, "User-Agent": "rlmig-agent"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RatesUnavailable(f"cannot scrape {url}: {reason}") from None


class PrometheusRates:
    """Rates from a Prometheus text-format endpoint (see the module docstring)."""

    def __init__(
        self,
        url: str,
        tenants: Sequence[str],
        *,
        metric: str = DEFAULT_METRIC,
        label: str = DEFAULT_LABEL,
        prime_s: float = 5.0,
        timeout_s: float = 5.0,
        fetch: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.tenants = tuple(tenants)
        self.metric = metric
        self.label = label
        self.prime_s = prime_s
        self.fetch = fetch or (lambda u: _fetch(u, timeout_s))
        self.clock = clock
        self.sleep = sleep
        self._last: tuple[float, dict[tuple[tuple[str, str], ...], float]] | None = None

    def _scrape(self) -> tuple[str, dict[tuple[tuple[str, str], ...], float]]:
        """The family's type and the value of every series, keyed by its labels."""
        text = self.fetch(self.url)
        try:
            families = parse_prometheus_text(text)
        except RlmigError as exc:
            raise RatesUnavailable(f"{self.url}: {exc}") from None
        family = families.get(self.metric) or families.get(self.metric.removesuffix("_total"))
        if family is None or not family.samples:
            raise RatesUnavailable(f"{self.url}: no metric {self.metric!r}")
        wanted = {self.metric, f"{self.metric}_total"}
        series = {
            tuple(sorted(s.labels.items())): s.value
            for s in family.samples
            if s.name in wanted and self.label in s.labels and math.isfinite(s.value)
        }
        return family.type, series

    def read(self) -> dict[str, float]:
        kind, series = self._scrape()
        now = self.clock()
        if kind == "gauge":
            self._last = (now, series)
            return self._per_tenant({k: max(v, 0.0) for k, v in series.items()})
        if self._last is None:  # the first increase needs two scrapes
            self._last = (now, series)
            self.sleep(self.prime_s)
            kind, series = self._scrape()
            now = self.clock()
        then, before = self._last
        self._last = (now, series)
        elapsed = now - then
        if elapsed <= 0:
            raise RatesUnavailable(f"{self.url}: no time passed since the last scrape")
        # A series seen for the first time is a baseline (its value counts everything since its server
        # started); one that went down was reset and counts from zero.
        increase = {
            key: (value - before[key] if value >= before[key] else value) if key in before else 0.0
            for key, value in series.items()
        }
        return self._per_tenant({k: v / elapsed for k, v in increase.items()})

    def _per_tenant(self, values: dict[tuple[tuple[str, str], ...], float]) -> dict[str, float]:
        rates = dict.fromkeys(self.tenants, 0.0)
        for key, value in values.items():
            tenant = dict(key)[self.label]
            if tenant in rates:
                rates[tenant] += value
        return rates


DEFAULT_QUERY = "sum by ({label}) (rate({metric}[{window}s]))"
"""The PromQL query of `PromqlRates`: each tenant's request rate over the last interval, summed over its
series (servers, model versions, GPUs); `{label}`, `{metric}` and `{window}` are filled in."""


class PromqlRates:
    """Rates from the Prometheus HTTP API (``/api/v1/query``): one instant query per read, a vector with
    one sample per tenant, named by the label `label`. Prometheus keeps each server's counters apart and
    handles resets and new series, so rates stay right behind a load-balancing Service, where scraping the
    servers through it would read a different pod each time."""

    def __init__(
        self,
        url: str,
        tenants: Sequence[str],
        *,
        query: str = DEFAULT_QUERY,
        metric: str = DEFAULT_METRIC,
        label: str = DEFAULT_LABEL,
        window_s: float = 120.0,
        timeout_s: float = 5.0,
        fetch: Callable[[str], str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.tenants = tuple(tenants)
        self.label = label
        try:
            self.query = query.format(label=label, metric=metric, window=max(1, round(window_s)))
        except (KeyError, IndexError, ValueError) as exc:
            raise RlmigError(
                f"--rate-query: bad placeholder ({exc}); use {{label}}, {{metric}}, {{window}}"
            ) from None
        self.fetch = fetch or (lambda u: _fetch(u, timeout_s))

    def read(self) -> dict[str, float]:
        where = f"{self.url}/api/v1/query"
        text = self.fetch(f"{where}?{urllib.parse.urlencode({'query': self.query})}")
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RatesUnavailable(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            error = doc.get("error", "no status") if isinstance(doc, dict) else "not an object"
            raise RatesUnavailable(f"{where}: query failed: {error}")
        data = doc.get("data") or {}
        if data.get("resultType") != "vector":
            raise RatesUnavailable(
                f"{where}: the query gives a {data.get('resultType')}, not an instant vector"
            )
        rates = dict.fromkeys(self.tenants, 0.0)
        for sample in data.get("result") or []:
            try:
                tenant = sample["metric"].get(self.label)
                value = float(sample["value"][1])
            except (KeyError, IndexError, TypeError, ValueError, AttributeError):
                raise RatesUnavailable(f"{where}: malformed sample {str(sample)[:80]}") from None
            if tenant in rates and math.isfinite(value):
                rates[tenant] += max(value, 0.0)
        return rates


class FileRates:
    """Rates from a CSV or JSON file, re-read at every round (see the module docstring)."""

    def __init__(self, path: str | Path, tenants: Sequence[str]) -> None:
        self.path = Path(path)
        self.tenants = tuple(tenants)

    def read(self) -> dict[str, float]:
        try:
            text = read_text(self.path, "the rate file")
        except ConfigError as exc:
            raise RatesUnavailable(str(exc)) from None
        found = self._json(text) if self.path.suffix.lower() == ".json" else self._csv(text)
        rates = dict.fromkeys(self.tenants, 0.0)
        for tenant, rate in found.items():
            if tenant in rates:
                rates[tenant] = rate
        return rates

    def _json(self, text: str) -> dict[str, float]:
        try:
            data = load_json(text, str(self.path))
        except ConfigError as exc:
            raise RatesUnavailable(str(exc)) from None
        if isinstance(data, dict) and isinstance(data.get("rates"), dict):
            data = data["rates"]
        if not isinstance(data, dict):
            raise RatesUnavailable(f"{self.path}: must map tenants to rates")
        return {str(t): self._rate(v, str(t)) for t, v in data.items()}

    def _csv(self, text: str) -> dict[str, float]:
        try:
            rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
        except csv.Error as exc:
            raise RatesUnavailable(f"{self.path}: not CSV ({exc})") from None
        if not rows or [c.strip() for c in rows[0]] != ["time_s", "tenant", "rate"]:
            raise RatesUnavailable(f"{self.path}: the header must be time_s,tenant,rate")
        latest: dict[str, tuple[float, float]] = {}
        for n, row in enumerate(rows[1:], 2):
            if len(row) != 3:
                raise RatesUnavailable(f"{self.path}: line {n}: expected 3 columns, got {len(row)}")
            try:
                at = float(row[0])
            except ValueError:
                raise RatesUnavailable(f"{self.path}: line {n}: malformed time_s {quote(row[0])}") from None
            tenant = row[1].strip()
            rate = self._rate(row[2], f"line {n}")
            if tenant not in latest or at >= latest[tenant][0]:
                latest[tenant] = (at, rate)
        return {tenant: rate for tenant, (_, rate) in latest.items()}

    def _rate(self, value: object, where: str) -> float:
        try:
            rate = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise RatesUnavailable(f"{self.path}: {where}: malformed rate {quote(value)}") from None
        if not math.isfinite(rate) or rate < 0:
            raise RatesUnavailable(f"{self.path}: {where}: a rate must be finite and non-negative")
        return rate


class SimulatedRates:
    """The workload's own rates, one interval per read (see the module docstring)."""

    def __init__(self, workload: Workload) -> None:
        self.rates = workload.rates
        self.tenants = workload.tenant_names
        self.reads = 0

    @property
    def done(self) -> bool:
        """Whether the last interval's rate has been given (the simulated trace is over)."""
        return self.reads > len(self.rates)

    def read(self) -> dict[str, float]:
        if self.done:
            raise RatesUnavailable("the simulated trace is over")
        row = self.rates[max(self.reads - 1, 0)]
        self.reads += 1
        return {t: float(r) for t, r in zip(self.tenants, row, strict=True)}


def make_rate_source(
    spec: str,
    workload: Workload,
    *,
    metric: str = DEFAULT_METRIC,
    label: str = DEFAULT_LABEL,
    prime_s: float = 5.0,
    query: str = DEFAULT_QUERY,
) -> RateSource:
    """A source from ``promql:URL`` (a Prometheus server), ``prometheus:URL`` (a text-format endpoint),
    ``file:PATH`` or ``simulated``."""
    kind, _, target = spec.partition(":")
    tenants = workload.tenant_names
    if kind == "simulated" and not target:
        return SimulatedRates(workload)
    if kind == "promql" and target:
        if not target.startswith(("http://", "https://")):
            raise RlmigError(f"--rates promql:URL needs an http(s) URL, got {target!r}")
        return PromqlRates(
            target, tenants, query=query, metric=metric, label=label, window_s=workload.interval_s
        )
    if kind == "prometheus" and target:
        if not target.startswith(("http://", "https://")):
            raise RlmigError(f"--rates prometheus:URL needs an http(s) URL, got {target!r}")
        return PrometheusRates(target, tenants, metric=metric, label=label, prime_s=prime_s)
    if kind == "file" and target:
        return FileRates(target, tenants)
    raise RlmigError(f"--rates must be promql:URL, prometheus:URL, file:PATH or simulated, got {spec!r}")
