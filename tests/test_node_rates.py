"""Rate sources of the node agent: the Prometheus text format, counter rates (resets, versions, gauges,
priming), a live endpoint on loopback, files re-read every round, the simulated replay, and the CLI's
one-line errors."""

from __future__ import annotations

import json
import math
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rlmig.cli import main
from rlmig.errors import RlmigError
from rlmig.node import (
    FileRates,
    PrometheusRates,
    PromqlRates,
    RatesUnavailable,
    SimulatedRates,
    make_rate_source,
    parse_prometheus_text,
)
from rlmig.workload import load_workload
from tests.test_node_e2e import SHIFT, write_workload

TRITON = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="detect",version="1"}} {a}
nv_inference_request_success{{model="detect",version="2"}} {b}
nv_inference_request_success{{model="qa",version="1"}} {c}
nv_inference_request_success{{model="other",version="1"}} 99
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{{gpu_uuid="GPU-1"}} 0.5
"""


def test_parse_prometheus_text():
    text = """# HELP http_requests Requests.
# TYPE http_requests counter
http_requests_total{path="/a\\"b",code="200"} 3 1700000000000
http_requests_created{path="/a\\"b",code="200"} 1.7e9
# TYPE latency histogram
latency_bucket{le="0.1"} 2
latency_bucket{le="+Inf"} 5
latency_count 5
latency_sum 1.25
weird{msg="line\\nbreak\\\\"} NaN
bare +Inf
# EOF
"""
    families = parse_prometheus_text(text)
    requests = families["http_requests"]
    assert requests.type == "counter" and [s.name for s in requests.samples] == [
        "http_requests_total",
        "http_requests_created",
    ]
    assert requests.samples[0].labels == {"path": '/a"b', "code": "200"} and requests.samples[0].value == 3
    assert families["latency"].type == "histogram" and len(families["latency"].samples) == 4
    assert families["weird"].samples[0].labels == {"msg": "line\nbreak\\"}
    assert math.isnan(families["weird"].samples[0].value) and families["bare"].samples[0].value == math.inf
    with pytest.raises(RlmigError, match="line 2: malformed sample"):
        parse_prometheus_text("ok 1\nnot a sample\n")
    with pytest.raises(RlmigError, match="malformed labels"):
        parse_prometheus_text('x{a="1" b="2"} 1\n')


class Scrapes:
    """A fake endpoint returning the given texts in turn, and a clock advanced by `sleep`."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.now = 100.0
        self.slept: list[float] = []

    def fetch(self, url: str) -> str:
        if not self.texts:
            raise RatesUnavailable(f"cannot scrape {url}: connection refused")
        return self.texts.pop(0)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _source(scrapes: Scrapes, **options) -> PrometheusRates:
    return PrometheusRates(
        "http://triton:8002/metrics",
        ("detect", "qa", "idle"),
        fetch=scrapes.fetch,
        clock=lambda: scrapes.now,
        sleep=scrapes.sleep,
        **options,
    )


def test_counter_rates_sum_versions_prime_and_survive_resets():
    scrapes = Scrapes(
        TRITON.format(a=100, b=0, c=50),
        TRITON.format(a=150, b=50, c=60),  # 5 s later (priming)
        TRITON.format(a=450, b=50, c=10),  # 30 s later: qa's counter was reset (server restart)
    )
    source = _source(scrapes)
    assert source.read() == {"detect": 20.0, "qa": 2.0, "idle": 0.0}  # (50 + 50) / 5, 10 / 5
    assert scrapes.slept == [5.0]
    scrapes.now += 30
    assert source.read() == {"detect": 10.0, "qa": pytest.approx(10 / 30), "idle": 0.0}
    with pytest.raises(RatesUnavailable, match="connection refused"):
        source.read()


def test_gauges_other_labels_and_missing_metrics():
    gauge = (
        '# TYPE rlmig_rate gauge\nrlmig_rate{tenant="qa",gpu="0"} 12.5\nrlmig_rate{tenant="qa",gpu="1"} 2\n'
    )
    scrapes = Scrapes(gauge, "# TYPE something counter\nsomething 1\n", "garbage{\n")
    source = _source(scrapes, metric="rlmig_rate", label="tenant")
    assert source.read() == {"detect": 0.0, "qa": 14.5, "idle": 0.0} and scrapes.slept == []
    with pytest.raises(RatesUnavailable, match="no metric 'rlmig_rate'"):
        source.read()
    with pytest.raises(RatesUnavailable, match="line 1: malformed"):
        source.read()


def test_openmetrics_counter_named_with_or_without_total():
    text = '# TYPE reqs counter\nreqs_total{model="qa"} {}\n# EOF\n'
    for metric in ("reqs", "reqs_total"):
        scrapes = Scrapes(text.replace("{}", "10"), text.replace("{}", "20"))
        assert _source(scrapes, metric=metric).read()["qa"] == 2.0  # 10 more in the 5 s of priming


def test_prometheus_endpoint_on_loopback():
    values = {"a": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            values["a"] += 300
            body = TRITON.format(a=values["a"], b=0, c=0).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        source = PrometheusRates(url, ("detect",), prime_s=10, clock=lambda: now[0], sleep=sleep)
        assert source.read() == {"detect": 30.0}
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(RatesUnavailable, match="cannot scrape"):
        PrometheusRates(url, ("detect",), timeout_s=2).read()


def test_file_rates_csv_json_and_outages(tmp_path):
    path = tmp_path / "rates.csv"
    source = FileRates(path, ("detect", "qa", "thumbs"))
    with pytest.raises(RatesUnavailable, match="cannot read"):
        source.read()
    path.write_text("time_s,tenant,rate\n0,detect,10\n60,detect,30\n30,detect,20\n0,qa,5\n0,stranger,1\n")
    assert source.read() == {"detect": 30.0, "qa": 5.0, "thumbs": 0.0}  # each tenant's latest row
    path.write_text("time_s,tenant,rate\n0,detect,-1\n")
    with pytest.raises(RatesUnavailable, match="line 2: a rate must be finite and non-negative"):
        source.read()
    path.write_text("when,who,rate\n")
    with pytest.raises(RatesUnavailable, match="header"):
        source.read()
    json_path = tmp_path / "rates.json"
    source = FileRates(json_path, ("detect", "qa"))
    json_path.write_text('{"detect": 12.5}')
    assert source.read() == {"detect": 12.5, "qa": 0.0}
    json_path.write_text('{"time": 3, "rates": {"qa": 4}}')
    assert source.read() == {"detect": 0.0, "qa": 4.0}
    json_path.write_text("[1, 2]")
    with pytest.raises(RatesUnavailable, match="must map tenants"):
        source.read()


def test_simulated_rates_replay_the_workload(tmp_path):
    workload = load_workload(write_workload(tmp_path))
    source = SimulatedRates(workload)
    reads = [source.read()["detect"] for _ in range(workload.intervals + 1)]
    assert reads[0] == reads[1] == workload.rates[0, 0]  # the seed, then interval 0
    assert reads[SHIFT + 1] == pytest.approx(2000.0) and source.done
    with pytest.raises(RatesUnavailable, match="over"):
        source.read()


def test_make_rate_source(tmp_path):
    workload = load_workload(write_workload(tmp_path))
    assert isinstance(make_rate_source("simulated", workload), SimulatedRates)
    assert isinstance(make_rate_source("file:/run/rates.csv", workload), FileRates)
    source = make_rate_source("prometheus:http://localhost:8002/metrics", workload, label="tenant")
    assert isinstance(source, PrometheusRates) and source.label == "tenant"
    for bad in ("prometheus:localhost:8002", "file:", "carrier-pigeon", "simulated:x"):
        with pytest.raises(RlmigError):
            make_rate_source(bad, workload)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "nvml"], "needs --rates"),
        (["--backend", "nvml", "--rates", "simulated"], "only with --backend fake"),
        (["--backend", "fake", "--rates", "file:r.csv", "--interval", "0"], "only with --rates simulated"),
        (["--backend", "fake", "--planner", "nope"], "unknown planner 'nope'"),
        (["--backend", "fake", "--planner", "ilp-foresight"], "needs the true future"),
        (
            ["--backend", "fake", "--planner", "ilp", "--checkpoint", "x"],
            "--checkpoint is for the rl planner",
        ),
        (["--backend", "fake", "--planner", "rl", "--checkpoint", "nowhere"], "cannot read the checkpoint"),
        (
            ["--backend", "mig-parted", "--planner", "ilp", "--rates", "file:r.csv", "--journal", "j"],
            "are for the nvml and fake",
        ),
        (
            ["--backend", "mig-parted", "--planner", "ilp", "--rates", "file:r", "--mig-config-map", "x"],
            "NAMESPACE/NAME",
        ),
        (
            ["--backend", "fake", "--planner", "ilp", "--mig-parted-file", "m.yaml"],
            "are for the mig-parted backend",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("NODE_NAME", raising=False)
    path = write_workload(tmp_path)
    assert main(["agent", "--workload", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlmig: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_a_series_seen_for_the_first_time_is_a_baseline_not_an_increase():
    # A model loaded between two scrapes appears with its whole cumulative count (here 30000 requests
    # served since its server started); only what it gains after that is load.
    before = '# TYPE nv_inference_request_success counter\nnv_inference_request_success{model="detect"} 100\n'
    appears = before + 'nv_inference_request_success{model="qa"} 30000\n'
    later = appears.replace("100", "160").replace("30000", "30300")
    scrapes = Scrapes(before, before, appears, later)
    source = _source(scrapes)
    assert source.read() == {"detect": 0.0, "qa": 0.0, "idle": 0.0}
    scrapes.now += 10
    assert source.read() == {"detect": 0.0, "qa": 0.0, "idle": 0.0}  # qa: a baseline, not 3000 req/s
    scrapes.now += 10
    assert source.read() == {"detect": 6.0, "qa": 30.0, "idle": 0.0}


class FakePrometheus:
    """A Prometheus HTTP API on loopback: answers /api/v1/query with the queued responses, keeping the
    queries it was asked, and 400 with an error, as Prometheus does, for a query it cannot parse."""

    def __init__(self, *responses: dict) -> None:
        self.responses = list(responses)
        self.queries: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(parsed.query).get("query", [""])[0]
                outer.queries.append(query)
                if parsed.path != "/api/v1/query":
                    self.send_response(404)
                    self.end_headers()
                    return
                doc = outer.responses.pop(0)
                self.send_response(400 if doc.get("status") == "error" else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(doc).encode())

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _vector(*samples: tuple[dict, str]) -> dict:
    result = [{"metric": metric, "value": [1700000000.0, value]} for metric, value in samples]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_promql_rates_from_the_prometheus_http_api(tmp_path):
    server = FakePrometheus(
        _vector(({"model": "detect"}, "12.5"), ({"model": "qa"}, "3"), ({"model": "other"}, "99")),
        {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"},
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
        _vector(({"model": "detect"}, "NaN"), ({"nolabel": "x"}, "1")),
    )
    try:
        workload = load_workload(write_workload(tmp_path))  # 30 s intervals
        source = make_rate_source(f"promql:{server.url}", workload)
        assert isinstance(source, PromqlRates)
        assert source.read() == {"detect": 12.5, "qa": 3.0, "thumbs": 0.0}
        assert server.queries[0] == "sum by (model) (rate(nv_inference_request_success[30s]))"
        with pytest.raises(RatesUnavailable, match="cannot scrape"):  # Prometheus answers 400
            source.read()
        with pytest.raises(RatesUnavailable, match="a matrix, not an instant vector"):
            source.read()
        assert source.read() == {"detect": 0.0, "qa": 0.0, "thumbs": 0.0}  # NaN and other labels ignored
    finally:
        server.close()
    with pytest.raises(RlmigError, match="bad placeholder"):
        PromqlRates("http://x", ("a",), query="rate({nope}[1m])")
    with pytest.raises(RlmigError, match="promql:URL needs an http"):
        make_rate_source("promql:prometheus:9090", workload)
