"""Agents: the tiny training runs end to end, the numpy export acts as the torch policy, checkpoints
load without unpickling, the RL planner and its guard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

from sb3_contrib import MaskablePPO

from rlmig.agents.export import numpy_policy
from rlmig.agents.train import load_config, train
from rlmig.envs import MigReconfigEnv
from rlmig.errors import ConfigError, RlmigError
from rlmig.planners import make_planner, run_planner
from rlmig.planners.rl import RlPlanner
from rlmig.policy import NumpyPolicy, load_checkpoint, load_policy
from rlmig.workload import load_workload

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "agents" / "configs" / "tiny.yaml"
SCENARIO = ROOT / "eval" / "scenarios" / "spike-shift.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    folder = train(TINY, run, run / "checkpoint")
    return run, folder


def test_tiny_training_writes_a_checkpoint_and_resumes(trained):
    run, folder = trained
    policy, card, spec = load_checkpoint(folder)
    assert spec.gpu.name == "A100-80GB" and card["features"] == list(spec.feature_names())
    assert card["gpu_model"] == "A100-80GB" and card["max_gpus"] == 8 and card["max_tenants"] == 8
    assert card["training_config"]["name"] == "tiny" and "mean_goodput_ratio" in card["evaluation"]
    progress = json.loads((run / "progress.json").read_text())
    assert {"demonstrations", "dagger", "ppo"} <= set(progress)
    assert (run / "tb").is_dir() and any((run / "tb").rglob("events.out.tfevents.*"))
    again = train(TINY, run, run / "again")  # every phase done: resumes straight to the export
    assert json.loads((run / "progress.json").read_text())["ppo"] == progress["ppo"]
    assert np.array_equal(load_policy(again)[0].weights[0], policy.weights[0])


def test_numpy_policy_acts_as_the_torch_policy(trained):
    run, _ = trained
    model = MaskablePPO.load(run / "ppo_final.zip", device="cpu")
    policy = numpy_policy(model.policy)
    env = MigReconfigEnv(load_workload(SCENARIO))
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for step in range(300):
        mask = env.action_masks()
        torch_action, _ = model.predict(obs, action_masks=mask, deterministic=True)
        assert policy.act(obs, mask) == int(torch_action)
        obs, _, terminated, _, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        if terminated:
            obs, _ = env.reset(seed=step)
    random_obs = rng.uniform(0, 3, (50, env.spec_.obs_size)).astype(np.float32)
    for row in random_obs:
        mask = rng.random(env.spec_.n_actions) < 0.3
        mask[0] = True
        torch_action, _ = model.predict(row, action_masks=mask, deterministic=True)
        assert policy.act(row, mask) == int(torch_action)


def test_loading_never_unpickles_and_checks_the_card(trained, tmp_path):
    _, folder = trained
    bad = tmp_path / "pickled"
    shutil.copytree(folder, bad)
    np.save(bad / "w0.npy", np.array([object()], dtype=object), allow_pickle=True)
    with np.load(folder / "policy.npz") as data:
        arrays = dict(data)
    arrays["w0"] = np.array([{"evil": 1}], dtype=object)
    np.savez(bad / "policy.npz", **arrays)
    with pytest.raises(RlmigError, match="cannot read the weights"):
        load_policy(bad)

    card = json.loads((folder / "card.json").read_text())
    for change, message in [
        ({"format": "other"}, "not an rlmig-policy/2 card"),
        ({"observation_version": 99}, "observation version differ"),
        ({"actions": {**card["actions"], "layout": card["actions"]["layout"][1:]}}, "actions differ"),
        ({"activation": "gelu"}, "unknown activation"),
        # Same size, another meaning: two features swapped is refused, not only a size change.
        (
            {"features": [card["features"][1], card["features"][0], *card["features"][2:]]},
            r"observation features differ .*entry 0: 'tenant0.rate\[-3\]' here 'tenant0.present'",
        ),
    ]:
        target = tmp_path / f"card-{len(change)}-{next(iter(change))}"
        shutil.copytree(folder, target)
        (target / "card.json").write_text(json.dumps({**card, **change}))
        with pytest.raises(RlmigError, match=message):
            load_checkpoint(target)
    with pytest.raises(RlmigError, match="cannot read the checkpoint card"):
        load_checkpoint(tmp_path / "nowhere")


def test_rl_planner_runs_and_its_guard_overrules_a_bad_proposal(trained):
    _, folder = trained
    workload = load_workload(SCENARIO)
    run = run_planner(workload, RlPlanner(folder), forecaster="last")
    assert run.result.metrics.goodput_ratio > 0
    # A policy that always picks the first layout and leaves every instance idle proposes nothing useful.
    env = MigReconfigEnv(gpu="A100-80GB")
    size, actions = env.spec_.obs_size, env.spec_.n_actions
    bias = np.full(actions, -1.0, np.float32)
    bias[0] = 1.0
    idle = NumpyPolicy((np.zeros((actions, size), np.float32),), (bias,))
    unguarded = run_planner(workload, RlPlanner(policy=idle, guard=False), forecaster="last")
    guarded = run_planner(workload, RlPlanner(policy=idle, guard=True), forecaster="last")
    assert unguarded.result.metrics.goodput_ratio == 0.0
    assert guarded.result.metrics.goodput_ratio > 0.5
    # Every interval the guard kept something else than the idle proposal, and the run counts it.
    assert unguarded.guard_overrules == 0 and guarded.guard_overrules == workload.intervals
    assert guarded.fallback_decisions == 0 and guarded.decided_by("rl") == "rl"


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("imitation: {episodes: 2, epoch: 3}\n")
    with pytest.raises(ConfigError, match=r"imitation\.epoch: unknown field"):
        load_config(bad)
    bad.write_text("colour: red\n")
    with pytest.raises(ConfigError, match="colour: unknown field"):
        load_config(bad)
    bad.write_text("scenarios: {max_gpu: 2}\n")
    with pytest.raises(ConfigError, match="scenarios: "):
        load_config(bad)
    assert load_config(TINY).ppo.timesteps == 256


def test_workloads_beyond_the_policy_are_an_error_unless_a_fallback_is_asked_for(trained):
    _, folder = trained
    big = load_workload(ROOT / "eval" / "scenarios" / "parvagpu-slo6.yaml")  # 24 GPUs, 11 tenants
    with pytest.raises(
        RlmigError, match=r"at most 8 GPUs and 8 tenants; the workload has 24 GPUs.*--fallback"
    ):
        run_planner(big, RlPlanner(folder))
    run = run_planner(big, RlPlanner(folder, fallback="parva"))
    parva = run_planner(big, make_planner("parva"))
    assert [str(c) for c in run.result.configurations] == [str(c) for c in parva.result.configurations]
    assert run.fallback_decisions == len(run.decisions) == 1
    assert run.decided_by("rl") == "rl (fallback parva: workload beyond the policy)"
    with pytest.raises(RlmigError, match="unknown planner 'nope'"):
        RlPlanner(folder, fallback="nope")


def test_the_guard_and_fallback_planners_are_reset_with_the_rl_planner(trained, monkeypatch):
    # A stateful planner (ekya keeps its layout for a run) must start every run afresh, including the
    # first one: the guard's and the fallback's planners exist before the first reset.
    from rlmig.planners import PLANNERS
    from rlmig.planners.parva import ParvaPlanner

    resets: list[str] = []

    class Counting(ParvaPlanner):
        def reset(self, workload):
            resets.append(workload.name)
            super().reset(workload)

    monkeypatch.setitem(PLANNERS, "counting", Counting)
    _, folder = trained
    workload = load_workload(SCENARIO)
    planner = RlPlanner(folder, guard_with=["counting"], fallback="counting")
    run_planner(workload, planner, forecaster="last")
    assert resets == [workload.name, workload.name]  # the guard's and the fallback's, before deciding
