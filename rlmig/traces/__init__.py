"""Load traces: rate series, trace loaders, the traces rlmig ships, and seeded synthetic generators.

Usage::

    >>> from rlmig.traces import RateSeries, builtin_series, synthetic
    >>> azure = builtin_series("azure-llm-2023")
    >>> azure.tenants, azure.step_s
    (('code', 'conv'), 1.0)
    >>> per_minute = azure.resample(60.0)
    >>> per_minute.n_bins, float(per_minute.counts("conv").sum()), float(azure.counts("conv").sum())
    (58, 19095.0, 19095.0)
    >>> azure.rate("code", 3420.0, 3430.0)  # wraps around past the end (3424 s)
    4.5
    >>> load = RateSeries(10.0, {"resnet50": synthetic("diurnal", 3600, 10.0, seed=1, mean=40.0,
    ...                                                   amplitude=0.5, period_s=3600)})
    >>> round(load.rate("resnet50", 0, 3600), 6)
    40.0

A `RateSeries` holds, per tenant, the arrival rate (requests per second) of each bin of a uniform time
grid; bin k covers [k * step_s, (k + 1) * step_s). `RateSeries.rate` wraps around past the end, so an
hour-long trace can drive a day-long run. On disk a series is a CSV in long format with the header
``time_s,tenant,rate`` (time_s = bin start), one row per (bin, tenant), in any order.

Loaders turn request timestamps into rates: `load_azure_llm` for the Azure LLM inference trace (2023),
`load_timestamp_csv` for any CSV with a timestamp column. `builtin_series` reads the series rlmig ships
in ``rlmig/data/traces`` (listed by `builtin_names`); they are derived, not copied, from public traces
(``rlmig/data/traces/SOURCES.md``). Regenerate the Azure one, deterministically, with::

    rlmig traces build --data ../shared/data

which reads ``<data>/traces/azure-llm-2023/AzureLLMInferenceTrace_{code,conv}.csv``, keeps the window in
which both services were recorded, counts arrivals in 1 s bins and rewrites the CSV and SOURCES.md.

Synthetic generators (`diurnal`, `bursty`, `step`, `spike`, `ramp`, or `synthetic` by name) return the
rates of ``ceil(duration_s / step_s)`` bins as a numpy array, deterministic given the seed. The shapes are
integrated exactly over each bin; `bursty` is a Markov-modulated Poisson process and so already carries
Poisson noise, the others take an optional multiplicative noise, and `poisson_rates` samples Poisson
arrival counts from any expected rates.

The package, one module per job: `series` (rate series and their CSV form), `loaders` (timestamp traces
to rates), `builtin` (the shipped series), `synthetic` (seeded generators).
"""

from rlmig.traces.builtin import builtin_names, builtin_series, write_builtin_azure
from rlmig.traces.loaders import (
    AZURE_LLM_2023,
    AzureWindow,
    TimestampUnit,
    build_azure_llm,
    load_azure_llm,
    load_timestamp_csv,
    read_timestamps,
)
from rlmig.traces.series import BIN_TOL, HEADER, RateSeries, fmt, rates_from_timestamps
from rlmig.traces.synthetic import (
    GENERATORS,
    bursty,
    diurnal,
    mmpp_mean,
    mmpp_stationary,
    poisson_rates,
    ramp,
    spike,
    step,
    synthetic,
)

__all__ = [
    "AZURE_LLM_2023",
    "BIN_TOL",
    "GENERATORS",
    "HEADER",
    "AzureWindow",
    "RateSeries",
    "TimestampUnit",
    "build_azure_llm",
    "builtin_names",
    "builtin_series",
    "bursty",
    "diurnal",
    "fmt",
    "load_azure_llm",
    "load_timestamp_csv",
    "mmpp_mean",
    "mmpp_stationary",
    "poisson_rates",
    "ramp",
    "rates_from_timestamps",
    "read_timestamps",
    "spike",
    "step",
    "synthetic",
    "write_builtin_azure",
]
