"""Workload files: the shipped scenarios load, and malformed files get one-line errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlmig.errors import ConfigError
from rlmig.workload import load_workload, parse_workload

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GOOD = {
    "gpu": "A100-80GB",
    "gpus": 2,
    "interval_s": 60,
    "duration_s": 600,
    "tenants": [
        {"name": "a", "model": "resnet50", "slo_ms": 100, "load": 80},
        {
            "name": "b",
            "model": "bert",
            "slo_ms": 300,
            "load": {"synthetic": "diurnal", "mean": 50, "amplitude": 0.5, "period_s": 600, "seed": 1},
            "retraining": {"window_s": 300, "samples": 5000, "drift": 0.1, "accuracy": 0.9},
        },
    ],
}


def test_every_shipped_scenario_loads():
    files = sorted(SCENARIOS.glob("*.yaml"))
    assert len(files) >= 9
    for path in files:
        workload = load_workload(path)
        assert workload.rates.shape == (workload.intervals, len(workload.tenants))
        assert (workload.rates >= 0).all()
    dynamic = [load_workload(p) for p in files if load_workload(p).mode == "dynamic"]
    assert len(dynamic) >= 3
    assert all(any(t.retraining for t in w.tenants) for w in dynamic)


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside the checkout")
def test_parvagpu_scenarios_match_the_published_slos_and_rates():
    root = SHARED / "parvagpu-a100-80gb"
    models = sorted(p.stem for p in (root / "prof_data").glob("*.csv"))
    latency = list(csv.reader((root / "SLO" / "SLO_latency.csv").read_text().splitlines()))
    rates = list(csv.reader((root / "SLO" / "SLO_req_rate.csv").read_text().splitlines()))
    for row in range(6):
        workload = load_workload(SCENARIOS / f"parvagpu-slo{row + 1}.yaml")
        assert workload.mode == "serve" and workload.gpu.name == "A100-80GB"
        expected = {
            m: (float(lat), float(rate))
            for m, lat, rate in zip(models, latency[row], rates[row], strict=True)
            if lat.strip() != "N/A"
        }
        got = {t.model: (t.slo_ms, float(t.load.rate)) for t in workload.tenants}
        assert got == expected


def test_a_good_workload():
    w = parse_workload(GOOD)
    assert (w.intervals, w.mode, w.downtime_s, w.slo_fraction, w.max_processes) == (
        10,
        "dynamic",
        5.0,
        0.5,
        3,
    )
    assert w.rates[:, 0].tolist() == [80.0] * 10
    assert abs(w.rates[:, 1].mean() - 50) < 10
    assert w.tenants[1].retraining.samples == 5000


def test_series_load_from_a_csv_beside_the_file(tmp_path):
    (tmp_path / "rates.csv").write_text("time_s,tenant,rate\n0,x,10\n30,x,20\n60,x,30\n90,x,40\n")
    load = {"series": "rates.csv", "tenant": "x", "scale": 2}
    tenant = {"name": "a", "model": "resnet50", "slo_ms": 100, "load": load}
    data = {**GOOD, "duration_s": 120, "tenants": [tenant]}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(data))
    w = load_workload(path)
    assert w.rates[:, 0].tolist() == pytest.approx([30.0, 70.0])
    assert w.name == "w"


def test_shipped_trace_reference():
    load = {"series": "azure-llm-2023", "tenant": "conv"}
    data = {**GOOD, "tenants": [{"name": "a", "model": "resnet50", "slo_ms": 100, "load": load}]}
    w = parse_workload(data)
    assert 1 < w.rates.mean() < 20  # about 5 req/s in the Azure conversation trace


def with_tenant(**changes):
    tenant = {**GOOD["tenants"][1], **changes}
    return {**GOOD, "tenants": [GOOD["tenants"][0], tenant]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "must be a mapping"),
        ({**GOOD, "gpu": "V100"}, "gpu: unknown GPU model 'V100'"),
        ({**GOOD, "gpus": 0}, "gpus: must be at least 1"),
        ({**GOOD, "gpus": "two"}, "gpus: must be an integer"),
        ({**GOOD, "interval_s": -1}, "interval_s: must be positive"),
        ({**GOOD, "duration_s": 90}, "duration_s: must be a multiple of interval_s (60)"),
        ({**GOOD, "downtime_s": 120}, "downtime_s: must not exceed interval_s"),
        ({**GOOD, "mode": "batch"}, "mode: must be serve or dynamic"),
        ({**GOOD, "slo_fraction": 1.5}, "slo_fraction: must be in (0, 1]"),
        ({**GOOD, "colour": "red"}, "colour: unknown field"),
        ({**GOOD, "tenants": []}, "tenants: must list at least one tenant"),
        ({k: v for k, v in GOOD.items() if k != "gpu"}, "gpu: missing"),
        (with_tenant(name="a"), "tenants[1].name: duplicate tenant name 'a'"),
        (with_tenant(name="a b"), "tenants[1].name: must be non-empty without spaces"),
        (with_tenant(model="gpt5"), "tenants[1].model: unknown model 'gpt5'"),
        (with_tenant(slo_ms="fast"), "tenants[1].slo_ms: must be a number, got 'fast'"),
        (with_tenant(slo_ms=math.nan), "tenants[1].slo_ms: must be a number"),
        (with_tenant(load=-3), "tenants[1].load: a constant rate must be a non-negative number"),
        (with_tenant(load={"series": "nope.csv"}), "tenants[1].load.series: 'nope.csv' is neither"),
        (with_tenant(load={"series": "azure-llm-2023"}), "tenants[1].load.tenant: missing: the series has"),
        (with_tenant(load={"series": "azure-llm-2023", "tenant": "x"}), "'x' is not in the series"),
        (with_tenant(load={"synthetic": "sawtooth"}), "tenants[1].load: "),
        (with_tenant(load={"rate": 3}), "tenants[1].load: must hold 'series' or 'synthetic'"),
        (
            with_tenant(retraining={"window_s": 90, "samples": 1, "drift": 0, "accuracy": 1}),
            "multiple of interval_s",
        ),
        (
            with_tenant(retraining={"window_s": 60, "samples": 1, "drift": 0, "accuracy": 2}),
            "accuracy: must be in",
        ),
        (
            with_tenant(retraining={"window_s": 60, "samples": 1, "drift": 0.5, "accuracy": 0.4}),
            "drift: must not",
        ),
        (with_tenant(retraining={"window_s": 60, "samples": 1}), "retraining.drift: missing"),
        ({**GOOD, "configuration": [["7g.80gb@0=zed"]]}, "configuration[0]: 7g.80gb@0: unknown tenant 'zed'"),
        ({**GOOD, "configuration": [["7g.80gb@0=a:retraining"]]}, "tenant 'a' has no retraining"),
        ({**GOOD, "configuration": [["4g.40gb@0=a", "3g.40gb@0=b"]]}, "configuration[0]: invalid layout"),
        ({**GOOD, "configuration": [["7g.80gb@0=a"]] * 3}, "configures 3 GPUs, the workload has 2"),
        ({**GOOD, "configuration": [["7g.80gb@0=a:training"]]}, "role must be one of inference, retraining"),
    ],
)
def test_malformed_workloads_get_one_line_errors(data, message):
    with pytest.raises(ConfigError) as caught:
        parse_workload(data, source="w.yaml")
    text = str(caught.value)
    assert text.startswith("w.yaml: ") and message in text and "\n" not in text


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read workload file"):
        load_workload(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu: [A100\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML: line \d+"):
        load_workload(bad)


def test_static_configuration_is_padded_to_every_gpu():
    w = parse_workload({**GOOD, "configuration": [["4g.40gb@0=a", "3g.40gb@4=b:retraining"]]})
    assert w.configuration is not None and len(w.configuration.gpus) == 2
    assert str(w.configuration.gpus[1]) == "(empty)"
    assert np.isfinite(w.rates).all()
