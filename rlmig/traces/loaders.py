"""Trace loaders: request timestamps to rates (any timestamp CSV, the Azure LLM inference trace 2023)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from rlmig.errors import ConfigError, RlmigError
from rlmig.traces.series import RateSeries, rates_from_timestamps

AZURE_LLM_2023 = "azure-llm-2023"


_AZURE_FILES = {"code": "AzureLLMInferenceTrace_code.csv", "conv": "AzureLLMInferenceTrace_conv.csv"}


TimestampUnit = Literal["s", "ms", "us", "datetime"]


def _read_column(path: str | Path, column: str) -> list[tuple[int, str]]:
    """(line, text) of every non-empty value of `column` in a CSV with a header line."""
    name = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ConfigError(f"{name}: empty file, expected a header naming column {column!r}")
            columns = [cell.strip() for cell in header]
            if column not in columns:
                known = ", ".join(columns)
                raise ConfigError(f"{name}, line 1: missing column {column!r} (columns: {known})")
            i = columns.index(column)
            values: list[tuple[int, str]] = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue
                if len(cells) <= i:
                    raise ConfigError(f"{name}, line {reader.line_num}: no field for column {column!r}")
                values.append((reader.line_num, cells[i].strip()))
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read timestamps: {exc.strerror or exc}") from exc
    if not values:
        raise ConfigError(f"{name}: no data rows after the header")
    return values


def read_timestamps(path: str | Path, column: str, unit: TimestampUnit = "s") -> np.ndarray:
    """The timestamps in one column of a CSV: float seconds, or datetime64[ns] when unit="datetime".

    Datetimes are ISO 8601 as numpy reads them (``2023-11-16 18:17:03.9799600`` or with a ``T``),
    taken as UTC; numbers are seconds, milliseconds or microseconds per `unit`.
    """
    values = _read_column(path, column)
    texts = [text for _, text in values]
    if unit == "datetime":
        try:
            return np.array(texts, dtype="datetime64[ns]")
        except ValueError:
            for line, text in values:
                try:
                    np.datetime64(text, "ns")
                except ValueError:
                    raise ConfigError(f"{path}, line {line}: {column} {text!r} is not a datetime") from None
            raise
    scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6}.get(unit)
    if scale is None:
        raise RlmigError(f"unknown timestamp unit {unit!r} (known: s, ms, us, datetime)")
    numbers = np.empty(len(values))
    for i, (line, text) in enumerate(values):
        try:
            numbers[i] = float(text)
        except ValueError:
            numbers[i] = math.nan
        if not math.isfinite(numbers[i]):
            raise ConfigError(f"{path}, line {line}: {column} {text!r} is not a finite number")
    return numbers * scale


def _seconds_since(stamps: np.ndarray, origin: np.datetime64) -> np.ndarray:
    """Float seconds of datetime64 stamps after `origin`, subtracted exactly in integer nanoseconds."""
    return (stamps.astype("datetime64[ns]") - origin).astype(np.int64) / 1e9


def load_timestamp_csv(
    path: str | Path,
    column: str,
    step_s: float = 1.0,
    tenant: str | None = None,
    unit: TimestampUnit = "s",
) -> RateSeries:
    """A one-tenant rate series from a CSV with one request timestamp per row.

    Bins start at the first timestamp and run until the bin holding the last one, which is partial
    (its rate counts the requests in it over a full step). The tenant defaults to the file's stem.
    """
    stamps = read_timestamps(path, column, unit)
    seconds = _seconds_since(stamps, stamps.min()) if unit == "datetime" else stamps - stamps.min()
    name = tenant or Path(path).stem
    return RateSeries(step_s, {name: rates_from_timestamps(seconds, step_s, 0.0)}, source=str(path))


def load_azure_llm(path: str | Path, step_s: float = 1.0, tenant: str | None = None) -> RateSeries:
    """A rate series from one file of the Azure LLM inference trace 2023 (CC-BY 4.0).

    The tenant defaults to the service in the file name (``AzureLLMInferenceTrace_code.csv`` -> code).
    Bins start at the file's first request.
    """
    stem = Path(path).stem
    name = tenant or stem.removeprefix("AzureLLMInferenceTrace_")
    return load_timestamp_csv(path, "TIMESTAMP", step_s, tenant=name, unit="datetime")


@dataclass(frozen=True, slots=True)
class AzureWindow:
    """Where the shipped Azure series sits in the raw trace, and how many requests it keeps."""

    start: np.datetime64
    n_bins: int
    step_s: float
    kept: dict[str, int]
    total: dict[str, int]


def build_azure_llm(data: str | Path, step_s: float = 1.0) -> tuple[RateSeries, AzureWindow]:
    """The Azure LLM 2023 series of both services over the window in which both were recorded.

    `data` is the shared data folder (holding ``traces/azure-llm-2023``) or that trace folder itself.
    The window starts at the later of the two services' first requests and holds the whole bins that
    end by the earlier of their last requests, so neither service shows an artificial lull.
    """
    folder = Path(data)
    if not (folder / _AZURE_FILES["code"]).exists():
        folder = folder / "traces" / AZURE_LLM_2023
    stamps = {name: read_timestamps(folder / f, "TIMESTAMP", "datetime") for name, f in _AZURE_FILES.items()}
    start = max(s.min() for s in stamps.values())
    end = min(s.max() for s in stamps.values())
    n = math.floor(float(_seconds_since(np.array([end]), start)[0]) / step_s)
    if n <= 0:
        raise RlmigError(f"the services of {folder} share no whole {step_s:g} s bin")
    rates = {
        name: rates_from_timestamps(_seconds_since(s, start), step_s, 0.0, n * step_s)
        for name, s in stamps.items()
    }
    kept = {name: round(float(r.sum()) * step_s) for name, r in rates.items()}
    total = {name: int(s.size) for name, s in stamps.items()}
    series = RateSeries(step_s, rates, source=f"Azure LLM inference trace 2023 ({AZURE_LLM_2023}, CC-BY 4.0)")
    return series, AzureWindow(start, n, step_s, kept, total)
