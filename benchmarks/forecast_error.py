"""Forecast error of last-value vs. rlmig's forecasters on the shipped Azure LLM 2023 trace.

Run from the repository root::

    python -m benchmarks.forecast_error            # the table: second half of each series
    python -m benchmarks.forecast_error --fit      # also re-fit the default parameters on the first half

The trace (``builtin_series("azure-llm-2023")``, tenants code and conv, 1 s bins) is aggregated into
intervals of 10, 30 and 60 s (whole intervals only). Every forecaster sees each series from its start,
one interval at a time (rolling origin), and is scored on the targets in the second half only: the
default parameters were fitted on the first half (``--fit`` repeats that fit and prints it next to the
shipped defaults), so the table is out-of-sample. ``--cross`` adds a check across services: Holt
parameters fitted on one whole service, scored on the whole other one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from rlmig.forecast import (
    AUTO_DISCOUNT,
    HOLT_ALPHA,
    HOLT_BETA,
    HOLT_PHI,
    Forecaster,
    fit_holt,
    forecast_errors,
    make_forecaster,
)
from rlmig.traces import builtin_series

INTERVALS_S = (10.0, 30.0, 60.0)
HORIZONS = (1, 5)
FORECASTERS: dict[str, Callable[[], Forecaster]] = {
    "last-value": lambda: make_forecaster("last"),
    "holt": lambda: make_forecaster("holt"),
    "auto": lambda: make_forecaster("auto"),
}


def series_by_interval() -> dict[tuple[str, float], np.ndarray]:
    """Per (service, interval) the rates of the whole intervals of the shipped trace."""
    azure = builtin_series("azure-llm-2023")
    out: dict[tuple[str, float], np.ndarray] = {}
    for interval in INTERVALS_S:
        coarse = azure.resample(interval, drop_partial=True)
        for tenant in coarse.tenants:
            out[tenant, interval] = coarse.rates[tenant]
    return out


def table(data: dict[tuple[str, float], np.ndarray]) -> list[str]:
    names = list(FORECASTERS)
    head = f"{'service':7} {'interval':>8} {'h':>2} {'n':>4} | " + " | ".join(
        f"{name + ' MAE':>14} {'RMSE':>6} {'sMAPE%':>6}" for name in names
    )
    lines = [head, "-" * len(head)]
    ratios: dict[str, list[float]] = {name: [] for name in names[1:]}
    for (tenant, interval), y in sorted(data.items()):
        for h in HORIZONS:
            scores = {
                name: forecast_errors(make, y, h, start=y.size // 2) for name, make in FORECASTERS.items()
            }
            cells = [
                f"{scores[name]['mae']:>14.3f} {scores[name]['rmse']:>6.3f} {scores[name]['smape']:>6.1f}"
                for name in names
            ]
            base = scores["last-value"]["mae"]
            for name in names[1:]:
                ratios[name].append(scores[name]["mae"] / base)
            n = scores["last-value"]["n"]
            lines.append(f"{tenant:7} {interval:>7.0f}s {h:>2} {n:>4} | " + " | ".join(cells))
    lines.append("")
    for name, values in ratios.items():
        wins = sum(r < 1 for r in values)
        lines.append(
            f"{name}: MAE / last-value MAE: mean {np.mean(values):.3f}, range {min(values):.3f}-"
            f"{max(values):.3f}, better in {wins} of {len(values)} cells"
        )
    return lines


def fit(data: dict[tuple[str, float], np.ndarray]) -> list[str]:
    firsts = [y[: y.size // 2] for y in data.values()]
    holt = fit_holt(firsts, HORIZONS)
    lines = [
        "fit on the first halves (objective: mean MAE / last-value MAE over services, intervals, h = 1, 5):",
        f"  holt: alpha {holt['alpha']:g}, beta {holt['beta']:g}, phi {holt['phi']:g} "
        f"(objective {holt['objective']:.4f}); shipped: alpha {HOLT_ALPHA:g}, beta {HOLT_BETA:g}, "
        f"phi {HOLT_PHI:g}",
    ]
    best: tuple[float, float] | None = None
    for discount in (0.8, 0.9, 0.95, 0.98, 0.99):
        ratios = []
        for y in firsts:
            for h in HORIZONS:
                auto = forecast_errors(lambda d=discount: make_forecaster("auto", discount=d), y, h)
                last = forecast_errors(lambda: make_forecaster("last"), y, h)
                ratios.append(auto["mae"] / last["mae"])
        objective = float(np.mean(ratios))
        lines.append(f"  auto: discount {discount:g}: objective {objective:.4f}")
        if best is None or objective < best[1] - 1e-12:
            best = (discount, objective)
    assert best is not None
    lines.append(f"  auto: best discount {best[0]:g}; shipped: {AUTO_DISCOUNT:g}")
    return lines


def cross(data: dict[tuple[str, float], np.ndarray]) -> list[str]:
    lines = ["holt fitted on one whole service, scored on the whole other (MAE / last-value MAE):"]
    services = sorted({tenant for tenant, _ in data})
    for train in services:
        params = fit_holt([y for (t, _), y in data.items() if t == train], HORIZONS)
        for test in services:
            if test == train:
                continue
            ratios = []
            for (t, _), y in data.items():
                if t != test:
                    continue
                for h in HORIZONS:
                    holt = forecast_errors(
                        lambda p=params: make_forecaster(
                            "holt", alpha=p["alpha"], beta=p["beta"], phi=p["phi"]
                        ),
                        y,
                        h,
                    )
                    ratios.append(holt["mae"] / forecast_errors(lambda: make_forecaster("last"), y, h)["mae"])
            fitted = f"alpha {params['alpha']:g}, beta {params['beta']:g}, phi {params['phi']:g}"
            lines.append(
                f"  fit on {train} ({fitted}) -> {test}: mean {np.mean(ratios):.3f}, worst {max(ratios):.3f}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="re-fit the defaults on the first half")
    parser.add_argument("--cross", action="store_true", help="fit on one service, score on the other")
    args = parser.parse_args()
    data = series_by_interval()
    print("Azure LLM 2023 (shipped, 1 s bins -> intervals); scored on the second half of each series")
    print("\n".join(table(data)))
    if args.fit:
        print()
        print("\n".join(fit(data)))
    if args.cross:
        print()
        print("\n".join(cross(data)))


if __name__ == "__main__":
    main()
