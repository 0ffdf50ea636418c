"""The node agent's own Prometheus metrics: a small registry, the text exposition, an HTTP endpoint.

Usage::

    >>> registry = Registry()
    >>> errors = registry.counter("rlmig_agent_errors_total", "Errors by kind.", ("kind",))
    >>> errors.inc(kind="planner")
    >>> print(registry.render().splitlines()[2])
    rlmig_agent_errors_total{kind="planner"} 1.0

No dependency: the text format (version 0.0.4) is written here, and `MetricsServer` serves it on
``/metrics`` (``/healthz`` answers ``ok``) from a daemon thread. `AgentMetrics` holds the metrics the
agent exports; docs/deploy.md lists them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DECISION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A value that only goes up."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self.values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self.values[key] = self.values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self.values.get(self._key(labels), 0.0)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self.values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    """A value that goes up and down."""

    kind = "gauge"

    def clear(self) -> None:
        """Forget every labelled value (the next `set` calls say what exists now)."""
        with self._lock:
            self.values.clear()

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self.values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self.values[key] = self.values.get(key, 0.0) + amount


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their count and sum."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = DECISION_BUCKETS) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        with self._lock:
            index = next((i for i, b in enumerate(self.buckets) if value <= b), len(self.buckets))
            self.counts[index] += 1
            self.count += 1
            self.sum += value

    def lines(self) -> list[str]:
        with self._lock:
            counts, count, total = list(self.counts), self.count, self.sum
        out, running = [], 0
        for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
            running += n
            out.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        return [*out, f"{self.name}_count {count}", f"{self.name}_sum {_number(total)}"]


class Registry:
    """Metrics by name, rendered in registration order."""

    def __init__(self) -> None:
        self.metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> _Metric:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self.metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels))  # type: ignore[return-value]

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labels))  # type: ignore[return-value]

    def histogram(self, name: str, help_text: str, buckets: Sequence[float] = DECISION_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help_text, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        """Every metric in the text exposition format."""
        lines: list[str] = []
        for metric in self.metrics.values():
            lines += metric.header() + metric.lines()
        return "\n".join(lines) + "\n"


class AgentMetrics:
    """What the node agent exports (prefix ``rlmig_agent_``)."""

    def __init__(self, registry: Registry | None = None) -> None:
        r = self.registry = registry or Registry()
        self.rounds = r.counter(
            "rlmig_agent_rounds_total",
            "Rounds by result: applied, unchanged, held (stale rates), planner_error, apply_error.",
            ("result",),
        )
        self.decisions = r.counter(
            "rlmig_agent_decisions_total",
            "Planner decisions made, by what decided: the planner, its guard (another candidate than its "
            "proposal) or its fallback planner.",
            ("planner", "decided_by"),
        )
        self.decision_seconds = r.histogram("rlmig_agent_decision_seconds", "Planner wall time per decision.")
        self.apply_seconds = r.histogram(
            "rlmig_agent_apply_seconds", "Wall time of each successful apply (the measured downtime)."
        )
        self.reconfigured = r.counter(
            "rlmig_agent_reconfigured_instances_total", "Instances created or given a new owner."
        )
        self.operations = r.counter(
            "rlmig_agent_operations_total", "Executor operations applied, by kind.", ("kind",)
        )
        self.predicted_goodput = r.gauge(
            "rlmig_agent_predicted_goodput",
            "Goodput the simulator predicts for the interval just decided (accurate requests within SLO).",
        )
        self.predicted_ratio = r.gauge(
            "rlmig_agent_predicted_goodput_ratio",
            "Predicted goodput / forecast arrivals, the interval decided.",
        )
        self.goodput = r.counter(
            "rlmig_agent_goodput_total", "Goodput of finished intervals: the simulator on the observed rates."
        )
        self.arrivals = r.counter("rlmig_agent_arrivals_total", "Requests observed over finished intervals.")
        self.errors = r.counter(
            "rlmig_agent_errors_total", "Errors by kind: planner, apply, rates, read, recover.", ("kind",)
        )
        self.last_success = r.gauge(
            "rlmig_agent_last_success_timestamp_seconds",
            "Unix time of the last round that decided and applied.",
        )
        self.interval = r.gauge("rlmig_agent_interval", "Index of the interval the agent last decided.")
        self.rates_age = r.gauge("rlmig_agent_rates_age_seconds", "Seconds since rates were last read.")
        self.rates_stale = r.gauge("rlmig_agent_rates_stale", "1 while rates are too old to reconfigure on.")
        self.rate = r.gauge(
            "rlmig_agent_rate", "Observed request rate of the last interval, req/s.", ("tenant",)
        )
        self.forecast = r.gauge(
            "rlmig_agent_forecast_rate", "Forecast rate of the next interval.", ("tenant",)
        )
        self.accuracy = r.gauge(
            "rlmig_agent_accuracy", "Serving model accuracy, as the agent tracks retraining.", ("tenant",)
        )
        self.retraining = r.gauge(
            "rlmig_agent_retraining_progress", "Share of the window's retraining job done.", ("tenant",)
        )
        self.instances = r.gauge(
            "rlmig_agent_instances", "MIG instances in place, by owner and role.", ("tenant", "role")
        )


class MetricsServer:
    """Serves a registry on ``/metrics`` (and ``/healthz``) from a daemon thread."""

    def __init__(self, registry: Registry, port: int, address: str = "0.0.0.0") -> None:
        outer = registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, kind, status = outer.render().encode(), CONTENT_TYPE, 200
                elif path == "/healthz":
                    body, kind, status = b"ok\n", "text/plain", 200
                else:
                    body, kind, status = b"not found\n", "text/plain", 404
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="rlmig-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
