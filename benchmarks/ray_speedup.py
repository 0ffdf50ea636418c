"""What Ray buys for the offline work on this machine, and what it would buy on N workers.

    python benchmarks/ray_speedup.py [--episodes 8] [--scenarios spike-shift,diurnal-mix,migrator-8x8]
        [--planners greedy,parva,ekya,static-best,as-is] [--workers 1,2,4,8,16,64] [--skip-labelling]

1. Evaluation: `evaluate(scenarios, planners)` serially, then with `ray="local"` (an embedded Ray on
   this machine, started beforehand and not counted); wall times and the speedup.
2. Labelling: the oracle labels `episodes` sampler episodes (`label_episodes`, the DAgger setting:
   half the states labelled, an untrained policy acting otherwise) serially and on local Ray.
3. Per-task cost: the mean time of one task (one evaluation cell, one labelled episode) measured
   serially, and Ray's overhead per task (an empty task's round trip). The projection for N workers
   is max(total / N, longest task) + tasks x overhead / N: the time a cluster of N one-CPU workers
   would take, when tasks are independent (they are) and the driver is not the bottleneck.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import ray

from rlmig.agents.imitation import Labelling, _label_episode, label_episodes
from rlmig.envs.scenarios import ScenarioSampler
from rlmig.eval.harness import _Cell, _run_cell, evaluate, load_scenario
from rlmig.parallel import ray_session
from rlmig.policy import PolicySpec, SetPolicy

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _nothing(_: int) -> None:
    return None


def projection(costs: Sequence[float], overhead: float, workers: Sequence[int]) -> str:
    total, longest = sum(costs), max(costs)
    cells = [f"{n}: {max(total / n, longest) + len(costs) * overhead / n:.1f} s" for n in workers]
    return ", ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--scenarios", default="spike-shift,diurnal-mix,migrator-8x8")
    parser.add_argument("--planners", default="greedy,parva,ekya,static-best,as-is")
    parser.add_argument("--workers", default="1,2,4,8,16,64")
    parser.add_argument("--skip-labelling", action="store_true")
    args = parser.parse_args()
    workers = [int(n) for n in args.workers.split(",")]
    scenarios = [SCENARIOS / f"{name}.yaml" for name in args.scenarios.split(",")]
    planners = args.planners.split(",")
    print(f"{os.cpu_count()} CPUs here; Ray {ray.__version__}")

    # serial first: the per-task costs and the serial wall times
    cells = [_Cell(load_scenario(s), 0, p, "auto", None, False) for s in scenarios for p in planners]
    cell_costs = [timed(lambda cell=cell: _run_cell(cell)) for cell in cells]
    eval_serial = timed(lambda: evaluate(scenarios, planners))
    sampler = ScenarioSampler(max_gpus=4, max_tenants=4, intervals=12)
    policy = SetPolicy.initial(PolicySpec.for_gpu(load_scenario(scenarios[0]).gpu), hidden=16)
    labelling = Labelling(sampler, 1e-2, 2.0, policy=policy, beta=0.0, label_fraction=0.5)
    seeds = list(range(0 if args.skip_labelling else args.episodes))
    label_costs = [timed(lambda s=s: _label_episode((labelling, s))) for s in seeds]
    label_serial = sum(label_costs)

    with ray_session("local"):
        start = time.perf_counter()
        ray.get([ray.remote(_nothing).remote(i) for i in range(200)])
        overhead = (time.perf_counter() - start) / 200
        evaluate(scenarios[:1], planners[:1], ray="local")  # warm the workers (imports)
        eval_ray = timed(lambda: evaluate(scenarios, planners, ray="local"))
        label_ray = timed(lambda: list(label_episodes(labelling, seeds, ray="local"))) if seeds else 0.0

    print(f"evaluation, {len(cells)} cells: serial {eval_serial:.1f} s, local Ray {eval_ray:.1f} s, "
          f"speedup {eval_serial / eval_ray:.2f}x")  # fmt: skip
    print(f"per task: evaluation cell mean {sum(cell_costs) / len(cells):.2f} s (longest "
          f"{max(cell_costs):.2f} s); Ray's overhead {overhead * 1e3:.1f} ms per task")  # fmt: skip
    if seeds:
        print(f"labelling, {len(seeds)} episodes: serial {label_serial:.1f} s, local Ray {label_ray:.1f} s, "
              f"speedup {label_serial / label_ray:.2f}x; labelled episode mean "
              f"{label_serial / len(seeds):.2f} s (longest {max(label_costs):.2f} s)")  # fmt: skip
    print(f"projected on N one-CPU workers, evaluation: {projection(cell_costs, overhead, workers)}")
    if seeds:
        print(f"projected on N one-CPU workers, labelling: {projection(label_costs, overhead, workers)}")


if __name__ == "__main__":
    main()
