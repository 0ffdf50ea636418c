"""`rlmig gpus`, `rlmig layouts`, `rlmig validate`: the MIG geometry from the command line."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click
from rich.table import Table

from rlmig.cli.common import console, gpu_option, render_layout
from rlmig.errors import RlmigError
from rlmig.geometry import GpuModel, Layout, gpu_model, gpu_models


def _gpus_table(models: Sequence[GpuModel]) -> Table:
    table = Table(title="MIG-capable GPU models")
    for column in (
        "GPU",
        "memory slots",
        "compute slices",
        "profiles (NVML ID)",
        "layouts",
        "maximal",
        "note",
    ):
        table.add_column(column)
    for model in models:
        profiles = " ".join(f"{p.name}({p.id})" for p in model.profiles)
        table.add_row(
            model.name,
            str(model.slots),
            str(model.compute_slices),
            profiles,
            str(len(model.layouts())),
            str(len(model.layouts(maximal=True))),
            "inferred" if model.inferred else "",
        )
    return table


def _layouts_table(model: GpuModel, found: Sequence[Layout], title: str) -> Table:
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("compute", justify="right")
    table.add_column(f"memory slots 0..{model.slots - 1}")
    for n, layout in enumerate(found, 1):
        table.add_row(str(n), f"{layout.compute_used}/{model.compute_slices}", render_layout(layout))
    return table


@click.command()
def gpus() -> None:
    """List the GPU models and their MIG profiles."""
    console().print(_gpus_table(list(gpu_models().values())))


@click.command()
@gpu_option()
@click.option("--maximal", is_flag=True, help="Only layouts to which no instance can be added.")
@click.option(
    "--profiles",
    "profile_names",
    default=None,
    help="Comma-separated profiles to use (default: every profile without media extensions).",
)
@click.option("--media-extensions", is_flag=True, help="Add the +me profiles to the selection.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of layouts.")
def layouts(
    gpu_name: str, maximal: bool, profile_names: str | None, media_extensions: bool, as_json: bool
) -> None:
    """Enumerate the valid (non-empty) MIG layouts of a GPU model."""
    model = gpu_model(gpu_name)
    profiles = None
    if profile_names is not None:
        profiles = [name for name in (n.strip() for n in profile_names.split(",")) if name]
        if not profiles:
            raise RlmigError("--profiles names no profile")
    found = model.layouts(profiles, maximal=maximal, media_extensions=media_extensions)
    if as_json:
        click.echo(json.dumps([layout.to_json() for layout in found]))
        return
    title = f"{len(found)} {'maximal ' if maximal else ''}layouts of {model.name}"
    console().print(_layouts_table(model, found, title))


@click.command()
@gpu_option()
@click.argument("instances", nargs=-1, required=True)
def validate(gpu_name: str, instances: tuple[str, ...]) -> None:
    """Check that INSTANCES (PROFILE@START ...) can coexist on one GPU; exit 1 with the reason if not."""
    model = gpu_model(gpu_name)
    parsed = model.instances(instances)
    reason = model.why_invalid(parsed)
    if reason is not None:
        click.echo(f"invalid: {reason}")
        raise click.exceptions.Exit(1)
    layout = model.layout(parsed)
    used_slots = bin(layout.slot_mask).count("1")
    click.echo(
        f"valid: {layout} ({layout.compute_used}/{model.compute_slices} compute slices, "
        f"{used_slots}/{model.slots} memory slots)"
    )
