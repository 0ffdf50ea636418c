"""`rlmig eval`: every planner on every scenario, with the same simulator and seeds.

Usage::

    rlmig eval eval/scenarios/azure-retrain.yaml spike-shift --planners ilp,parva,greedy
    rlmig eval parvagpu-slo1 parvagpu-slo2 --json results.json --plots figures/
    rlmig eval azure-retrain --seeds 3 --time-limit 10 --json -       # JSON on stdout, no tables

A SCENARIO is a workload file or the name of a shipped scenario (``rlmig/eval/scenarios``). Prints a table
per scenario and per mode overall; progress goes to stderr.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from rlmig.cli.common import SECONDS, console
from rlmig.errors import RlmigError


@click.command("eval")
@click.argument("scenarios", nargs=-1, required=True)
@click.option(
    "--planners",
    default=None,
    help="Comma-separated planner names (default: ilp, ilp-foresight, parva, greedy, static-best, as-is, "
    "ekya and any other registered planner but static that can run here). ilp-foresight can take "
    "minutes per dynamic scenario: see --time-limit.",
)
@click.option(
    "--seeds", type=int, default=1, show_default=True, help="Seeds 0..N-1 (synthetic loads reseeded)."
)
@click.option(
    "--json", "json_out", default=None, help="Write the results as JSON to this file ('-': stdout)."
)
@click.option(
    "--plots", "plots_dir", type=click.Path(file_okay=False), default=None, help="Write PNG plots here."
)
@click.option(
    "--forecaster", default="auto", show_default=True, help="Forecaster of the next intervals' rates."
)
@click.option(
    "--time-limit",
    type=SECONDS,
    default=None,
    help="Solver time limit per decision, seconds, for the planners that take one (the ILP planners; "
    "default: their own).",
)
@click.option(
    "--ray",
    default=None,
    metavar="local|ADDRESS",
    help="Run each (scenario, planner, seed) as a Ray task: 'local' starts Ray on this machine, an "
    "address (auto, ray://HOST:10001) connects to a cluster. Needs the distributed extra.",
)
def eval_command(
    scenarios: tuple[str, ...],
    planners: str | None,
    seeds: int,
    json_out: str | None,
    plots_dir: str | None,
    forecaster: str,
    time_limit: float | None,
    ray: str | None,
) -> None:
    """Compare planners on SCENARIO... (workload files or shipped scenario names)."""
    from rlmig.eval.harness import RichProgress, evaluate

    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise RlmigError(f"--time-limit must be a positive number of seconds, got {time_limit:g}")
    if json_out and json_out != "-" and not Path(json_out).resolve().parent.is_dir():
        raise RlmigError(f"--json: no folder {Path(json_out).parent} to write {json_out} in")
    if plots_dir:
        try:
            Path(plots_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RlmigError(f"--plots: cannot create {plots_dir} ({exc.strerror or exc})") from None
    with RichProgress() as progress:
        evaluation = evaluate(
            list(scenarios),
            planners,
            seeds=seeds,
            forecaster=forecaster,
            time_limit=time_limit,
            progress=progress,
            ray=ray,
        )
    document = evaluation.to_json()
    if json_out == "-":
        click.echo(json.dumps(document))
    else:
        out = console()
        for table in evaluation.tables():
            out.print(table.to_rich())
        if any(r.mode == "serve" for r in evaluation.results):
            from rlmig.eval.serve import serve_table

            out.print(serve_table(evaluation).to_rich())
        if json_out:
            try:
                Path(json_out).write_text(json.dumps(document, indent=1))
            except OSError as exc:
                raise RlmigError(f"--json: cannot write {json_out} ({exc.strerror or exc})") from None
            out.print(f"results: {json_out}")
    if plots_dir:
        from rlmig.eval.plots import write_plots

        written = sum(len(paths) for paths in write_plots(evaluation, plots_dir).values())
        click.echo(f"plots: {written} PNG files in {plots_dir}", err=json_out == "-")
