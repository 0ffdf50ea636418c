"""The fitted model's error at the segments the serve planners choose, with and without the measured rows.

    python -m benchmarks.chosen_segments [--planners ilp,parva,greedy,static-best]

For each of ParvaGPU's six scenarios and each planner, plans twice: once on the fitted latency model
alone (the catalog's measured rows hidden: how rlmig planned before it used them) and once on the
catalog as it is (measured rows used exactly). Every inference instance of each plan is compared with
ParvaGPU's raw CSV row for its (instance size, batch, processes): the plan's throughput / measured - 1
(median and worst), the instances on rows measured as 0 (did not run), the instances over ParvaGPU's
latency bound (0.9 x SLO / 2), and whether each tenant's measured throughput covers its rate.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import yaml

from rlmig.catalog import MeasuredPoints, catalog
from rlmig.planners import make_planner, run_planner
from rlmig.workload import load_workload

ROOT = Path(__file__).resolve().parents[1]
PROF_DATA = ROOT.parent / "shared" / "data" / "parvagpu-a100-80gb" / "prof_data"


def raw(model: str) -> dict[tuple[int, int, int], tuple[float, float]]:
    with open(PROF_DATA / f"{model}.csv", newline="") as handle:
        return {
            (int(r["Mig instance"]), int(r["Batch size"]), int(r["Workload Number"])): (
                float(r["Throughput"]) * int(r["Workload Number"]),
                float(r["Latency"]) * 1e3,
            )
            for r in csv.DictReader(handle)
        }


def check(number: int, planner: str) -> dict[str, object]:
    path = ROOT / "eval" / "scenarios" / f"parvagpu-slo{number}.yaml"
    spec = {t["name"]: t for t in yaml.safe_load(path.read_text())["tenants"]}
    workload = load_workload(path)
    run = run_planner(
        workload, make_planner(planner, time_limit=60.0) if planner == "ilp" else make_planner(planner)
    )
    sim = run.simulator
    errors, not_run, over, served = [], 0, 0, dict.fromkeys(spec, 0.0)
    for placed in run.result.configurations[0].placed():
        if placed.owner is None or placed.owner.role != "inference":
            continue
        t = sim.tenant_index[placed.owner.tenant]
        segment = sim.segments[t][sim.profile_index[placed.instance.profile.id]]
        tenant = spec[placed.owner.tenant]
        rows = raw(tenant["model"])
        throughput, latency = rows[placed.instance.profile.compute, segment.batch, segment.processes]
        if throughput == 0:
            not_run += 1
            continue
        errors.append(segment.throughput / throughput - 1)
        over += latency >= 0.9 * tenant["slo_ms"] / 2
        served[placed.owner.tenant] += throughput
    short = [n for n, t in spec.items() if served[n] < t["load"] * (1 - 1e-9)]
    return {
        "gpus": run.result.intervals[0].gpus_used,
        "instances": len(errors) + not_run,
        "median": float(np.median(errors)) if errors else 0.0,
        "worst": float(max(errors, key=abs)) if errors else 0.0,
        "not_run": not_run,
        "over_bound": over,
        "short": short,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planners", default="ilp,parva,greedy,static-best")
    args = parser.parse_args()
    profiles = list(catalog("A100-80GB").values())
    kept = {p.name: p.measured for p in profiles}
    columns = (
        "planner | scenario | rows | GPUs | instances | plan / measured - 1 | not run | over bound | short"
    )
    print(f"| {columns} |")
    print("|---|---|---|---:|---:|---|---:|---:|---|")
    for planner in args.planners.split(","):
        for number in range(1, 7):
            for label in ("model only", "measured"):
                for p in profiles:  # hide or restore the measured rows; the caches start afresh
                    p.measured = MeasuredPoints({}) if label == "model only" else kept[p.name]
                    p._grids.clear()
                    p._best.clear()
                r = check(number, planner)
                print(
                    f"| {planner} | {number} | {label} | {r['gpus']} | {r['instances']} | "
                    f"{r['median']:+.1%}, {r['worst']:+.1%} | {r['not_run']} | {r['over_bound']} | "
                    f"{', '.join(r['short']) or '-'} |"
                )


if __name__ == "__main__":
    main()
