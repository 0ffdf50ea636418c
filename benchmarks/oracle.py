"""The dynamic ILP oracle: window-aware (the default ``ilp``) against the myopic variant and the heuristics.

    python -m benchmarks.oracle [--scenarios azure-retrain,spike-shift,diurnal-mix]
        [--planners ilp,ilp-myopic,ekya,parva,greedy,static-best,as-is] [--time-limit S]

Runs each planner over each scenario (eval/scenarios, or a workload file) and prints the simulated
goodput ratio, SLO attainment, accuracy and decision latency p50/p99 in milliseconds. The ILP's
decisions stop at their time limit (the planner's default, 2 s per decision, unless --time-limit is
given), so its figures depend on the machine and on what else runs on it: report them with the machine
they were measured on.
"""

from __future__ import annotations

import argparse

from rlmig.eval.harness import load_scenario
from rlmig.planners import make_planner, run_planner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="azure-retrain,spike-shift,diurnal-mix")
    parser.add_argument("--planners", default="ilp,ilp-myopic,ekya,parva,greedy,static-best,as-is")
    parser.add_argument("--time-limit", type=float, default=None)
    args = parser.parse_args()
    print("| scenario | planner | goodput | SLO att. | accuracy | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for scenario in args.scenarios.split(","):
        workload = load_scenario(scenario)
        for name in args.planners.split(","):
            given = args.time_limit is not None and name.startswith("ilp")
            options = {"time_limit": args.time_limit} if given else {}
            run = run_planner(workload, make_planner(name, **options))
            m = run.result.metrics
            print(
                f"| {scenario} | {name} | {m.goodput_ratio:.4f} | {m.slo_attainment:.4f} | "
                f"{m.accuracy:.4f} | {run.decision_ms_p50:.0f} | {run.decision_ms_p99:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
