"""The published baselines: valid on every shipped scenario, fast, and each one's paper behaviour on a
case small enough to check by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.errors import RlmigError
from rlmig.loop import DecisionLoop
from rlmig.planners import Planner, run_planner
from rlmig.planners.baselines import (
    BASELINES,
    AsIsPlanner,
    EkyaPlanner,
    GreedyPlanner,
    ParvaPlanner,
    StaticBestPlanner,
)
from rlmig.planners.ekya import _Thief
from rlmig.planners.packing import Cluster
from rlmig.planners.parva import parva_optimize
from rlmig.simulator import Simulator
from rlmig.workload import load_workload, parse_workload

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"
PARVAGPU_GPUS = [2, 3, 5, 7, 13, 17]  # ParvaGPU's own counts for its six scenarios (DESIGN.md §4)


def workload(tenants, *, gpus=1, mode="serve", duration_s=60, **extra):
    return parse_workload(
        {
            "gpu": "A100-80GB",
            "gpus": gpus,
            "interval_s": 60,
            "duration_s": duration_s,
            "downtime_s": 5,
            "mode": mode,
            "tenants": tenants,
            **extra,
        }
    )


def hand_simulator(wl, capacity=None, train=None) -> Simulator:
    """A simulator whose tables are set by hand: {tenant: {profile name: value}}, every other entry 0."""
    sim = Simulator(wl)
    col = {p.name: j for j, p in enumerate(sim.gpu.profiles)}
    sim.serve_rate[:] = 0.0
    sim.train_rate[:] = 0.0
    for table, values in ((sim.serve_rate, capacity or {}), (sim.train_rate, train or {})):
        for tenant, row in values.items():
            for name, value in row.items():
                table[sim.tenant_index[tenant], col[name]] = value
    return sim


def owned(config, gpu=0) -> list[str]:
    return [f"{inst}={owner}" for inst, owner in config.gpus[gpu].items() if owner is not None]


# -- every planner, every shipped scenario -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_valid_configurations_on_shipped_scenarios(name, path):
    wl = load_workload(path)
    run = run_planner(wl, BASELINES[name](), forecaster="last")  # the simulator accepted every one
    assert len(run.decisions) == (1 if wl.mode == "serve" else wl.intervals)
    for config in run.result.configurations:
        assert len(config.gpus) == wl.gpu_count
        assert config.tenants() <= set(wl.tenant_names)
        for gpu_config in config.gpus:
            assert wl.gpu.why_invalid(gpu_config.layout.instances) is None
        retrainers = [p.owner.tenant for p in config.placed() if p.owner and p.owner.role == "retraining"]
        assert len(retrainers) == len(set(retrainers))


# On the measured rows, rlmig's reproduction of ParvaGPU's scheduler matches the published GPU counts
# except on scenario 5, where it needs one GPU more than ParvaGPU's 13 (the optimum is 12).
PARVA_ON_MEASURED_ROWS = (2, 3, 5, 7, 14, 17)


@pytest.mark.parametrize("scenario", range(1, 7))
def test_parva_gpu_counts_on_the_measured_rows(scenario):
    wl = load_workload(SCENARIOS / f"parvagpu-slo{scenario}.yaml")
    run = run_planner(wl, ParvaPlanner())
    assert run.result.metrics.slo_attainment == pytest.approx(1.0)
    assert run.result.intervals[0].gpus_used == PARVA_ON_MEASURED_ROWS[scenario - 1]
    assert run.result.intervals[0].gpus_used <= PARVAGPU_GPUS[scenario - 1] + (scenario == 5)


# -- as-is ---------------------------------------------------------------------------------------


def test_as_is_time_shares_whole_gpus():
    wl = workload(
        [
            {"name": "a", "model": "resnet50", "slo_ms": 100, "load": 100},
            {"name": "b", "model": "bert", "slo_ms": 300, "load": 100},
            {"name": "c", "model": "resnet50", "slo_ms": 100, "load": 3900},
        ],
        gpus=3,
    )
    sim = Simulator(wl)
    run = run_planner(wl, AsIsPlanner(), simulator=sim)
    config = run.result.configurations[0]
    assert all(not g.mig_enabled and not g.layout.instances for g in config.gpus)
    # c fills one GPU alone (3037 req/s, measured) and shares a second with a and b: at 3 sharers each
    # of the three still gets what it needs (c's 863 remaining req/s of 928, a's 100, b's 100 of 199)
    groups = sorted(sorted(g.time_shared) for g in config.gpus if g.time_shared)
    assert groups == [["a", "b", "c"], ["c"]]
    c = sim.tenant_index["c"]
    expected_c = sim.time_shared_capacity(c, 1) + sim.time_shared_capacity(c, 3)
    assert run.result.intervals[0].capacity[c] == pytest.approx(expected_c)
    assert run.result.metrics.slo_attainment == pytest.approx(1.0)


# -- static-best ---------------------------------------------------------------------------------


def test_static_best_plans_once_from_the_average_load():
    step = {"synthetic": "step", "before": 100, "after": 300, "at_s": 60}
    wl = workload([{"name": "a", "model": "resnet50", "slo_ms": 100, "load": step}], duration_s=120)
    sim = hand_simulator(wl, capacity={"a": {"1g.10gb": 100.0}})
    static = run_planner(wl, StaticBestPlanner(), simulator=sim).result.configurations[0]
    parva = run_planner(wl, ParvaPlanner(), simulator=sim).result.configurations[0]
    assert owned(static) == ["1g.10gb@0=a", "1g.10gb@6=a"]  # the average, 200 req/s
    assert len(owned(parva)) == 3  # serve mode plans for the peak, 300 req/s


def test_static_best_never_changes():
    run = run_planner(load_workload(SCENARIOS / "spike-shift.yaml"), StaticBestPlanner(), forecaster="last")
    first = run.result.configurations[0]
    assert all(config == first for config in run.result.configurations)
    assert run.result.metrics.reconfigs == 0


# -- parva ---------------------------------------------------------------------------------------


def test_parva_optimal_triplet_and_demand_matching():
    caps = {"1g.10gb": 100.0, "1g.20gb": 100.0, "2g.20gb": 220.0, "3g.40gb": 300.0, "4g.40gb": 380.0}
    caps["7g.80gb"] = 600.0
    for rate, expected in [
        # 2g is the best per slice (110): two of them, then the smallest that covers the 60 left
        (500, ["2g.20gb@0=a", "2g.20gb@4=a", "1g.10gb@6=a"]),
        # an exact multiple: the last segment is a whole optimal one, not an extra
        (440, ["2g.20gb@0=a", "2g.20gb@4=a"]),
    ]:
        wl = workload([{"name": "a", "model": "resnet50", "slo_ms": 100, "load": rate}], gpus=2)
        run = run_planner(wl, ParvaPlanner(), simulator=hand_simulator(wl, capacity={"a": caps}))
        config = run.result.configurations[0]
        assert owned(config) == expected
        assert not config.gpus[1].used


def test_parva_best_fit_places_the_largest_first():
    rates = {"a": 400, "b": 300, "c": 200}
    wl = workload(
        [{"name": n, "model": "resnet50", "slo_ms": 100, "load": r} for n, r in rates.items()], gpus=3
    )
    sim = hand_simulator(
        wl, capacity={"a": {"4g.40gb": 400.0}, "b": {"3g.40gb": 300.0}, "c": {"1g.10gb": 100.0}}
    )
    config = run_planner(wl, ParvaPlanner(), simulator=sim).result.configurations[0]
    assert owned(config, 0) == ["4g.40gb@0=a", "3g.40gb@4=b"]  # the 3g fills the 4g's GPU
    assert owned(config, 1) == ["1g.10gb@0=c", "1g.10gb@6=c"]
    assert not config.gpus[2].used


def test_parva_optimization_dissolves_a_lightly_used_gpu():
    tenants = [{"name": n, "model": "resnet50", "slo_ms": 100, "load": 100} for n in "abc"]
    wl = workload(tenants, gpus=2)
    caps = {"a": {"4g.40gb": 400.0}, "b": {"2g.20gb": 200.0}, "c": {"1g.10gb": 100.0}}
    sim = hand_simulator(wl, capacity=caps)
    cluster = Cluster(wl.gpu, 2)
    for g, spec, tenant in [(0, "4g.40gb@0", "a"), (0, "2g.20gb@4", "b"), (1, "1g.10gb@0", "c")]:
        cluster.add(g, wl.gpu.instance(spec), Owner(tenant))
    config = parva_optimize(cluster, sim).configuration()
    assert owned(config, 0) == ["4g.40gb@0=a", "2g.20gb@4=b", "1g.10gb@6=c"]
    assert not config.gpus[1].used


# -- greedy --------------------------------------------------------------------------------------


def greedy_case(mode="serve", duration_s=60):
    tenants = [
        {"name": "a", "model": "resnet50", "slo_ms": 100, "load": 100},
        {"name": "b", "model": "resnet50", "slo_ms": 100, "load": 1000},
    ]
    wl = workload(tenants, gpus=3, mode=mode, duration_s=duration_s)
    caps = {"a": {"1g.10gb": 100.0}, "b": {"2g.20gb": 100.0, "3g.40gb": 160.0, "4g.40gb": 250.0}}
    caps["b"]["7g.80gb"] = 500.0
    return wl, hand_simulator(wl, capacity=caps)


def test_greedy_first_gpu_serves_the_most_demand():
    wl, sim = greedy_case()
    config = run_planner(wl, GreedyPlanner(), simulator=sim).result.configurations[0]
    # completion rates: 4g + 2g for b (0.25 + 0.10) and 1g for a (1.0) = 1.35 beats 7g for b (0.5) and
    # 2g x 3 + 1g (0.30 + 1.0); then 7g serves b's 650 left best; the 150 still unmet needs one 3g,
    # and the maximal layout's other instances, which nobody needs, are not created
    assert owned(config, 0) == ["4g.40gb@0=b", "2g.20gb@4=b", "1g.10gb@6=a"]
    assert owned(config, 1) == ["7g.80gb@0=b"]
    assert [i.profile.name for i in config.gpus[2].layout.instances] == ["3g.40gb"]


def test_greedy_keeps_a_configuration_that_still_serves():
    wl, sim = greedy_case(mode="dynamic", duration_s=180)
    run = run_planner(wl, GreedyPlanner(), simulator=sim, forecaster="last")
    assert all(config == run.result.configurations[0] for config in run.result.configurations)
    assert run.result.metrics.reconfigs == 0


# -- ekya ----------------------------------------------------------------------------------------


def ekya_run(drift):
    """One GPU fixed as 4g + 2g + 1g; tenant a at 200 req/s retrains 1800 samples per 180 s window."""
    retraining = {"window_s": 180, "samples": 1800, "drift": drift, "accuracy": 0.9}
    tenants = [{"name": "a", "model": "resnet50", "slo_ms": 100, "load": 200, "retraining": retraining}]
    wl = workload(tenants, mode="dynamic", duration_s=360)
    sizes = ("4g.40gb", "2g.20gb", "1g.10gb")
    sim = hand_simulator(
        wl,
        capacity={"a": dict(zip(sizes, (130.0, 65.0, 30.0), strict=True))},
        train={"a": dict(zip(sizes, (40.0, 20.0, 10.0), strict=True))},
    )
    planner = EkyaPlanner(layout=[["4g.40gb@0", "2g.20gb@4", "1g.10gb@6"]])
    return run_planner(wl, planner, simulator=sim, forecaster="last").result.configurations


def test_ekya_thief_retrains_when_the_accuracy_gain_outweighs_the_lost_inference():
    # drift 0.4: accuracy 0.5. Serving all 200 req/s earns 200 x 0.5 = 100; retraining on the 2g
    # (20 samples/s, done at 90 s of 180) leaves 160 req/s at a mean accuracy of 0.7: 112. The 4g would
    # finish at 45 s (mean 0.8) but leave 95 req/s: 76; the 1g never finishes in time.
    configs = ekya_run(0.4)
    assert owned(configs[0]) == ["4g.40gb@0=a", "2g.20gb@4=a:retraining", "1g.10gb@6=a"]
    assert configs[1] == configs[0]  # no window start: the thief does not run
    assert "2g.20gb@4=a" in owned(configs[2])  # the job completed: its instance back to inference
    assert owned(configs[3])[1] == "2g.20gb@4=a:retraining"  # a new window: retraining again


def test_ekya_thief_keeps_serving_when_the_gain_is_small():
    # drift 0.05: accuracy 0.85. Serving all: 170; retraining on the 2g: 160 x 0.875 = 140.
    configs = ekya_run(0.05)
    assert all(p.owner is None or p.owner.role == "inference" for c in configs for p in c.placed())
    assert owned(configs[0]) == ["4g.40gb@0=a", "2g.20gb@4=a", "1g.10gb@6=a"]


def test_ekya_thief_gives_instances_back_to_their_running_owners_a_round_at_a_time():
    # four tenants at 1 req/s on two GPUs of seven 1g instances (30 req/s each): no steal changes the
    # estimate, so from its fair start (instances dealt a, b, c, d, a, ...) the thief gives each instance
    # back to its owner in place, several steals between distinct tenants a round
    tenants = [{"name": n, "model": "resnet50", "slo_ms": 100, "load": 1} for n in "abcd"]
    wl = workload(tenants, gpus=2, mode="dynamic", duration_s=120)
    sim = hand_simulator(wl, capacity={n: {"1g.10gb": 30.0} for n in "abcd"})
    layout = wl.gpu.layout([f"1g.10gb@{s}" for s in range(7)])
    running = Configuration(
        wl.gpu,
        (
            GpuConfig(layout, (Owner("a"),) * 4 + (Owner("b"),) * 3),
            GpuConfig(layout, (Owner("c"),) * 4 + (Owner("d"),) * 3),
        ),
    )
    loop = DecisionLoop(wl, sim)
    loop.observe(wl.rates[0])
    thief = _Thief(loop.cluster_state(running, loop.forecast()), [layout, layout])
    dealt = [wl.tenant_names[j] for j in thief.job_of.tolist()]
    assert dealt[:7] == ["a", "b", "c", "d", "a", "b", "c"]
    rounds = 0
    while thief.steal():
        rounds += 1
    back = [wl.tenant_names[j] for j in thief.job_of.tolist()]
    assert back == [o.tenant for g in running.gpus for o in g.owners]
    moved = sum(x != y for x, y in zip(dealt, back, strict=True))
    assert moved == 10 and rounds < moved


def test_every_baseline_is_named_as_the_cli_names_it():
    assert {name: cls.name for name, cls in BASELINES.items()} == {name: name for name in BASELINES}
    assert all(issubclass(cls, Planner) for cls in BASELINES.values())


def test_ekya_with_a_layout_that_serves_nobody_does_not_crash():
    wl = parse_workload(
        {
            "gpu": "A100-80GB",
            "gpus": 1,
            "interval_s": 60,
            "duration_s": 120,
            "downtime_s": 0,
            "mode": "dynamic",
            "tenants": [{"name": "t0", "model": "densenet121", "slo_ms": 20, "load": 200}],
        }
    )
    run = run_planner(wl, EkyaPlanner())
    assert run.result.metrics.goodput_ratio == 0.0  # no segment meets a 20 ms SLO: nothing to steal


def test_a_run_stopped_early_needs_a_count_of_intervals_the_workload_has():
    workload = load_workload(SCENARIOS / "azure-retrain.yaml")
    run = run_planner(workload, ParvaPlanner(), intervals=2)
    assert len(run.decisions) == 2
    for bad in (0, workload.intervals + 1):
        with pytest.raises(RlmigError, match=rf"intervals: {bad} is not between 1 and the workload's"):
            run_planner(workload, ParvaPlanner(), intervals=bad)
