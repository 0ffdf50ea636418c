"""Forecast the next intervals' arrival rates of a tenant from the rates observed so far.

Usage::

    >>> import numpy as np
    >>> from rlmig.forecast import forecast_errors, make_forecaster
    >>> f = make_forecaster("auto")
    >>> for rate in [10.0, 12.0, 11.0, 13.0, 12.5]:
    ...     f.update(rate)                 # once per interval, with the rate just observed
    >>> f.forecast(3).shape              # rates of the next 3 intervals, req/s
    (3,)
    >>> y = np.random.default_rng(0).poisson(np.linspace(20, 60, 300)).astype(float)
    >>> auto = forecast_errors(lambda: make_forecaster("auto"), y, horizon=1)
    >>> last = forecast_errors(lambda: make_forecaster("last"), y, horizon=1)
    >>> bool(auto["mae"] < last["mae"])
    True

A forecaster is anything with ``update(rate)`` and ``forecast(horizon)`` (the `Forecaster` protocol);
one update costs a few vector operations, cheap enough to run every interval. The forecasters:

- `LastValue`: the next intervals repeat the last one (the baseline every other must beat);
- `HoltLinear`: exponential smoothing of level and damped trend (Holt 1957; Gardner & McKenzie 1985);
- `HoltWinters`: the same plus an additive seasonal component of a known period, for diurnal loads;
- `AutoHolt` (the default, ``"auto"``): a bank of `HoltLinear` members with smoothing from slow to
  last-value-like, combined per horizon with weights inversely proportional to each member's recent
  squared absolute error (forecast combination after Bates & Granger 1969). It tunes itself to the
  interval length and the tenant, which fixed smoothing constants cannot.

Smoothing constants are per interval, so the best fixed ones depend on the interval length. The
defaults here were fitted on the FIRST HALF of the shipped Azure LLM 2023 trace (both services, 10, 30
and 60 s intervals, horizons 1 and 5; objective: MAE relative to last-value) and are reported on the
second half by ``benchmarks/forecast_error.py`` (``--fit`` re-runs the fit with `fit_holt`).
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from rlmig.errors import RlmigError

# Fitted on the first half of the shipped Azure trace (see the module docstring); β = 0 won: on that
# trace a trend term does not pay at any of the three interval lengths.
HOLT_ALPHA = 0.4
HOLT_BETA = 0.0
HOLT_PHI = 0.9
# AutoHolt: the members' smoothing grid (a grid, not a fit) and the discount of member errors, fitted
# like the Holt defaults (the objective is flat in it: 0.8 to 0.99 agree within 0.002).
AUTO_ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
AUTO_BETAS = (0.0, 0.1)
AUTO_DISCOUNT = 0.8
AUTO_MAX_HORIZON = 8


@runtime_checkable
class Forecaster(Protocol):
    """Sees one observed rate per interval, forecasts the rates of the next intervals."""

    def update(self, rate: float) -> None:
        """Record the rate (req/s) observed over the interval that just ended."""
        ...

    def forecast(self, horizon: int) -> np.ndarray:
        """The rates of the next `horizon` intervals (non-negative; zeros before any update)."""
        ...


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise RlmigError(f"forecast horizon must be a positive number of intervals, got {horizon!r}")
    return int(horizon)


def _check_rate(rate: float) -> float:
    rate = float(rate)
    if not (math.isfinite(rate) and rate >= 0):
        raise RlmigError(f"observed rate must be finite and non-negative, got {rate}")
    return rate


def _check_unit(name: str, value: float, *, closed_low: bool = True) -> float:
    value = float(value)
    low_ok = value >= 0 if closed_low else value > 0
    if not (math.isfinite(value) and low_ok and value <= 1):
        interval = "[0, 1]" if closed_low else "(0, 1]"
        raise RlmigError(f"{name} must lie in {interval}, got {value}")
    return value


def _damped_sums(phi: float, horizon: int) -> np.ndarray:
    """phi + phi^2 + ... + phi^k for k = 1..horizon."""
    return np.cumsum(phi ** np.arange(1, horizon + 1))


class LastValue:
    """The next intervals repeat the last observed rate."""

    def __init__(self) -> None:
        self.last = 0.0

    def update(self, rate: float) -> None:
        self.last = _check_rate(rate)

    def forecast(self, horizon: int) -> np.ndarray:
        return np.full(_check_horizon(horizon), self.last)


class HoltLinear:
    """Holt's linear exponential smoothing with a damped trend (Gardner & McKenzie 1985).

    level_t = alpha * y_t + (1 - alpha) * (level + phi * trend)
    trend_t = beta * (level_t - level) + (1 - beta) * phi * trend
    forecast(k) = level + (phi + ... + phi^k) * trend, clipped at 0.

    With beta = 0 this is simple exponential smoothing (EWMA); with alpha = 1, beta = 0 last-value.
    The first observation sets the level, with no trend.
    """

    def __init__(self, alpha: float = HOLT_ALPHA, beta: float = HOLT_BETA, phi: float = HOLT_PHI) -> None:
        self.alpha = _check_unit("alpha", alpha, closed_low=False)
        self.beta = _check_unit("beta", beta)
        self.phi = _check_unit("phi", phi)
        self.level: float | None = None
        self.trend = 0.0

    def update(self, rate: float) -> None:
        y = _check_rate(rate)
        if self.level is None:
            self.level = y
            return
        level = self.alpha * y + (1 - self.alpha) * (self.level + self.phi * self.trend)
        self.trend = self.beta * (level - self.level) + (1 - self.beta) * self.phi * self.trend
        self.level = level

    def forecast(self, horizon: int) -> np.ndarray:
        horizon = _check_horizon(horizon)
        if self.level is None:
            return np.zeros(horizon)
        return np.maximum(self.level + _damped_sums(self.phi, horizon) * self.trend, 0.0)


class HoltWinters:
    """Holt's damped trend plus an additive seasonal component of `period` intervals.

    The seasonal indices start at zero and are learnt with `gamma` as the seasons go by, so the
    forecaster starts as `HoltLinear` and needs a few periods to learn the shape. Use it for loads with
    a known cycle (a day, in intervals); the shipped Azure hour has none.
    """

    def __init__(
        self,
        period: int,
        alpha: float = HOLT_ALPHA,
        beta: float = HOLT_BETA,
        gamma: float = 0.3,
        phi: float = HOLT_PHI,
    ) -> None:
        if isinstance(period, bool) or not isinstance(period, int | np.integer) or period < 2:
            raise RlmigError(f"season period must be an integer number of intervals >= 2, got {period!r}")
        self.period = int(period)
        self.alpha = _check_unit("alpha", alpha, closed_low=False)
        self.beta = _check_unit("beta", beta)
        self.gamma = _check_unit("gamma", gamma)
        self.phi = _check_unit("phi", phi)
        self.season = np.zeros(self.period)
        self.level: float | None = None
        self.trend = 0.0
        self.t = 0  # index of the next observation

    def update(self, rate: float) -> None:
        y = _check_rate(rate)
        i = self.t % self.period
        self.t += 1
        if self.level is None:
            self.level = y
            return
        s = self.season[i]
        level = self.alpha * (y - s) + (1 - self.alpha) * (self.level + self.phi * self.trend)
        self.trend = self.beta * (level - self.level) + (1 - self.beta) * self.phi * self.trend
        self.season[i] = self.gamma * (y - level) + (1 - self.gamma) * s
        self.level = level

    def forecast(self, horizon: int) -> np.ndarray:
        horizon = _check_horizon(horizon)
        if self.level is None:
            return np.zeros(horizon)
        seasonal = self.season[(self.t + np.arange(horizon)) % self.period]
        return np.maximum(self.level + _damped_sums(self.phi, horizon) * self.trend + seasonal, 0.0)


class AutoHolt:
    """A self-tuning combination of `HoltLinear` members (forecast combination, Bates & Granger 1969).

    Every member (one per alpha x beta of the grid, damping `phi`) updates on each observation. For
    each horizon k <= `max_horizon` the forecaster remembers what each member forecast k intervals
    ago and keeps a discounted sum of its absolute errors (discount `discount` per interval); the
    k-step forecast is the members' forecasts weighted by 1 / error^2. Horizons past `max_horizon`
    use the weights of `max_horizon`. Until the first error is scored, members weigh the same.
    """

    def __init__(
        self,
        alphas: Sequence[float] = AUTO_ALPHAS,
        betas: Sequence[float] = AUTO_BETAS,
        phi: float = HOLT_PHI,
        discount: float = AUTO_DISCOUNT,
        max_horizon: int = AUTO_MAX_HORIZON,
    ) -> None:
        grid = list(itertools.product(alphas, betas))
        if not grid:
            raise RlmigError("AutoHolt needs at least one alpha and one beta")
        self.alpha = np.array([_check_unit("alpha", a, closed_low=False) for a, _ in grid])
        self.beta = np.array([_check_unit("beta", b) for _, b in grid])
        self.phi = _check_unit("phi", phi)
        self.discount = _check_unit("discount", discount)
        self.max_horizon = _check_horizon(max_horizon)
        members, h = len(grid), self.max_horizon
        self.level = np.zeros(members)
        self.trend = np.zeros(members)
        self._sums = _damped_sums(self.phi, h)
        self._issued = np.zeros((h, h, members))  # ring buffer: forecasts (horizon, member) per update
        self._pos = -1  # ring slot of the latest forecasts
        self._n = 0  # observations so far
        self.errors = np.zeros((h, members))  # discounted absolute error per horizon and member
        self._scored = np.zeros(h, dtype=bool)

    def update(self, rate: float) -> None:
        y = _check_rate(rate)
        h = self.max_horizon
        if self._n == 0:
            self.level[:] = y
        else:
            # the forecast issued k updates ago (k = 1..h) for horizon k targets this observation
            ages = np.arange(1, min(self._n, h) + 1)
            slots = (self._pos - ages + 1) % h
            issued = self._issued[slots, ages - 1]
            self.errors[ages - 1] = self.discount * self.errors[ages - 1] + np.abs(issued - y)
            self._scored[ages - 1] = True
            level = self.alpha * y + (1 - self.alpha) * (self.level + self.phi * self.trend)
            self.trend = self.beta * (level - self.level) + (1 - self.beta) * self.phi * self.trend
            self.level = level
        self._n += 1
        self._pos = (self._pos + 1) % h
        self._issued[self._pos] = np.maximum(self.level + self._sums[:, None] * self.trend, 0.0)

    def weights(self) -> np.ndarray:
        """The members' weights per horizon 1..max_horizon (rows sum to 1)."""
        err = self.errors
        floor = 1e-9 + 1e-6 * err.mean(axis=1, keepdims=True)
        w = 1.0 / (err + floor) ** 2
        w[~self._scored] = 1.0
        return w / w.sum(axis=1, keepdims=True)

    def forecast(self, horizon: int) -> np.ndarray:
        horizon = _check_horizon(horizon)
        if self._n == 0:
            return np.zeros(horizon)
        steps = np.arange(1, horizon + 1)
        members = np.maximum(self.level + _damped_sums(self.phi, horizon)[:, None] * self.trend, 0.0)
        w = self.weights()[np.minimum(steps, self.max_horizon) - 1]
        return np.einsum("hm,hm->h", members, w)


FORECASTERS: dict[str, type] = {
    "last": LastValue,
    "holt": HoltLinear,
    "holt-winters": HoltWinters,
    "auto": AutoHolt,
}
_ALIASES = {"last-value": "last", "naive": "last", "holt-linear": "holt", "auto-holt": "auto"}
DEFAULT_FORECASTER = "auto"


def make_forecaster(name: str = DEFAULT_FORECASTER, **params: object) -> Forecaster:
    """A fresh forecaster by name (last, holt, holt-winters, auto) with these parameters."""
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    cls = FORECASTERS.get(key)
    if cls is None:
        raise RlmigError(f"unknown forecaster {name!r} (known: {', '.join(FORECASTERS)})")
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    for param in params:
        if param not in accepted:
            known = ", ".join(accepted) or "none"
            raise RlmigError(f"forecaster {key!r} has no parameter {param!r} (parameters: {known})")
    try:
        return cls(**params)
    except TypeError as exc:
        raise RlmigError(f"bad parameters for forecaster {key!r}: {exc}") from None


# -- evaluation -------------------------------------------------------------------------------


def _error_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, sMAPE (%) and MAPE (%, over non-zero actuals) of paired forecasts and actuals."""
    diff = predicted - actual
    denom = np.abs(predicted) + np.abs(actual)
    smape = np.where(denom > 0, 2 * np.abs(diff) / np.where(denom > 0, denom, 1.0), 0.0)
    nonzero = actual != 0
    mape = float(np.mean(np.abs(diff[nonzero]) / actual[nonzero]) * 100) if nonzero.any() else math.nan
    return {
        "mae": float(np.mean(np.abs(diff))),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "smape": float(np.mean(smape) * 100),
        "mape": mape,
        "n": int(diff.size),
    }


def forecast_errors(
    forecaster_factory: Callable[[], Forecaster] | str,
    series: np.ndarray | Sequence[float],
    horizon: int,
    start: int = 0,
) -> dict[str, float]:
    """Rolling-origin error of the `horizon`-step-ahead forecast over a rate series.

    A fresh forecaster (from the factory, or by name) sees the series one value at a time; after each
    value it forecasts `horizon` intervals ahead and the last of those is compared with the actual
    value. Targets before index `start` are not scored (the forecaster still learns from them), so
    ``start=len(y) // 2`` reports on the second half only. Returns mae, rmse, smape (%), mape (%, over
    non-zero actuals; nan if none) and n, the number of scored forecasts.
    """
    horizon = _check_horizon(horizon)
    y = np.asarray(series, dtype=np.float64).ravel()
    if isinstance(forecaster_factory, str):
        name = forecaster_factory
        factory: Callable[[], Forecaster] = lambda: make_forecaster(name)  # noqa: E731
    else:
        factory = forecaster_factory
    first = max(horizon, int(start))
    if first >= y.size:
        raise RlmigError(f"nothing to score: {y.size} values, horizon {horizon}, scoring from {first}")
    forecaster = factory()
    predicted = np.empty(y.size - first)
    for t in range(y.size - horizon):
        forecaster.update(float(y[t]))
        if t + horizon >= first:
            predicted[t + horizon - first] = forecaster.forecast(horizon)[-1]
    return _error_metrics(predicted, y[first:])


def holt_forecast_paths(
    series: np.ndarray, alpha: np.ndarray, beta: np.ndarray, phi: np.ndarray, horizon: int
) -> np.ndarray:
    """`HoltLinear` `horizon`-step forecasts for many parameter sets at once, vectorised over them.

    Returns an array (len(series), n_sets): row t is the forecast made after seeing series[: t + 1].
    """
    horizon = _check_horizon(horizon)
    y = np.asarray(series, dtype=np.float64)
    a, b, p = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(alpha, beta, phi))
    sums = np.zeros_like(p)
    power = np.ones_like(p)
    for _ in range(horizon):
        power = power * p
        sums = sums + power
    level = np.full(a.shape, y[0])
    trend = np.zeros(a.shape)
    out = np.empty((y.size, a.size))
    out[0] = np.maximum(level, 0.0)
    for t in range(1, y.size):
        new_level = a * y[t] + (1 - a) * (level + p * trend)
        trend = b * (new_level - level) + (1 - b) * p * trend
        level = new_level
        out[t] = np.maximum(level + sums * trend, 0.0)
    return out


def fit_holt(
    series: Iterable[np.ndarray],
    horizons: Sequence[int] = (1, 5),
    alphas: Sequence[float] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    betas: Sequence[float] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3),
    phis: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.98, 1.0),
) -> dict[str, float]:
    """Grid-search `HoltLinear` parameters on training series (fit on training data only!).

    The objective is the mean, over series and horizons, of the rolling-origin MAE relative to that
    of last-value; ties go to the smaller beta and then to phi closest to the default. Returns alpha,
    beta, phi and the objective (below 1 beats last-value).
    """
    grid = np.array(list(itertools.product(alphas, betas, phis)))
    a, b, p = grid.T
    ratios: list[np.ndarray] = []
    for y in series:
        y = np.asarray(y, dtype=np.float64)
        for h in horizons:
            if y.size <= h + 1:
                continue
            paths = holt_forecast_paths(y, a, b, p, h)
            errors = np.abs(paths[:-h] - y[h:, None]).mean(axis=0)
            baseline = np.abs(y[:-h] - y[h:]).mean()
            if baseline > 0:
                ratios.append(errors / baseline)
    if not ratios:
        raise RlmigError("nothing to fit: every series is shorter than the horizons")
    objective = np.round(np.mean(ratios, axis=0), 12)
    order = np.lexsort((np.abs(p - HOLT_PHI), b, objective))
    best = order[0]
    return {
        "alpha": float(a[best]),
        "beta": float(b[best]),
        "phi": float(p[best]),
        "objective": float(objective[best]),
    }
