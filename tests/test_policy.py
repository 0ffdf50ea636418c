"""The policy codec and the numpy set policy: named entries hold what their names say, one set of weights
decides any cluster size, and the cached encodings never change a decision."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlmig.eval.sweep import cluster_workload
from rlmig.loop import DecisionLoop
from rlmig.policy import DecisionCodec, PolicySpec, SetPolicy
from rlmig.workload import load_workload

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"


def codec_at_first_interval(workload):
    loop = DecisionLoop(workload, forecaster="last", horizon=2, cache=False)
    loop.observe(workload.rates[0])
    codec = DecisionCodec(PolicySpec.for_gpu(workload.gpu).sized(len(workload.tenants)))
    state = loop.cluster_state(loop.placed, loop.forecast())
    return codec, codec.begin(state)


def test_every_named_entry_holds_what_its_name_says():
    workload = load_workload(SCENARIOS / "azure-retrain.yaml")  # 2 GPUs, 4 tenants
    codec, obs = codec_at_first_interval(workload)
    spec = codec.spec
    named = dict(zip(spec.feature_names(), obs.tolist(), strict=True))
    assert len(named) == spec.obs_size == len(obs)
    assert [named[f"tenant{t}.present"] for t in range(spec.max_tenants)] == [1.0] * 4 + [0.0] * 4
    assert named["phase=layout"] == 1.0 and named["phase=owner"] == 0.0
    assert named["gpus.decided"] == 0.0 and named["gpus.left"] == 1.0
    assert named["gpus.log2_count"] == 0.25  # log2(2) / 4
    assert named["tenants_per_gpu"] == 2.0 and named["cursor.instance=none"] == 1.0
    codec.choose(0)  # the first GPU takes the first maximal layout: now its instances' owners
    named = dict(zip(spec.feature_names(), codec.observation().tolist(), strict=True))
    assert named["phase=owner"] == 1.0 and named["cursor.instance.start"] == 0.0
    first = spec.layouts[0].instances[0]
    assert named[f"cursor.instance={first.profile.name}"] == 1.0
    assert named["tenant0.instance.capacity"] > 0.0  # chat can serve on it
    assert named["tenant0.decided_capacity"] == 0.0 and codec.action_masks()[1]
    codec.choose(1)  # chat's inference
    named = dict(zip(spec.feature_names(), codec.observation().tolist(), strict=True))
    assert named["tenant0.decided_capacity"] > 0.0
    if len(spec.layouts[0].instances) > 1:  # the next instance of the first GPU
        second = spec.layouts[0].instances[1]
        assert named["cursor.instance.start"] == second.start / workload.gpu.slots > 0.0
    else:  # the second GPU's layout
        assert named["phase=layout"] == 1.0 and named["gpus.decided"] == named["gpus.left"] == 0.5


def test_the_cached_encodings_never_change_an_action():
    rng = np.random.default_rng(0)
    for gpus, tenants in ((2, 3), (16, 12), (3, 3)):  # the same policy object across sizes
        workload = cluster_workload(gpus, tenants)
        codec, obs = codec_at_first_interval(workload)
        policy = SetPolicy.initial(codec.spec, hidden=16, seed=1, scale=0.5)
        fresh = SetPolicy.initial(codec.spec, hidden=16, seed=1, scale=0.5)
        while True:
            mask = codec.action_masks()
            action = policy.act(obs, mask)
            assert action == int(np.argmax(np.where(mask, fresh.logits(obs), -np.inf)))
            if codec.choose(action if rng.random() < 0.7 else int(rng.choice(np.flatnonzero(mask)))):
                break
            obs = codec.observation()
        assert len(codec.decided_configuration().gpus) == gpus


def test_padding_rows_and_their_order_do_not_change_the_scores():
    workload = cluster_workload(4, 3)
    codec, obs = codec_at_first_interval(workload)  # 8 rows, 3 tenants
    policy = SetPolicy.initial(codec.spec, hidden=16, seed=2, scale=0.5)
    exact = DecisionCodec(PolicySpec.for_gpu(workload.gpu, max_tenants=3))
    loop = DecisionLoop(workload, forecaster="last", horizon=2, cache=False)
    loop.observe(workload.rates[0])
    small = exact.begin(loop.cluster_state(loop.placed, loop.forecast()))
    assert len(small) < len(obs)
    assert np.allclose(
        policy.logits(obs)[: codec.spec.keep_action + 1],
        policy.logits(small)[: exact.spec.keep_action + 1],
        atol=1e-5,
    )


def test_finish_entries_say_how_much_of_the_job_one_instance_finishes_in_its_window():
    workload = load_workload(SCENARIOS / "azure-retrain.yaml")
    codec, obs = codec_at_first_interval(workload)
    spec, sim = codec.spec, codec.sim
    named = dict(zip(spec.feature_names(), obs.tolist(), strict=True))
    retraining = np.flatnonzero(sim.has_retraining)
    assert len(retraining) and not sim.has_retraining.all()
    dyn = sim.dynamics
    for t in range(len(workload.tenants)):
        assert named[f"tenant{t}.retraining_running"] == float(sim.has_retraining[t])  # a window starts
        for profile in spec.profiles:
            rate = sim.train_rate[t, sim.profile_index[profile.id]]
            seconds = dyn.window_intervals[t] * dyn.interval_s - dyn.downtime_s
            want = min(rate * seconds / sim.samples[t], 2.0) if sim.has_retraining[t] else 0.0
            assert np.isclose(named[f"tenant{t}.finish[{profile.name}]"], want, rtol=1e-5)
    assert any(named[f"tenant{t}.finish[{spec.profiles[-1].name}]"] > 0 for t in retraining)
    codec.choose(0)  # in the owner phase, the instance being decided: its profile's entry per tenant
    owner_phase = dict(zip(spec.feature_names(), codec.observation().tolist(), strict=True))
    first = spec.layouts[0].instances[0].profile.name
    for t in range(len(workload.tenants)):
        assert owner_phase[f"tenant{t}.instance.finish"] == named[f"tenant{t}.finish[{first}]"]
    assert named[f"tenant{retraining[0]}.instance.finish"] == 0.0  # no instance in the layout phase


def test_a_job_that_completed_shows_nothing_left_to_finish_until_its_next_window():
    workload = load_workload(SCENARIOS / "azure-retrain.yaml")
    loop = DecisionLoop(workload, forecaster="last", horizon=2, cache=False)
    loop.observe(workload.rates[0])
    state = loop.cluster_state(loop.placed, loop.forecast())
    sim = state.simulator
    t = int(np.flatnonzero(sim.has_retraining)[0])
    done = type(state.tenants)(
        state.tenants.accuracy, sim.samples.copy(), np.zeros_like(state.tenants.active)
    )
    later = type(state)(**{**state.__dict__, "interval": 1, "tenants": done})
    _, progress, running, left = later.upcoming()
    assert not running[t] and progress[t] == sim.samples[t]
    assert left[t] == (sim.dynamics.window_intervals[t] - 1) * sim.dynamics.interval_s
    codec = DecisionCodec(PolicySpec.for_gpu(workload.gpu))
    named = dict(zip(codec.spec.feature_names(), codec.begin(later).tolist(), strict=True))
    assert all(named[f"tenant{t}.finish[{p.name}]"] == 0.0 for p in codec.spec.profiles)
    assert named[f"tenant{t}.retraining_progress"] == 1.0 and named[f"tenant{t}.retraining_running"] == 0.0
