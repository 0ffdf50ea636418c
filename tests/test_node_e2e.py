"""The node agent end to end: ``rlmig agent`` with the fake backend and simulated load runs a short trace
with a step change, reconfigures when the load shifts, and reaches exactly the goodput the simulator
gives for the configurations it applied (and the offline planner run's); its metrics and endpoint."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml

from rlmig.cli import cli, main
from rlmig.cli.agent import agent_command
from rlmig.executor import FakeNvml, FakeTenantHooks, NvmlBackend
from rlmig.executor.planfile import parse_configuration
from rlmig.geometry import gpu_model
from rlmig.node import (
    AgentMetrics,
    ExecutorNode,
    MetricsServer,
    NodeAgent,
    SimulatedRates,
    parse_prometheus_text,
)
from rlmig.planners import make_planner, run_planner
from rlmig.planners.rl import RlPlanner
from rlmig.policy import PolicySpec, SetPolicy, policy_card, save_policy
from rlmig.simulator import Simulator
from rlmig.workload import Workload, load_workload

if "agent" not in cli.commands:  # until rlmig.cli registers it
    cli.add_command(agent_command)

SHIFT = 4  # the interval whose load steps


def write_workload(folder: Path, intervals: int = 8, **extra: object) -> Path:
    """Two A100-80GB GPUs, three tenants (one retraining); at interval SHIFT one tenant's load steps up
    and another's down."""
    doc = {
        "name": "node-e2e",
        "gpu": "A100-80GB",
        "gpus": 2,
        "interval_s": 30,
        "duration_s": 30 * intervals,
        "downtime_s": 5,
        "mode": "dynamic",
        "tenants": [
            {
                "name": "detect",
                "model": "resnet101",
                "slo_ms": 150,
                "load": {"synthetic": "step", "before": 300, "after": 2000, "at_s": 30 * SHIFT},
                "retraining": {"window_s": 120, "samples": 20000, "drift": 0.1, "accuracy": 0.9},
            },
            {"name": "qa", "model": "bert-base", "slo_ms": 100, "load": 400},
            {
                "name": "thumbs",
                "model": "densenet121",
                "slo_ms": 100,
                "load": {"synthetic": "step", "before": 600, "after": 150, "at_s": 30 * SHIFT},
            },
        ],
        **extra,
    }
    path = folder / "workload.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def tiny_policy(seed: int = 0, hidden: int = 16) -> SetPolicy:
    """A random A100-80GB policy (the guard makes it safe)."""
    return SetPolicy.initial(PolicySpec.for_gpu(gpu_model("A100-80GB")), hidden, seed)


def write_checkpoint(folder: Path) -> Path:
    """A checkpoint folder `load_checkpoint` accepts, holding `tiny_policy` (no torch needed)."""
    return save_policy(folder, tiny_policy(), policy_card(PolicySpec.for_gpu(gpu_model("A100-80GB"))))


def fake_agent(workload: Workload, planner: object, **options: object) -> tuple[NodeAgent, FakeNvml]:
    fake = FakeNvml(workload.gpu, workload.gpu_count)
    node = ExecutorNode(NvmlBackend(workload.gpu, fake), hooks=FakeTenantHooks(fake), name="fake")
    return NodeAgent(workload, planner, node, SimulatedRates(workload), interval_s=0, **options), fake  # type: ignore[arg-type]


def agent_logs(capsys: pytest.CaptureFixture[str], args: list[str]) -> list[dict]:
    code = main(["agent", *args])
    err = capsys.readouterr().err
    assert code == 0, err
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("planner", ["ilp-myopic", "rl"])
def test_agent_reconfigures_on_the_shift_and_matches_the_simulator(tmp_path, capsys, planner):
    path = write_workload(tmp_path)
    args = ["--workload", str(path), "--backend", "fake", "--interval", "0", "--planner", planner]
    if planner == "rl":
        args += ["--checkpoint", str(write_checkpoint(tmp_path / "checkpoint"))]
    logs = agent_logs(capsys, args)
    intervals = [e for e in logs if e["event"] == "interval"]
    rounds = [e for e in logs if e["event"] == "round"]
    workload = load_workload(path)
    assert [e["index"] for e in intervals] == list(range(workload.intervals))
    assert len(rounds) == workload.intervals and logs[-1]["event"] == "stopped"
    configs = [parse_configuration(e["configuration"]) for e in intervals]

    # It reconfigures once it has seen the shifted load (the round after the interval where it happened).
    assert configs[SHIFT + 1] != configs[SHIFT]
    assert rounds[SHIFT + 1]["result"] == "applied" and rounds[SHIFT + 1]["operations"] > 0
    assert rounds[SHIFT + 1]["rates"]["detect"] == pytest.approx(2000.0)

    # Replaying what it applied through the simulator gives exactly the goodput it recorded.
    replay = Simulator(workload).run(configs)
    assert [float(o.goodput.sum()) for o in replay.intervals] == [e["goodput"] for e in intervals]
    assert [o.reconfigured for o in replay.intervals] == [e["reconfigured"] for e in intervals]
    for outcome, logged in zip(replay.intervals, intervals, strict=True):
        for i, name in enumerate(workload.tenant_names):
            assert logged["tenants"][name]["accuracy"] == float(outcome.accuracy[i])
            assert logged["tenants"][name]["retraining_progress"] == float(outcome.progress[i])

    # And the offline run of the same planner makes the same decisions, so the same goodput.
    offline_planner = (
        RlPlanner(policy=tiny_policy())
        if planner == "rl"
        else make_planner("ilp-myopic", gap=0.0, time_limit=None, mig_off=False)  # no --allow-mode-change
    )
    offline = run_planner(workload, offline_planner)
    assert offline.result.configurations == configs
    assert offline.result.metrics == replay.metrics


def test_agent_api_records_what_the_cli_logs(tmp_path):
    workload = load_workload(write_workload(tmp_path))
    agent, fake = fake_agent(workload, make_planner("ilp-myopic", gap=0.0, time_limit=None))
    assert agent.run() == workload.intervals + 1  # the last round only accounts the last interval
    assert agent.records[-1].result == "final"
    assert [r.result for r in agent.records[:-1]].count("applied") >= 2
    replay = Simulator(workload).run(agent.configurations)
    assert replay.metrics == agent.simulator.metrics(agent.outcomes)
    # The fake node holds what the agent believes it holds, processes included.
    final = agent.configurations[-1]
    assert agent.node.read() == final
    for placed in final.placed():
        if placed.owner is not None:
            assert str(placed.owner) in fake.tenants(placed.gpu)[placed.instance]


def test_once_runs_one_round(tmp_path, capsys):
    path = write_workload(tmp_path)
    logs = agent_logs(capsys, ["--workload", str(path), "--backend", "fake", "--planner", "ilp", "--once"])
    assert [e["event"] for e in logs] == ["started", "round", "stopped"]
    assert logs[1]["result"] == "applied" and logs[1]["interval"] == 0


def test_metrics_count_the_run_and_are_served(tmp_path):
    workload = load_workload(write_workload(tmp_path))
    metrics = AgentMetrics()
    agent, _ = fake_agent(workload, make_planner("ilp-myopic", gap=0.0, time_limit=None), metrics=metrics)
    server = MetricsServer(metrics.registry, 0, "127.0.0.1").start()
    try:
        agent.run()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as response:
            assert response.read() == b"ok\n"
    finally:
        server.stop()
    families = parse_prometheus_text(text)
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    n = workload.intervals
    assert value[("rlmig_agent_decisions_total", (("decided_by", "planner"), ("planner", "ilp-myopic")))] == n
    assert value[("rlmig_agent_decision_seconds_count", ())] == n
    assert families["rlmig_agent_decision_seconds"].type == "histogram"
    applied = value[("rlmig_agent_rounds_total", (("result", "applied"),))]
    assert applied + value[("rlmig_agent_rounds_total", (("result", "unchanged"),))] == n
    replay = Simulator(workload).run(agent.configurations)
    assert value[("rlmig_agent_reconfigured_instances_total", ())] == replay.metrics.reconfigs
    goodput = sum(float(o.goodput.sum()) for o in replay.intervals)
    assert value[("rlmig_agent_goodput_requests_total", ())] == pytest.approx(goodput)
    assert value[("rlmig_agent_arrivals_requests_total", ())] == pytest.approx(
        float(workload.rates.sum()) * 30
    )
    assert value[("rlmig_agent_last_success_timestamp_seconds", ())] > 1e9
    assert value[("rlmig_agent_rates_stale", ())] == 0
    assert value[("rlmig_agent_rate_requests_per_second", (("tenant", "detect"),))] == pytest.approx(2000.0)
    assert 0 < value[("rlmig_agent_predicted_goodput_ratio", ())] <= 1
    assert ("rlmig_agent_operations_total", (("kind", "create_gi"),)) in value
    assert not any(name == "rlmig_agent_errors_total" for name, _ in value)  # no error, no series


def test_exposition_is_prometheus_clients_with_units_in_the_names(tmp_path):
    parser = pytest.importorskip("prometheus_client.parser")
    workload = load_workload(write_workload(tmp_path, intervals=2))
    metrics = AgentMetrics()
    agent, _ = fake_agent(workload, make_planner("ilp-myopic", gap=0.0, time_limit=None), metrics=metrics)
    agent.run()
    metrics.errors.labels(kind='we"ird\\kind\n').inc()
    names = {f.name: f.type for f in parser.text_string_to_metric_families(metrics.render())}
    assert names["rlmig_agent_decision_seconds"] == "histogram"
    assert names["rlmig_agent_rounds"] == "counter"
    assert names["rlmig_agent_rate_requests_per_second"] == "gauge"
    assert (
        names["rlmig_agent_accuracy_ratio"] == "gauge" and names["rlmig_agent_goodput_requests"] == "counter"
    )
    ours = parse_prometheus_text(metrics.render())["rlmig_agent_errors_total"].samples
    assert ours[0].labels == {"kind": 'we"ird\\kind\n'}


@pytest.mark.parametrize("allowed", [False, True])
def test_the_ilp_turns_mig_off_only_on_a_node_that_may_change_modes(tmp_path, capsys, allowed):
    # One tenant loaded past what MIG layouts carry: the ILP would run its GPUs whole, with MIG off.
    doc = {
        "name": "heavy",
        "gpu": "A100-80GB",
        "gpus": 2,
        "interval_s": 30,
        "duration_s": 60,
        "downtime_s": 5,
        "tenants": [{"name": "vision", "model": "resnet50", "slo_ms": 100, "load": 6000}],
    }
    path = tmp_path / "heavy.yaml"
    path.write_text(yaml.safe_dump(doc))
    args = ["--workload", str(path), "--backend", "fake", "--planner", "ilp", "--once"]
    logs = agent_logs(capsys, [*args, *(["--allow-mode-change"] if allowed else [])])
    rounds = [e for e in logs if e["event"] == "round"]
    pending = [e for e in logs if e["event"] == "mode_change_pending"]
    if allowed:  # an A100 changes its MIG mode at its next reset: the agent says so
        assert [e["gpus"] for e in pending] == [[0, 1]]
    else:  # planned within MIG, applied at once
        assert not pending and rounds[0]["result"] == "applied"
        assert all(g != "(empty)" and not g.startswith("whole") for g in rounds[0]["configuration"])
