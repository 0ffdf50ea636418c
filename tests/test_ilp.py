"""The ILP oracle: optimal against brute force, objective equal to the simulator's goodput, ParvaGPU's
GPU counts, fixed choices, infeasible load."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.errors import RlmigError
from rlmig.planners import ClusterState, make_planner, run_planner
from rlmig.planners.ilp import (
    BURST,
    FixedChoices,
    IlpPlanner,
    PlanStep,
    layout_mixes,
    plan_steps,
    rate_scenarios,
)
from rlmig.simulator import Simulator
from rlmig.workload import load_workload, parse_workload

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"


def small_workload(gpu="A30-24GB", gpus=1, samples=3000.0, rate_a=300.0, rate_b=150.0, **extra):
    return parse_workload(
        {
            "gpu": gpu,
            "gpus": gpus,
            "interval_s": 60,
            "duration_s": 600,
            "downtime_s": 6,
            "tenants": [
                {
                    "name": "a",
                    "model": "resnet50",
                    "slo_ms": 60,
                    "load": rate_a,
                    "retraining": {"window_s": 300, "samples": samples, "drift": 0.1, "accuracy": 0.9},
                },
                {"name": "b", "model": "bert-base", "slo_ms": 80, "load": rate_b},
            ],
            **extra,
        }
    )


def every_configuration(sim: Simulator):
    """Every configuration of one GPU: any layout (empty included), any owner per instance, at most one
    retraining instance per tenant; or MIG disabled, one tenant on the whole GPU."""
    gpu = sim.gpu
    options = [None] + [
        Owner(t.name, role)
        for i, t in enumerate(sim.workload.tenants)
        for role in ("inference", "retraining")
        if role == "inference" or sim.has_retraining[i]
    ]
    for layout in [gpu.empty_layout(), *gpu.layouts()]:
        for owners in itertools.product(options, repeat=len(layout.instances)):
            retrainers = [o.tenant for o in owners if o is not None and o.role == "retraining"]
            if len(retrainers) == len(set(retrainers)):
                yield Configuration(gpu, (GpuConfig(layout, owners),))
    for tenant in sim.workload.tenants:
        yield Configuration(gpu, (GpuConfig.whole(gpu, [tenant.name]),))


def state_at(sim, k, tenants, current, rates):
    return ClusterState(sim.workload, sim, k, current, tenants, sim.workload.rates[:k], rates[None, :])


@pytest.mark.parametrize(
    ("k", "progress", "active", "accuracy", "samples", "current"),
    [
        (0, 0.0, False, 0.9, 3000.0, None),  # window start: drift, fresh job that can finish now
        (1, 0.0, True, 0.8, 3000.0, ["2g.12gb@0=a:retraining", "2g.12gb@2=b"]),  # keep the job's instance?
        (2, 2500.0, True, 0.8, 3000.0, ["1g.6gb@0=a", "1g.6gb@1=a:retraining", "2g.12gb@2=b"]),
        (3, 3000.0, False, 0.9, 3000.0, ["4g.24gb@0=a"]),  # job done: retraining is worthless
        (1, 0.0, True, 0.8, 1e9, ["2g.12gb@0=a", "2g.12gb@2=b"]),  # job cannot finish in the horizon
    ],
)
def test_myopic_ilp_is_optimal_against_brute_force(k, progress, active, accuracy, samples, current):
    sim = Simulator(small_workload(samples=samples))
    state = sim.initial_state()
    state.progress[0], state.active[0], state.accuracy[0] = progress, active, accuracy
    previous = Configuration.parse(sim.gpu, [current]) if current else None
    rates = sim.workload.rates[k]

    def goodput(config):
        prev = sim.encode(previous) if previous else None
        return float(sim.step(k, state.copy(), sim.encode(config), prev, rates)[0].goodput.sum())

    best = max(goodput(c) for c in every_configuration(sim))
    # The model on the forecast alone (no burst case) is exact: its optimum is the brute force's.
    exact = IlpPlanner(horizon=1, gap=0.0, time_limit=None, burst=None)
    decision = exact.plan(state_at(sim, k, state, previous, rates))
    assert decision.optimal
    assert decision.objective == pytest.approx(best, rel=1e-6)
    assert goodput(decision.configuration) == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize(
    ("scenario", "at", "horizon"),
    [
        ("spike-shift.yaml", 0, 1),
        ("spike-shift.yaml", 5, 1),
        ("azure-retrain.yaml", 3, 1),
        ("spike-shift.yaml", 19, 1),
    ],
)
def test_objective_equals_the_simulated_goodput_of_the_plan(scenario, at, horizon):
    workload = load_workload(SCENARIOS / scenario)
    sim = Simulator(workload)
    rates = workload.rates
    # Reach interval `at` with the myopic ILP deciding, then plan `horizon` steps on the true rates.
    state, current = sim.initial_state(), None
    for k in range(at):
        cluster = ClusterState(workload, sim, k, current, state, rates[:k], rates[k : k + 1])
        config = IlpPlanner(horizon=1).plan(cluster).configuration
        encoded_previous = sim.encode(current) if current is not None else None
        _, state = sim.step(k, state, sim.encode(config), encoded_previous, rates[k])
        current = config
    # No time limit: the test must not depend on the machine's speed, and equality needs the optimum
    # (a plan stopped early may count a job that completes as not completed: a lower bound).
    planner = IlpPlanner(horizon=horizon, foresight=True, time_limit=None, gap=0.0)
    cluster = ClusterState(workload, sim, at, current, state.copy(), rates[:at], rates[at : at + horizon])
    decision = planner.plan(cluster)
    assert decision.optimal and len(decision.horizon_plan) == horizon
    total = 0.0
    for h, config in enumerate(decision.horizon_plan):
        encoded_previous = sim.encode(current) if current is not None else None
        outcome, state = sim.step(at + h, state, sim.encode(config), encoded_previous, rates[at + h])
        total += float(outcome.goodput.sum())
        current = config
    assert decision.objective == pytest.approx(total, rel=1e-6)


@pytest.mark.parametrize(("number", "parvagpu"), [(1, 2), (2, 3), (3, 5), (4, 7), (5, 13), (6, 17)])
def test_serve_mode_uses_no_more_gpus_than_parvagpu(number, parvagpu):
    workload = load_workload(SCENARIOS / f"parvagpu-slo{number}.yaml")
    run = run_planner(workload, make_planner("ilp", time_limit=None))
    decision = run.decisions[0]
    assert decision.optimal
    assert decision.objective <= parvagpu
    assert run.result.intervals[0].gpus_used == decision.objective
    assert run.result.metrics.slo_attainment == pytest.approx(1.0)


def test_serve_mode_is_optimal_against_brute_force():
    workload = small_workload(gpu="A100-80GB", gpus=3, rate_a=2500.0, rate_b=900.0, mode="serve")
    sim = Simulator(workload)
    rates = workload.rates.max(axis=0)
    mixes = {tuple(sorted((p.id, n) for p, n in lay.counts().items())) for lay in workload.gpu.layouts()}

    def can_serve(gpus: int) -> bool:
        for combo in itertools.combinations_with_replacement(sorted(mixes), gpus):
            counts: dict[int, int] = {}
            for mix in combo:
                for pid, n in mix:
                    counts[pid] = counts.get(pid, 0) + n
            pids = sorted(counts)
            # Every split of each profile's instances between the two tenants.
            for to_a in itertools.product(*(range(counts[p] + 1) for p in pids)):
                cap = np.zeros(2)
                for pid, n_a in zip(pids, to_a, strict=True):
                    j = sim.profile_index[pid]
                    cap += [n_a * sim.serve_rate[0, j], (counts[pid] - n_a) * sim.serve_rate[1, j]]
                if (cap >= rates - 1e-9).all():
                    return True
        return False

    fewest = next(n for n in range(1, 4) if can_serve(n))
    decision = run_planner(workload, make_planner("ilp", time_limit=None)).decisions[0]
    assert decision.optimal and decision.objective == fewest


def test_infeasible_load_is_reported_not_raised():
    workload = small_workload(gpu="A100-80GB", gpus=1, rate_a=1e6, mode="serve")
    run = run_planner(workload, make_planner("ilp"))
    capacity = run.result.intervals[0].capacity
    assert capacity[0] < 1e6 and capacity[1] >= 150.0  # a is short; b, which fits, is fully served
    impossible = parse_workload(
        {
            "gpu": "A100-80GB",
            "gpus": 1,
            "interval_s": 60,
            "duration_s": 60,
            "mode": "serve",
            "tenants": [{"name": "x", "model": "bert", "slo_ms": 0.1, "load": 10}],
        }
    )
    run = run_planner(impossible, make_planner("ilp"))
    assert run.result.intervals[0].capacity[0] == 0.0 and run.decisions[0].objective == 0


def test_expert_respects_fixed_choices():
    sim = Simulator(small_workload())
    state = sim.initial_state()
    layout = sim.gpu.layout(["1g.6gb@0", "1g.6gb@1", "2g.12gb@2"])
    fixed = FixedChoices(layouts={0: layout}, owners={(0, sim.gpu.instance("2g.12gb@2")): Owner("a")})
    decision = IlpPlanner(time_limit=None).expert(state_at(sim, 0, state, None, sim.workload.rates[0]), fixed)
    config = decision.configuration.gpus[0]
    assert config.layout == layout
    assert dict(config.items())[sim.gpu.instance("2g.12gb@2")] == Owner("a")
    free = IlpPlanner(time_limit=None).plan(state_at(sim, 0, state, None, sim.workload.rates[0]))
    assert free.objective >= decision.objective - 1e-6


def test_a_retraining_owner_is_offered_only_where_the_oracle_can_take_it():
    """The policy's mask and the oracle's first step follow one rule (`ClusterState.may_retrain`): a
    DAgger state reached by the policy is one the oracle can label (a training run once crashed on a
    retraining instance given to a tenant whose job was done)."""
    from rlmig.policy import DecisionCodec, PolicySpec
    from rlmig.policy.codec import owner_action

    sim = Simulator(small_workload())  # a's window: 5 intervals; its job is done by interval 3
    done = sim.initial_state().copy()
    done.active[:] = False
    instance = sim.gpu.instance("2g.12gb@2")
    layout = sim.gpu.layout(["1g.6gb@0", "1g.6gb@1", "2g.12gb@2"])
    retrain_a = Owner("a", "retraining")
    held = Configuration(sim.gpu, (GpuConfig(layout, (None, None, retrain_a)),))
    spec = PolicySpec.for_gpu(sim.gpu).sized(2)
    for k, current, may in [(3, None, False), (5, None, True), (3, held, True)]:  # 5: a window starts
        state = state_at(sim, k, done, current, sim.workload.rates[k])
        assert state.may_retrain().tolist() == [may, False]
        codec = DecisionCodec(spec)
        codec.begin(state)
        codec.choose(spec.layouts.index(layout))
        codec.choose(0), codec.choose(0)  # the two 1g instances idle; the 2g one is next
        assert codec.action_masks()[owner_action(retrain_a, sim.tenant_index, spec.max_tenants)] == may
        fixed = FixedChoices(layouts={0: layout}, owners={(0, instance): retrain_a})
        if may:
            decision = IlpPlanner(time_limit=None).expert(state, fixed)
            assert dict(decision.configuration.gpus[0].items())[instance] == retrain_a
        else:
            with pytest.raises(RlmigError, match="cannot use this instance"):
                IlpPlanner(time_limit=None).expert(state, fixed)


def test_lookahead_retrains_across_intervals_when_one_is_not_enough():
    # 40000 samples: a 4g (~500 samples/s on A30 for resnet50) needs more than one 60 s interval.
    workload = small_workload(samples=40000.0, rate_a=100.0, rate_b=50.0)
    sim = Simulator(workload)
    rates = workload.rates
    state = sim.initial_state()
    rate_4g = sim.train_rate[0, sim.profile_index[sim.gpu.profile("4g.24gb").id]]
    assert 60 * rate_4g < 40000 < 2 * 60 * rate_4g * 0.9
    exact = IlpPlanner(horizon=1, gap=0.0, time_limit=None, burst=None)
    myopic = exact.plan(state_at(sim, 0, state, None, rates[0]))
    # Nothing to gain within one interval: the myopic objective is the goodput of its plan's inference
    # alone (a retraining instance kept from its start plan earns it nothing).
    inference_only = Configuration(
        sim.gpu,
        tuple(
            GpuConfig(
                g.layout, tuple(o if o is not None and o.role == "inference" else None for o in g.owners)
            )
            for g in myopic.configuration.gpus
        ),
    )
    outcome, _ = sim.step(0, state.copy(), sim.encode(inference_only), None, rates[0])
    assert myopic.objective == pytest.approx(float(outcome.goodput.sum()), rel=1e-9)
    ahead = IlpPlanner(horizon=3, foresight=True, gap=0.0, time_limit=None).plan(
        ClusterState(workload, sim, 0, None, state, rates[:0], rates[0:3])
    )
    first = [o.role for g in ahead.configuration.gpus for o in g.owners if o]
    assert "retraining" in first  # starts the job now to finish it inside the horizon
    assert ahead.objective > myopic.objective + 2 * 60 * 150 * 0.8 - 1  # and gains from it


def test_the_window_aware_ilp_starts_a_long_job_that_the_myopic_one_never_starts():
    # The same job as above: more than one interval of work, so the one-interval objective never pays
    # for it; the default plans to the end of the window (5 intervals) and does.
    workload = small_workload(samples=40000.0, rate_a=100.0, rate_b=50.0)
    sim = Simulator(workload)
    state = sim.initial_state()
    cluster = state_at(sim, 0, state, None, workload.rates[0])
    myopic = IlpPlanner(horizon=1, gap=0.0, time_limit=None).plan(cluster)
    window = IlpPlanner(gap=0.0, time_limit=None).plan(cluster)
    assert window.optimal and len(window.horizon_plan) == 1
    roles = [o.role for g in window.configuration.gpus for o in g.owners if o]
    assert "retraining" in roles
    # Its objective is the goodput of the whole window on the forecast; the first interval's goodput is
    # at most the myopic optimum (the job costs capacity now).
    outcome, _ = sim.step(0, state.copy(), sim.encode(window.configuration), None, workload.rates[0])
    assert float(outcome.goodput.sum()) <= myopic.objective + 1e-6
    assert window.objective > 4 * myopic.objective


def test_plan_steps_reach_the_end_of_the_longest_window_with_each_window_start_on_a_step_edge():
    workload = load_workload(SCENARIOS / "azure-retrain.yaml")  # windows of 10 and 15 intervals
    sim = Simulator(workload)
    rates = workload.rates

    def steps(at, horizon=None):
        cluster = ClusterState(workload, sim, at, None, sim.initial_state(), rates[:at], rates[at : at + 1])
        return plan_steps(cluster, horizon)

    first = steps(0)
    assert first[0] == PlanStep(0, 1) and [s.length for s in first] == [1, 1, 1, 2, 2, 3, 1, 4]
    assert sum(s.length for s in first) == 15  # the end of the code tenant's first window
    # At interval 8 the chat window starts in 2 intervals (a step starts there), the code window in 7
    # (the plan ends there).
    middle = steps(8)
    assert 2 in {s.offset for s in middle} and sum(s.length for s in middle) == 7
    # The plan never passes a tenant's second window start, nor the run's end, nor max_span.
    for at in range(workload.intervals):
        plan = steps(at)
        span = sum(s.length for s in plan)
        assert span <= workload.intervals - at or span == 1
        assert all(b.offset == a.offset + a.length for a, b in itertools.pairwise(plan))
    assert [s.length for s in steps(5, horizon=3)] == [1, 1, 1]
    assert sum(s.length for s in steps(58)) == 2


def test_rate_scenarios_spread_with_the_observed_changes():
    history = np.array([[100.0, 10.0], [100.0, 0.0], [100.0, 40.0], [100.0, 0.0], [100.0, 30.0]])
    spread = rate_scenarios(history)
    assert spread is not None and spread.shape == (2, 5)
    assert np.all(spread[0] == 0.0)  # a steady tenant: no headroom is worth anything
    assert spread[1, 0] < -20 and spread[1, -1] > 20  # a bursty one: both ways
    assert rate_scenarios(history[:3]) is None


def test_the_burst_case_gives_spare_capacity_to_tenants_instead_of_leaving_it_idle():
    # Two A30s for a load one 2g carries; tenant a's job cannot complete (worthless).
    workload = small_workload(gpus=2, samples=1e9)
    sim = Simulator(workload)
    state = sim.initial_state()
    state.active[0] = True
    rates = workload.rates[1]
    cluster = state_at(sim, 1, state, None, rates)

    def simulate(config, scale):
        outcome, _ = sim.step(1, state.copy(), sim.encode(config), None, scale * rates)
        return float(outcome.goodput.sum()), outcome.capacity

    point = IlpPlanner(horizon=1, gap=0.0, time_limit=None, burst=None).plan(cluster)
    _, capacity = simulate(point.configuration, 1.0)
    assert np.all(capacity >= rates) and not np.all(capacity >= 2 * rates)  # no value for headroom
    p, factor = BURST
    burst = IlpPlanner(horizon=1, gap=0.0, time_limit=None).plan(cluster)
    usual, capacity = simulate(burst.configuration, 1.0)
    spike, _ = simulate(burst.configuration, factor)
    assert np.all(capacity >= factor * rates)  # room for the spike, for every tenant
    # Its objective is the expected simulated goodput over the two cases.
    assert burst.objective == pytest.approx((1 - p) * usual + p * spike, rel=1e-6)
    with pytest.raises(RlmigError, match="burst must be"):
        IlpPlanner(burst=(1.0, 2.0))


def test_a_node_brought_up_gives_every_slice_an_owner():
    # Nothing in place: creating instances changes nothing that runs, so spare slices go to tenants
    # (load beyond any case the model weighs) instead of staying unpartitioned.
    workload = small_workload(gpus=3, samples=1e9, rate_a=30.0, rate_b=15.0)
    sim = Simulator(workload)
    decision = IlpPlanner(gap=0.0, time_limit=None).plan(
        state_at(sim, 0, sim.initial_state(), None, workload.rates[0])
    )
    for g in decision.configuration.gpus:
        assert sum(i.profile.compute for i in g.layout.instances) == workload.gpu.compute_slices
        assert all(owner is not None for owner in g.owners)


def test_the_myopic_variant_is_named_apart():
    assert make_planner("ilp").name == "ilp"
    assert make_planner("ilp-myopic").name == "ilp-myopic"
    assert make_planner("ilp", horizon=2).name == "ilp-myopic"
    with pytest.raises(RlmigError, match="horizon must be at least 1"):
        make_planner("ilp", horizon=0)


def test_plan_reports_the_solver_objective_and_the_simulated_goodput_apart(capsys):
    from rlmig.cli import main

    path = str(SCENARIOS / "azure-retrain.yaml")
    assert main(["plan", path, "--planner", "ilp", "--time-limit", "0", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    # The objective covers the rest of the retraining windows (15 intervals here), the goodput this one.
    assert document["objective"] > 5 * document["goodput"] > 0
    assert main(["plan", path, "--planner", "ilp", "--time-limit", "0"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "objective" in text and "simulated goodput of this interval" in text


def test_the_time_limit_defaults_by_mode_and_is_checked():
    planner = IlpPlanner()
    assert planner.limit("dynamic") == 2.0 and planner.limit("serve") == 10.0
    assert IlpPlanner(time_limit=None).limit("dynamic") is None
    assert IlpPlanner(time_limit=7.5).limit("serve") == 7.5
    for bad in (-1.0, float("nan")):
        with pytest.raises(RlmigError, match="time limit must be a number of seconds"):
            IlpPlanner(time_limit=bad)


def one_tenant(load: float = 1.0, **extra):
    """One resnet50 tenant on two A100-80GB GPUs (dynamic unless `extra` says otherwise)."""
    spec = {"gpu": "A100-80GB", "gpus": 2, "interval_s": 60, "duration_s": 600, "downtime_s": 5, **extra}
    return parse_workload(
        {**spec, "tenants": [{"name": "v", "model": "resnet50", "slo_ms": 100, "load": load}]}
    )


def beyond_two_mig_gpus(sim: Simulator) -> float:
    """A rate of the one tenant that two whole GPUs with MIG off carry and no two MIG GPUs do (nor one
    of each)."""
    whole = sim.time_shared_capacity(0, 1)
    mig = max(float(np.dot(mix, sim.serve_rate[0])) for mix in layout_mixes(sim.gpu))  # best MIG layout
    assert whole > mig > 0
    return 2 * whole - 0.1 * (whole - mig)


def test_a_tenant_beyond_its_mig_capacity_gets_whole_gpus_with_mig_off():
    # One tenant loaded past what 7g instances carry: MIG disabled gives it the GPU's every SM.
    sim = Simulator(one_tenant())
    rates = np.array([beyond_two_mig_gpus(sim)])
    state = sim.initial_state()
    exact = IlpPlanner(horizon=1, gap=0.0, time_limit=None, burst=None)
    decision = exact.plan(state_at(sim, 0, state, None, rates))
    assert all(not g.mig_enabled and g.time_shared == ("v",) for g in decision.configuration.gpus)
    outcome, _ = sim.step(0, state.copy(), sim.encode(decision.configuration), None, rates)
    assert decision.objective == pytest.approx(float(outcome.goodput.sum()), rel=1e-6)
    # MIG disabled is kept as it is (no change, no downtime) while it serves best ...
    again = exact.plan(state_at(sim, 1, state, decision.configuration, rates))
    assert again.configuration == decision.configuration
    # ... MIG comes back when the load falls to what instances carry beside another use ...
    light = exact.plan(state_at(sim, 1, state, decision.configuration, rates / 10))
    assert all(g.mig_enabled for g in light.configuration.gpus)
    # ... and mig_off=False (the policy's expert, a node that may not change modes) keeps MIG on.
    mig_only = IlpPlanner(horizon=1, gap=0.0, time_limit=None, burst=None, mig_off=False)
    assert all(g.mig_enabled for g in mig_only.plan(state_at(sim, 0, state, None, rates)).configuration.gpus)


def test_the_serve_ilp_plans_mig_instances_only_and_proves_the_gpu_count():
    # Two whole GPUs with MIG off would carry the load; serve plans stay on MIG instances (measured
    # segments), so it takes three, proven.
    serve = {"gpus": 4, "mode": "serve", "duration_s": 60}
    load = beyond_two_mig_gpus(Simulator(one_tenant(**serve)))
    run = run_planner(one_tenant(load, **serve), IlpPlanner(time_limit=None))
    decision = run.decisions[0]
    assert decision.optimal and decision.objective == 3
    assert all(g.mig_enabled for g in decision.configuration.gpus)
    assert sum(g.used for g in decision.configuration.gpus) == 3


def test_the_fewest_slices_carrying_a_rate_match_enumeration():
    from rlmig.planners.ilp import _fewest_slices

    units = [(1, 10.0), (2, 25.0), (3, 33.0), (7, 120.0)]
    for rate in [0.0, 5.0, 10.0, 10.5, 24.0, 26.0, 50.0, 58.0, 119.0, 121.0, 250.0]:
        best = min(
            sum(c * k for (c, _), k in zip(units, counts, strict=True))
            for counts in itertools.product(range(26), range(11), range(9), range(4))
            if sum(r * k for (_, r), k in zip(units, counts, strict=True)) >= rate
        )
        assert _fewest_slices(units, rate, 100) == best
    assert _fewest_slices(units, 1e6, 100) is None  # beyond what 100 slices carry


def test_a_node_that_may_not_change_modes_gets_no_mig_off_from_any_planner_it_runs():
    from rlmig.cli.common import make_planner_from_flags

    for name in ("ilp", "ilp-myopic", "ilp-foresight"):
        assert make_planner_from_flags(name, None, None).mig_off
        planner = make_planner_from_flags(name, None, None, mode_changes=False)
        assert not planner.mig_off and "MIG off" not in planner.objective
    # the rl planner's fallback (and guard) too: the policy itself never turns MIG off
    rl = make_planner_from_flags("rl", None, None, fallback="ilp", mode_changes=False)
    assert not rl._fallback.mig_off
    assert make_planner_from_flags("rl", None, None, fallback="ilp")._fallback.mig_off


def test_the_policy_expert_refuses_an_ilp_that_may_turn_mig_off():
    from rlmig.agents.expert import Expert
    from rlmig.envs.mig_reconfig import MigReconfigEnv

    env = MigReconfigEnv(small_workload())
    with pytest.raises(ValueError, match="MIG layouts only"):
        Expert(env, IlpPlanner(horizon=1))
    assert not Expert(env, IlpPlanner(horizon=1, mig_off=False)).planner.mig_off


def test_fixed_owners_on_a_gpu_running_mig_off_start_from_a_feasible_layout():
    # DAgger-style fixed owner on a GPU the configuration in place runs MIG-off: the start must put a
    # layout there (no time to search: the start is the answer).
    workload = small_workload(gpu="A100-80GB", gpus=2)
    sim = Simulator(workload)
    gpu = sim.gpu
    current = Configuration(gpu, (GpuConfig.whole(gpu, ["a"]), GpuConfig(gpu.empty_layout(), ())))
    inst = gpu.layout(["7g.80gb@0"]).instances[0]
    fixed = FixedChoices(owners={(0, inst): Owner("b")})
    state = state_at(sim, 1, sim.initial_state(), current, workload.rates[1])
    decision = IlpPlanner(horizon=1, time_limit=0.0).expert(state, fixed)
    assert decision.configuration.gpus[0].mig_enabled
    assert dict(decision.configuration.gpus[0].items())[inst] == Owner("b")


def test_without_mode_changes_every_gpu_keeps_its_mig_mode():
    workload = one_tenant(100.0)
    sim = Simulator(workload)
    gpu = sim.gpu
    current = Configuration(gpu, (GpuConfig.whole(gpu, ["v"]), GpuConfig.whole(gpu, [])))
    state = state_at(sim, 1, sim.initial_state(), current, workload.rates[1])
    # Light load: allowed to, the ILP turns MIG back on (a mode change) ...
    free = IlpPlanner(horizon=1, gap=0.0, time_limit=None, burst=None).plan(state).configuration
    assert any(g.mig_enabled for g in free.gpus)
    # ... without mode changes both GPUs stay MIG-off, the tenant where it was; its start is feasible.
    for limit in (None, 0.0):
        kept = IlpPlanner(horizon=1, gap=0.0, time_limit=limit, burst=None, mig_off=False).plan(state)
        assert [g.mig_enabled for g in kept.configuration.gpus] == [False, False]
        assert kept.configuration.gpus[0].time_shared == ("v",)


def test_as_is_on_a_node_that_may_not_change_modes_is_a_one_line_error():
    from rlmig.cli.common import make_planner_from_flags

    with pytest.raises(RlmigError, match=r"as-is runs every GPU with MIG off.*--allow-mode-change"):
        make_planner_from_flags("as-is", None, None, mode_changes=False)
    with pytest.raises(RlmigError, match="--allow-mode-change"):
        make_planner_from_flags("rl", None, None, fallback="as-is", mode_changes=False)
    assert make_planner_from_flags("as-is", None, None).name == "as-is"
