"""`rlmig demo`: the main job on the built-in default, in well under a minute on a laptop CPU.

Usage::

    from rlmig.eval.demo import run_demo

    demo = run_demo(Path("."), console)     # prints a table, writes ./rlmig-demo.png
    print(demo.plot, demo.seconds)

The myopic ILP (ilp-myopic, 5 s per decision at most) and the published baselines decide, every minute of
an hour, how two A100-80GB GPUs are partitioned among four tenants (two of them retrained continuously,
two of them on the real Azure LLM inference trace): the shipped scenario ``azure-retrain``. The learned
policy joins them once one is registered as planner ``rl`` and builds without error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from rlmig.eval.harness import Evaluation, RichProgress, build_planner, evaluate, resolve_scenario
from rlmig.eval.plots import ranking_plot
from rlmig.planners import make_planner

DEMO_SCENARIO = "azure-retrain"
DEMO_PLANNERS = ("ilp-myopic", "parva", "greedy", "static-best", "as-is", "ekya")
DEMO_TIME_LIMIT = 5.0
DEMO_PLOT = "rlmig-demo.png"
NEXT_STEPS = """Next:
  rlmig plan eval/scenarios/azure-retrain.yaml --planner ilp   one decision, instance by instance
  rlmig eval my-workload.yaml                                  every planner on your own workload
                                                               (the workload format: README, Workloads)
  rlmig bound my-workload.yaml                                 the most any planner could reach on it
  rlmig agent --workload my-workload.yaml --backend fake --interval 0
                                                               the node agent on an in-memory node
  docs/deploy.md                                               on GPU nodes, beside the GPU Operator"""
"""What the demo suggests doing next, printed last."""


@dataclass
class DemoResult:
    """What the demo ran and wrote."""

    evaluation: Evaluation
    plot: Path
    seconds: float


def demo_planners() -> list[str]:
    """The demo's planners, with the learned policy when ``make_planner("rl")`` works."""
    names = list(DEMO_PLANNERS)
    try:
        make_planner("rl")
    except Exception:  # no policy registered or shipped yet: the demo goes on without it
        return names
    return [*names, "rl"]


def run_demo(out_dir: Path = Path("."), console: Console | None = None) -> DemoResult:
    """Run the demo's planners on the built-in scenario, print the comparison, write the goodput plot
    (``rlmig-demo.png``) in `out_dir`."""
    console = console or Console()
    started = time.perf_counter()
    path = resolve_scenario(DEMO_SCENARIO)
    planners = demo_planners()
    console.print(
        f"[bold]rlmig demo[/bold]: scenario {DEMO_SCENARIO} (2 x A100-80GB, 4 tenants, 2 retraining, "
        f"one decision a minute for an hour), planners {', '.join(planners)}"
    )
    with RichProgress() as progress:
        evaluation = evaluate([path], planners, time_limit=DEMO_TIME_LIMIT, progress=progress)
    console.print(evaluation.scenario_table(evaluation.scenarios[0]).to_rich())
    out_dir = Path(out_dir)
    bound = evaluation.bounds.get((evaluation.scenarios[0], 0))
    plot = ranking_plot(evaluation.select(seed=0), out_dir / DEMO_PLOT, bound)
    seconds = time.perf_counter() - started
    console.print("What each planner optimises:")
    for name in planners:
        console.print(f"  {name}: {build_planner(name).objective or '-'}")
    console.print(
        "  bound: not a planner; no planner can exceed it on this run, even knowing the future (rlmig bound)"
    )
    console.print(
        f"goodput = accurate requests served within the SLO / arrivals; vs ilp = goodput / the ILP's. "
        f"Plot (planners ranked against the bound): {plot} ({seconds:.1f} s)"
    )
    console.print(NEXT_STEPS)
    return DemoResult(evaluation, plot, seconds)
