"""Does the policy carry its own weight? The rl planner against its guard without the policy.

    python benchmarks/guard_value.py [--held-out 8] [--seed 1] [--intervals 20] [--ilp]
        [--guard-horizon 3] [--guard-with parva] [--checkpoint checkpoints/a100-80gb]

On every dynamic scenario in eval/scenarios and on `held-out` scenarios of the sampler's evaluation
split (the sizes of the shipped policy's training config), runs:
- rl: the shipped policy with its guard (keep the configuration, or parva, when predicted better over
  the next 3 intervals; `--guard-horizon` and `--guard-with` try other guards: both guarded rows use
  the guard given);
- rl --no-guard: the policy alone;
- guard only: the same guard with the policy's proposal replaced by the configuration in place (parva's
  plan in the first interval), i.e. what the guard achieves without the policy;
- the heuristics (parva, greedy, ekya, static-best, as-is), and with `--ilp` the default ILP.
Prints each goodput ratio per scenario and the means, and for rl the intervals where the guard
overruled the policy. `--checkpoint` measures another policy than the shipped one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rlmig.envs.scenarios import ScenarioSampler
from rlmig.planners import ClusterState, make_planner, run_planner
from rlmig.planners.rl import RlPlanner
from rlmig.workload import Workload, load_workload

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"
HEURISTICS = ["parva", "greedy", "ekya", "static-best", "as-is"]


class GuardOnly(RlPlanner):
    """The rl planner's guard with the policy's proposal replaced by doing nothing."""

    def propose(self, state: ClusterState):  # type: ignore[no-untyped-def]
        if state.current is not None:
            return state.current
        return make_planner("parva").plan(state).configuration


def workloads(held_out: int, seed: int, intervals: int) -> list[Workload]:
    named = [load_workload(p) for p in sorted(SCENARIOS.glob("*.yaml"))]
    dynamic = [w for w in named if w.mode == "dynamic"]
    sampler = ScenarioSampler(split="eval", max_gpus=8, max_tenants=8, intervals=intervals)
    return dynamic + list(sampler.fixed(held_out, seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--intervals", type=int, default=20)
    parser.add_argument("--ilp", action="store_true", help="also the default ILP (2 s a decision)")
    parser.add_argument("--guard-horizon", type=int, default=3, help="intervals the guard predicts")
    parser.add_argument("--guard-with", default="parva", help="heuristics the guard weighs ('' = none)")
    parser.add_argument("--checkpoint", default=None, help="a policy checkpoint folder (default: shipped)")
    args = parser.parse_args()
    guard = {
        "checkpoint": args.checkpoint,
        "guard_horizon": args.guard_horizon,
        "guard_with": args.guard_with,
    }
    names = ["rl", "rl --no-guard", "guard only", *HEURISTICS, *(["ilp"] if args.ilp else [])]
    scores: dict[str, list[float]] = {name: [] for name in names}
    print("scenario".ljust(34) + "".join(f"{n:>14s}" for n in names) + "  rl overrules")
    for workload in workloads(args.held_out, args.seed, args.intervals):
        label = f"{workload.name} ({workload.gpu_count}x{len(workload.tenants)})"
        row, overrules = [], 0
        for name in names:
            if name == "rl":
                planner = RlPlanner(**guard)
            elif name == "rl --no-guard":
                planner = RlPlanner(args.checkpoint, guard=False)
            elif name == "guard only":
                planner = GuardOnly(**guard)
            else:
                planner = make_planner(name)
            run = run_planner(workload, planner)
            value = float(run.result.metrics.goodput_ratio)
            scores[name].append(value)
            row.append(value)
            if name == "rl":
                overrules = run.guard_overrules
        print(label[:34].ljust(34) + "".join(f"{v:14.4f}" for v in row) + f"  {overrules}", flush=True)
    print("mean".ljust(34) + "".join(f"{np.mean(scores[n]):14.4f}" for n in names))


if __name__ == "__main__":
    main()
