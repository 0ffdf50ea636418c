"""The `rlmig` command line.

Every command reports bad input (unknown GPU or profile, malformed argument, bad file) as one line on
stderr, ``rlmig: error: ...``, with exit code 2; never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np
from click.decorators import FC
from rich.console import Console
from rich.table import Table

from rlmig.cli_agent import agent_command
from rlmig.cli_apply import apply_command
from rlmig.cli_eval import eval_command
from rlmig.cli_profiles import profiles
from rlmig.configuration import Configuration
from rlmig.errors import RlmigError
from rlmig.geometry import GpuModel, Layout, gpu_model, gpu_models

if TYPE_CHECKING:
    from rlmig.planners import Decision, Planner
    from rlmig.simulator import IntervalOutcome, Simulator

_SLOT_WIDTH = 10


def render_layout(layout: Layout, slot_width: int = _SLOT_WIDTH) -> str:
    """A one-line picture of a layout over the GPU's memory slots, free slots shown as dots."""
    cells: list[str] = []
    slot = 0
    by_start = {inst.start: inst for inst in layout.instances}
    while slot < layout.gpu.slots:
        inst = by_start.get(slot)
        if inst is None:
            cells.append("·".center(slot_width - 1))
            slot += 1
            continue
        width = inst.profile.slots * slot_width - 1
        cells.append(inst.profile.name[:width].center(width))
        slot += inst.profile.slots
    return "|" + "|".join(cells) + "|"


def _gpu_option(default: str | None = None) -> Callable[[FC], FC]:
    help_text = "GPU model, as `rlmig gpus` lists them (for example A100-80GB)."
    if default is None:
        return click.option("--gpu", "gpu_name", required=True, help=help_text)
    return click.option("--gpu", "gpu_name", default=default, show_default=True, help=help_text)


def _console() -> Console:
    """A console that does not wrap tables at 80 columns when printing to a pipe or file."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    return console


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(package_name="rlmig")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """rlmig: learned NVIDIA MIG partitioning for shared inference GPUs."""
    if ctx.invoked_subcommand is None:  # `rlmig` alone: the help, not an error
        click.echo(ctx.get_help())


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


@cli.command()
def gpus() -> None:
    """List the GPU models and their MIG profiles."""
    _console().print(_gpus_table(list(gpu_models().values())))


@cli.command()
@_gpu_option()
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
    _console().print(_layouts_table(model, found, title))


@cli.command()
@_gpu_option()
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


@cli.command()
@click.option(
    "--out", type=click.Path(file_okay=False), default=".", show_default=True, help="Folder for the PNG plot."
)
def demo(out: str) -> None:
    """The main job on the built-in default: the ILP, the baselines and the shipped policy on a dynamic
    scenario (two A100-80GB, four tenants, an hour of real and synthetic load), a table and a plot."""
    from rlmig.eval.demo import run_demo

    Path(out).mkdir(parents=True, exist_ok=True)
    run_demo(Path(out), _console())


def _planner_options(function: FC) -> FC:
    function = click.option(
        "--planner",
        "planner_name",
        default="static",
        show_default=True,
        help="Planner: ilp, ilp-foresight, parva, greedy, static-best, ekya, as-is, static, rl.",
    )(function)
    function = click.option(
        "--time-limit", type=float, default=None, help="ILP: solver time limit per decision, seconds."
    )(function)
    function = click.option("--horizon", type=int, default=None, help="ILP: intervals planned ahead.")(
        function
    )
    function = click.option(
        "--checkpoint",
        type=click.Path(file_okay=False),
        default=None,
        help="rl: the policy checkpoint folder.",
    )(function)
    return click.option(
        "--forecaster", default="auto", show_default=True, help="Forecaster of the next intervals' rates."
    )(function)


def _make_planner(
    name: str, time_limit: float | None, horizon: int | None, checkpoint: str | None = None
) -> Planner:
    from rlmig.planners import make_planner

    given = {"time_limit": time_limit, "horizon": horizon, "checkpoint": checkpoint}
    return make_planner(name, **{k: v for k, v in given.items() if v is not None})


@cli.command()
@click.argument("workload_file", type=click.Path(dir_okay=False))
@_planner_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (the input of `rlmig apply`).")
@click.option(
    "--mig-parted", "mig_parted", type=click.Path(dir_okay=False), help="Also write a mig-parted config."
)
def plan(
    workload_file: str,
    planner_name: str,
    time_limit: float | None,
    horizon: int | None,
    checkpoint: str | None,
    forecaster: str,
    as_json: bool,
    mig_parted: str | None,
) -> None:
    """Plan the configuration of WORKLOAD_FILE: serve mode for its peak load, dynamic mode for its first
    interval. Shows per GPU each instance, its placement, owner, segment and throughput."""
    from rlmig.migparted import dump_mig_parted
    from rlmig.planners import run_planner
    from rlmig.workload import load_workload

    workload = load_workload(workload_file)
    planner = _make_planner(planner_name, time_limit, horizon, checkpoint)
    run = run_planner(workload, planner, forecaster=forecaster, intervals=1)
    decision, outcome = run.decisions[0], run.result.intervals[0]
    document = plan_json(run.simulator, decision, outcome, run.result.configurations[0])
    if mig_parted:
        layouts = [g.layout if g.mig_enabled else None for g in decision.configuration.gpus]
        Path(mig_parted).write_text(dump_mig_parted(layouts))
    if as_json:
        click.echo(json.dumps(document))
        return
    console = _console()
    optimal = {True: "proven optimal", False: "not proven optimal", None: "heuristic"}[decision.optimal]
    if decision.optimal is False:
        optimal += f" (gap {decision.gap:.2%})" if decision.gap is not None else " (gap unknown)"
    console.print(
        f"[bold]{workload.name}[/bold] ({workload.mode}): {planner.name} uses {document['gpus_used']} of "
        f"{workload.gpu_count} x {workload.gpu.name}, {optimal}, {decision.solve_seconds * 1e3:.1f} ms"
    )
    simulator = run.simulator
    for gpu in document["gpus"]:
        if not gpu["mig_enabled"]:
            shared = ", ".join(gpu["time_shared"]) or "idle"
            console.print(f"GPU {gpu['index']}: MIG disabled, time-shared by {shared}")
            continue
        table = Table(title=f"GPU {gpu['index']}")
        for column in ("instance", "placement", "tenant", "role", "batch", "processes", "throughput"):
            table.add_column(
                column, justify="right" if column in ("batch", "processes", "throughput") else "left"
            )
        for inst in gpu["instances"]:
            profile = workload.gpu.profile(inst["profile"])
            segment = None
            if inst["role"] == "inference":
                t = simulator.tenant_index[inst["tenant"]]
                segment = simulator.segments[t][simulator.profile_index[profile.id]]
            table.add_row(
                inst["profile"],
                f"slots {inst['start']}-{inst['start'] + profile.slots - 1}",
                inst["tenant"] or "-",
                inst["role"],
                str(segment.batch) if segment else "-",
                str(segment.processes) if segment else "-",
                f"{inst['throughput']:.1f}" + (" samples/s" if inst["role"] == "retraining" else " req/s"),
            )
        console.print(table)
    if document["unmet"]:
        unmet = ", ".join(f"{t} {r:.1f} req/s" for t, r in document["unmet"].items())
        console.print(f"[yellow]unmet load:[/yellow] {unmet}")


def plan_json(
    simulator: Simulator, decision: Decision, outcome: IntervalOutcome, config: Configuration
) -> dict[str, object]:
    """The JSON form of a plan (what `rlmig apply` reads)."""
    workload = simulator.workload
    encoded = simulator.encode(config)
    gpus = config.to_json()
    row = 0
    for gpu in gpus:
        for inst in gpu["instances"]:
            role = inst["role"]
            value = encoded.train[row] if role == "retraining" else encoded.capacity[row]
            inst["throughput"] = float(value)
            row += 1
    unmet = {
        name: float(rate - cap)
        for name, rate, cap in zip(workload.tenant_names, outcome.rate, outcome.capacity, strict=True)
        if rate - cap > 1e-9
    }
    return {
        "workload": workload.name,
        "gpu_model": workload.gpu.name,
        "gpus_used": int(sum(1 for g in config.gpus if g.used)),
        "gpus": gpus,
        "unmet": unmet,
        "optimal": bool(decision.optimal) if decision.optimal is not None else False,
        "gap": decision.gap,
        "objective": decision.objective,
        "solve_seconds": float(decision.solve_seconds),
    }


@cli.command()
@click.argument("workload_file", type=click.Path(dir_okay=False))
@_planner_options
@click.option("--json", "as_json", is_flag=True, help="Print metrics and per-interval outcomes as JSON.")
def simulate(
    workload_file: str,
    planner_name: str,
    time_limit: float | None,
    horizon: int | None,
    checkpoint: str | None,
    forecaster: str,
    as_json: bool,
) -> None:
    """Run a planner over WORKLOAD_FILE in the interval simulator and report the metrics."""
    from rlmig.planners import run_planner
    from rlmig.workload import load_workload

    workload = load_workload(workload_file)
    planner = _make_planner(planner_name, time_limit, horizon, checkpoint)
    run = run_planner(workload, planner, forecaster=forecaster)
    result = run.result
    if as_json:
        document = result.to_json(workload)
        document["decision_ms_p50"] = run.decision_ms_p50
        document["decision_ms_p99"] = run.decision_ms_p99
        click.echo(json.dumps(document))
        return
    console = _console()
    console.print(
        f"[bold]{workload.name}[/bold]: {workload.gpu_count} x {workload.gpu.name}, "
        f"{workload.intervals} intervals of {workload.interval_s:g} s, planner {planner.name}, "
        f"decision p50 {run.decision_ms_p50:.2f} ms, p99 {run.decision_ms_p99:.2f} ms"
    )
    console.print(
        str(result.configurations[0])
        if len(set(result.configurations)) == 1
        else f"{len(set(result.configurations))} distinct configurations"
    )
    table = Table(title="metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.to_json().items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    per_tenant = Table(title="per tenant")
    for column in ("tenant", "mean rate", "mean capacity", "SLO attainment", "accuracy"):
        per_tenant.add_column(column, justify="right" if column != "tenant" else "left")
    rates = np.array([o.rate for o in result.intervals])
    capacity = np.array([o.capacity for o in result.intervals])
    served = np.array([o.served for o in result.intervals])
    goodput = np.array([o.goodput for o in result.intervals])
    for i, name in enumerate(workload.tenant_names):
        arrivals, got = rates[:, i].sum(), served[:, i].sum()
        per_tenant.add_row(
            name,
            f"{rates[:, i].mean():.1f}",
            f"{capacity[:, i].mean():.1f}",
            f"{got / arrivals:.3f}" if arrivals else "-",
            f"{goodput[:, i].sum() / (got * workload.interval_s):.3f}" if got else "-",
        )
    console.print(per_tenant)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run folder (default runs/NAME).")
@click.option("--export", type=click.Path(file_okay=False), default=None, help="Checkpoint folder to write.")
def train(config: str, out: str | None, export: str | None) -> None:
    """Train a policy from CONFIG (agents/configs/*.yaml); rerunning resumes after the last phase."""
    try:
        from rlmig.agents.train import train as run_training
    except ImportError as exc:
        raise RlmigError(f"training needs the train extra (pip install 'rlmig[train]'): {exc}") from None
    folder = run_training(config, out, export)
    click.echo(f"checkpoint: {folder}")


cli.add_command(profiles)
cli.add_command(apply_command)
cli.add_command(agent_command)
cli.add_command(eval_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 with a one-line error for any bad input)."""
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None, prog_name="rlmig", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("rlmig: aborted", err=True)
        return 130
    except (click.ClickException, RlmigError) as exc:
        message = (exc.format_message() if isinstance(exc, click.ClickException) else str(exc)).strip()
        click.echo(f"rlmig: error: {message.splitlines()[0] if message else type(exc).__name__}", err=True)
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
