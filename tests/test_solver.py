"""The solver layer: silent at the file-descriptor level, never empty-handed under a time limit, a clear
error when it has nothing; the CLI's JSON stays parseable in real processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pulp
import pytest

from rlmig.configuration import Configuration
from rlmig.errors import RlmigError
from rlmig.loop import predicted_goodput
from rlmig.planners import ClusterState, make_planner, run_planner
from rlmig.planners.ilp import (
    DynamicModel,
    FixedChoices,
    IlpPlanner,
    PlanStep,
    dynamic_start,
    plan_steps,
)
from rlmig.planners.mip import solve
from rlmig.simulator import Simulator
from rlmig.workload import load_workload, parse_workload

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "eval" / "scenarios"

TINY = {
    "name": "tiny",
    "gpu": "A100-80GB",
    "gpus": 1,
    "interval_s": 60,
    "duration_s": 180,
    "downtime_s": 5,
    "tenants": [
        {
            "name": "photos",
            "model": "resnet50",
            "slo_ms": 100,
            "load": 500,
            "retraining": {"window_s": 120, "samples": 5000, "drift": 0.1, "accuracy": 0.9},
        },
        {"name": "edge", "model": "mobilenetv2", "slo_ms": 50, "load": 300},
    ],
}


def rlmig(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`rlmig ARGS` as a real process: what it writes to file descriptor 1 is what the test sees."""
    exe = shutil.which("rlmig")
    argv = [exe] if exe else [sys.executable, "-m", "rlmig.cli"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


# -- silence ------------------------------------------------------------------------------------


def test_output_written_to_the_file_descriptor_during_a_solve_is_dropped() -> None:
    script = (
        "import ctypes, os\n"
        "from rlmig.planners.mip import quiet_stdout\n"
        "with quiet_stdout():\n"
        "    os.write(1, b'from fd 1\\n')\n"
        "    ctypes.CDLL(None).printf(b'from C stdio, unflushed')\n"
        "print('only this', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "only this\n"


def test_plan_json_from_a_real_process_is_json_and_applies(tmp_path: Path) -> None:
    proc = rlmig("plan", str(SCENARIOS / "spike-shift.yaml"), "--planner", "ilp", "--horizon", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["optimal"] is True and document["gap"] is not None and document["gpus"]
    plan = tmp_path / "plan.json"
    plan.write_text(proc.stdout)
    applied = rlmig("apply", str(plan), "--backend", "fake")
    assert applied.returncode == 0, applied.stderr
    assert "the node is at the target" in applied.stdout


def test_serve_plan_json_from_a_real_process(tmp_path: Path) -> None:
    proc = rlmig("plan", str(SCENARIOS / "parvagpu-slo1.yaml"), "--planner", "ilp", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["gpus_used"] == 2


def test_simulate_and_eval_json_with_the_ilp_from_real_processes(tmp_path: Path) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(json.dumps(TINY))  # JSON is YAML
    proc = rlmig("simulate", str(workload), "--planner", "ilp", "--json")
    assert proc.returncode == 0, proc.stderr
    assert 0.0 < json.loads(proc.stdout)["metrics"]["goodput_ratio"] <= 1.0
    proc = rlmig("eval", str(workload), "--planners", "ilp,parva", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)


def test_rlmig_alone_prints_the_help() -> None:
    proc = rlmig()
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("Usage: rlmig") and "plan" in proc.stdout


# -- a start, and what a time limit returns ------------------------------------------------------


def test_a_solve_stopped_before_any_solution_returns_the_start() -> None:
    problem = pulp.LpProblem("knapsack", pulp.LpMaximize)
    rng = np.random.default_rng(0)
    weight, value = rng.uniform(1, 10, 60), rng.uniform(1, 10, 60)
    x = [problem.add_variable(f"x{i}", 0, 1, cat="Integer") for i in range(60)]
    slack = problem.add_variable("slack", 0, None)
    problem += pulp.lpSum(value[i] * x[i] for i in range(60)) + slack
    problem += pulp.lpSum(weight[i] * x[i] for i in range(60)) <= 30
    problem += slack <= 1 + x[0]
    start = {var: float(i == 0) for i, var in enumerate(x)}
    result = solve(problem, time_limit=0.0, start=start)  # a limit of 0 s binds on any machine
    assert not result.optimal
    assert [v.varValue for v in x] == [1.0] + [0.0] * 59
    assert slack.varValue == pytest.approx(2.0)  # the continuous part completed by the LP
    with pytest.raises(RlmigError, match=r"^the ILP found no solution within the time limit of 0 s"):
        solve(problem, time_limit=0.0)
    with pytest.raises(RlmigError, match="starting solution is infeasible"):
        solve(problem, time_limit=0.0, start={var: 1.0 for var in x})
    proven = solve(problem, start=start)
    assert proven.optimal and proven.gap is not None and proven.gap <= 1e-9
    assert pulp.value(problem.objective) >= float(value[0]) + 2.0


def _state_after(workload_name: str, intervals: int) -> ClusterState:
    """The state before interval `intervals` of a scenario, with parva deciding until then."""
    workload = load_workload(SCENARIOS / workload_name)
    sim = Simulator(workload)
    run = run_planner(workload, make_planner("parva"), simulator=sim, intervals=intervals)
    state = sim.initial_state()
    previous = None
    for k, config in enumerate(run.result.configurations):
        encoded = sim.encode(previous) if previous is not None else None
        _, state = sim.step(k, state, sim.encode(config), encoded, workload.rates[k])
        previous = config
    return ClusterState(
        workload, sim, intervals, previous, state, workload.rates[:intervals], workload.rates[intervals:][:3]
    )


def _kinds(config: Configuration) -> list[list[tuple[str, str]]]:
    """Per GPU, the profile and owner of each owned instance, sorted (where it sits aside)."""
    return [sorted((i.profile.name, str(o)) for i, o in g.items() if o is not None) for g in config.gpus]


def _owned(config: Configuration) -> set[tuple[int, str, str]]:
    return {(p.gpu, str(p.instance), str(p.owner)) for p in config.placed() if p.owner is not None}


@pytest.mark.parametrize(("scenario", "at"), [("spike-shift.yaml", 7), ("azure-retrain.yaml", 4)])
def test_a_binding_time_limit_returns_the_best_predicted_of_current_and_heuristic_plans(
    scenario: str, at: int
) -> None:
    state = _state_after(scenario, at)
    stopped = {}
    for horizon in (1, 3):
        decision = IlpPlanner(horizon=horizon, time_limit=0.0).plan(state)
        assert decision.optimal is False and decision.gap is None
        stopped[horizon] = decision
        start = dynamic_start(state, horizon)  # its instances, maybe in other slots of the GPU
        assert _kinds(decision.configuration) == _kinds(start)
        plans = [state.current, *(make_planner(n).plan(state).configuration for n in ("parva", "greedy"))]
        best = max(predicted_goodput(state, plan, horizon) for plan in plans)
        assert predicted_goodput(state, start, horizon) == best
    proven = IlpPlanner(time_limit=None).plan(state)
    assert proven.optimal and proven.objective >= stopped[1].objective - 1e-6


def test_the_start_respects_fixed_choices() -> None:
    state = _state_after("spike-shift.yaml", 7)
    gpu = state.workload.gpu
    layout = gpu.layout(["3g.40gb@0", "3g.40gb@4"])
    fixed = FixedChoices(layouts={0: layout})
    model = DynamicModel(state, [PlanStep(0, 1)], fixed)
    values = model.start(state.current)
    assert values[model.layout_vars[0][layout]] == 1.0
    decision = IlpPlanner(time_limit=0.0).expert(state, fixed)
    assert decision.configuration.gpus[0].layout.instances <= layout.instances
    assert _owned(decision.configuration) >= {o for o in _owned(state.current) if o[0] == 1}


def test_the_first_interval_starts_from_a_heuristic_plan() -> None:
    workload = load_workload(SCENARIOS / "spike-shift.yaml")
    sim = Simulator(workload)
    state = ClusterState(workload, sim, 0, None, sim.initial_state(), workload.rates[:0], workload.rates[:1])
    decision = IlpPlanner(time_limit=0.0).plan(state)
    assert not decision.optimal
    steps = plan_steps(state, None)
    assert _owned(decision.configuration) == _owned(dynamic_start(state, steps[-1].offset + steps[-1].length))


@pytest.mark.parametrize("number", [1, 5, 6])
def test_a_binding_time_limit_in_serve_mode_returns_the_best_heuristic_plan(number: int) -> None:
    workload = load_workload(SCENARIOS / f"parvagpu-slo{number}.yaml")
    stopped = run_planner(workload, make_planner("ilp", time_limit=0.0))
    assert stopped.decisions[0].optimal is False
    heuristics = [run_planner(workload, make_planner(name)).result for name in ("parva", "greedy")]
    fewest = min(r.intervals[0].gpus_used for r in heuristics if r.metrics.slo_attainment >= 1 - 1e-9)
    assert stopped.result.metrics.slo_attainment == pytest.approx(1.0)
    assert stopped.result.intervals[0].gpus_used <= fewest
    proven = run_planner(workload, make_planner("ilp", time_limit=None))
    assert proven.decisions[0].optimal
    assert proven.result.intervals[0].gpus_used <= stopped.result.intervals[0].gpus_used


def test_an_unsolvable_serve_load_still_has_an_answer() -> None:
    workload = parse_workload({**TINY, "mode": "serve", "tenants": [{**TINY["tenants"][1], "load": 1e7}]})
    run = run_planner(workload, make_planner("ilp", time_limit=0.0))
    assert run.result.intervals[0].capacity[0] > 0  # the start serves what it can


def test_quiet_stdout_closes_its_descriptors_when_it_cannot_open_devnull(monkeypatch) -> None:
    import os

    import rlmig.planners.mip as mip

    before = len(os.listdir("/proc/self/fd"))

    def refuse(*_args, **_kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(mip.os, "open", refuse)
    with pytest.raises(OSError), mip.quiet_stdout():
        pass
    monkeypatch.undo()
    assert len(os.listdir("/proc/self/fd")) == before
