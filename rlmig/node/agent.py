"""The node agent's loop: observe rates, forecast, plan, apply, account; every interval.

Usage::

    from rlmig.node import ExecutorNode, NodeAgent, SimulatedRates
    from rlmig.executor import FakeNvml, FakeTenantHooks, NvmlBackend
    from rlmig.planners import make_planner
    from rlmig.workload import load_workload

    workload = load_workload("eval/scenarios/spike-shift.yaml")
    fake = FakeNvml(workload.gpu, workload.gpu_count)
    node = ExecutorNode(NvmlBackend(workload.gpu, fake), hooks=FakeTenantHooks(fake))
    agent = NodeAgent(workload, make_planner("ilp"), node, SimulatedRates(workload), interval_s=0)
    agent.run()                    # until the simulated trace ends (or a stop); agent.run(once=True)
    print(agent.simulator.metrics(agent.outcomes))

One round, at the end of interval k - 1 (round k decides interval k), is a round of `rlmig.loop`'s
decision loop whose rates are measured, whose current configuration is the node's, and whose decision
is applied through the executor:

1. read the rates of interval k - 1 from the rate source (round 0 reads the load as the agent starts,
   which seeds the forecasters, as in every run of the one decision loop, `rlmig.loop`); during an
   outage hold the last rates, and once they are older than `max_stale_s` stop reconfiguring until
   rates return;
2. account interval k - 1: advance the tenants' retraining state (`rlmig.simulator.Simulator.step`)
   under the configuration that was in place, the one before it, and the observed rates (below);
3. feed each tenant's forecaster (`rlmig.forecast`) and forecast the planner's horizon;
4. read the node's configuration back (`Node.read`: NVML through the executor, owners from the journal)
   and ask the planner through `rlmig.planners.Planner.plan` with a `ClusterState` built from it;
5. apply the decision (`Node.apply`), unless it is what the node already holds; what the node holds
   afterwards (as read back) is the configuration of interval k.

Retraining state. The node cannot see inside a training job, so the agent tracks it the way the
simulator defines it (DESIGN.md §3): it keeps a `TenantState` (accuracy, progress of the window's job,
whether it still runs), starts it as `Simulator.initial_state()` (post-retraining accuracy, no job) with
interval 0 at the agent's first round, and at every round steps it through the interval that just ended
with the observed rates and the configurations actually in place (so a window starts every
``window_s / interval_s`` rounds, the job advances by the training throughput of the tenant's retraining
instance, and a job unfinished at the window's end is abandoned). The same step gives that interval's
goodput, which the agent reports. With the fake backend and simulated load, replaying the configurations
the agent applied through `Simulator.run` gives the same goodput exactly (tested). As in the simulator,
the first interval starts with its configuration in place: when the agent starts on a node that holds
no owned instance, creating the first configuration is bring-up, charged to no interval; when it starts
on a node that already serves tenants, the planner sees that configuration and the first interval pays
for what it changes.

Failures: a planner exception keeps the configuration (counted, logged); an apply that fails
(`ApplyError`: rolled back, or stopped in a valid state) is logged and the next round plans and applies
again from the node as read back, which reconciles it; a stop request (SIGTERM) ends the loop after the
round in flight (an apply in flight gets `StopSignal.grace_s`, then stops between two operations with
its journal run open for the next start's `recover()`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.dynamics import changed_instances
from rlmig.errors import RlmigError
from rlmig.executor import ApplyError, ApplyResult
from rlmig.executor.planfile import configuration_json
from rlmig.inputs import read_json
from rlmig.loop import DecisionLoop, predicted_goodput
from rlmig.node.logs import event
from rlmig.node.metrics import AgentMetrics
from rlmig.node.node import AgentStopped, Node, StopSignal, require_gpus
from rlmig.node.rates import RateSource
from rlmig.planners.base import Decision, Planner
from rlmig.simulator import IntervalOutcome
from rlmig.workload import Workload

STATE_FORMAT = "rlmig-agent-state/1"

log = logging.getLogger("rlmig.node")


@dataclass
class RoundRecord:
    """What one round saw and did."""

    interval: int  # the interval this round decided (for a final round: the interval it accounted)
    result: str  # applied, unchanged, held, planner_error, apply_error, read_error, final
    rates: np.ndarray | None  # the rates read (held during an outage); None before any
    rates_fresh: bool
    forecast: np.ndarray | None  # (horizon, tenants)
    current: Configuration | None  # the node's configuration before the apply (workload's GPUs)
    configuration: Configuration | None  # the configuration in place for the interval decided
    decision: Decision | None = None
    decision_seconds: float = 0.0
    predicted_goodput: float | None = None
    outcome: IntervalOutcome | None = None  # the accounting of the interval before
    error: str | None = None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class NodeAgent:
    """Observe, forecast, plan, apply, account, every interval (see the module docstring)."""

    def __init__(
        self,
        workload: Workload,
        planner: Planner,
        node: Node,
        rates: RateSource,
        *,
        interval_s: float | None = None,
        forecaster: str = "auto",
        max_stale_s: float | None = None,
        metrics: AgentMetrics | None = None,
        stop: StopSignal | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        state_path: str | Path | None = None,
        measure_downtime: bool = False,
    ) -> None:
        """`state_path`: a file where the agent keeps its tenants' retraining state after every round,
        and from which a restarted agent goes on (see `save_state`). `measure_downtime`: account an
        interval's changed instances with the wall time its apply really took, not the workload's
        `downtime_s` (both are logged with each interval)."""
        if planner.foresight:
            raise RlmigError(f"planner {planner.name} needs the true future; a node agent only has forecasts")
        self.workload = workload
        self.planner = planner
        self.node = node
        self.source = rates
        self.interval_s = workload.interval_s if interval_s is None else float(interval_s)
        self.max_stale_s = 5 * workload.interval_s if max_stale_s is None else float(max_stale_s)
        self.metrics = metrics or AgentMetrics()
        self.stop = stop or getattr(node, "stop", None) or StopSignal()
        self.clock = clock
        self.wall = wall
        self.loop = DecisionLoop(workload, forecaster=forecaster, horizon=planner.horizon)
        self.simulator = self.loop.simulator
        self.last_rates: np.ndarray | None = None
        self.rates_at: float | None = None
        self.records: list[RoundRecord] = []
        self.started = False
        self.state_path = Path(state_path) if state_path is not None else None
        self.measure_downtime = measure_downtime
        self.apply_s: float | None = None  # wall time of the last round's apply (None: nothing applied)
        planner.reset(workload)

    # -- the node's configuration as the planner and the simulator see it ---------------------------

    def _ours(self, config: Configuration) -> Configuration:
        """The workload's GPUs of `config`, with owners the workload does not know shown as idle."""
        names = set(self.workload.tenant_names)
        retrains = {t.name for t in self.workload.tenants if t.retraining is not None}
        seen: set[str] = set()
        gpus: list[GpuConfig] = []
        for g in config.gpus[: self.workload.gpu_count]:
            if not g.mig_enabled:
                gpus.append(GpuConfig.whole(config.gpu, [t for t in g.time_shared if t in names]))
                continue
            owners: list[Owner | None] = []
            for owner in g.owners:
                keep = owner is not None and owner.tenant in names
                if keep and owner.role == "retraining":  # type: ignore[union-attr]
                    keep = owner.tenant in retrains and owner.tenant not in seen  # type: ignore[union-attr]
                    seen.add(owner.tenant)  # type: ignore[union-attr]
                owners.append(owner if keep else None)
            gpus.append(GpuConfig(g.layout, tuple(owners)))
        gpus += [GpuConfig(config.gpu.empty_layout(), ())] * (self.workload.gpu_count - len(gpus))
        return Configuration(config.gpu, tuple(gpus))

    def _target(self, config: Configuration) -> Configuration:
        """The planner's configuration over exactly the workload's GPUs (missing ones emptied)."""
        if config.gpu != self.workload.gpu:
            raise RlmigError(f"the planner answered for {config.gpu.name}, not {self.workload.gpu.name}")
        if len(config.gpus) > self.workload.gpu_count:
            raise RlmigError(f"the planner configured {len(config.gpus)} GPUs of {self.workload.gpu_count}")
        missing = self.workload.gpu_count - len(config.gpus)
        return Configuration(config.gpu, config.gpus + (GpuConfig(config.gpu.empty_layout(), ()),) * missing)

    @property
    def outcomes(self) -> list[IntervalOutcome]:
        """The accounting of every finished interval."""
        return self.loop.outcomes

    @property
    def configurations(self) -> list[Configuration]:
        """The configuration in place during each finished interval (the workload's GPUs)."""
        return self.loop.configurations

    def _changed(self, new: Configuration, old: Configuration | None) -> int:
        if old is None:
            return 0
        return int(changed_instances(self.simulator.encode(new), self.simulator.encode(old)).sum())

    # -- start, rounds, the loop --------------------------------------------------------------------

    def start(self) -> None:
        """Finish an interrupted apply from the journal, and check the node against the workload."""
        self.started = True
        try:
            recovered = self.node.recover()
        except AgentStopped:
            raise
        except Exception as exc:
            self.metrics.errors.labels(kind="recover").inc()
            event(log, "recover_failed", level=logging.ERROR, error=_one_line(exc))
        else:
            if recovered is not None:
                event(
                    log,
                    "recovered",
                    level=logging.WARNING,
                    status=recovered.status,
                    operations=len(recovered.applied),
                )
        config = require_gpus(self.node, self.workload.gpu, self.workload.gpu_count)
        self._restore_state(self._ours(config))
        if self.interval_s > 0 and abs(self.interval_s - self.workload.interval_s) > 1e-9:
            event(
                log,
                "interval_differs",
                level=logging.WARNING,
                interval_s=self.interval_s,
                workload_interval_s=self.workload.interval_s,
                note="the simulator's accounting and the retraining windows count workload intervals",
            )
        event(
            log,
            "started",
            workload=self.workload.name,
            planner=self.planner.name,
            backend=self.node.name,
            gpus=self.workload.gpu_count,
            interval_s=self.interval_s,
            node=str(self._ours(config)),
        )

    def _restore_state(self, placed: Configuration) -> None:
        """Go on from the saved state, if there is one (a restart: same window, same job progress)."""
        if self.state_path is None or not self.state_path.exists():
            return
        where = f"agent state {self.state_path}"
        try:
            doc = read_json(self.state_path, "the agent state")
        except RlmigError as exc:  # it names the file already
            raise RlmigError(f"{exc}; remove it to start afresh") from None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != STATE_FORMAT
            or not isinstance(doc.get("loop"), dict)
        ):
            raise RlmigError(f"{where}: not an {STATE_FORMAT} file; remove it to start afresh")
        try:
            self.loop.restore(doc["loop"], placed)
        except RlmigError as exc:
            raise RlmigError(f"{where}: {exc}; remove it to start afresh") from None
        event(log, "state_restored", path=str(self.state_path), interval=self.loop.k)

    def save_state(self) -> None:
        """Write the loop's snapshot (`DecisionLoop.snapshot`) to `state_path`, atomically (a temporary
        file, fsync'd, renamed over the old one)."""
        if self.state_path is None:
            return
        doc = {"format": STATE_FORMAT, "workload": self.workload.name, "loop": self.loop.snapshot()}
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps(doc) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    def _observe(self, now: float) -> tuple[np.ndarray | None, bool, str | None]:
        """The rates of the interval just ended (held during an outage), whether fresh, and the error."""
        try:
            reading = self.source.read()
        except Exception as exc:
            self.metrics.errors.labels(kind="rates").inc()
            error = _one_line(exc)
            event(
                log,
                "rates_unavailable",
                level=logging.WARNING,
                error=error,
                held_s=None if self.rates_at is None else round(now - self.rates_at, 3),
            )
            return self.last_rates, False, error
        rates = np.array([max(float(reading.get(t, 0.0)), 0.0) for t in self.workload.tenant_names])
        self.last_rates, self.rates_at = rates, now
        return rates, True, None

    def round(self) -> RoundRecord:
        """One round (see the module docstring). Failures of the planner, the node and the rate source
        are recorded, not raised; only `AgentStopped`, or at the first round a node that does not fit
        the workload (`RlmigError`), escape."""
        if not self.started:
            self.start()
        k, names = self.loop.k, self.workload.tenant_names
        now = self.clock()
        rates, fresh, rate_error = self._observe(now)
        # accounts interval k - 1 (no load during an outage), its changes at what they really cost
        downtime = self.apply_s if self.measure_downtime else None
        outcome = self.loop.observe(rates, downtime_s=downtime)
        self.apply_s = None
        if outcome is not None:
            self._report_interval(outcome, self.loop.configurations[-1], downtime)
        if rates is not None:
            for name, rate in zip(names, rates, strict=True):
                self.metrics.rate.labels(tenant=name).set(float(rate))
        age = 0.0 if self.rates_at is None else now - self.rates_at
        stale = rates is None or age > self.max_stale_s
        self.metrics.rates_age.set(age)
        self.metrics.rates_stale.set(1.0 if stale else 0.0)

        if getattr(self.source, "done", False):  # the simulated trace is over: nothing more to decide
            record = RoundRecord(k - 1, "final", rates, fresh, None, None, self.loop.placed, outcome=outcome)
            self.records.append(record)
            event(log, "trace_over", intervals=len(self.outcomes))
            return record

        forecast = None
        if rates is not None or self.loop.history:
            forecast = self.loop.forecast()
            for name, rate in zip(names, forecast[0], strict=True):
                self.metrics.forecast.labels(tenant=name).set(float(rate))
        record = self._decide(k, rates, fresh, forecast, stale, outcome, rate_error)
        self.records.append(record)
        self.metrics.interval.set(k)
        try:
            self.save_state()
        except OSError as exc:
            self.metrics.errors.labels(kind="state").inc()
            event(
                log, "state_not_saved", level=logging.ERROR, path=str(self.state_path), error=_one_line(exc)
            )
        return record

    def _decide(
        self,
        k: int,
        rates: np.ndarray | None,
        fresh: bool,
        forecast: np.ndarray | None,
        stale: bool,
        outcome: IntervalOutcome | None,
        rate_error: str | None,
    ) -> RoundRecord:
        sim = self.simulator
        try:
            node_config = self.node.read()
        except AgentStopped:
            raise
        except Exception as exc:
            self.metrics.errors.labels(kind="read").inc()
            self.metrics.rounds.labels(result="read_error").inc()
            error = _one_line(exc)
            event(log, "read_failed", level=logging.ERROR, interval=k, error=error)
            return self._hold(k, "read_error", rates, fresh, forecast, None, outcome, error)
        current = self._ours(node_config)
        if k == 0:  # nothing owned yet: bring-up, as the simulator's first interval (module docstring)
            self.loop.bring_up(current if current.tenants() else None)
        if stale or forecast is None:
            self.metrics.rounds.labels(result="held").inc()
            event(
                log,
                "holding",
                level=logging.WARNING,
                interval=k,
                reason=rate_error or "no rates yet",
                rates_age_s=None if self.rates_at is None else round(self.clock() - self.rates_at, 3),
            )
            return self._hold(k, "held", rates, fresh, forecast, current, outcome, rate_error)

        state = self.loop.cluster_state(self.loop.placed and current, forecast)
        started = time.perf_counter()
        try:
            decision = self.planner.plan(state)
            target = self._target(decision.configuration)
            sim.encode(target)  # a configuration the simulator refuses is the planner's error
        except AgentStopped:
            raise
        except Exception as exc:
            seconds = time.perf_counter() - started
            self.metrics.errors.labels(kind="planner").inc()
            self.metrics.rounds.labels(result="planner_error").inc()
            error = _one_line(exc)
            event(
                log,
                "planner_failed",
                level=logging.ERROR,
                interval=k,
                planner=self.planner.name,
                error=error,
                exception=type(exc).__name__,
            )
            record = self._hold(k, "planner_error", rates, fresh, forecast, current, outcome, error)
            record.decision_seconds = seconds
            return record
        seconds = time.perf_counter() - started
        decided_by = "fallback" if decision.fallback else "guard" if decision.overruled else "planner"
        self.metrics.decisions.labels(planner=self.planner.name, decided_by=decided_by).inc()
        if decision.fallback:
            event(log, "fallback_decision", interval=k, planner=self.planner.name, fallback=decision.fallback)
        self.metrics.decision_seconds.observe(seconds)

        result, error = "unchanged", None
        applied: ApplyResult | None = None
        placed = current
        if target != Configuration(node_config.gpu, node_config.gpus[: self.workload.gpu_count]):
            began = self.clock()
            try:
                applied = self.node.apply(target)
                self.apply_s = self.clock() - began
                self.metrics.apply_seconds.observe(self.apply_s)
                placed = self._ours(applied.state if applied.state is not None else self.node.read())
                result = "applied"
            except AgentStopped:
                raise
            except Exception as exc:
                self.apply_s = self.clock() - began  # rolled back or stopped: its instances were down too
                self.metrics.errors.labels(kind="apply").inc()
                result, error = "apply_error", _one_line(exc)
                placed = self._reread(exc, current)
                event(
                    log,
                    "apply_failed",
                    level=logging.ERROR,
                    interval=k,
                    error=error,
                    node=[str(g) for g in placed.gpus],
                )
        self.metrics.rounds.labels(result=result).inc()
        if applied is not None:
            for op in applied.applied:
                self.metrics.operations.labels(kind=op.kind).inc()
            if applied.pending:
                event(log, "mode_change_pending", level=logging.WARNING, gpus=sorted(applied.pending))
        if result != "apply_error":
            self.metrics.last_success.set(self.wall())
        predicted = self._commit(k, placed, forecast)
        record = RoundRecord(
            k, result, rates, fresh, forecast, current, placed, decision, seconds, predicted, outcome, error
        )
        event(
            log,
            "round",
            interval=k,
            result=result,
            planner=self.planner.name,
            decision_ms=round(seconds * 1e3, 3),
            predicted_goodput=predicted,
            rates=_per_tenant(self.workload, rates),
            forecast=_per_tenant(self.workload, forecast[0]),
            operations=len(applied.applied) if applied else 0,
            configuration=[str(g) for g in placed.gpus],
            error=error,
        )
        return record

    def _reread(self, exc: Exception, fallback: Configuration) -> Configuration:
        state = exc.result.state if isinstance(exc, ApplyError) else None
        if state is not None:
            return self._ours(state)
        try:
            return self._ours(self.node.read())
        except Exception:
            return fallback

    def _hold(
        self,
        k: int,
        result: str,
        rates: np.ndarray | None,
        fresh: bool,
        forecast: np.ndarray | None,
        current: Configuration | None,
        outcome: IntervalOutcome | None,
        error: str | None,
    ) -> RoundRecord:
        """Keep the configuration in place for interval k."""
        placed = current if current is not None else self.loop.placed
        predicted = self._commit(k, placed, forecast) if placed is not None else None
        if placed is None:
            self.loop.commit(None)
        return RoundRecord(
            k, result, rates, fresh, forecast, current, placed, None, 0.0, predicted, outcome, error
        )

    def _commit(self, k: int, placed: Configuration, forecast: np.ndarray | None) -> float | None:
        """Make `placed` the configuration of interval k; the goodput predicted for it on the forecast."""
        previous = self.loop.placed
        self.metrics.reconfigured.inc(self._changed(placed, previous))
        goodput = None
        if forecast is not None:  # before the commit: the prediction starts from interval k's state
            goodput = predicted_goodput(self.loop.cluster_state(previous, forecast), placed, 1)
        self.loop.commit(placed)
        self.metrics.instances.clear()
        for (tenant, role), count in _instances(placed).items():
            self.metrics.instances.labels(tenant=tenant, role=role).set(count)
        if goodput is None:
            return None
        arrivals = float(forecast[0].sum()) * self.workload.interval_s
        self.metrics.predicted_goodput.set(goodput)
        self.metrics.predicted_ratio.set(goodput / arrivals if arrivals else 1.0)
        return goodput

    def _report_interval(
        self, outcome: IntervalOutcome, placed: Configuration, downtime_s: float | None = None
    ) -> None:
        m, names = self.metrics, self.workload.tenant_names
        arrivals = float(outcome.rate.sum()) * self.workload.interval_s
        m.goodput.inc(float(outcome.goodput.sum()))
        m.arrivals.inc(arrivals)
        for i, name in enumerate(names):
            m.accuracy.labels(tenant=name).set(float(self.loop.tenants.accuracy[i]))
            samples = float(self.simulator.samples[i])
            progress = float(self.loop.tenants.progress[i])
            m.retraining.labels(tenant=name).set(progress / samples if samples else 0.0)
        event(
            log,
            "interval",
            index=outcome.index,
            goodput=float(outcome.goodput.sum()),
            arrivals=arrivals,
            reconfigured=outcome.reconfigured,
            # the downtime a changed instance was charged: the apply's measured wall time, or the
            # workload's figure (configured_downtime_s)
            downtime_s=self.workload.downtime_s if downtime_s is None else round(downtime_s, 3),
            configured_downtime_s=self.workload.downtime_s,
            configuration=configuration_json(placed),
            tenants=outcome.to_json(names, self.workload.interval_s)["tenants"],
        )

    def request_stop(self) -> None:
        """Stop after the round in flight (from a signal handler: only sets a flag)."""
        self.stop.request()

    def run(self, *, once: bool = False, rounds: int | None = None) -> int:
        """Rounds every `interval_s` (back to back when 0) until a stop, the end of a simulated trace,
        `rounds` rounds or, with `once`, one; returns the rounds run."""
        n = 0
        anchor = self.clock()
        try:
            while not self.stop.requested:
                record = self.round()
                n += 1
                if once or record.result == "final" or (rounds is not None and n >= rounds):
                    break
                if self.interval_s <= 0:
                    continue
                delay = anchor + n * self.interval_s - self.clock()
                if delay < 0:
                    event(
                        log,
                        "round_overran",
                        level=logging.WARNING,
                        interval=record.interval,
                        late_s=round(-delay, 3),
                    )
                    anchor -= delay  # start the schedule again from now
                    continue
                if self.stop.event.wait(delay):
                    break
        except AgentStopped as exc:
            event(
                log,
                "stopped_mid_apply",
                level=logging.WARNING,
                error=str(exc),
                note="the journal holds the open run; the next start recovers it",
            )
        event(log, "stopped", rounds=n, intervals=len(self.outcomes), stop_requested=self.stop.requested)
        return n


def _per_tenant(workload: Workload, values: np.ndarray | None) -> dict[str, float] | None:
    if values is None:
        return None
    return {name: round(float(v), 6) for name, v in zip(workload.tenant_names, values, strict=True)}


def _instances(config: Configuration) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for placed in config.placed():
        key = (placed.owner.tenant, placed.owner.role) if placed.owner else ("", "idle")
        counts[key] = counts.get(key, 0) + 1
    return counts
