"""Decision latency of every planner on a cluster (timings belong here, not in the tests).

    python -m benchmarks.planner_latency [--planners rl,parva,greedy,ekya,static-best,as-is,ilp]
        [--gpus 8] [--tenants 8] [--intervals 60] [--no-guard | --guard-with parva,greedy,ekya]
        [--guard-horizon 3]

Runs each planner over a diurnal cluster workload (`rlmig.eval.sweep.cluster_workload`) and prints the
decision time's median and p99 in milliseconds, the goodput ratio, and the decisions a fallback planner made
(rl: a workload of another GPU model than its checkpoint's). `--no-guard` times the rl policy alone;
`--guard-with` and `--guard-horizon` time it with another guard (as `rlmig simulate` takes them).
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
    parser.add_argument("--guard-with", help="rl: the heuristics its guard weighs, comma-separated")
    parser.add_argument("--guard-horizon", type=int, help="rl: the intervals its guard predicts")
    args = parser.parse_args()
    guard: dict[str, object] = {}
    if args.guard_with is not None:
        guard["guard_with"] = args.guard_with
    if args.guard_horizon is not None:
        guard["guard_horizon"] = args.guard_horizon
    if guard and args.no_guard:
        parser.error("--guard-with and --guard-horizon set the guard that --no-guard leaves out")
    workload = cluster_workload(args.gpus, args.tenants)
    try:
        check_intervals(args.intervals, workload)
    except RlmigError as exc:
        parser.error(f"--{exc}")
    print(f"{workload.name}: {args.gpus} GPUs x {args.tenants} tenants, {args.intervals} intervals")
    for name in args.planners.split(","):
        options = ({"guard": False} if args.no_guard else guard) if name == "rl" else {}
        try:
            planner = make_planner(name, **options)
        except RlmigError as exc:
            parser.error(str(exc))
        run = run_planner(workload, planner, forecaster="last", intervals=args.intervals)
        label = name + (" --no-guard" if args.no_guard and name == "rl" else "")
        print(
            f"{label:15s} decision p50 {run.decision_ms_p50:9.2f} ms   p99 {run.decision_ms_p99:9.2f} ms   "
            f"goodput ratio {run.result.metrics.goodput_ratio:.4f} over {len(run.decisions)} decisions, "
            f"{run.fallback_decisions} by a fallback"
        )


if __name__ == "__main__":
    main()
