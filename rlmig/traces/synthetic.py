"""Seeded synthetic loads: diurnal, bursty (a Markov-modulated Poisson process), step, spike, ramp."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import numpy as np

from rlmig.errors import RlmigError
from rlmig.traces.series import BIN_TOL


def _n_bins(duration_s: float, step_s: float) -> int:
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise RlmigError(f"duration must be a positive number of seconds, got {duration_s}")
    if not (math.isfinite(step_s) and step_s > 0):
        raise RlmigError(f"step must be a positive number of seconds, got {step_s}")
    ratio = duration_s / step_s
    return max(round(ratio) if abs(ratio - round(ratio)) <= BIN_TOL * ratio else math.ceil(ratio), 1)


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
