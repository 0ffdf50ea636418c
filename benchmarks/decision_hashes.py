"""A fingerprint of every decision the heuristics make: to check that a rewrite for speed changes none.

    python benchmarks/decision_hashes.py [--planners parva,greedy,ekya,static-best,as-is] > after.txt
    git stash; python benchmarks/decision_hashes.py > before.txt; git stash pop; diff before.txt after.txt

For each workload (every scenario in eval/scenarios, ParvaGPU's scenario 6 at 16x its rates, and the
64- and 256-GPU cluster workloads' first 8 intervals) and planner, prints the SHA-1 of every decided
configuration in order, the goodput ratio, and the wall time (which differs between runs; the rest must
not).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import yaml

from rlmig.eval.sweep import cluster_workload
from rlmig.planners import make_planner, run_planner
from rlmig.workload import Workload, load_workload, parse_workload

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"


def workloads() -> list[Workload]:
    found = [load_workload(p) for p in sorted(SCENARIOS.glob("*.yaml"))]
    spec = yaml.safe_load((SCENARIOS / "parvagpu-slo6.yaml").read_text())
    for tenant in spec["tenants"]:
        tenant["load"] = tenant["load"] * 16
    spec["gpus"], spec["name"] = spec["gpus"] * 16, "parvagpu-slo6-x16"
    return [*found, parse_workload(spec), cluster_workload(64, 32), cluster_workload(256, 64)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planners", default="parva,greedy,ekya,static-best,as-is")
    args = parser.parse_args()
    for workload in workloads():
        for name in args.planners.split(","):
            start = time.perf_counter()
            intervals = 8 if workload.gpu_count >= 64 and workload.mode == "dynamic" else None
            run = run_planner(workload, make_planner(name), forecaster="last", intervals=intervals)
            digest = hashlib.sha1("\n".join(repr(d.configuration) for d in run.decisions).encode())
            print(
                f"{workload.name:20s} {name:12s} {digest.hexdigest()} "
                f"{run.result.metrics.goodput_ratio:.6f}   ({time.perf_counter() - start:.2f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
