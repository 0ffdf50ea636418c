"""Planner decision time against cluster size, and ParvaGPU's scenario 6 at 16x its rates.

    python benchmarks/planner_scaling.py [--sizes 1,4,16,64,256,1024] [--tenants 64] [--intervals 3]
        [--planners parva,greedy,ekya,static-best,as-is,rl,ilp] [--max-gpus ilp=64,ekya=256]
        [--skip-parva-scenario]

Part 1: each planner decides the first intervals of the diurnal cluster workload
(`rlmig.eval.sweep.cluster_workload`) with g GPUs and min(tenants, g) tenants; prints the decision
time's median, p99 and max per size and the growth exponent between the two largest sizes run
(1: linear). Part 2: the parva planner plans ParvaGPU's scenario 1 and scenario 6 with every rate
multiplied by 16 (serve mode, 24 x 16 GPUs available); prints the planning time of each, their
difference (the issue's "wall time over that of scenario 1") and the GPUs used. ParvaGPU's C scheduler
is reported (issue 19) to plan the 16x scenario in 31 ms.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import yaml

from rlmig.eval.sweep import latency_sweep
from rlmig.planners import make_planner, run_planner
from rlmig.workload import parse_workload

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"


def parva_scenario(number: int, scale: float, repeat: int = 5) -> tuple[float, int]:
    """Best-of-`repeat` parva planning time (s) and GPUs used for ParvaGPU scenario `number` at `scale`."""
    spec = yaml.safe_load((SCENARIOS / f"parvagpu-slo{number}.yaml").read_text())
    for tenant in spec["tenants"]:
        tenant["load"] = tenant["load"] * scale
    spec["gpus"] = int(spec["gpus"] * scale)
    workload = parse_workload(spec)
    best, used = math.inf, 0
    for _ in range(repeat):
        start = time.perf_counter()
        run = run_planner(workload, make_planner("parva"))
        best = min(best, time.perf_counter() - start)
        used = sum(1 for gpu in run.decisions[0].configuration.gpus if gpu.layout.instances)
    return best, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16,64,256,1024")
    parser.add_argument("--tenants", type=int, default=64)
    parser.add_argument("--intervals", type=int, default=3)
    parser.add_argument("--planners", default="parva,greedy,ekya,static-best,as-is,rl,ilp")
    parser.add_argument("--max-gpus", default="ilp=64,ekya=256", help="skip a planner above a size")
    parser.add_argument("--skip-parva-scenario", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    max_gpus = {k: int(v) for k, v in (item.split("=") for item in args.max_gpus.split(",") if item)}
    print(f"decision time (ms) against GPUs; tenants min({args.tenants}, GPUs); {args.intervals} decisions")
    print(f"{'planner':12s} {'GPUs':>5s} {'tenants':>7s} {'p50':>10s} {'p99':>10s} {'max':>10s}")
    by_planner: dict[str, list[tuple[int, float]]] = {}

    def show(point) -> None:
        if point.skipped:
            print(f"{point.planner:12s} {point.gpus:5d} {point.tenants:7d} {point.skipped}", flush=True)
            return
        by_planner.setdefault(point.planner, []).append((point.gpus, point.decision_ms_p50))
        fallback = f"  ({point.fallback_decisions} by a fallback)" if point.fallback_decisions else ""
        print(
            f"{point.planner:12s} {point.gpus:5d} {point.tenants:7d} {point.decision_ms_p50:10.2f} "
            f"{point.decision_ms_p99:10.2f} {point.decision_ms_max:10.2f}{fallback}",
            flush=True,
        )

    latency_sweep(
        sizes, args.planners, intervals=args.intervals, time_limit=2.0, max_gpus=max_gpus,
        max_tenants=args.tenants, on_point=show,
    )  # fmt: skip
    print("growth of the median between the two largest sizes run (1: linear, 2: quadratic):")
    for name, points in by_planner.items():
        if len(points) >= 2 and points[-2][1] > 0:
            (g0, t0), (g1, t1) = points[-2], points[-1]
            print(f"  {name:12s} {g0}->{g1} GPUs: exponent {math.log(t1 / t0) / math.log(g1 / g0):.2f}")
    if not args.skip_parva_scenario:
        base, base_used = parva_scenario(1, 1.0)
        big, big_used = parva_scenario(6, 16.0)
        print(
            f"parva, ParvaGPU scenario 1: {base * 1e3:.1f} ms ({base_used} GPUs); scenario 6 at 16x: "
            f"{big * 1e3:.1f} ms ({big_used} GPUs); over scenario 1: {(big - base) * 1e3:.1f} ms "
            "(target 300 ms; best of 5, simulation included)"
        )


if __name__ == "__main__":
    main()
