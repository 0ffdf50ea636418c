"""`rlmig report`: regenerate eval/REPORT.md and its figures (`rlmig.eval.report`)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from rlmig.cli.common import SECONDS
from rlmig.errors import RlmigError


@click.command("report")
@click.option("--scenarios", default=None, help="Comma-separated scenarios (default: the report's).")
@click.option("--planners", default=None, help="Comma-separated planners (default: the report's).")
@click.option("--seeds", type=int, default=1, show_default=True)
@click.option("--forecaster", default="auto", show_default=True)
@click.option(
    "--foresight-time-limit", type=SECONDS, default=None, help="ilp-foresight: seconds per decision."
)
@click.option(
    "--foresight-scenarios", default=None, help="Scenarios ilp-foresight runs on ('all': every one)."
)
@click.option("--sizes", default=None, help="GPU counts of the latency sweep ('' = none).")
@click.option("--sweep-intervals", type=int, default=None)
@click.option("--sweep-time-limit", type=SECONDS, default=None)
@click.option("--sweep-foresight-max-gpus", type=int, default=None)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="The report's path."
)
@click.option("--figures", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--quiet", is_flag=True, help="No progress output.")
def report(**options: object) -> None:
    """Run the evaluation behind eval/REPORT.md and write it with its figures."""
    try:
        from rlmig.eval.report import report_config, run_report
    except ImportError as exc:
        raise RlmigError(f"the report needs the evaluation package: {exc}") from None
    quiet = bool(options.pop("quiet"))
    config = report_config(**options)  # type: ignore[arg-type]
    defaults = {"seeds": 1, "forecaster": "auto"}
    given = [
        f"--{name.replace('_', '-')} {shlex.quote(str(value))}"
        for name, value in options.items()
        if value is not None and value != defaults.get(name)
    ]
    path = run_report(config, " ".join(["rlmig report", *given]), quiet=quiet)
    click.echo(f"wrote {path} and its figures in {config.figures_dir}")
