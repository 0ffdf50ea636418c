"""Forecasters: their arithmetic, their errors, and that they beat last-value where they should."""

from __future__ import annotations

import numpy as np
import pytest

from rlmig.errors import RlmigError
from rlmig.forecast import (
    AutoHolt,
    Forecaster,
    HoltLinear,
    HoltWinters,
    LastValue,
    fit_holt,
    forecast_errors,
    holt_forecast_paths,
    make_forecaster,
)
from rlmig.traces import builtin_series, diurnal, poisson_rates

NAMES = ["last", "holt", "auto"]


def noisy_trend(n: int = 400, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(np.linspace(20.0, 80.0, n)).astype(float)


def test_last_value():
    f = LastValue()
    assert f.forecast(2).tolist() == [0.0, 0.0]
    f.update(3.0)
    f.update(5.0)
    assert f.forecast(3).tolist() == [5.0, 5.0, 5.0]


def test_holt_arithmetic():
    f = HoltLinear(alpha=0.5, beta=0.5, phi=1.0)
    assert f.forecast(1).tolist() == [0.0]
    f.update(10.0)
    assert f.forecast(2).tolist() == [10.0, 10.0]
    f.update(14.0)  # level 12, trend 1
    assert (f.level, f.trend) == (12.0, 1.0)
    assert f.forecast(3).tolist() == [13.0, 14.0, 15.0]
    damped = HoltLinear(alpha=0.5, beta=0.5, phi=0.5)
    for y in (10.0, 14.0):
        damped.update(y)
    assert damped.forecast(2).tolist() == pytest.approx(
        [damped.level + 0.5 * damped.trend, damped.level + 0.75 * damped.trend]
    )


def test_vectorised_paths_match_the_class():
    y = noisy_trend(60)
    params = [(0.3, 0.1, 0.9), (1.0, 0.0, 0.9), (0.05, 0.3, 1.0)]
    a, b, p = (np.array(v) for v in zip(*params, strict=True))
    paths = holt_forecast_paths(y, a, b, p, horizon=3)
    for j, (alpha, beta, phi) in enumerate(params):
        f = HoltLinear(alpha, beta, phi)
        for t, value in enumerate(y):
            f.update(value)
            assert paths[t, j] == pytest.approx(f.forecast(3)[-1], rel=1e-12, abs=1e-12)


def test_forecast_errors_metrics():
    scores = forecast_errors(LastValue, [1.0, 2.0, 3.0, 4.0], horizon=1)
    assert scores["n"] == 3
    assert scores["mae"] == pytest.approx(1.0)
    assert scores["rmse"] == pytest.approx(1.0)
    assert scores["mape"] == pytest.approx(100 * np.mean([1 / 2, 1 / 3, 1 / 4]))
    assert scores["smape"] == pytest.approx(100 * np.mean([2 / 3, 2 / 5, 2 / 7]))
    two = forecast_errors("last", [1.0, 2.0, 4.0, 8.0, 0.0], horizon=2, start=3)
    assert two["n"] == 2 and two["mae"] == pytest.approx((6 + 4) / 2)
    with pytest.raises(RlmigError, match="nothing to score"):
        forecast_errors("last", [1.0, 2.0], horizon=2)


@pytest.mark.parametrize("name", ["holt", "auto"])
def test_beats_last_value_on_a_noisy_trend(name):
    y = noisy_trend()
    for h in (1, 5):
        mine = forecast_errors(lambda: make_forecaster(name), y, h)
        last = forecast_errors(lambda: make_forecaster("last"), y, h)
        assert mine["mae"] < 0.8 * last["mae"]
        assert mine["rmse"] < 0.8 * last["rmse"]


@pytest.mark.parametrize("name", ["holt", "auto"])
@pytest.mark.parametrize("tenant", ["code", "conv"])
def test_beats_last_value_on_the_azure_trace_at_30s(name, tenant):
    y = builtin_series("azure-llm-2023").resample(30.0, drop_partial=True).rates[tenant]
    for h in (1, 5):  # scored on the second half: the defaults were fitted on the first
        mine = forecast_errors(lambda: make_forecaster(name), y, h, start=y.size // 2)
        last = forecast_errors(lambda: make_forecaster("last"), y, h, start=y.size // 2)
        assert mine["mae"] < 0.95 * last["mae"], (h, mine, last)
        assert mine["rmse"] < last["rmse"], (h, mine, last)


def test_auto_tracks_a_noiseless_random_walk_like_last_value():
    y = np.abs(100 + np.cumsum(np.random.default_rng(1).normal(0, 3, 500)))
    auto = forecast_errors("auto", y, 1)
    last = forecast_errors("last", y, 1)
    assert auto["mae"] < 1.1 * last["mae"]
    ewma = forecast_errors(lambda: HoltLinear(alpha=0.2), y, 1)
    assert auto["mae"] < ewma["mae"]


def test_auto_weights_and_constant_series():
    f = AutoHolt()
    assert f.forecast(3).tolist() == [0.0, 0.0, 0.0]
    for _ in range(30):
        f.update(7.0)
    assert f.forecast(12) == pytest.approx(np.full(12, 7.0))
    w = f.weights()
    assert w.shape == (f.max_horizon, f.alpha.size)
    assert w.sum(axis=1) == pytest.approx(np.ones(f.max_horizon))


def test_holt_winters_learns_a_season():
    period = 24
    y = poisson_rates(diurnal(240 * 60, 60, mean=40, amplitude=0.8, period_s=period * 60), 60.0, seed=2)
    start = 5 * period  # after five seasons
    hw = forecast_errors(lambda: HoltWinters(period, alpha=0.2, gamma=0.3), y, 3, start=start)
    holt = forecast_errors("holt", y, 3, start=start)
    last = forecast_errors("last", y, 3, start=start)
    assert hw["mae"] < 0.6 * min(holt["mae"], last["mae"])


@pytest.mark.parametrize("name", [*NAMES, "holt-winters"])
def test_forecasts_are_non_negative(name):
    params = {"period": 4} if name == "holt-winters" else {}
    f = make_forecaster(name, **params)
    assert isinstance(f, Forecaster)
    for y in [100.0, 80.0, 50.0, 20.0, 5.0, 0.0, 0.0, 0.0]:
        f.update(y)
        out = f.forecast(10)
        assert out.shape == (10,)
        assert np.all(out >= 0)
    steep = HoltLinear(alpha=1.0, beta=1.0, phi=1.0)
    for y in [100.0, 50.0, 0.0]:
        steep.update(y)
    assert steep.forecast(3).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("prophet", {}, "unknown forecaster 'prophet' (known: last, holt, holt-winters, auto)"),
        ("holt", {"gamma": 0.1}, "forecaster 'holt' has no parameter 'gamma' (parameters: alpha, beta, phi)"),
        ("holt", {"alpha": 0.0}, "alpha must lie in (0, 1], got 0.0"),
        ("holt", {"beta": 1.5}, "beta must lie in [0, 1], got 1.5"),
        ("holt-winters", {"period": 1}, "season period must be an integer"),
        ("holt-winters", {}, "bad parameters for forecaster 'holt-winters'"),
        ("auto", {"alphas": []}, "at least one alpha"),
        ("last", {"alpha": 0.5}, "(parameters: none)"),
    ],
)
def test_make_forecaster_errors(name, params, message):
    with pytest.raises(RlmigError) as info:
        make_forecaster(name, **params)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_inputs():
    f = make_forecaster("holt")
    with pytest.raises(RlmigError, match="non-negative"):
        f.update(-1.0)
    with pytest.raises(RlmigError, match="horizon"):
        f.forecast(0)
    assert isinstance(make_forecaster("Last-Value"), LastValue)


def test_fit_holt_finds_the_obvious():
    rng = np.random.default_rng(0)
    walk = np.abs(100 + np.cumsum(rng.normal(0, 3, 300)))
    assert fit_holt([walk], horizons=(1,))["alpha"] == 1.0
    noise = rng.poisson(30, 300).astype(float)
    fitted = fit_holt([noise], horizons=(1,))
    assert fitted["alpha"] <= 0.15 and fitted["objective"] < 0.85
    with pytest.raises(RlmigError, match="nothing to fit"):
        fit_holt([np.ones(2)], horizons=(5,))
