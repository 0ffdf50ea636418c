"""`rlmig plan`, `rlmig simulate`, `rlmig demo`, `rlmig train`: planners over workloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np
from rich.table import Table

from rlmig.cli.common import SECONDS, console, make_planner_from_flags, planner_options
from rlmig.configuration import Configuration
from rlmig.errors import RlmigError

if TYPE_CHECKING:
    from rlmig.planners import Decision
    from rlmig.simulator import IntervalOutcome, Simulator


@click.command()
@click.option(
    "--out", type=click.Path(file_okay=False), default=".", show_default=True, help="Folder for the PNG plot."
)
def demo(out: str) -> None:
    """The main job on the built-in default: the ILP, the baselines and the shipped policy on a dynamic
    scenario (two A100-80GB, four tenants, an hour of real and synthetic load), a table and a plot."""
    from rlmig.eval.demo import run_demo

    Path(out).mkdir(parents=True, exist_ok=True)
    run_demo(Path(out), console())


@click.command()
@click.argument("workload_file", type=click.Path(dir_okay=False))
@planner_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (the input of `rlmig apply`).")
@click.option(
    "--mig-parted", "mig_parted", type=click.Path(dir_okay=False), help="Also write a mig-parted config."
)
def plan(
    workload_file: str,
    forecaster: str,
    as_json: bool,
    mig_parted: str | None,
    **planner_flags: Any,  # `planner_options`: the planner and its flags
) -> None:
    """Plan the configuration of WORKLOAD_FILE: serve mode for its peak load, dynamic mode for its first
    interval. Shows per GPU each instance, its placement, owner, and how to run it: batch size, MPS
    processes, latency (measured, or the model's where nothing was measured) and throughput."""
    from rlmig.migparted import dump_mig_parted
    from rlmig.planners import run_planner
    from rlmig.workload import load_workload

    workload = load_workload(workload_file)
    if mig_parted and not Path(mig_parted).parent.is_dir():
        raise RlmigError(f"--mig-parted {mig_parted}: the folder {Path(mig_parted).parent} does not exist")
    planner = make_planner_from_flags(**planner_flags)
    run = run_planner(workload, planner, forecaster=forecaster, intervals=1)
    decision, outcome = run.decisions[0], run.result.intervals[0]
    document = plan_json(run.simulator, decision, outcome, run.result.configurations[0])
    if mig_parted:
        layouts = [g.layout if g.mig_enabled else None for g in decision.configuration.gpus]
        Path(mig_parted).write_text(dump_mig_parted(layouts))
    if as_json:
        click.echo(json.dumps(document))
        return
    out = console()
    optimal = {True: "proven optimal", False: "not proven optimal", None: "heuristic"}[decision.optimal]
    if decision.optimal is False:
        optimal += f" (gap {decision.gap:.2%})" if decision.gap is not None else " (gap unknown)"
    out.print(
        f"[bold]{workload.name}[/bold] ({workload.mode}): {run.decided_by(planner.name)} uses "
        f"{document['gpus_used']} of "
        f"{workload.gpu_count} x {workload.gpu.name}, {optimal}, {decision.solve_seconds * 1e3:.1f} ms"
    )
    if workload.mode == "dynamic" and decision.objective is not None:
        out.print(
            f"objective {decision.objective:,.0f} (the planner's: {planner.objective or 'its own'}); "
            f"simulated goodput of this interval {document['goodput']:,.0f} accurate requests within the SLO"
        )
    for gpu in document["gpus"]:
        if not gpu["mig_enabled"]:
            shared = ", ".join(gpu["time_shared"]) or "idle"
            out.print(f"GPU {gpu['index']}: MIG disabled, time-shared by {shared}")
            continue
        table = Table(title=f"GPU {gpu['index']}")
        numbers = ("batch", "processes", "latency", "throughput")
        for column in ("instance", "placement", "tenant", "role", *numbers):
            table.add_column(column, justify="right" if column in numbers else "left")
        for inst in gpu["instances"]:
            profile = workload.gpu.profile(inst["profile"])
            latency = f"{inst['latency_ms']:.1f} ms" if "latency_ms" in inst else "-"
            if "latency_ms" in inst and not inst["measured"]:
                latency += " (model)"
            table.add_row(
                inst["profile"],
                f"slots {inst['start']}-{inst['start'] + profile.slots - 1}",
                inst["tenant"] or "-",
                inst["role"],
                str(inst.get("batch", "-")),
                str(inst.get("processes", "-")),
                latency,
                f"{inst['throughput']:.1f}" + (" samples/s" if inst["role"] == "retraining" else " req/s"),
            )
        out.print(table)
    if document["unmet"]:
        unmet = ", ".join(f"{t} {r:.1f} req/s" for t, r in document["unmet"].items())
        out.print(f"[yellow]unmet load:[/yellow] {unmet}")


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
            value = encoded.train[row] if role == "retraining" else encoded.serve_rate[row]
            inst["throughput"] = float(value)
            if role == "inference":  # how to run it: what the inference server must be set to
                segment = simulator.segments[int(encoded.tenant[row])][int(encoded.profile[row])]
                if segment is not None:
                    inst["batch"] = segment.batch
                    inst["processes"] = segment.processes
                    inst["latency_ms"] = float(segment.latency_ms)
                    inst["measured"] = segment.measured
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
        "objective": decision.objective,  # the planner's own (the ILP's: goodput over its planned steps)
        "goodput": float(outcome.goodput.sum()),  # the simulator's, of this configuration over the interval
        "solve_seconds": float(decision.solve_seconds),
        "overruled": decision.overruled,  # a guard kept another candidate than the planner's proposal
        "fallback": decision.fallback,  # "NAME: why" when a fallback planner decided instead
    }


@click.command()
@click.argument("workload_file", type=click.Path(dir_okay=False))
@planner_options
@click.option("--json", "as_json", is_flag=True, help="Print metrics and per-interval outcomes as JSON.")
def simulate(
    workload_file: str,
    forecaster: str,
    as_json: bool,
    **planner_flags: Any,  # `planner_options`: the planner and its flags
) -> None:
    """Run a planner over WORKLOAD_FILE in the interval simulator and report the metrics."""
    from rlmig.planners import run_planner
    from rlmig.workload import load_workload

    workload = load_workload(workload_file)
    planner = make_planner_from_flags(**planner_flags)
    run = run_planner(workload, planner, forecaster=forecaster)
    result = run.result
    if as_json:
        document = result.to_json(workload)
        document["metrics"]["guard_overrules"] = run.guard_overrules
        document["metrics"]["fallback_decisions"] = run.fallback_decisions
        document["decision_ms_p50"] = run.decision_ms_p50
        document["decision_ms_p99"] = run.decision_ms_p99
        click.echo(json.dumps(document))
        return
    out = console()
    out.print(
        f"[bold]{workload.name}[/bold]: {workload.gpu_count} x {workload.gpu.name}, "
        f"{workload.intervals} intervals of {workload.interval_s:g} s, "
        f"planner {run.decided_by(planner.name)}, "
        f"decision p50 {run.decision_ms_p50:.2f} ms, p99 {run.decision_ms_p99:.2f} ms"
    )
    out.print(
        str(result.configurations[0])
        if len(set(result.configurations)) == 1
        else f"{len(set(result.configurations))} distinct configurations"
    )
    table = Table(title="metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics.to_json().items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(table)
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
    out.print(per_tenant)


@click.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run folder (default runs/NAME).")
@click.option("--export", type=click.Path(file_okay=False), default=None, help="Checkpoint folder to write.")
@click.option(
    "--ray",
    default=None,
    metavar="local|ADDRESS",
    help="Label episodes in Ray tasks and step PPO's environments in Ray actors: 'local' starts Ray on "
    "this machine, an address (auto, ray://HOST:10001) connects to a cluster. Needs the distributed extra.",
)
def train(config: str, out: str | None, export: str | None, ray: str | None) -> None:
    """Train a policy from CONFIG (agents/configs/*.yaml); rerunning resumes after the last phase."""
    try:
        from rlmig.agents.train import train as run_training
    except ImportError as exc:
        raise RlmigError(f"training needs the train extra (pip install 'rlmig[train]'): {exc}") from None
    folder = run_training(config, out, export, ray)
    click.echo(f"checkpoint: {folder}")


BEST_PLAN_PLANNERS = "ilp,parva,greedy,ekya,static-best,as-is"


@click.command()
@click.argument("workload_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the bound and the best plan as JSON.")
@click.option("--time-limit", type=SECONDS, default=None, help="Seconds for the bound's LP (default: none).")
@click.option(
    "--planners",
    default=BEST_PLAN_PLANNERS,
    show_default=True,
    help="Planners whose simulated runs are the candidates for the best plan found.",
)
@click.option("--forecaster", default="auto", show_default=True, help="Forecaster the planners use.")
def bound(
    workload_file: str, as_json: bool, time_limit: float | None, planners: str, forecaster: str
) -> None:
    """The hindsight bound of WORKLOAD_FILE (dynamic mode): a proven upper bound on the goodput ratio
    any planner can reach on the whole run knowing the future, beside the best plan found (the best
    simulated run among --planners) and the gap between them."""
    import math

    from rlmig.bound import hindsight_bound
    from rlmig.planners import make_planner, run_planner
    from rlmig.workload import load_workload

    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise RlmigError(f"--time-limit must be a positive number of seconds, got {time_limit:g}")
    names = [n.strip() for n in planners.split(",") if n.strip()]
    if not names:
        raise RlmigError("--planners names no planner")
    workload = load_workload(workload_file)
    result = hindsight_bound(workload, time_limit=time_limit)
    runs = {name: run_planner(workload, make_planner(name), forecaster=forecaster) for name in names}
    ratios = {name: run.result.metrics.goodput_ratio for name, run in runs.items()}
    best = max(ratios, key=lambda name: ratios[name])
    document = {
        "workload": workload.name,
        "upper_bound": result.upper_bound,
        "proven": result.proven,
        "best_plan": ratios[best],
        "best_plan_planner": best,
        "gap": result.upper_bound - ratios[best],
        "planners": ratios,
        "bound_seconds": result.solve_seconds,
    }
    if as_json:
        click.echo(json.dumps(document))
        return
    out = console()
    out.print(
        f"[bold]{workload.name}[/bold]: no planner can exceed a goodput ratio of {result.upper_bound:.4f} "
        f"(proven, {result.solve_seconds:.2f} s); the best plan found ({best}) reaches {ratios[best]:.4f}, "
        f"a gap of {document['gap']:.4f}"
    )
    table = Table(title="planners against the bound")
    for column in ("planner", "goodput ratio", "% of bound"):
        table.add_column(column, justify="left" if column == "planner" else "right")
    for name, ratio in sorted(ratios.items(), key=lambda item: -item[1]):
        table.add_row(name, f"{ratio:.4f}", f"{ratio / result.upper_bound:.1%}")
    out.print(table)
