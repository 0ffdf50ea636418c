"""Sub-steps per second of the environment on one core, for 8 GPUs x 8 tenants.

    python -m benchmarks.env_steps [--steps 20000]

Random masked actions (the cost of a policy is not included), observation and mask computed at every
sub-step as a MaskablePPO rollout does; episodes restart as they end.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlmig.envs import MigReconfigEnv
from rlmig.eval.sweep import cluster_workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    args = parser.parse_args()
    env = MigReconfigEnv(cluster_workload(8, 8))
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    start = time.perf_counter()
    intervals = 0
    for _ in range(args.steps):
        legal = np.flatnonzero(env.action_masks())
        action = int(legal[rng.integers(len(legal))])
        _, _, terminated, _, info = env.step(action)
        if terminated:
            env.reset()
        intervals += info["interval"] != env.interval
    elapsed = time.perf_counter() - start
    print(f"{args.steps / elapsed:,.0f} sub-steps/s (8 GPUs x 8 tenants, random masked actions, one core)")


if __name__ == "__main__":
    main()
