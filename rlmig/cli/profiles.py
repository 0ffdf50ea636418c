"""``rlmig profiles``: the model catalog, and import of your own measurements.

Usage::

    rlmig profiles list                           # every measured profile, built-in and imported
    rlmig profiles list --gpu H100-80GB --json    # the catalog for one GPU model, estimates included
    rlmig profiles import my-model.csv --gpu A100-80GB [--name my-model]
    rlmig profiles check [--gpu A100-80GB] [MODEL...] [--json]   # measured rows that contradict the others

``import`` reads ParvaGPU's CSV format (columns ``Mig instance,Batch size,Workload Number,Throughput,
Latency``; see `rlmig.catalog.read_parvagpu_csv`), fits the latency model and stores the profile under
``$RLMIG_HOME/profiles`` (default ``~/.local/share/rlmig/profiles``). Bad input raises `RlmigError`,
which ``rlmig.cli.main`` prints as one line with exit code 2. The group is registered on the main CLI
with ``cli.add_command(profiles)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from rlmig.catalog import Flag, ModelProfile, catalog, import_profile, measured_profiles, user_profile_path
from rlmig.errors import RlmigError
from rlmig.geometry import gpu_model


@click.group("profiles")
def profiles() -> None:
    """Model profiles: fitted latency models per model and GPU model, and import of your own."""


@profiles.command("import")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--gpu", "gpu_name", required=True, help="GPU model measured on, as `rlmig gpus` lists them.")
@click.option("--name", default=None, help="Model name (default: the file name without .csv).")
@click.option(
    "--allow-poor-fit",
    is_flag=True,
    help="Store the profile even when its latency model's 90th-percentile error exceeds 50% (the model "
    "fills every segment that was not measured).",
)
def import_command(csv_file: Path, gpu_name: str, name: str | None, allow_poor_fit: bool) -> None:
    """Fit and store a profile from a ParvaGPU-format CSV (one row per instance size, batch, processes)."""
    profile = import_profile(csv_file, gpu_name, name, allow_poor_fit)
    fit = profile.fit
    assert fit is not None
    click.echo(
        f"imported {profile.name} for {profile.gpu} from {fit.points} measured segments: "
        f"latency error median {fit.latency_median:.1%}, p90 {fit.latency_p90:.1%}; "
        f"throughput error median {fit.throughput_median:.1%}, p90 {fit.throughput_p90:.1%} "
        f"-> {user_profile_path(profile.name, profile.gpu)}"
    )


@profiles.command("list")
@click.option(
    "--gpu",
    "gpu_name",
    default=None,
    help="The catalog for this GPU model, profiles scaled from other GPUs included "
    "(default: every measured profile).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(gpu_name: str | None, as_json: bool) -> None:
    """List model profiles: name, GPU, source, estimate flag and fit error."""
    if gpu_name is None:
        found = [p for by_gpu in measured_profiles().values() for p in by_gpu.values()]
        chosen = sorted(found, key=lambda p: (p.gpu, p.name.lower()))
    else:
        chosen = list(catalog(gpu_name).values())
    if as_json:
        click.echo(json.dumps([_summary(p) for p in chosen], indent=2))
        return
    table = Table(title=f"Model profiles{f' for {gpu_name}' if gpu_name else ''}")
    columns = (
        "model",
        "GPU",
        "source",
        "estimate",
        "latency error",
        "throughput error",
        "at chosen",
        "memory",
    )
    for column in columns:
        table.add_column(column)
    for p in chosen:
        fit = p.fit
        n, optimism, p90 = p.error_at_chosen()
        table.add_row(
            p.name,
            p.gpu,
            _short_source(p),
            "yes" if p.estimate else "no",
            f"{fit.latency_median:.1%} / {fit.latency_p90:.1%}" if fit else "-",
            f"{fit.throughput_median:.1%} / {fit.throughput_p90:.1%}" if fit else "-",
            f"{optimism:+.1%} / {p90:.1%} ({n})" if n else "-",
            f"{p.footprint.base_mb:.0f} + {p.footprint.per_item_mb:.3g}/item MiB",
        )
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 140)
    console.print(table)
    console.print("fit error: median / 90th percentile of |model / measured - 1| on the data fitted")
    console.print(
        "at chosen: the model's throughput error where an optimiser trusting it would go (median of "
        "model / measured - 1, + = optimistic / 90th percentile of its size; segments). Plans use the "
        "measured rows themselves; the model fills only what was not measured."
    )


def _short_source(profile: ModelProfile) -> str:
    provenance = profile.details.get("provenance", {})
    if profile.user:
        files = provenance.get("files") or ["?"]
        text = f"user: {Path(files[0]).name}"
    else:
        text = str(provenance.get("dataset", profile.source)).split(" (")[0]
    scaled = profile.details.get("scaled_from")
    if profile.estimate and scaled:
        text += f", scaled from {scaled['gpu']}"
    return text


def _summary(profile: ModelProfile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "gpu": profile.gpu,
        "source": profile.source,
        "estimate": profile.estimate,
        "user": profile.user,
        "fit_error": profile.fit.to_json() if profile.fit else None,
        "error_at_chosen": dict(zip(("segments", "median", "p90"), profile.error_at_chosen(), strict=True))
        if profile.measured.rows
        else None,
        "measured_rows": len(profile.measured.rows),
        "flagged_rows": len(profile.flags),
        "memory": {"base_mb": profile.footprint.base_mb, "per_item_mb": profile.footprint.per_item_mb},
        "train_samples_per_s": {str(c): v for c, v in profile.training.items()},
    }


@profiles.command("check")
@click.argument("models", nargs=-1)
@click.option("--gpu", "gpu_name", default=None, help="Only the profiles measured on this GPU model.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
def check_command(models: tuple[str, ...], gpu_name: str | None, as_json: bool) -> None:
    """Flag measured rows that contradict the others (duplicated rows, throughput or latency falling
    with batch, more than p times one process's throughput, far off the fit), each with why. Plans
    trust every measured row unless a workload sets ``exclude_flagged: true``."""
    found = [p for by_gpu in measured_profiles().values() for p in by_gpu.values()]
    if gpu_name is not None:
        wanted_gpu = gpu_model(gpu_name).name
        found = [p for p in found if p.gpu == wanted_gpu]
    if models:
        names = {m.lower() for m in models}
        unknown = sorted(names - {p.name.lower() for p in found})
        if unknown:
            raise RlmigError(
                f"no measured profile named {', '.join(unknown)}{f' on {gpu_name}' if gpu_name else ''}"
            )
        found = [p for p in found if p.name.lower() in names]
    found.sort(key=lambda p: (p.gpu, p.name.lower()))
    report = [
        {
            "model": p.name,
            "gpu": p.gpu,
            "rows": len(p.measured.rows),
            "not_run": len(p.measured.not_run),
            "flagged": [Flag(key, why).to_json() for key, why in p.flags.items()],
        }
        for p in found
    ]
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for entry in report:
        click.echo(
            f"{entry['model']} on {entry['gpu']}: {entry['rows']} measured rows, {entry['not_run']} not run, "
            f"{len(entry['flagged'])} flagged"
        )
        for flag in entry["flagged"]:
            where = f"{flag['compute']} slices, batch {flag['batch']}, {flag['processes']} processes"
            click.echo(f"  {where}: {flag['reason']}")
    total = sum(len(e["flagged"]) for e in report)
    click.echo(f"{total} flagged rows; plans use them unless the workload sets exclude_flagged: true")
