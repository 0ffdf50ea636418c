"""Ray as the engine of the offline work: an evaluation, oracle labels and environment steps give what
the serial run gives; `rlmig train --ray local` trains and exports; a Ray that cannot be reached is a
one-line error. One embedded local Ray serves the module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("sb3_contrib")

from stable_baselines3.common.vec_env import DummyVecEnv  # noqa: E402

from rlmig.agents.imitation import Labelling, label_episodes  # noqa: E402
from rlmig.agents.ray_env import RayVecEnv  # noqa: E402
from rlmig.agents.train import masked  # noqa: E402
from rlmig.cli import main  # noqa: E402
from rlmig.envs import MigReconfigEnv  # noqa: E402
from rlmig.envs.scenarios import ScenarioSampler  # noqa: E402
from rlmig.eval.harness import evaluate  # noqa: E402
from rlmig.parallel import fan_out, ray_session  # noqa: E402
from rlmig.policy import PolicySpec, SetPolicy  # noqa: E402
from rlmig.workload import load_workload  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPIKE = ROOT / "eval" / "scenarios" / "spike-shift.yaml"
TIMING = {"decision_ms_p50", "decision_ms_p99", "wall_s", "decision_seconds"}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    with ray_session("local"):
        yield


def without_timing(document):
    if isinstance(document, dict):
        return {k: without_timing(v) for k, v in document.items() if k not in TIMING}
    if isinstance(document, list):
        return [without_timing(v) for v in document]
    return document


def _square(x: int) -> int:
    return x * x


def test_fan_out_keeps_the_order_of_the_jobs_on_every_engine():
    jobs = list(range(7))
    assert list(fan_out(_square, jobs)) == list(fan_out(_square, jobs, ray="local")) == [x * x for x in jobs]


def test_an_evaluation_on_ray_gives_the_serial_results(capsys, tmp_path):
    serial = evaluate([SPIKE], ["greedy", "parva"])
    on_ray = evaluate([SPIKE], ["greedy", "parva"], ray="local")
    assert without_timing(on_ray.to_json()) == without_timing(serial.to_json())
    # the command as the issue gives it
    out = tmp_path / "ray.json"
    assert main(["eval", str(SPIKE), "--planners", "greedy,parva", "--ray", "local", "--json", str(out)]) == 0
    assert without_timing(json.loads(out.read_text())) == without_timing(serial.to_json())


def test_oracle_labels_on_ray_are_the_serial_ones():
    sampler = ScenarioSampler(max_gpus=2, max_tenants=2, intervals=3)
    policy = SetPolicy.initial(PolicySpec.for_gpu(load_workload(SPIKE).gpu), hidden=8)
    labelling = Labelling(sampler, 1e-2, None, policy=policy, beta=0.5, label_fraction=0.5)
    here = list(label_episodes(labelling, [3, 4], workers=1))
    there = list(label_episodes(labelling, [3, 4], ray="local"))
    for (a, ra), (b, rb) in zip(here, there, strict=True):
        assert ra == rb and np.array_equal(a.actions, b.actions) and np.array_equal(a.obs, b.obs)


def test_environments_in_ray_actors_step_as_in_this_process():
    sampler = ScenarioSampler(max_gpus=2, max_tenants=2, intervals=3)
    fns = [lambda: masked(MigReconfigEnv(sampler=sampler)) for _ in range(2)]
    local, remote = DummyVecEnv(fns), RayVecEnv(fns)
    try:
        for vec in (local, remote):
            vec.seed(11)
        obs_local, obs_remote = local.reset(), remote.reset()
        rng = np.random.default_rng(0)
        for _ in range(40):  # past the end of an episode: auto-reset as SB3 does it
            assert np.array_equal(obs_local, obs_remote)
            masks = np.array(local.env_method("action_masks"))
            assert np.array_equal(masks, np.array(remote.env_method("action_masks")))
            actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
            obs_local, r1, d1, i1 = local.step(actions)
            obs_remote, r2, d2, i2 = remote.step(actions)
            assert np.array_equal(r1, r2) and np.array_equal(d1, d2)
            assert [sorted(i) for i in i1] == [sorted(i) for i in i2]
        assert remote.get_attr("render_mode") == local.get_attr("render_mode")
    finally:
        remote.close()


def test_train_on_ray_trains_and_exports(tmp_path, capsys):
    run, config = tmp_path / "run", str(ROOT / "agents" / "configs" / "tiny.yaml")
    code = main(["train", config, "--out", str(run), "--ray", "local"])
    assert code == 0, capsys.readouterr().err
    card = json.loads((run / "checkpoint" / "card.json").read_text())
    assert card["training_config"]["name"] == "tiny"
    assert {"demonstrations", "dagger", "ppo"} <= set(json.loads((run / "progress.json").read_text()))
    # the same labels and the same rollouts as without Ray: the same weights, exactly
    serial = tmp_path / "serial"
    assert main(["train", config, "--out", str(serial)]) == 0
    for name in ("demonstrations.npz", "checkpoint/policy.npz"):
        with np.load(run / name) as a, np.load(serial / name) as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), name


@pytest.mark.parametrize(
    ("address", "message"),
    [("127.0.0.1:9", "nothing answers there"), ("ray://nowhere", "expected local, auto, HOST:PORT")],
)
def test_a_ray_that_cannot_be_reached_is_one_line(capsys, address, message):
    ray.shutdown()  # the module's local Ray: the command must start or reach its own
    try:
        code = main(["eval", str(SPIKE), "--planners", "parva", "--ray", address])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"rlmig: error: --ray {address}:"), err
        assert message in err
    finally:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
