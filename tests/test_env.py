"""The Gymnasium environment: the checker, masks that only allow valid configurations, determinism,
the reward, and the expert reproducing the ILP planner."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import rlmig.envs
from rlmig.agents.expert import Expert
from rlmig.catalog import catalog
from rlmig.envs import MigReconfigEnv
from rlmig.envs.scenarios import ScenarioSampler
from rlmig.planners import make_planner, run_planner
from rlmig.planners.ilp import IlpPlanner
from rlmig.workload import load_workload

SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"
SMALL = ScenarioSampler(max_gpus=3, max_tenants=4, intervals=4)


def test_registered_and_passes_the_checker():
    assert rlmig.envs.MigReconfigEnv is MigReconfigEnv
    env = gym.make("rlmig/MigReconfig-v0", workload=SCENARIOS / "spike-shift.yaml")
    check_env(env.unwrapped, skip_render_check=True)
    assert env.action_space.n == len(env.unwrapped.spec_.layouts) + 1 == 79
    assert env.observation_space.shape == (env.unwrapped.spec_.obs_size,)


def rollout(env: MigReconfigEnv, rng: np.random.Generator, check: bool = True):
    total, configs = 0.0, []
    while True:
        mask = env.action_masks()
        assert mask.any()
        action = int(rng.choice(np.flatnonzero(mask)))
        interval = env.interval
        obs, reward, terminated, truncated, info = env.step(action)
        assert not info["illegal_action"] and not truncated
        assert env.observation_space.contains(obs)
        total += reward
        if env.interval != interval:
            configs.append(env.current)
        if terminated:
            return total, configs


def assert_runnable(env: MigReconfigEnv, config) -> None:
    sim = env.sim
    retraining = []
    for gpu_config in config.gpus:
        assert sim.gpu.why_invalid(gpu_config.layout.instances) is None
    for placed in config.placed():
        if placed.owner is None:
            continue
        t = sim.tenant_index[placed.owner.tenant]
        j = sim.profile_index[placed.instance.profile.id]
        if placed.owner.role == "inference":
            assert sim.serve_rate[t, j] > 0, (
                f"{placed.owner} has no SLO-feasible segment on {placed.instance}"
            )
        else:
            assert sim.train_rate[t, j] > 0 and sim.has_retraining[t]
            retraining.append(t)
    assert len(retraining) == len(set(retraining))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_random_masked_rollouts_only_build_valid_runnable_configurations(seed):
    env = MigReconfigEnv(sampler=SMALL)
    env.reset(seed=seed)
    _, configs = rollout(env, np.random.default_rng(seed))
    assert len(configs) == env.workload.intervals
    for config in configs:
        assert_runnable(env, config)


def test_deterministic_under_a_seed():
    def episode(seed):
        env = MigReconfigEnv(sampler=SMALL)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(7)
        observations, rewards = [obs], []
        while True:
            action = int(rng.choice(np.flatnonzero(env.action_masks())))
            obs, reward, terminated, _, _ = env.step(action)
            observations.append(obs)
            rewards.append(reward)
            if terminated:
                return np.array(observations), np.array(rewards)

    a, b, c = episode(3), episode(3), episode(4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_return_is_the_goodput_ratio_times_the_intervals():
    env = MigReconfigEnv(load_workload(SCENARIOS / "azure-retrain.yaml"))
    env.reset(seed=0)
    total, _ = rollout(env, np.random.default_rng(0))
    arrivals = env.workload.rates.sum() * env.workload.interval_s
    assert total / env.workload.intervals == pytest.approx(sum(env.goodputs) / arrivals)


def test_expert_episode_reaches_the_ilp_planners_goodput():
    workload = load_workload(SCENARIOS / "spike-shift.yaml")
    env = MigReconfigEnv(workload)
    expert = Expert(env, IlpPlanner(horizon=1, time_limit=None, mig_off=False))  # no test rests on the clock
    env.reset(seed=0)
    while True:
        _, _, terminated, _, _ = env.step(expert.action())
        if terminated:
            break
    run = run_planner(workload, make_planner("ilp-myopic", time_limit=None))
    planned = [float(o.goodput.sum()) for o in run.result.intervals]
    assert env.goodputs == pytest.approx(planned, rel=1e-9)


def test_expert_answers_from_states_the_policy_chose():
    env = MigReconfigEnv(load_workload(SCENARIOS / "spike-shift.yaml"))
    expert = Expert(env)
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(6):  # DAgger: the expert labels states a (here random) policy visits
        label = expert.action()
        assert env.action_masks()[label]
        env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))


def _exact_expert(env: MigReconfigEnv) -> Expert:
    """An expert whose every answer is a proven optimum (no gap, no clock), planning one interval."""
    return Expert(env, IlpPlanner(horizon=1, time_limit=None, gap=0.0, mig_off=False))


def test_actions_the_expert_calls_equivalent_lose_nothing_against_its_own():
    """Every action in `equivalent_actions` leaves the oracle's optimum where it was (re-solved with that
    action fixed), and some legal action outside the set does not: the set is neither padded nor
    just the label."""
    sampler = ScenarioSampler(max_gpus=6, max_tenants=6, intervals=4)
    env = MigReconfigEnv(sampler=sampler)
    expert = _exact_expert(env)
    env.reset(seed=1)  # 3 GPUs alike at the start, 4 tenants
    taken: list[int] = []
    checked = outside = 0
    while checked < 3 and len(taken) < 100:
        same = expert.equivalent_actions()
        label = expert.action()
        assert same[label] and not (same & ~env.action_masks()).any()
        if same.sum() > 1:
            best = expert._choices().decision.objective
            others = [a for a in np.flatnonzero(env.action_masks()) if not same[a]]
            for action in [*np.flatnonzero(same), *others[:: max(1, len(others) // 8)]]:
                replay = MigReconfigEnv(sampler=sampler)
                replay.reset(seed=1)
                for earlier in taken:
                    replay.step(earlier)
                replay.step(int(action))
                value = _exact_expert(replay)._choices().decision.objective
                if same[action]:
                    assert value == pytest.approx(best, rel=1e-6)
                elif value < best * (1 - 1e-6):
                    outside += 1
            checked += 1
        env.step(label)
        taken.append(label)
    assert checked == 3 and outside > 0


def test_an_action_outside_the_mask_takes_the_default():
    env = MigReconfigEnv(load_workload(SCENARIOS / "spike-shift.yaml"))
    env.reset(seed=0)
    env.step(0)  # the first layout; now in the owner phase of its first instance
    masked = np.flatnonzero(~env.action_masks())
    _, _, _, _, info = env.step(int(masked[-1]))
    assert info["illegal_action"]


def test_scenario_splits_never_share_seeds_or_trace_stretches():
    train = [ScenarioSampler(split="train").spec(np.random.default_rng(s)) for s in range(40)]
    held_out = [ScenarioSampler(split="eval").spec(np.random.default_rng(s)) for s in range(40)]

    def loads(specs):
        return [t["load"] for spec in specs for t in spec["tenants"] if isinstance(t["load"], dict)]

    train_seeds = {ld["seed"] for ld in loads(train) if "seed" in ld}
    eval_seeds = {ld["seed"] for ld in loads(held_out) if "seed" in ld}
    assert train_seeds and eval_seeds and not train_seeds & eval_seeds
    half = 3424 / 2
    for ld in loads(train):
        if "series" in ld:
            assert ld["offset_s"] + ld["span_s"] <= half + 1
    for ld in loads(held_out):
        if "series" in ld:
            assert ld["offset_s"] >= half - 1
    again = ScenarioSampler(split="eval").fixed(3, seed=5)
    assert [w.rates.tolist() for w in again] == [
        w.rates.tolist() for w in ScenarioSampler(split="eval").fixed(3, seed=5)
    ]


def test_drawn_episodes_span_two_windows_of_drawn_intervals():
    sampler = ScenarioSampler(intervals=(20, 40), window_intervals=(4, 20), interval_s=(30, 900))
    specs = [sampler.spec(np.random.default_rng(s)) for s in range(40)]
    assert {spec["interval_s"] for spec in specs} == {30, 900}
    lengths = [round(spec["duration_s"] / spec["interval_s"]) for spec in specs]
    assert min(lengths) >= 20 and max(lengths) <= 40 and len(set(lengths)) > 5
    windows = []
    for spec, length in zip(specs, lengths, strict=True):
        for tenant in spec["tenants"]:
            if "retraining" in tenant:
                window = round(tenant["retraining"]["window_s"] / spec["interval_s"])
                assert 4 <= window <= length // 2  # at least two windows per episode
                windows.append(window)
    assert max(windows) > 10  # longer than the default sampler's windows
    # a fixed episode length draws nothing more: 20 intervals of 60 s, as before the ranges existed
    default = ScenarioSampler().spec(np.random.default_rng(3))
    assert default["interval_s"] == 60.0 and default["duration_s"] == 1200.0


def test_job_share_sizes_retraining_jobs_against_a_3_slice_instance():
    models = catalog("A100-80GB")
    for share in ((0.1, 0.6), (1.0, 1.5)):
        sampler = ScenarioSampler(job_share=share, retraining=1.0)
        for seed in range(10):
            spec = sampler.spec(np.random.default_rng(seed))
            for tenant in spec["tenants"]:
                job = tenant["retraining"]
                trained = models[tenant["model"]].train_throughput(3) * job["window_s"]
                assert share[0] - 1e-3 <= job["samples"] / trained <= share[1] + 1e-3
    # the default draws what it drew before the range existed
    assert ScenarioSampler().spec(np.random.default_rng(3)) == ScenarioSampler(job_share=(0.1, 0.6)).spec(
        np.random.default_rng(3)
    )
    for bad in ((0.5, 0.2), 0.5, (0.1, float("inf")), ("a", "b"), (0.1,)):
        with pytest.raises(ValueError, match=r"job_share: .* is not a range \[low, high\] of finite shares"):
            ScenarioSampler(job_share=bad)
