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
