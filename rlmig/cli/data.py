"""`rlmig catalog` and `rlmig traces`: rebuild the shipped data from the measurements and traces."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("catalog")
def catalog() -> None:
    """The model catalog: fitted latency models and measured points, with their sources."""


@catalog.command("build")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The shared data folder (holds parvagpu-a100-80gb, migperf-a100).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Output folder.")
def catalog_build(data: Path, out: Path | None) -> None:
    """Rebuild the catalog from the measurements (deterministic) and print the fit errors."""
    from rlmig.catalog_build import build_catalog, default_output, fit_table

    profiles = build_catalog(data, out)
    click.echo(f"wrote {len(profiles)} profiles to {out or default_output()}", err=True)
    click.echo(fit_table(profiles))


@catalog.command("fit")
def catalog_fit() -> None:
    """Print the shipped catalog's fit errors against its measurements."""
    from rlmig.catalog import builtin_profiles
    from rlmig.catalog_build import fit_table

    click.echo(fit_table(sorted(builtin_profiles(), key=lambda p: (p.gpu, p.name.lower()))))


@click.group("traces")
def traces() -> None:
    """The shipped rate series derived from public traces."""


@traces.command("build")
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    required=True,
    help="Shared data folder (holding traces/azure-llm-2023).",
)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder.")
@click.option("--step", type=float, default=1.0, show_default=True, help="Bin width in seconds.")
def traces_build(data: str, out: str | None, step: float) -> None:
    """Derive rlmig/data/traces/azure-llm-2023.csv from the Azure LLM 2023 trace."""
    from rlmig.traces import RateSeries, write_builtin_azure

    path = write_builtin_azure(data, out, step)
    series = RateSeries.read_csv(path)
    size_kb = path.stat().st_size / 1024
    tenants = ", ".join(series.tenants)
    click.echo(f"wrote {path} ({series.n_bins} bins of {series.step_s:g} s; {tenants}; {size_kb:.0f} KB)")
