"""The hindsight bound: never below what a brute force over every run reaches, equal to it where the
relaxation is exact, above every planner on the shipped scenarios, and its command's JSON."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from rlmig.bound import hindsight_bound
from rlmig.cli import main
from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.errors import RlmigError
from rlmig.planners import make_planner, run_planner
from rlmig.simulator import Simulator
from rlmig.workload import load_workload, parse_workload

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"


def tiny(retraining: bool, downtime_s: float = 0.0, intervals: int = 2, load: float = 300.0):
    tenant = {"name": "a", "model": "resnet50", "slo_ms": 60, "load": load}
    if retraining:
        tenant["retraining"] = {"window_s": 60 * intervals, "samples": 20000, "drift": 0.2, "accuracy": 0.9}
    return parse_workload(
        {
            "gpu": "A30-24GB",
            "gpus": 1,
            "interval_s": 60,
            "duration_s": 60 * intervals,
            "downtime_s": downtime_s,
            "tenants": [tenant],
        }
    )


def configurations(sim: Simulator) -> list[Configuration]:
    """Every configuration of the one GPU, up to idle instances: MIG disabled, or a maximal layout with
    any owner per instance (a smaller layout is a maximal one with idle instances: the same run)."""
    gpu = sim.gpu
    roles = ["inference", "retraining"] if sim.has_retraining[0] else ["inference"]
    options = [None, *(Owner("a", role) for role in roles)]
    found = [Configuration(gpu, (GpuConfig.whole(gpu, ["a"]),))]
    for layout in gpu.layouts(maximal=True):
        for owners in itertools.product(options, repeat=len(layout.instances)):
            if sum(1 for o in owners if o is not None and o.role == "retraining") <= 1:
                found.append(Configuration(gpu, (GpuConfig(layout, owners),)))
    return found


def brute_force(workload) -> float:
    """The best goodput ratio of any sequence of configurations (the simulator decides each run)."""
    sim = Simulator(workload)
    configs = configurations(sim)
    arrivals = workload.rates.sum() * workload.interval_s
    best = 0.0
    for sequence in itertools.product(configs, repeat=workload.intervals):
        best = max(best, float(sim.run(list(sequence)).metrics.goodput_ratio))
    assert arrivals > 0
    return best


@pytest.mark.parametrize("load", [300.0, 5000.0])
def test_without_retraining_the_bound_is_the_brute_force_optimum(load):
    workload = tiny(False, 0.0, intervals=1, load=load)
    bound = hindsight_bound(workload)
    assert bound.proven
    assert bound.upper_bound == pytest.approx(brute_force(workload), rel=1e-6)


@pytest.mark.parametrize("downtime_s", [0.0, 10.0])
def test_with_retraining_no_run_exceeds_the_bound(downtime_s):
    workload = tiny(True, downtime_s, load=2000.0)
    best = brute_force(workload)
    bound = hindsight_bound(workload)
    assert bound.proven and best <= bound.upper_bound + 1e-9
    assert bound.upper_bound <= 1.0


@pytest.mark.parametrize(
    "scenario", ["azure-retrain", "spike-shift", "diurnal-mix", "migrator-8x8", "daily-retrain"]
)
def test_no_planner_exceeds_the_bound_on_the_shipped_scenarios(scenario):
    workload = load_workload(SCENARIOS / f"{scenario}.yaml")
    bound = hindsight_bound(workload)
    assert bound.proven and 0 < bound.upper_bound <= 1
    for name in ("parva", "greedy", "ekya", "static-best", "as-is"):
        ratio = run_planner(workload, make_planner(name)).result.metrics.goodput_ratio
        assert ratio <= bound.upper_bound + 1e-9, name


def test_the_bound_command_prints_its_keys(capsys):
    path = SCENARIOS / "spike-shift.yaml"
    assert main(["bound", str(path), "--json", "--planners", "parva,greedy"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {"upper_bound", "best_plan", "gap", "proven"} <= set(document)
    assert document["proven"] is True and document["best_plan_planner"] in ("parva", "greedy")
    assert document["gap"] == pytest.approx(document["upper_bound"] - document["best_plan"])
    assert max(document["planners"].values()) == document["best_plan"] <= document["upper_bound"]
    assert main(["bound", str(SCENARIOS / "parvagpu-slo1.yaml")]) == 2
    assert "for dynamic workloads, not serve" in capsys.readouterr().err
    assert main(["bound", str(path), "--time-limit", "nan"]) == 2


def test_the_bound_refuses_a_serve_workload():
    with pytest.raises(RlmigError, match="dynamic"):
        hindsight_bound(load_workload(SCENARIOS / "parvagpu-slo1.yaml"))
    assert np.isfinite(hindsight_bound(tiny(False)).upper_goodput)
