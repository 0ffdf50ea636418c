"""The node agent survives: a planner exception keeps the configuration; a failed apply is reconciled
next round; a rate outage holds the last rates, then stops reconfiguring until rates return; SIGTERM
ends the loop with exit 0, and a SIGTERM mid-apply leaves a journal the next start recovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest

from rlmig.errors import RlmigError
from rlmig.executor import FakeNvml, FakeTenantHooks, Journal, NvmlBackend
from rlmig.node import AgentMetrics, ExecutorNode, NodeAgent, RatesUnavailable, SimulatedRates, StopSignal
from rlmig.planners import ClusterState, Decision, Planner, make_planner
from rlmig.simulator import Simulator
from rlmig.workload import load_workload
from tests.test_node_e2e import SHIFT, fake_agent, write_workload

ROOT = Path(__file__).resolve().parents[1]


class Scripted(Planner):
    """The ILP, failing at the given intervals; counts its calls."""

    name = "scripted"

    def __init__(self, fail_at: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.inner = make_planner("ilp-myopic", gap=0.0, time_limit=None)
        self.fail_at = fail_at
        self.calls: list[int] = []

    def plan(self, state: ClusterState) -> Decision:
        self.calls.append(state.interval)
        if state.interval in self.fail_at:
            raise RuntimeError("solver exploded")
        return self.inner.plan(state)


def test_planner_exception_keeps_the_configuration(tmp_path):
    workload = load_workload(write_workload(tmp_path))
    metrics = AgentMetrics()
    agent, _ = fake_agent(workload, Scripted({SHIFT + 1}), metrics=metrics)
    agent.run()
    results = [r.result for r in agent.records]
    assert results[SHIFT + 1] == "planner_error" and "solver exploded" in agent.records[SHIFT + 1].error
    assert agent.configurations[SHIFT + 1] == agent.configurations[SHIFT]  # kept
    assert results[SHIFT + 2] == "applied"  # the next round reconfigures for the shifted load
    assert agent.configurations[SHIFT + 2] != agent.configurations[SHIFT]
    assert metrics.value("rlmig_agent_errors_total", kind="planner") == 1
    assert metrics.value("rlmig_agent_rounds_total", result="planner_error") == 1
    assert agent.records[-1].result == "final" and len(agent.outcomes) == workload.intervals


def test_executor_failure_is_reconciled_next_round(tmp_path):
    workload = load_workload(write_workload(tmp_path))
    metrics = AgentMetrics()
    agent, fake = fake_agent(workload, make_planner("ilp-myopic", gap=0.0, time_limit=None), metrics=metrics)
    for _ in range(SHIFT + 1):
        agent.round()
    before = agent.configurations[-1]
    fake.fail_operation(3, pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
    failed = agent.round()  # round SHIFT + 1: the third operation fails, the executor rolls back
    assert failed.result == "apply_error"
    assert "code 23" in failed.error or "INSUFFICIENT_RESOURCES (23)" in failed.error
    assert "rolled back" in failed.error
    assert failed.configuration == before == agent.node.read()
    assert metrics.value("rlmig_agent_errors_total", kind="apply") == 1
    retried = agent.round()  # from the node as read back, to the (same) target
    assert retried.result == "applied"
    target = retried.decision.configuration
    assert retried.configuration == target == agent.node.read() != before
    for placed in target.placed():
        if placed.owner is not None:
            assert str(placed.owner) in fake.tenants(placed.gpu)[placed.instance]


class Outage:
    """Simulated rates whose reads fail (the trace still advances) at the given read numbers."""

    def __init__(self, inner: SimulatedRates, down: set[int]) -> None:
        self.inner = inner
        self.down = down
        self.reads = 0

    @property
    def done(self) -> bool:
        return self.inner.done

    def read(self) -> dict[str, float]:
        n, self.reads = self.reads, self.reads + 1
        rates = self.inner.read()
        if n in self.down:
            raise RatesUnavailable("cannot scrape http://triton:8002/metrics: connection refused")
        return rates


def test_rate_outage_holds_then_stops_reconfiguring_until_rates_return(tmp_path):
    workload = load_workload(write_workload(tmp_path, intervals=12))
    now = [0.0]
    planner = Scripted()
    fake = FakeNvml(workload.gpu, workload.gpu_count)
    node = ExecutorNode(NvmlBackend(workload.gpu, fake), hooks=FakeTenantHooks(fake))
    metrics = AgentMetrics()
    source = Outage(SimulatedRates(workload), down={3, 4, 5, 6, 7})
    agent = NodeAgent(
        workload, planner, node, source, interval_s=0, max_stale_s=60, metrics=metrics, clock=lambda: now[0]
    )
    stale = []
    for _ in range(9):
        agent.round()
        stale.append(metrics.value("rlmig_agent_rates_stale"))
        now[0] += 30.0
    results = [r.result for r in agent.records]
    # Rounds 3 and 4 hold the last rates (30 s and 60 s old) and still plan; 5 to 7 are past --max-stale.
    assert [r.rates_fresh for r in agent.records[3:8]] == [False] * 5
    assert results[3:5] == ["unchanged", "unchanged"] and results[5:8] == ["held"] * 3
    assert 5 not in planner.calls and 6 not in planner.calls and 7 not in planner.calls
    assert stale == [0, 0, 0, 0, 0, 1, 1, 1, 0]
    assert agent.records[4].rates.tolist() == agent.records[2].rates.tolist()  # held, pre-shift
    # The configuration stays put through the outage although the load shifted at interval SHIFT...
    assert all(c == agent.configurations[2] for c in agent.configurations[2:8])
    # ...and once rates return (round 8 reads interval 7's, after the shift) the agent reconfigures.
    assert results[8] == "applied" and agent.records[8].rates_fresh
    assert agent.records[8].configuration != agent.configurations[7]
    assert metrics.value("rlmig_agent_errors_total", kind="rates") == 5
    assert metrics.value("rlmig_agent_rounds_total", result="held") == 3


def test_no_rates_at_start_holds_without_planning(tmp_path):
    workload = load_workload(write_workload(tmp_path))
    planner = Scripted()
    fake = FakeNvml(workload.gpu, workload.gpu_count)
    node = ExecutorNode(NvmlBackend(workload.gpu, fake), hooks=FakeTenantHooks(fake))
    agent = NodeAgent(workload, planner, node, Outage(SimulatedRates(workload), {0}), interval_s=0)
    first, second = agent.round(), agent.round()
    assert first.result == "held" and planner.calls == [1] and second.result == "applied"


class SignalOnStart(FakeTenantHooks):
    """Fake hooks that deliver SIGTERM to this process during the first tenant start once armed."""

    armed = False

    def start(self, gpu, instance, owner):  # type: ignore[no-untyped-def]
        super().start(gpu, instance, owner)
        if self.armed:
            self.armed = False
            signal.raise_signal(signal.SIGTERM)


def _agent_with_journal(tmp_path: Path, grace_s: float):
    workload = load_workload(write_workload(tmp_path))
    fake = FakeNvml(workload.gpu, workload.gpu_count)
    hooks = SignalOnStart(fake)
    stop = StopSignal(grace_s)
    journal = tmp_path / "journal.jsonl"
    node = ExecutorNode(NvmlBackend(workload.gpu, fake), journal=journal, hooks=hooks, stop=stop)
    agent = NodeAgent(
        workload,
        make_planner("ilp-myopic", gap=0.0, time_limit=None),
        node,
        SimulatedRates(workload),
        interval_s=0,
    )
    return workload, fake, hooks, journal, agent


@pytest.fixture
def sigterm_stops():
    """Route SIGTERM to whatever `request_stop` the test installs (restored afterwards)."""
    target = {}
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: target["agent"].request_stop())
    yield target
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_mid_apply_past_the_grace_leaves_a_recoverable_journal(tmp_path, sigterm_stops):
    workload, fake, hooks, journal, agent = _agent_with_journal(tmp_path, grace_s=0)
    sigterm_stops["agent"] = agent
    for _ in range(SHIFT + 1):
        agent.round()
    before = agent.node.read()
    hooks.armed = True
    assert agent.run() == 0  # round SHIFT + 1 stopped mid-apply, right after the operation in flight
    run = Journal(journal).last_run(workload.gpu)
    assert run is not None and not run.finished and 0 < len(run.done) < len(run.operations)
    midway = agent.node.read()
    assert midway != before and midway != run.target  # a valid state between the two

    # The next start (a new agent on the same node and journal) recovers the open run to its target.
    node = ExecutorNode(NvmlBackend(workload.gpu, fake), journal=journal, hooks=FakeTenantHooks(fake))
    NodeAgent(
        workload,
        make_planner("ilp-myopic", gap=0.0, time_limit=None),
        node,
        SimulatedRates(workload),
        interval_s=0,
    ).start()
    assert Journal(journal).last_run(workload.gpu).finished
    assert node.read() == run.target
    for placed in run.target.placed():
        if placed.owner is not None:
            assert fake.tenants(placed.gpu)[placed.instance] == [str(placed.owner)]


def test_sigterm_mid_apply_within_the_grace_finishes_the_apply(tmp_path, sigterm_stops):
    workload, _, hooks, journal, agent = _agent_with_journal(tmp_path, grace_s=30)
    sigterm_stops["agent"] = agent
    for _ in range(SHIFT + 1):
        agent.round()
    hooks.armed = True
    assert agent.run() == 1  # the round finished, then the loop saw the stop
    record = agent.records[-1]
    assert record.result == "applied" and record.interval == SHIFT + 1
    assert Journal(journal).last_run(workload.gpu).finished
    assert agent.node.read() == record.decision.configuration


def test_sigterm_exits_zero_from_the_command_line(tmp_path):
    path = write_workload(tmp_path)
    script = (
        "import sys\n"
        "from rlmig.cli import cli, main\n"
        "from rlmig.cli.agent import agent_command\n"
        "if 'agent' not in cli.commands: cli.add_command(agent_command)\n"
        "sys.exit(main(['agent', *sys.argv[1:]]))\n"
    )
    args = ["--workload", str(path), "--backend", "fake", "--planner", "ilp", "--interval", "60"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the first round, then the agent sleeps 60 s
            if '"event":"round"' in line:
                break
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        rest = proc.stderr.read()
    finally:
        proc.kill()
    assert code == 0, rest
    stopped = json.loads(rest.strip().splitlines()[-1])
    assert stopped["event"] == "stopped" and stopped["stop_requested"] and stopped["rounds"] == 1


def test_a_restarted_agent_goes_on_with_its_tenants_retraining_state(tmp_path):
    # detect retrains in windows of 4 intervals; stop the agent mid-window, start another on the same
    # node with the same state file: it decides the next interval, with the job's progress so far.
    workload = load_workload(write_workload(tmp_path))
    fake = FakeNvml(workload.gpu, workload.gpu_count)
    state = tmp_path / "journal.state.json"

    def agent() -> NodeAgent:
        node = ExecutorNode(NvmlBackend(workload.gpu, fake), hooks=FakeTenantHooks(fake), name="fake")
        planner = make_planner("ilp", gap=1e-3, time_limit=None)  # window-aware: starts the job
        return NodeAgent(workload, planner, node, SimulatedRates(workload), interval_s=0, state_path=state)

    first = agent()
    for _ in range(3):
        first.round()
    saved = first.loop.snapshot()
    assert saved["interval"] == 3 and saved["progress"][0] > 0  # mid-window, the job under way
    second = agent()
    second.start()
    assert second.loop.snapshot() == saved
    # A state file for other tenants is a one-line error, not a silent fresh start.
    doc = json.loads(state.read_text())
    doc["loop"]["tenants"] = ["x", "y", "z"]
    state.write_text(json.dumps(doc))
    with pytest.raises(RlmigError, match=r"agent state .*: the saved state is for tenants \['x', 'y', 'z'\]"):
        agent().start()


def test_the_agent_accounts_each_apply_with_the_time_it_took(tmp_path):
    # Every apply takes 12 s of (fake) wall time where the workload says 5: the changed instances of the
    # interval after it are accounted as down for 12 s, and the logs say both.
    workload = load_workload(write_workload(tmp_path))
    now = [0.0]
    agent, _ = fake_agent(
        workload,
        make_planner("ilp-myopic", gap=0.0, time_limit=None),
        clock=lambda: now[0],
        measure_downtime=True,
    )
    apply = agent.node.apply

    def slow(target):
        now[0] += 12.0
        return apply(target)

    agent.node.apply = slow
    for _ in range(SHIFT + 3):
        agent.round()
    assert any(o.reconfigured for o in agent.outcomes[1:])
    sim = Simulator(workload)
    state, previous = sim.initial_state(), None
    for outcome, config in zip(agent.outcomes, agent.configurations, strict=True):
        expected, state = sim.step(outcome.index, state, sim.encode(config), previous, outcome.rate, 12.0)
        assert float(expected.goodput.sum()) == pytest.approx(float(outcome.goodput.sum()))
        previous = sim.encode(config)
    # The workload's 5 s would have counted more goodput for the same configurations.
    state, previous, configured = sim.initial_state(), None, 0.0
    for outcome, config in zip(agent.outcomes, agent.configurations, strict=True):
        expected, state = sim.step(outcome.index, state, sim.encode(config), previous, outcome.rate)
        configured += float(expected.goodput.sum())
        previous = sim.encode(config)
    assert configured > sum(float(o.goodput.sum()) for o in agent.outcomes)
