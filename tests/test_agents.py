"""Agents: the tiny training runs end to end, the numpy export acts as the torch policy, checkpoints
load without unpickling, the RL planner and its guard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("sb3_contrib")

import torch
from sb3_contrib import MaskablePPO

from rlmig.agents.export import numpy_policy
from rlmig.agents.train import load_config, train
from rlmig.envs import MigReconfigEnv
from rlmig.errors import ConfigError, RlmigError
from rlmig.planners import make_planner, run_planner
from rlmig.planners.rl import RlPlanner
from rlmig.policy import PolicySpec, SetPolicy, load_checkpoint, load_policy
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
    assert spec.gpu.name == "A100-80GB" and card["tenant_features"] == list(spec.tenant_names())
    assert card["gpu_model"] == "A100-80GB" and card["architecture"] == "set" and card["hidden"] == 16
    assert "max_tenants" not in card and "max_gpus" not in card  # the weights fit any size
    assert card["training_config"]["name"] == "tiny" and "mean_goodput_ratio" in card["evaluation"]
    for row in card["evaluation"]["per_scenario"]:  # the hindsight bound beside every planner
        assert row["bound_proven"] and row["bound"] >= max(row["rl"], row["rl-unguarded"], row["ilp"]) - 1e-4
    selection = card["selection"]  # the weights kept: the best alone on validation scenarios
    scores = selection["goodput_ratio_alone"]
    assert {"imitated.zip", "ppo_128_steps.zip", "ppo_final.zip"} <= set(scores)
    assert selection["validation_scenarios"] == 2 and scores[selection["kept"]] == max(scores.values())
    kept = numpy_policy(MaskablePPO.load(run / selection["kept"], device="cpu").policy)
    assert np.array_equal(kept.params["enc0.w"], policy.params["enc0.w"])
    progress = json.loads((run / "progress.json").read_text())
    assert {"demonstrations", "dagger", "ppo"} <= set(progress)
    assert (run / "tb").is_dir() and any((run / "tb").rglob("events.out.tfevents.*"))
    again = train(TINY, run, run / "again")  # every phase done: resumes straight to the export
    assert json.loads((run / "progress.json").read_text())["ppo"] == progress["ppo"]
    assert np.array_equal(load_policy(again)[0].params["enc0.w"], policy.params["enc0.w"])


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


def test_one_set_of_weights_scores_any_number_of_tenants_as_the_torch_network_does(trained):
    run, _ = trained
    model = MaskablePPO.load(run / "ppo_final.zip", device="cpu")
    policy = numpy_policy(model.policy)
    spec = PolicySpec.for_gpu(load_workload(SCENARIO).gpu)
    rng = np.random.default_rng(1)
    for tenants in (1, 8, 40):
        sized = PolicySpec.for_gpu(spec.gpu, tenants)
        obs = rng.uniform(0, 2, (20, sized.obs_size)).astype(np.float32)
        rows = obs[:, : tenants * sized.tenant_width].reshape(20, tenants, -1)
        rows[:, :, 0] = rng.random((20, tenants)) < 0.7  # "present"
        phase = tenants * sized.tenant_width + spec.phase_index  # layout phase, then owner phase
        obs[:, phase] = rng.random(20) < 0.5
        obs[:, phase + 1] = 1.0 - obs[:, phase]
        with torch.no_grad():
            expected = model.policy.mlp_extractor.forward_actor(torch.as_tensor(obs)).numpy()
        got = policy.logits(obs)
        assert got.shape == (20, sized.n_actions) == expected.shape
        assert np.allclose(got, expected, atol=1e-5)
    # A tenant row's place does not matter: the rows permuted, each tenant's owner scores move with it.
    sized = PolicySpec.for_gpu(spec.gpu, 5)
    obs = rng.uniform(0, 2, sized.obs_size).astype(np.float32)
    rows = obs[: 5 * sized.tenant_width].reshape(5, -1)
    rows[:, 0] = 1.0
    obs[5 * sized.tenant_width + spec.phase_index : 5 * sized.tenant_width + spec.phase_index + 2] = (
        0.0,
        1.0,
    )
    order = np.array([3, 0, 4, 1, 2])
    permuted = obs.copy()
    permuted[: 5 * sized.tenant_width] = rows[order].ravel()
    a, b = policy.logits(obs), policy.logits(permuted)
    assert np.allclose(a[1:6][order], b[1:6], atol=1e-5) and np.allclose(a[6:11][order], b[6:11], atol=1e-5)
    assert np.isclose(a[0], b[0], atol=1e-5)


def test_loading_never_unpickles_and_checks_the_card(trained, tmp_path):
    _, folder = trained
    bad = tmp_path / "pickled"
    shutil.copytree(folder, bad)
    np.save(bad / "w0.npy", np.array([object()], dtype=object), allow_pickle=True)
    with np.load(folder / "policy.npz") as data:
        arrays = dict(data)
    arrays["enc0.w"] = np.array([{"evil": 1}], dtype=object)
    np.savez(bad / "policy.npz", **arrays)
    with pytest.raises(RlmigError, match="cannot read the weights"):
        load_policy(bad)

    card = json.loads((folder / "card.json").read_text())
    for change, message in [
        ({"format": "other"}, "not an rlmig-policy/3 card"),
        ({"observation_version": 99}, "observation version differ"),
        ({"layout_actions": card["layout_actions"][1:]}, "layout actions differ"),
        ({"context_features": card["context_features"][:3]}, "no tenant_features, pair_features and"),
        # Same size, another meaning: two features swapped is refused, not only a size change.
        (
            {
                "tenant_features": [
                    card["tenant_features"][1],
                    card["tenant_features"][0],
                    *card["tenant_features"][2:],
                ]
            },
            r"tenant features differ .*entry 0: 'rate\[-3\]' here 'present'",
        ),
    ]:
        target = tmp_path / f"card-{len(change)}-{next(iter(change))}"
        shutil.copytree(folder, target)
        (target / "card.json").write_text(json.dumps({**card, **change}))
        with pytest.raises(RlmigError, match=message):
            load_checkpoint(target)
    with pytest.raises(RlmigError, match="cannot read the checkpoint card"):
        load_checkpoint(tmp_path / "nowhere")
    # Weights that are not finite, missing or misshapen are refused on load, in one line.
    for name, value, message in [
        ("own0.w", np.nan, r"own0.w hold NaN or infinite values"),
        ("layout.b", np.inf, r"layout.b hold NaN or infinite values"),
        ("enc0.w", None, r"enc0.w missing"),
        ("ctx0.w", "shape", r"ctx0.w have shape \(16, 3\), expected"),
    ]:
        target = tmp_path / f"weights-{name}"
        shutil.copytree(folder, target)
        with np.load(folder / "policy.npz") as data:
            changed = dict(data)
        if value is None:
            del changed[name]
        elif value == "shape":
            changed[name] = np.zeros((16, 3), np.float32)
        else:
            changed[name] = changed[name].copy()
            changed[name].flat[0] = value
        np.savez(target / "policy.npz", **changed)
        with pytest.raises(RlmigError, match=message) as error:
            load_checkpoint(target)
        assert "\n" not in str(error.value)


def test_rl_planner_runs_and_its_guard_overrules_a_bad_proposal(trained):
    _, folder = trained
    workload = load_workload(SCENARIO)
    run = run_planner(workload, RlPlanner(folder), forecaster="last")
    assert run.result.metrics.goodput_ratio > 0
    # A policy that always picks the first layout and leaves every instance idle proposes nothing useful.
    spec = PolicySpec.for_gpu(workload.gpu)
    idle = SetPolicy.initial(spec, hidden=4, scale=0.0)
    idle.params["layout.b"][:] = -1.0
    idle.params["layout.b"][0] = 1.0
    idle.params["idle.b"][:] = 1.0
    idle.params["own1.b"][:] = -1.0
    unguarded = run_planner(workload, RlPlanner(policy=idle, guard=False), forecaster="last")
    guarded = run_planner(workload, RlPlanner(policy=idle, guard=True), forecaster="last")
    assert unguarded.result.metrics.goodput_ratio == 0.0
    assert guarded.result.metrics.goodput_ratio > 0.5
    # Every interval the guard kept something else than the idle proposal, and the run counts it.
    assert unguarded.guard_overrules == 0 and guarded.guard_overrules == workload.intervals
    assert guarded.fallback_decisions == 0 and guarded.decided_by("rl") == "rl"


def test_in_serve_mode_the_guard_keeps_the_plan_with_the_fewest_gpus_among_equals():
    """Serve mode asks for the load with the fewest GPUs; a policy trained on goodput alone proposes
    plans that carry it on many more (the shipped one used 144 GPUs on ParvaGPU's six scenarios where
    parva uses 48): the guard keeps, among candidates predicted as good, the one with the fewest."""
    workload = load_workload(ROOT / "eval" / "scenarios" / "parvagpu-slo1.yaml")
    parva = run_planner(workload, make_planner("parva"))
    proposal = run_planner(workload, RlPlanner(guard=False))
    guarded = run_planner(workload, RlPlanner())
    gpus = {name: run.result.intervals[0].gpus_used for name, run in
            [("parva", parva), ("proposal", proposal), ("guarded", guarded)]}  # fmt: skip
    assert gpus["proposal"] > gpus["parva"]  # the case the guard exists for here
    assert gpus["guarded"] == min(gpus.values())
    assert guarded.result.metrics.goodput_ratio >= proposal.result.metrics.goodput_ratio - 1e-9
    assert guarded.guard_overrules == 1


def test_a_policy_for_another_gpu_model_trains_and_is_the_default_for_its_workloads(tmp_path, monkeypatch):
    """Training for H100-80GB (it crashed: the environments were built for the default GPU model), and
    `RlPlanner()` taking the shipped checkpoint of the workload's GPU model."""
    import rlmig.planners.rl as rl_module

    config = tmp_path / "tiny-h100.yaml"
    config.write_text(TINY.read_text().replace("gpu: A100-80GB", "gpu: H100-80GB"))
    folder = train(config, tmp_path / "run", tmp_path / "h100")
    policy, card, spec = load_checkpoint(folder)
    assert card["gpu_model"] == "H100-80GB" and spec.gpu.name == "H100-80GB"
    shipped_a100 = rl_module.DEFAULT_CHECKPOINT
    monkeypatch.setattr(rl_module, "shipped_models", lambda: {"A100-80GB": shipped_a100, "H100-80GB": folder})
    text = SCENARIO.read_text()
    h100 = load_workload_text(tmp_path, text.replace("gpu: A100-80GB", "gpu: H100-80GB"))
    planner = RlPlanner()
    run = run_planner(h100, planner, forecaster="last")
    assert planner.spec.gpu.name == "H100-80GB" and run.fallback_decisions == 0
    assert np.array_equal(planner.policy.params["enc0.w"], policy.params["enc0.w"])
    run_planner(load_workload(SCENARIO), planner, forecaster="last")  # back to the A100-80GB one
    assert planner.spec.gpu.name == "A100-80GB"
    h200 = load_workload_text(tmp_path, text.replace("gpu: A100-80GB", "gpu: H200-141GB"))
    with pytest.raises(
        RlmigError, match=r"no shipped policy for H200-141GB \(shipped: A100-80GB, H100-80GB\)"
    ):
        run_planner(h200, RlPlanner())


def test_the_shipped_checkpoints_load_and_are_found_by_gpu_model():
    from rlmig.checkpoints import shipped, shipped_for

    assert [f.name for f in shipped()] == ["a100-80gb", "h100-80gb"]
    for model in ("A100-80GB", "H100-80GB"):
        folder = shipped_for(model)
        assert folder is not None
        _, card, spec = load_checkpoint(folder)  # the card fits this installation's codec
        assert card["gpu_model"] == spec.gpu.name == model
        assert card["training_config"]["gpu"] == model
    assert shipped_for("H200-141GB") is None


def load_workload_text(folder: Path, text: str):
    path = folder / f"workload-{abs(hash(text))}.yaml"
    path.write_text(text)
    return load_workload(path)


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("imitation: {episodes: 2, epoch: 3}\n")
    with pytest.raises(ConfigError, match=r"imitation\.epoch: unknown field"):
        load_config(bad)
    for section, text, message in (
        ("ppo", "{select_episodes: '16'}", r"ppo\.select_episodes: '16' is not an integer"),
        ("imitation", "{learning_rate: fast}", r"imitation\.learning_rate: 'fast' is not a number"),
        ("ppo", "{timesteps: true}", r"ppo\.timesteps: True is not an integer"),
        ("hidden", "wide", r"hidden: 'wide' is not an integer"),
        ("imitation", "{equivalent_actions: 'yes'}", r"equivalent_actions: 'yes' is not true or false"),
    ):  # a mistyped value is refused when the config is read, not after hours of training
        bad.write_text(f"{section}: {text}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(bad)
    bad.write_text("colour: red\n")
    with pytest.raises(ConfigError, match="colour: unknown field"):
        load_config(bad)
    bad.write_text("scenarios: {max_gpu: 2}\n")
    with pytest.raises(ConfigError, match="scenarios: "):
        load_config(bad)
    for scenarios, field in (
        ("{intervals: [40, 20]}", "intervals"),
        ("{window_intervals: [0, 5]}", "window_intervals"),
        ("{interval_s: []}", "interval_s"),
        ("{job_share: [0.0, 1.0]}", "job_share"),
    ):  # a bad range is refused when the config is read, not mid-training
        bad.write_text(f"scenarios: {scenarios}\n")
        with pytest.raises(ConfigError, match=rf"scenarios: {field}: "):
            load_config(bad)
    for config in sorted(TINY.parent.glob("*.yaml")):  # the shipped configs pass
        load_config(config)
    assert load_config(TINY).ppo.timesteps == 256


def test_one_checkpoint_decides_clusters_larger_than_any_it_was_trained_on(trained):
    _, folder = trained  # trained on at most 2 GPUs and 2 tenants
    big = load_workload(ROOT / "eval" / "scenarios" / "parvagpu-slo6.yaml")  # 24 GPUs, 11 tenants
    run = run_planner(big, RlPlanner(folder, guard=False))
    assert run.fallback_decisions == 0 and run.decided_by("rl") == "rl"
    config = run.result.configurations[0]
    assert len(config.gpus) == 24 and config.gpu == big.gpu


def test_another_gpu_model_is_an_error_unless_a_fallback_is_asked_for(trained, tmp_path):
    _, folder = trained
    doc = yaml.safe_load(SCENARIO.read_text())
    doc["gpu"] = "H100-80GB"
    path = tmp_path / "h100.yaml"
    path.write_text(yaml.safe_dump(doc))
    other = load_workload(path)
    with pytest.raises(
        RlmigError, match=r"the policy is for A100-80GB, the workload for H100-80GB.*--fallback"
    ):
        run_planner(other, RlPlanner(folder))
    run = run_planner(other, RlPlanner(folder, fallback="parva"))
    parva = run_planner(other, make_planner("parva"))
    assert [str(c) for c in run.result.configurations] == [str(c) for c in parva.result.configurations]
    assert run.fallback_decisions == len(run.decisions) == other.intervals
    assert run.decided_by("rl") == "rl (fallback parva: another GPU model than the policy's)"
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


def test_episodes_labelled_in_parallel_processes_are_the_ones_labelled_in_this_one():
    from rlmig.agents.imitation import Labelling, label_episodes
    from rlmig.envs.scenarios import ScenarioSampler

    sampler = ScenarioSampler(max_gpus=2, max_tenants=2, intervals=3)
    policy = SetPolicy.initial(PolicySpec.for_gpu(load_workload(SCENARIO).gpu), hidden=8)
    # no time limit: what the oracle returns must not rest on the clock
    labelling = Labelling(sampler, 1e-2, None, policy=policy, beta=0.5, label_fraction=0.5)
    here = list(label_episodes(labelling, [3, 4, 5], workers=1))
    there = list(label_episodes(labelling, [3, 4, 5], workers=2))
    assert len(here) == len(there) == 3
    for (a, ra), (b, rb) in zip(here, there, strict=True):
        assert ra == rb and np.array_equal(a.actions, b.actions) and np.array_equal(a.obs, b.obs)
        assert len(a) > 0 and a.masks[np.arange(len(a)), a.actions].all()  # every label is legal


def test_cloning_puts_the_mass_on_the_set_of_equally_good_actions_without_picking_one(tmp_path):
    from rlmig.agents.imitation import Demonstrations, behaviour_cloning
    from rlmig.agents.set_policy import SetActorCriticPolicy, set_policy_kwargs
    from rlmig.agents.train import masked

    env = masked(MigReconfigEnv(load_workload(SCENARIO)))
    obs, _ = env.reset(seed=0)
    mask = env.action_masks()
    a, b = np.flatnonzero(mask)[[0, 5]]
    n = 64
    labels = np.zeros((n, len(mask)), bool)
    labels[:, [a, b]] = True
    both = Demonstrations(
        np.repeat(obs[None], n, 0), np.repeat(mask[None], n, 0), np.full(n, a), np.zeros(n), labels
    )
    path = tmp_path / "demos.npz"
    both.save(path)
    assert np.array_equal(Demonstrations.load(path).labels, labels)
    np.savez_compressed(path, obs=both.obs, masks=both.masks, actions=both.actions, returns=both.returns)
    only_a = Demonstrations.load(path)  # saved before label sets: the expert's action alone
    assert np.array_equal(np.flatnonzero(only_a.labels.any(0)), [a])

    def probabilities(demos: Demonstrations, equivalent: bool = True) -> np.ndarray:
        torch.manual_seed(0)
        kwargs = set_policy_kwargs(env.unwrapped.spec_, hidden=16)
        model = MaskablePPO(SetActorCriticPolicy, env, policy_kwargs=kwargs, device="cpu", seed=0)
        stats = behaviour_cloning(
            model.policy, demos, epochs=20, batch_size=32, learning_rate=1e-2, equivalent_actions=equivalent
        )
        assert stats["accuracy"] == 1.0
        dist = model.policy.get_distribution(torch.as_tensor(obs[None]), action_masks=mask[None])
        return dist.distribution.probs[0].detach().numpy()

    p = probabilities(both)
    assert p[a] + p[b] > 0.95 and min(p[a], p[b]) > 0.2  # either will do: neither is forced
    for p in (probabilities(only_a), probabilities(both, equivalent=False)):
        assert p[a] > 0.95  # the expert's own action, as before the label sets
