"""The ILP with a value for retraining progress past its horizon, against the default myopic ILP.

    python -m benchmarks.terminal_value [--weights 0,1] [--scenarios azure-retrain,spike-shift,diurnal-mix]

Runs `IlpPlanner(terminal=k, time_limit=60)` for each weight k (0: the default ILP) over each dynamic
scenario and prints the goodput ratio, SLO attainment, accuracy and decision latency p50/p99.
"""

from __future__ import annotations

import argparse

from rlmig.eval.harness import load_scenario
from rlmig.planners import run_planner
from rlmig.planners.ilp import IlpPlanner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="0,1")
    parser.add_argument("--scenarios", default="azure-retrain,spike-shift,diurnal-mix")
    args = parser.parse_args()
    print("| scenario | terminal | goodput | SLO att. | accuracy | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for scenario in args.scenarios.split(","):
        workload = load_scenario(scenario)
        for weight in (float(w) for w in args.weights.split(",")):
            run = run_planner(workload, IlpPlanner(terminal=weight, time_limit=60.0))
            m = run.result.metrics
            print(
                f"| {scenario} | {weight:g} | {m.goodput_ratio:.4f} | {m.slo_attainment:.4f} | "
                f"{m.accuracy:.4f} | {run.decision_ms_p50:.0f} | {run.decision_ms_p99:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
