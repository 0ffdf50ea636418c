"""Goodput of the policy against the ILPs and two baselines on held-out sampled scenarios.

    python -m benchmarks.held_out [--count 4] [--seed 1] [--planners rl,ilp,ilp-foresight,ekya,static-best]

The scenarios come from the sampler's evaluation split (odd seeds, the second half of the Azure trace),
which training never sees; the sizes match the shipped policy's training config (up to 8 GPUs and 8
tenants, 12 intervals). Prints one row per scenario: goodput ratio and wall time of each planner.
"""

from __future__ import annotations

import argparse
import time

from rlmig.envs.scenarios import ScenarioSampler
from rlmig.planners import make_planner, run_planner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--planners", default="rl,ilp,ilp-foresight,ekya,static-best")
    args = parser.parse_args()
    sampler = ScenarioSampler(split="eval", max_gpus=8, max_tenants=8, intervals=12)
    for i, workload in enumerate(sampler.fixed(args.count, args.seed)):
        row = [f"held-out-{i} ({workload.gpu_count} GPUs, {len(workload.tenants)} tenants)"]
        for name in args.planners.split(","):
            start = time.perf_counter()
            run = run_planner(workload, make_planner(name))
            row.append(f"{name} {run.result.metrics.goodput_ratio:.4f} ({time.perf_counter() - start:.0f} s)")
        print("  ".join(row), flush=True)


if __name__ == "__main__":
    main()
