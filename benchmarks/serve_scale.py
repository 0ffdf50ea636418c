"""The serve ILP at cluster scale: GPUs, proof and gap against the LP bound for 100 to 200 tenants.

    python benchmarks/serve_scale.py [--cases 6x16x1,6x18x1,6x16x1.12,5x18x1.45,4x18x3]
        [--time-limit 10]

Each case S x C x F is ParvaGPU's serve scenario S (eval/scenarios/parvagpu-sloS.yaml) with its
tenants copied C times (11 x C tenants, each copy its own tenant) and every rate multiplied by F, with
GPUs enough for all. For each case it prints the serve ILP's GPUs (`rlmig plan --planner ilp`'s
plan), whether the solver proved them optimal, its own remaining gap, the LP bound (`rlmig.eval.serve`:
the ceiling of the LP relaxation, whole GPUs included), the plan's distance to that bound, and the
wall time (both stages of the lexicographic solve, building included).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import yaml

from rlmig.eval.serve import lp_bound
from rlmig.planners import make_planner, run_planner
from rlmig.simulator import Simulator
from rlmig.workload import Workload, parse_workload

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"


def scaled_scenario(number: int, copies: int, factor: float) -> Workload:
    """ParvaGPU scenario `number` with its tenants copied `copies` times and rates times `factor`."""
    spec = yaml.safe_load((SCENARIOS / f"parvagpu-slo{number}.yaml").read_text())
    tenants = []
    for c in range(copies):
        for tenant in spec["tenants"]:
            tenants.append({**tenant, "name": f"{tenant['name']}-{c}", "load": tenant["load"] * factor})
    spec["tenants"] = tenants
    spec["name"] = f"parvagpu-slo{number}-x{copies}-at-{factor:g}"
    spec["gpus"] = math.ceil(spec["gpus"] * copies * max(factor, 1.0))
    return parse_workload(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="6x16x1,6x18x1,6x16x1.12,5x18x1.45,4x18x3")
    parser.add_argument("--time-limit", type=float, default=10.0)
    args = parser.parse_args()
    print("case | tenants | GPUs | proven | solver gap | LP bound | over LP bound | seconds")
    for case in args.cases.split(","):
        number, copies, factor = case.split("x")
        workload = scaled_scenario(int(number), int(copies), float(factor))
        sim = Simulator(workload)
        bound = math.ceil(lp_bound(workload, sim) - 1e-6)
        start = time.perf_counter()
        run = run_planner(workload, make_planner("ilp", time_limit=args.time_limit), simulator=sim)
        seconds = time.perf_counter() - start
        decision = run.decisions[0]
        gpus = sum(1 for g in decision.configuration.gpus if g.used)
        gap = "-" if decision.gap is None else f"{100 * decision.gap:.2f}%"
        print(
            f"{case} | {len(workload.tenants)} | {gpus} | {decision.optimal} | {gap} | {bound} | "
            f"{100 * (gpus - bound) / bound:.2f}% | {seconds:.1f}"
        )


if __name__ == "__main__":
    main()
