"""Decision latency of every planner on 8 GPUs x 8 tenants (timings belong here, not in the tests).

    python -m benchmarks.planner_latency [--planners rl,parva,greedy,ekya,static-best,as-is,ilp]
        [--gpus 8] [--tenants 8] [--intervals 60]

Runs each planner over a diurnal cluster workload (`benchmarks.workloads`) and prints the decision
time's median and p99 in milliseconds.
"""

from __future__ import annotations

import argparse

from benchmarks.workloads import cluster_workload
from rlmig.planners import make_planner, run_planner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planners", default="rl,parva,greedy,ekya,static-best,as-is,ilp")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--intervals", type=int, default=60)
    args = parser.parse_args()
    workload = cluster_workload(args.gpus, args.tenants)
    for name in args.planners.split(","):
        run = run_planner(workload, make_planner(name), forecaster="last", intervals=args.intervals)
        print(
            f"{name:12s} decision p50 {run.decision_ms_p50:9.2f} ms   p99 {run.decision_ms_p99:9.2f} ms   "
            f"goodput ratio {run.result.metrics.goodput_ratio:.4f} over {len(run.decisions)} decisions"
        )


if __name__ == "__main__":
    main()
