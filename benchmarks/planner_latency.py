"""Decision latency of every planner on a cluster (timings belong here, not in the tests).

    python -m benchmarks.planner_latency [--planners rl,parva,greedy,ekya,static-best,as-is,ilp]
        [--gpus 8] [--tenants 8] [--intervals 60] [--no-guard]

Runs each planner over a diurnal cluster workload (`rlmig.eval.sweep.cluster_workload`) and prints the
decision time's median and p99 in milliseconds, the goodput ratio, and the decisions a fallback planner made
(rl: a workload of another GPU model than its checkpoint's). `--no-guard` times the rl policy alone.
Run it on an otherwise idle machine: each process is single-threaded, and the figures are one core's.
"""

from __future__ import annotations

import argparse

from rlmig.errors import RlmigError
from rlmig.eval.sweep import cluster_workload
from rlmig.planners import check_intervals, make_planner, run_planner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planners", default="rl,parva,greedy,ekya,static-best,as-is,ilp")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--intervals", type=int, default=60)
    parser.add_argument("--no-guard", action="store_true", help="rl: the policy alone")
    args = parser.parse_args()
    workload = cluster_workload(args.gpus, args.tenants)
    try:
        check_intervals(args.intervals, workload)
    except RlmigError as exc:
        parser.error(f"--{exc}")
    print(f"{workload.name}: {args.gpus} GPUs x {args.tenants} tenants, {args.intervals} intervals")
    for name in args.planners.split(","):
        options = {"guard": False} if name == "rl" and args.no_guard else {}
        run = run_planner(
            workload, make_planner(name, **options), forecaster="last", intervals=args.intervals
        )
        label = name + (" --no-guard" if options else "")
        print(
            f"{label:15s} decision p50 {run.decision_ms_p50:9.2f} ms   p99 {run.decision_ms_p99:9.2f} ms   "
            f"goodput ratio {run.result.metrics.goodput_ratio:.4f} over {len(run.decisions)} decisions, "
            f"{run.fallback_decisions} by a fallback"
        )


if __name__ == "__main__":
    main()
