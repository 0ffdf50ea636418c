"""The node agent's own Prometheus metrics (prometheus_client) and the HTTP endpoint that serves them.

Usage::

    >>> metrics = AgentMetrics()
    >>> metrics.errors.labels(kind="planner").inc()
    >>> metrics.value("rlmig_agent_errors_total", kind="planner")
    1.0

`AgentMetrics` holds the metrics the agent exports, each in its own `CollectorRegistry` (so several
agents in one process, as in the tests, do not collide); gauges carry their unit in their name.
`MetricsServer` serves the registry on ``/metrics`` in the text format and answers ``/healthz`` with
``ok``, from a daemon thread. docs/deploy.md lists the metrics.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import choose_encoder

DECISION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0)


class AgentMetrics:
    """What the node agent exports (prefix ``rlmig_agent_``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.rounds = Counter(
            "rlmig_agent_rounds",
            "Rounds by result: applied, unchanged, held (stale rates), planner_error, apply_error, "
            "read_error.",
            ["result"],
            registry=r,
        )
        self.decisions = Counter(
            "rlmig_agent_decisions",
            "Planner decisions made, by what decided: the planner, its guard (another candidate than its "
            "proposal) or its fallback planner.",
            ["planner", "decided_by"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            "rlmig_agent_decision_seconds",
            "Planner wall time per decision.",
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.apply_seconds = Histogram(
            "rlmig_agent_apply_seconds",
            "Wall time of each apply (the measured downtime).",
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.reconfigured = Counter(
            "rlmig_agent_reconfigured_instances", "Instances created or given a new owner.", registry=r
        )
        self.operations = Counter(
            "rlmig_agent_operations", "Executor operations applied, by kind.", ["kind"], registry=r
        )
        self.predicted_goodput = Gauge(
            "rlmig_agent_predicted_goodput_requests",
            "Goodput the simulator predicts for the interval just decided (accurate requests within SLO).",
            registry=r,
        )
        self.predicted_ratio = Gauge(
            "rlmig_agent_predicted_goodput_ratio",
            "Predicted goodput / forecast arrivals, the interval decided.",
            registry=r,
        )
        self.goodput = Counter(
            "rlmig_agent_goodput_requests",
            "Goodput of finished intervals: the simulator on the observed rates.",
            registry=r,
        )
        self.arrivals = Counter(
            "rlmig_agent_arrivals_requests", "Requests observed over finished intervals.", registry=r
        )
        self.errors = Counter(
            "rlmig_agent_errors",
            "Errors by kind: planner, apply, rates, read, recover, state.",
            ["kind"],
            registry=r,
        )
        self.last_success = Gauge(
            "rlmig_agent_last_success_timestamp_seconds",
            "Unix time of the last round that decided and applied.",
            registry=r,
        )
        self.interval = Gauge(
            "rlmig_agent_interval", "Index of the interval the agent last decided.", registry=r
        )
        self.rates_age = Gauge(
            "rlmig_agent_rates_age_seconds", "Seconds since rates were last read.", registry=r
        )
        self.rates_stale = Gauge(
            "rlmig_agent_rates_stale", "1 while rates are too old to reconfigure on.", registry=r
        )
        self.rate = Gauge(
            "rlmig_agent_rate_requests_per_second",
            "Observed request rate of the last interval.",
            ["tenant"],
            registry=r,
        )
        self.forecast = Gauge(
            "rlmig_agent_forecast_rate_requests_per_second",
            "Forecast request rate of the next interval.",
            ["tenant"],
            registry=r,
        )
        self.accuracy = Gauge(
            "rlmig_agent_accuracy_ratio",
            "Serving model accuracy, as the agent tracks retraining.",
            ["tenant"],
            registry=r,
        )
        self.retraining = Gauge(
            "rlmig_agent_retraining_progress_ratio",
            "Share of the window's retraining job done.",
            ["tenant"],
            registry=r,
        )
        self.instances = Gauge(
            "rlmig_agent_instances",
            "MIG instances in place, by owner and role.",
            ["tenant", "role"],
            registry=r,
        )

    def render(self) -> str:
        """Every metric in the text exposition format."""
        return generate_latest(self.registry).decode()

    def value(self, sample: str, **labels: str) -> float:
        """The value of one sample (its full name, e.g. ``rlmig_agent_errors_total``); 0 when absent."""
        found = self.registry.get_sample_value(sample, labels)
        return 0.0 if found is None else float(found)


class MetricsServer:
    """Serves a registry on ``/metrics`` (and ``/healthz``) from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, port: int, address: str = "0.0.0.0") -> None:
        outer = registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    # the format the scraper asks for (Prometheus's Accept header), text 0.0.4 by default
                    encoder, kind = choose_encoder(self.headers.get("Accept", ""))
                    body, status = encoder(outer), 200
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
