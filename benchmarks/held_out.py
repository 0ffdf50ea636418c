"""Goodput of the policy against the ILPs and two baselines on held-out sampled scenarios.

    python -m benchmarks.held_out [--count 4] [--seed 1] [--intervals 12]
        [--planners rl,ilp,ilp-foresight,ekya,static-best] [--checkpoint FOLDER]

The scenarios come from the sampler's evaluation split (odd seeds, the second half of the Azure trace),
which training never sees; the sizes match the shipped policy's training config (up to 8 GPUs and 8
tenants, 12 intervals by default). The learned planners use the shipped checkpoint, or `--checkpoint`
(a candidate to measure before it ships). Prints one row per scenario: goodput ratio and wall time of each
planner, and marks the best heuristic (as-is, static-best, parva, greedy, ekya) among those run.
"""

from __future__ import annotations

import argparse
import time

from rlmig.envs.scenarios import ScenarioSampler
from rlmig.planners import LEARNED, make_planner, run_planner
from rlmig.planners.baselines import BASELINES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--intervals", type=int, default=12)
    parser.add_argument("--planners", default="rl,ilp,ilp-foresight,ekya,static-best")
    parser.add_argument("--checkpoint", help="policy folder for the learned planners (default: shipped)")
    args = parser.parse_args()
    sampler = ScenarioSampler(split="eval", max_gpus=8, max_tenants=8, intervals=args.intervals)
    for i, workload in enumerate(sampler.fixed(args.count, args.seed)):
        retrained = sum(t.retraining is not None for t in workload.tenants)
        size = f"{workload.gpu_count} GPUs, {len(workload.tenants)} tenants, {retrained} retrained"
        row = [f"held-out-{i} ({size})"]
        scores: dict[str, float] = {}
        for name in args.planners.split(","):
            start = time.perf_counter()
            options = {"checkpoint": args.checkpoint} if name in LEARNED and args.checkpoint else {}
            run = run_planner(workload, make_planner(name, **options))
            scores[name] = run.result.metrics.goodput_ratio
            row.append(f"{name} {scores[name]:.4f} ({time.perf_counter() - start:.0f} s)")
        heuristics = {n: v for n, v in scores.items() if n in BASELINES}
        if heuristics:
            best = max(heuristics, key=heuristics.__getitem__)
            row.append(f"best heuristic {best} {heuristics[best]:.4f}")
        print("  ".join(row), flush=True)


if __name__ == "__main__":
    main()
