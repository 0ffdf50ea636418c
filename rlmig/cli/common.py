"""What the `rlmig` commands share: the console, the common options, building a planner from flags."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from click.decorators import FC
from rich.console import Console

from rlmig.errors import RlmigError
from rlmig.geometry import Layout

if TYPE_CHECKING:
    from rlmig.planners import Planner

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


class FiniteFloat(click.ParamType):
    """A finite number (NaN and infinities refused: a flag of seconds must be one), at least `low`."""

    name = "number"

    def __init__(self, low: float | None = None) -> None:
        self.low = low

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{str(value)[:40]!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"must be a finite number, got {value}", param, ctx)
        if self.low is not None and number < self.low:
            self.fail(f"must be at least {self.low:g}, got {number:g}", param, ctx)
        return number


SECONDS = FiniteFloat(low=0.0)
"""A duration in seconds on the command line: finite, not negative."""


def gpu_option(default: str | None = None) -> Callable[[FC], FC]:
    help_text = "GPU model, as `rlmig gpus` lists them (for example A100-80GB)."
    if default is None:
        return click.option("--gpu", "gpu_name", required=True, help=help_text)
    return click.option("--gpu", "gpu_name", default=default, show_default=True, help=help_text)


def console() -> Console:
    """A console that does not wrap tables at 80 columns when printing to a pipe or file."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    return console


def planner_options(function: FC) -> FC:
    function = click.option(
        "--planner",
        "planner_name",
        default="static",
        show_default=True,
        help="Planner: ilp, ilp-foresight, parva, greedy, static-best, ekya, as-is, static, rl.",
    )(function)
    function = click.option(
        "--time-limit",
        type=SECONDS,
        default=None,
        help="ILP: time limit per decision, seconds (default: 2 dynamic, 10 serve).",
    )(function)
    function = click.option("--horizon", type=int, default=None, help="ILP: intervals planned ahead.")(
        function
    )
    function = click.option(
        "--checkpoint",
        type=click.Path(file_okay=False),
        default=None,
        help="rl: the policy checkpoint folder (default: the shipped one for the workload's GPU model).",
    )(function)
    function = rl_options(function)
    return click.option(
        "--forecaster", default="auto", show_default=True, help="Forecaster of the next intervals' rates."
    )(function)


def rl_options(function: FC) -> FC:
    """The rl planner's flags: `--no-guard`, `--guard-with NAMES`, `--guard-horizon N`, `--fallback NAME`."""
    function = click.option(
        "--no-guard", "no_guard", is_flag=True, help="rl: the policy alone, without its guard."
    )(function)
    function = click.option(
        "--guard-with",
        "guard_with",
        default=None,
        help="rl: the heuristics whose plans the guard weighs against the policy's proposal, comma-separated "
        "(default: parva; '' for none: only keeping the configuration in place).",
    )(function)
    function = click.option(
        "--guard-horizon",
        "guard_horizon",
        type=click.IntRange(min=1),
        default=None,
        help="rl: intervals of the forecast the guard predicts each candidate over (default: 3).",
    )(function)
    return click.option(
        "--fallback",
        default=None,
        help="rl: the planner that decides workloads of another GPU model than the policy's; "
        "without it such a workload is an error.",
    )(function)


def make_planner_from_flags(
    planner_name: str,
    time_limit: float | None,
    horizon: int | None,
    checkpoint: str | None = None,
    *,
    no_guard: bool = False,
    fallback: str | None = None,
    guard_with: str | None = None,
    guard_horizon: int | None = None,
    mode_changes: bool | None = None,
) -> Planner:
    """The planner the command-line flags ask for (a flag left out keeps the planner's default).
    `mode_changes` False (a node that may not change MIG modes): the planner, and the rl planner's guard
    and fallback, choose no MIG-off GPU (`Planner.forbid_mig_off`)."""
    from rlmig.planners import LEARNED, make_planner

    name = planner_name

    rl_flags = {
        "--checkpoint": checkpoint,
        "--no-guard": no_guard,
        "--fallback": fallback,
        "--guard-with": guard_with is not None,
        "--guard-horizon": guard_horizon,
    }
    for flag, value in rl_flags.items():
        if value and name not in LEARNED:
            raise RlmigError(f"{flag} is for the rl planner, not {name}")
    for flag in ("--guard-with", "--guard-horizon"):
        if rl_flags[flag] and (no_guard or name == "rl-unguarded"):
            alone = "--no-guard" if no_guard else name
            raise RlmigError(f"{flag} sets the guard, and {alone} runs the policy without it")
    for flag, given_value in (("--horizon", horizon), ("--time-limit", time_limit)):
        if given_value is not None and not name.startswith("ilp"):
            raise RlmigError(f"{flag} is for the ILP planners (ilp, ilp-myopic, ilp-foresight), not {name}")
    given: dict[str, Any] = {
        "time_limit": time_limit,
        "horizon": horizon,
        "checkpoint": checkpoint,
        "fallback": fallback,
        "guard": False if no_guard else None,
        "guard_with": guard_with,
        "guard_horizon": guard_horizon,
    }
    planner = make_planner(name, **{k: v for k, v in given.items() if v is not None})
    if mode_changes is False:
        planner.forbid_mig_off()
    return planner
