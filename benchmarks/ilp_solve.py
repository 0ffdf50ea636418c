"""Time the ILP oracle's decisions for 8 GPUs x 8 tenants (and other sizes).

    python -m benchmarks.ilp_solve [--gpus 8] [--tenants 8] [--horizon 1] [--intervals 10]

Runs the dynamic-mode ILP (myopic by default) over the first intervals of a diurnal cluster workload
(`rlmig.eval.sweep.cluster_workload`) and prints the solve time per decision (median, p99, max) and
whether each decision was proven optimal.
"""

from __future__ import annotations

import argparse

import numpy as np

from rlmig.eval.sweep import cluster_workload
from rlmig.planners import make_planner, run_planner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=1)
    parser.add_argument("--intervals", type=int, default=10)
    parser.add_argument("--time-limit", type=float, default=60.0)
    args = parser.parse_args()
    workload = cluster_workload(args.gpus, args.tenants)
    planner = make_planner("ilp", horizon=args.horizon, time_limit=args.time_limit)
    run = run_planner(workload, planner, intervals=args.intervals)
    seconds = np.array([d.solve_seconds for d in run.decisions])
    optimal = sum(bool(d.optimal) for d in run.decisions)
    median, p99 = np.median(seconds), np.percentile(seconds, 99)
    print(
        f"ILP H={args.horizon}, {args.gpus} GPUs x {args.tenants} tenants, {len(seconds)} decisions: "
        f"median {median:.3f} s, p99 {p99:.3f} s, max {seconds.max():.3f} s, "
        f"{optimal}/{len(seconds)} proven optimal; goodput ratio {run.result.metrics.goodput_ratio:.4f}"
    )


if __name__ == "__main__":
    main()
