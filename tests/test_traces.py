"""Rate series, their CSV format, trace loaders, the shipped Azure trace and the synthetic generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlmig.errors import ConfigError, RlmigError
from rlmig.traces import (
    RateSeries,
    build_azure_llm,
    builtin_names,
    builtin_series,
    bursty,
    diurnal,
    load_azure_llm,
    load_timestamp_csv,
    mmpp_mean,
    poisson_rates,
    ramp,
    rates_from_timestamps,
    spike,
    step,
    synthetic,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AZURE_RAW = SHARED_DATA / "traces" / "azure-llm-2023"


def two_tenants() -> RateSeries:
    return RateSeries(2.0, {"a": [0.1, 1 / 3, 0.0, 7.25, 1e-7], "b": [5, 4, 3, 2, 1]}, source="test")


# -- RateSeries -------------------------------------------------------------------------------


def test_series_basics():
    s = two_tenants()
    assert s.tenants == ("a", "b")
    assert s.n_bins == 5
    assert s.duration_s == 10.0
    assert s.times.tolist() == [0, 2, 4, 6, 8]
    assert s.counts("b").tolist() == [10, 8, 6, 4, 2]
    with pytest.raises(ValueError):
        s.rates["a"][0] = 3.0  # read-only


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0, {"a": [1.0]}), "step must be a positive"),
        ((1.0, {}), "at least one tenant"),
        ((1.0, {"a": [1.0, -1.0]}), "finite and non-negative"),
        ((1.0, {"a": [1.0, np.nan]}), "finite and non-negative"),
        ((1.0, {"a": [1.0], "b": [1.0, 2.0]}), "same number of bins"),
        ((1.0, {"a": []}), "non-empty 1-D"),
    ],
)
def test_series_validation(args, message):
    with pytest.raises(RlmigError, match=message):
        RateSeries(*args)


def test_rate_over_partial_bins():
    s = RateSeries(1.0, {"x": [1.0, 2.0, 3.0, 4.0]})
    assert s.rate("x", 0, 4) == pytest.approx(2.5)
    assert s.rate("x", 0.5, 2.5) == pytest.approx((0.5 * 1 + 2 + 0.5 * 3) / 2)
    assert s.rate("x", 1.25, 1.75) == pytest.approx(2.0)
    assert s.rate("x", 2.0, 2.0) == 3.0  # empty interval: the rate of the bin holding t0
    assert s.rate("x", 3.9, 3.9) == 4.0


def test_rate_wraps_around_past_the_end():
    s = RateSeries(1.0, {"x": [1.0, 2.0, 3.0, 4.0]})
    assert s.rate("x", 3.5, 4.5) == pytest.approx((0.5 * 4 + 0.5 * 1) / 1)
    assert s.rate("x", 4.0, 5.0) == pytest.approx(1.0)
    assert s.rate("x", 9.0, 10.0) == pytest.approx(2.0)  # two laps on
    assert s.rate("x", 0.0, 400.0) == pytest.approx(2.5)
    assert s.rate("x", -1.0, 0.0) == pytest.approx(4.0)  # and backwards
    assert s.rate("x", 4.0, 4.0) == 1.0


def test_rate_errors():
    s = RateSeries(1.0, {"x": [1.0, 2.0]})
    with pytest.raises(RlmigError, match="ends before it starts"):
        s.rate("x", 2.0, 1.0)
    with pytest.raises(RlmigError, match=r"unknown tenant 'y' in rate series \(tenants: x\)"):
        s.rate("y", 0.0, 1.0)


@pytest.mark.parametrize("new_step", [1.0, 3.0, 2.5, 0.5, 0.3, 7.0, 100.0])
def test_resample_conserves_counts(new_step):
    rng = np.random.default_rng(0)
    s = RateSeries(1.0, {"a": rng.poisson(5.0, 10).astype(float), "b": rng.random(10)})
    r = s.resample(new_step)
    assert r.step_s == new_step
    assert r.n_bins == int(np.ceil(10 / new_step - 1e-9))
    for tenant in s.tenants:
        assert r.counts(tenant).sum() == pytest.approx(s.counts(tenant).sum(), rel=1e-12)
        assert np.all(r.rates[tenant] >= 0)
        # every new bin holds the requests of the old ones it covers
        for k in range(r.n_bins - 1):
            t0, t1 = k * new_step, (k + 1) * new_step
            assert r.rates[tenant][k] == pytest.approx(s.rate(tenant, t0, t1), rel=1e-9, abs=1e-12)


def test_resample_values_and_drop_partial():
    s = RateSeries(1.0, {"x": [1.0, 2.0, 3.0, 4.0, 5.0]})
    assert s.resample(2.0).rates["x"].tolist() == [1.5, 3.5, 2.5]  # last bin: 5 requests over 2 s
    assert s.resample(2.0, drop_partial=True).rates["x"].tolist() == [1.5, 3.5]
    assert s.resample(0.5).rates["x"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    with pytest.raises(RlmigError, match="positive"):
        s.resample(0.0)


def test_scaled_select_combine():
    s = two_tenants()
    assert s.scaled(2.0).rates["b"].tolist() == [10, 8, 6, 4, 2]
    per = s.scaled({"b": 0.5})
    assert per.rates["b"].tolist() == [2.5, 2, 1.5, 1, 0.5]
    assert np.array_equal(per.rates["a"], s.rates["a"])
    with pytest.raises(RlmigError, match="unknown tenant"):
        s.scaled({"zzz": 2.0})
    with pytest.raises(RlmigError, match="non-negative"):
        s.scaled(-1.0)
    one = s.select("b", as_name="bert")
    assert one.tenants == ("bert",)
    assert np.array_equal(one.rates["bert"], s.rates["b"])
    both = RateSeries.combine([s.select("a"), one])
    assert both.tenants == ("a", "bert")
    with pytest.raises(RlmigError, match="resample them to one grid"):
        RateSeries.combine([s, s.resample(1.0).select("a", as_name="c")])
    with pytest.raises(RlmigError, match="more than one series"):
        RateSeries.combine([s, s])


# -- CSV --------------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path):
    s = two_tenants()
    path = tmp_path / "rates.csv"
    s.write_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "time_s,tenant,rate"
    assert lines[1:4] == ["0,a,0.1", "0,b,5", "2,a,0.3333333333333333"]
    back = RateSeries.read_csv(path)
    assert back == s
    assert back != s.scaled(2.0)
    assert back.step_s == s.step_s
    assert back.tenants == s.tenants
    for tenant in s.tenants:
        assert np.array_equal(back.rates[tenant], s.rates[tenant])


def test_csv_rows_in_any_order_and_offset_times(tmp_path):
    path = tmp_path / "shuffled.csv"
    path.write_text("tenant,rate,time_s\nb,2,110\na,1,100\n\nb,4,100\na,3,110\na,5,120\nb,6,120\n")
    s = RateSeries.read_csv(path)
    assert s.step_s == 10.0
    assert s.rates["a"].tolist() == [1, 3, 5]
    assert s.rates["b"].tolist() == [4, 2, 6]
    assert s.source == str(path)


def test_csv_single_time_needs_step(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("time_s,tenant,rate\n0,a,3\n")
    with pytest.raises(ConfigError, match="cannot infer the step"):
        RateSeries.read_csv(path)
    assert RateSeries.read_csv(path, step_s=60.0).duration_s == 60.0


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("", "", "empty file"),
        ("time_s,tenant,rte\n0,a,1\n", ", line 1:", "missing column 'rate'"),
        ("time_s,rate\n0,1\n", ", line 1:", "missing column 'tenant'"),
        ("time_s,tenant,rate\n", "", "no data rows"),
        ("time_s,tenant,rate\n0,a,1\n1,a\n", ", line 3:", "expected 3 fields, got 2"),
        ("time_s,tenant,rate\n0,a,1\n1,a,-2\n", ", line 3:", "negative rate -2 for tenant 'a'"),
        ("time_s,tenant,rate\n0,a,1\n1,a,abc\n", ", line 3:", "rate 'abc' is not a number"),
        ("time_s,tenant,rate\nzero,a,1\n", ", line 2:", "time_s 'zero' is not a number"),
        ("time_s,tenant,rate\n0,a,inf\n", ", line 2:", "rate 'inf' is not finite"),
        ("time_s,tenant,rate\n0,,1\n", ", line 2:", "empty tenant"),
        (
            "time_s,tenant,rate\n0,a,1\n1,a,2\n0,a,3\n",
            ", line 4:",
            "duplicate row for tenant 'a' at time_s 0 (first on line 2)",
        ),
        (
            "time_s,tenant,rate\n0,a,1\n1,a,2\n3,a,3\n",
            ", line 4:",
            "non-uniform step: time_s 3 comes 2 s after 1, the step is 1 s",
        ),
        (
            "time_s,tenant,rate\n0,a,1\n0,b,1\n1,a,2\n",
            ":",
            "tenant 'b' has no row at time_s 1",
        ),
    ],
)
def test_malformed_csv(tmp_path, text, where, what):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        RateSeries.read_csv(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}{where}")
    assert what in message


def test_missing_csv_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read rate series"):
        RateSeries.read_csv(tmp_path / "nope.csv")


# -- timestamps -------------------------------------------------------------------------------


def test_rates_from_timestamps():
    ts = np.array([0.0, 0.5, 0.9, 2.1, 2.2, 3.0])
    assert rates_from_timestamps(ts, 1.0).tolist() == [3, 0, 2, 1]
    assert rates_from_timestamps(ts, 2.0).tolist() == [1.5, 1.5]
    assert rates_from_timestamps(ts, 1.0, start_s=0.5, end_s=2.5).tolist() == [2, 2]
    assert rates_from_timestamps(np.array([]), 1.0, 0.0, 3.0).tolist() == [0, 0, 0]
    with pytest.raises(RlmigError, match="no timestamps"):
        rates_from_timestamps(np.array([]), 1.0)


def test_load_timestamp_csv_units(tmp_path):
    path = tmp_path / "arrivals.csv"
    path.write_text("id,ts\n1,1000\n2,1500\n3,3999\n4,1200\n")
    s = load_timestamp_csv(path, "ts", step_s=1.0, unit="ms")
    assert s.tenants == ("arrivals",)
    assert s.rates["arrivals"].tolist() == [3, 0, 1]
    dt = tmp_path / "dt.csv"
    dt.write_text("when\n2024-01-01 00:00:00.5\n2024-01-01T00:00:01.25\n2024-01-01 00:00:04.0\n")
    s = load_timestamp_csv(dt, "when", step_s=2.0, tenant="x", unit="datetime")
    assert s.rates["x"].tolist() == [1.0, 0.5]


@pytest.mark.parametrize(
    ("text", "column", "unit", "what"),
    [
        ("ts\n1\nx\n", "ts", "s", ", line 3: ts 'x' is not a finite number"),
        ("ts\n2024-01-01\nyesterday\n", "ts", "datetime", ", line 3: ts 'yesterday' is not a datetime"),
        ("time\n1\n", "ts", "s", ", line 1: missing column 'ts'"),
        ("ts\n", "ts", "s", ": no data rows"),
    ],
)
def test_load_timestamp_csv_errors(tmp_path, text, column, unit, what):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_timestamp_csv(path, column, unit=unit)
    assert str(info.value) == f"{path}{what}" or str(info.value).startswith(f"{path}{what}")


# -- the shipped Azure trace ------------------------------------------------------------------


def test_builtin_series():
    assert "azure-llm-2023" in builtin_names()
    azure = builtin_series("azure-llm-2023")
    assert azure.tenants == ("code", "conv")
    assert azure.step_s == 1.0
    assert azure.n_bins > 3000
    assert 2.0 < azure.rate("code", 0, azure.duration_s) < 3.0
    assert 5.0 < azure.rate("conv", 0, azure.duration_s) < 6.0
    azure.rates["code"] = np.zeros(azure.n_bins)  # a copy: the cache is untouched
    assert builtin_series("azure-llm-2023").rates["code"].sum() > 0
    with pytest.raises(RlmigError, match=r"unknown built-in trace 'nope' \(known: .*azure-llm-2023"):
        builtin_series("nope")


def _ticks(path: Path) -> np.ndarray:
    """Arrival times in integer 100 ns ticks since midnight, parsed without numpy's datetime."""
    out = []
    for line in path.read_text().splitlines()[1:]:
        if not line.strip():
            continue
        stamp = line.split(",")[0]
        day, clock = stamp.split(" ")
        assert day == "2023-11-16"
        hms, frac = clock.split(".")
        h, m, s = (int(x) for x in hms.split(":"))
        out.append(((h * 60 + m) * 60 + s) * 10**7 + int(frac.ljust(7, "0")[:7]))
    return np.array(out, dtype=np.int64)


@pytest.mark.skipif(not AZURE_RAW.is_dir(), reason=f"raw Azure trace not found at {AZURE_RAW}")
def test_shipped_azure_matches_the_raw_trace():
    shipped = builtin_series("azure-llm-2023")
    ticks = {name: _ticks(AZURE_RAW / f"AzureLLMInferenceTrace_{name}.csv") for name in ("code", "conv")}
    start = max(t.min() for t in ticks.values())
    end = min(t.max() for t in ticks.values())
    n = (end - start) // 10**7
    assert shipped.n_bins == n
    for name, t in ticks.items():
        inside = t[(t >= start) & (t < start + n * 10**7)]
        counts = np.bincount((inside - start) // 10**7, minlength=n)
        assert np.allclose(shipped.rates[name], counts, atol=1e-9), name
    rebuilt, window = build_azure_llm(SHARED_DATA)
    assert window.total == {name: t.size for name, t in ticks.items()}
    for name in ("code", "conv"):
        assert np.array_equal(rebuilt.rates[name], shipped.rates[name])


@pytest.mark.skipif(not AZURE_RAW.is_dir(), reason=f"raw Azure trace not found at {AZURE_RAW}")
def test_load_azure_llm_counts_every_request():
    path = AZURE_RAW / "AzureLLMInferenceTrace_conv.csv"
    s = load_azure_llm(path, step_s=60.0)
    assert s.tenants == ("conv",)
    assert s.counts("conv").sum() == pytest.approx(_ticks(path).size)


# -- synthetic load ---------------------------------------------------------------------------

KINDS = {
    "diurnal": {"mean": 50.0, "amplitude": 0.6, "period_s": 600.0, "phase": 1.0, "noise": 0.2},
    "bursty": {"rates": [2.0, 30.0], "switch_rates": [0.02, 0.05]},
    "step": {"before": 10.0, "after": 40.0, "at_s": 1000.0, "noise": 0.1},
    "spike": {"base": 10.0, "peak": 100.0, "at_s": 500.0, "width_s": 60.0, "noise": 0.1},
    "ramp": {"start": 5.0, "end": 50.0, "t0_s": 100.0, "t1_s": 1500.0, "noise": 0.1},
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generators_deterministic_nonnegative(kind):
    params = KINDS[kind]
    a = synthetic(kind, 3600.0, 5.0, seed=7, **params)
    b = synthetic(kind, 3600.0, 5.0, seed=7, **params)
    c = synthetic(kind, 3600.0, 5.0, seed=8, **params)
    assert a.shape == (720,)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(a >= 0) and np.all(np.isfinite(a))


def test_generator_means():
    flat = diurnal(3600, 10, mean=50.0, amplitude=0.9, period_s=600, phase=0.3)
    assert flat.mean() == pytest.approx(50.0, rel=1e-12)  # whole periods: exact
    assert flat.max() == pytest.approx(50 * 1.9, rel=0.01) and flat.min() == pytest.approx(5.0, rel=0.1)
    noisy = diurnal(36000, 10, mean=50.0, amplitude=0.5, period_s=600, noise=0.3, seed=1)
    assert noisy.mean() == pytest.approx(50.0, rel=0.02)
    assert step(100, 1, 10.0, 40.0, at_s=50.5)[49:52].tolist() == [10.0, 25.0, 40.0]
    assert step(100, 1, 10.0, 40.0, at_s=50.0).mean() == pytest.approx(25.0)
    assert spike(1000, 10, 10.0, 100.0, at_s=500, width_s=60).mean() == pytest.approx(10 + 90 * 60 / 1000)
    r = ramp(1000, 10, 0.0, 100.0)
    assert r.mean() == pytest.approx(50.0) and r[0] == pytest.approx(0.5) and r[-1] == pytest.approx(99.5)
    assert ramp(100, 1, 20.0, 10.0, t0_s=10, t1_s=20)[[0, 15, 99]].tolist() == [20.0, 14.5, 10.0]
    rates, switch = [2.0, 30.0], [0.02, 0.05]
    expected = mmpp_mean(rates, switch)
    assert expected == pytest.approx((2 * 0.05 + 30 * 0.02) / 0.07)
    long = bursty(200_000, 10, rates, switch, seed=3)
    assert long.mean() == pytest.approx(expected, rel=0.05)
    assert long.std() > 3 * np.sqrt(expected / 10)  # far burstier than Poisson at the same mean
    three = bursty(100_000, 10, [1.0, 5.0, 20.0], [[0, 0.01, 0], [0.01, 0, 0.01], [0, 0.05, 0]], seed=0)
    assert three.mean() == pytest.approx(
        mmpp_mean([1.0, 5.0, 20.0], [[0, 0.01, 0], [0.01, 0, 0.01], [0, 0.05, 0]]), rel=0.1
    )
    p = poisson_rates(np.full(10_000, 3.0), 2.0, seed=0)
    assert p.mean() == pytest.approx(3.0, rel=0.03) and np.all(p * 2 == np.round(p * 2))


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("sawtooth", {}, "unknown synthetic load 'sawtooth' (known: bursty, diurnal, ramp, spike, step)"),
        (
            "diurnal",
            {"mean": 1.0, "amplitude": 0.5, "colour": 1},
            "synthetic load 'diurnal' has no parameter 'colour'",
        ),
        ("diurnal", {"amplitude": 0.5}, "synthetic load 'diurnal' needs parameter 'mean'"),
        ("diurnal", {"mean": 1.0, "amplitude": 2.0}, "must lie in [0, 1]"),
        ("diurnal", {"mean": -1.0, "amplitude": 0.5}, "mean must be a finite, non-negative rate"),
        ("step", {"before": 1.0, "after": 2.0, "at_s": 3.0, "noise": -1}, "noise must be"),
        ("bursty", {"rates": [1.0], "switch_rates": [1.0]}, "at least two states"),
        ("bursty", {"rates": [1.0, 2.0], "switch_rates": [1.0, 2.0, 3.0]}, "switch_rates must hold"),
        ("bursty", {"rates": [1.0, 2.0], "switch_rates": [-1.0, 1.0]}, "non-negative"),
        ("ramp", {"start": 1.0, "end": 2.0, "t0_s": 5.0, "t1_s": 5.0}, "ramp must end after it starts"),
        ("spike", {"base": 1.0, "peak": 2.0, "at_s": 5.0, "width_s": -1.0}, "spike width"),
        ("diurnal", {"mean": "lots", "amplitude": 0.5}, "bad parameter for synthetic load 'diurnal'"),
    ],
)
def test_synthetic_errors(kind, params, message):
    with pytest.raises(RlmigError) as info:
        synthetic(kind, 100.0, 1.0, seed=0, **params)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_synthetic_duration_errors():
    with pytest.raises(RlmigError, match="duration must be a positive"):
        synthetic("step", 0.0, 1.0, before=1.0, after=1.0, at_s=0.0)
    with pytest.raises(RlmigError, match="step must be a positive"):
        synthetic("step", 10.0, -1.0, before=1.0, after=1.0, at_s=0.0)
    assert synthetic("step", 10.5, 1.0, before=1.0, after=1.0, at_s=0.0).size == 11
