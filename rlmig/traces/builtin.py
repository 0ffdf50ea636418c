"""The rate series rlmig ships (rlmig/data/traces), derived from public traces, and their rebuild."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from rlmig.errors import RlmigError
from rlmig.traces.loaders import AZURE_LLM_2023, build_azure_llm
from rlmig.traces.series import RateSeries, fmt


def _builtin_dir() -> Path:
    return Path(str(resources.files("rlmig") / "data" / "traces"))


def builtin_names() -> tuple[str, ...]:
    """The names of the rate series rlmig ships."""
    folder = _builtin_dir()
    return tuple(sorted(p.stem for p in folder.glob("*.csv"))) if folder.is_dir() else ()


@functools.lru_cache(maxsize=16)
def _read_builtin(name: str) -> RateSeries:
    path = _builtin_dir() / f"{name}.csv"
    if not path.is_file():
        known = ", ".join(builtin_names()) or "none"
        raise RlmigError(f"unknown built-in trace {name!r} (known: {known})")
    series = RateSeries.read_csv(path)
    series.source = name
    return series


def builtin_series(name: str) -> RateSeries:
    """A rate series rlmig ships, for example ``builtin_series("azure-llm-2023")`` (tenants code, conv)."""
    cached = _read_builtin(name)
    return RateSeries(cached.step_s, dict(cached.rates), cached.source)


_SOURCES_MD = """\
# Shipped traces

Rate series derived from public traces; the raw files are not redistributed here.

## azure-llm-2023.csv

- **Dataset:** Azure LLM inference trace 2023 (Azure public dataset, `AzureLLMInferenceTrace_code.csv` and
  `AzureLLMInferenceTrace_conv.csv`), published by Microsoft Azure with the Splitwise paper (Patel et al.,
  ISCA 2024), https://github.com/Azure/AzurePublicDataset.
- **License:** Creative Commons Attribution 4.0 International (CC-BY 4.0). This file is an adaptation:
  arrival counts per bin, without token counts.
- **What was derived:** request arrival rates (req/s) of the two services, tenants `code` and `conv`,
  in {step} s bins, in rlmig's long format (`time_s,tenant,rate`, time_s = bin start, rate = requests
  in the bin / {step} s).
- **Window:** time 0 is the later of the two services' first requests,
  {start} as the trace records it; the series holds the {n_bins} whole bins that end by
  the earlier of their last requests, so both services are observed throughout.
  Requests kept: {kept}.
- **Regenerate:** `rlmig traces build --data ../shared/data` (deterministic; rewrites this file
  and the CSV).
"""


def write_builtin_azure(data: str | Path, out: str | Path | None = None, step_s: float = 1.0) -> Path:
    """Build the shipped Azure series from the raw trace and write it, with SOURCES.md, to `out`."""
    folder = Path(out) if out is not None else Path(__file__).resolve().parent / "data" / "traces"
    folder.mkdir(parents=True, exist_ok=True)
    series, window = build_azure_llm(data, step_s)
    path = folder / f"{AZURE_LLM_2023}.csv"
    series.write_csv(path)
    kept = ", ".join(f"{name} {window.kept[name]} of {window.total[name]}" for name in window.kept)
    text = _SOURCES_MD.format(
        step=fmt(step_s), start=str(window.start).replace("T", " "), n_bins=window.n_bins, kept=kept
    )
    (folder / "SOURCES.md").write_text(text, encoding="utf-8")
    _read_builtin.cache_clear()
    return path
