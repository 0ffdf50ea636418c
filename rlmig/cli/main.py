"""The `rlmig` command group and its entry point.

Every command reports bad input (unknown GPU or profile, malformed argument, bad file) as one line on
stderr, ``rlmig: error: ...``, with exit code 2; never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from rlmig.cli.agent import agent_command
from rlmig.cli.apply import apply_command
from rlmig.cli.data import catalog, traces
from rlmig.cli.eval import eval_command
from rlmig.cli.geometry import gpus, layouts, validate
from rlmig.cli.planning import bound, demo, plan, simulate, train
from rlmig.cli.profiles import profiles
from rlmig.cli.report import report
from rlmig.errors import RlmigError


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(package_name="rlmig")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """rlmig: learned NVIDIA MIG partitioning for shared inference GPUs."""
    if ctx.invoked_subcommand is None:  # `rlmig` alone: the help, not an error
        click.echo(ctx.get_help())


for command in (
    gpus,
    layouts,
    validate,
    plan,
    simulate,
    bound,
    demo,
    train,
    eval_command,
    report,
    apply_command,
    agent_command,
    profiles,
    catalog,
    traces,
):
    cli.add_command(command)


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
