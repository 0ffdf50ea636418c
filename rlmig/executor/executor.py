"""The executor: plan from the real state, apply operation by operation under a journal, roll back or recover.

Usage::

    >>> from rlmig.configuration import Configuration
    >>> from rlmig.executor.fake import FakeNvml, FakeTenantHooks
    >>> from rlmig.executor.nvml import NvmlBackend
    >>> from rlmig.geometry import gpu_model
    >>> gpu = gpu_model("A100-80GB")
    >>> current = Configuration.parse(gpu, [["4g.40gb@0=bert", "2g.20gb@4=gpt"]])
    >>> fake = FakeNvml.from_configuration(current)    # the node: instances, and a process per owner
    >>> executor = Executor(NvmlBackend(gpu, fake), hooks=FakeTenantHooks(fake), owners=current)
    >>> result = executor.apply(Configuration.parse(gpu, [["4g.40gb@0=bert", "3g.40gb@4=gpt"]]))
    >>> result.status, len(result.applied), str(result.state)
    ('complete', 6, 'GPU 0: 4g.40gb@0=bert 3g.40gb@4=gpt')

Every apply starts from the truth: the backend reads the node back (instances, placements, compute
instances, processes), owners come from the caller or the journal, and the plan goes from there to the
target (`rlmig.executor.transition`), so an interrupted run is recovered by applying again. Each operation is
journaled before (intent) and after (done) it runs. When one fails, the executor reads the node back and
rolls back to the configuration it started from, by a plan of its own; if the rollback fails too, it
stops there, in a valid state, which it reports. A crash leaves the journal without an end record:
`recover` reads the node back and reconciles to the interrupted run's target. A GPU instance without
its compute instance (half-built) is completed when the target keeps it and destroyed otherwise.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn, Protocol

from rlmig.configuration import Configuration
from rlmig.errors import RlmigError
from rlmig.executor.hooks import NoopHooks, TenantHooks
from rlmig.executor.journal import Journal
from rlmig.executor.nvml import InstanceBusyError, ModeChangeRefused
from rlmig.executor.state import NodeState, OwnerBook
from rlmig.executor.transition import Operation, Transition, plan_transition
from rlmig.geometry import Profile

Status = Literal["complete", "pending_reset", "rolled_back", "stopped", "written"]


class DeviceHolders(Protocol):
    """Who holds MIG devices beyond what NVML sees (`rlmig.node.kube.PodDeviceHolders`): a pod the kubelet
    gave a MIG device keeps it even while it runs no process (init, crash loop)."""

    def holders(self, profile: Profile) -> int:
        """How many devices of `profile` the node's running pods hold."""


class OpBackend(Protocol):
    """A backend that carries out MIG operations one by one (`rlmig.executor.nvml.NvmlBackend`)."""

    name: str
    allow_mode_change: bool

    def read(self) -> NodeState:
        """The node as it is."""

    def run(self, op: Operation) -> str | None:
        """Carry out a MIG operation; a returned note says its effect waits (a reset)."""


@dataclass(frozen=True)
class ApplyResult:
    """How an apply ended: the plan, what was applied, the node reached and what waits."""

    status: Status
    plan: Transition
    applied: tuple[Operation, ...] = ()
    state: Configuration | None = None
    pending: dict[int, str] = field(default_factory=dict)
    error: str | None = None
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        n = len(self.applied)
        done = f"applied {n} operation{'s' if n != 1 else ''}"
        match self.status:
            case "complete":
                return f"{done}; the node is at the target"
            case "pending_reset":
                return f"{done}; {len(self.pending)} GPU(s) wait for a reset to change MIG mode"
            case "rolled_back":
                return f"{done}; rolled back to the starting configuration after: {self.error}"
            case "stopped":
                return f"{done}; stopped in a valid state after: {self.error}"
            case _:
                return "; ".join(self.notes) or self.status


class ApplyError(RlmigError):
    """An apply that did not reach its target; `result` says where the node is."""

    def __init__(self, message: str, result: ApplyResult) -> None:
        super().__init__(message)
        self.result = result


class Applier(Protocol):
    """The interface every backend offers the CLI and the node agent."""

    name: str

    def plan(self, target: Configuration) -> Transition:
        """The operations that would turn the node into `target`."""

    def apply(self, target: Configuration) -> ApplyResult:
        """Turn the node into `target` (raises `ApplyError` when it cannot)."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Executor:
    """Applies configurations to a node through an `OpBackend`, under an optional journal."""

    def __init__(
        self,
        backend: OpBackend,
        *,
        journal: Journal | str | Path | None = None,
        hooks: TenantHooks | None = None,
        owners: Configuration | None = None,
        drain_wait_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        device_holders: DeviceHolders | None = None,
    ) -> None:
        """`drain_wait_s`: how long a new owner's start waits for the processes of the instance's
        drained owner to exit (a drain hook may return before they do); `sleep` waits between reads."""
        self.backend = backend
        self.drain_wait_s = drain_wait_s
        self.sleep = sleep
        self.device_holders = device_holders
        self.name = backend.name
        self.journal = Journal(journal) if isinstance(journal, str | Path) else journal
        self.hooks: TenantHooks = hooks or NoopHooks()
        self.owners = owners
        self._known: OwnerBook | None = None  # what this executor did last, once it has applied anything

    # -- reading ------------------------------------------------------------------------------

    def _book(self, state: NodeState) -> OwnerBook:
        """Owners: what this executor did last, else the caller's word, else the journal (an interrupted
        run's replay, or the last end state)."""
        if self._known is not None:
            return OwnerBook(dict(self._known.instances), dict(self._known.shared))
        if self.owners is not None:
            return OwnerBook.from_configuration(self.owners)
        run = self.journal.last_run(state.gpu) if self.journal else None
        return run.owners() if run is not None else OwnerBook()

    def observe(self) -> tuple[NodeState, Configuration, OwnerBook]:
        """The node read back, its configuration with the known owners, and the owner book."""
        state = self.backend.read()
        book = self._book(state)
        return state, state.configuration(book), book

    def plan(self, target: Configuration) -> Transition:
        state, current, _ = self.observe()
        return self._plan(state, current, target)

    def _plan(self, state: NodeState, current: Configuration, target: Configuration) -> Transition:
        pending = {g.index: g.mig_pending for g in state.gpus if g.reset_pending}
        plan = plan_transition(current, target, incomplete=state.incomplete(), pending_modes=pending)
        plan.check()
        touched = {op.gpu for op in plan.operations}
        for g in state.gpus:
            if g.foreign and g.index in touched:
                raise RlmigError(
                    f"GPU {g.index} holds GPU instances of profiles rlmig does not know "
                    f"({', '.join(g.foreign)}): remove them, or leave this GPU out of the workload; "
                    "nothing was changed"
                )
        return plan

    # -- applying -----------------------------------------------------------------------------

    def apply(self, target: Configuration) -> ApplyResult:
        """Bring the node to `target`; raises `ApplyError` (rolled back, or stopped) when an operation
        fails."""
        state, current, book = self.observe()
        plan = self._plan(state, current, target)
        if plan.mode_changes and not self.backend.allow_mode_change:
            gpus = ", ".join(str(op.gpu) for op in plan.mode_changes)
            raise ModeChangeRefused(
                f"GPU {gpus} needs a MIG mode change: not allowed (pass --allow-mode-change; "
                "on A100 and A30 the change then waits for a GPU reset); nothing was changed"
            )
        return self._apply(plan, book, "apply")

    def recover(self) -> ApplyResult | None:
        """Finish the journal's interrupted run (reconcile to its target); None when none was interrupted."""
        if self.journal is None:
            raise RlmigError("recovery needs a journal")
        state = self.backend.read()
        run = self.journal.last_run(state.gpu)
        if run is None or run.finished:
            return None
        book = run.owners()
        plan = self._plan(state, state.configuration(book), run.target)
        return self._apply(plan, book, run.phase)

    def _apply(self, plan: Transition, book: OwnerBook, phase: str) -> ApplyResult:
        run = uuid.uuid4().hex[:12]
        self._known = book  # updated in place as operations complete
        if self.journal:
            self.journal.begin(run, phase, plan)
        applied: list[Operation] = []
        pending: dict[int, str] = {}
        failure: Exception | None = None
        try:
            self._execute(run, plan, book, applied, pending)
        except Exception as exc:
            failure = exc
        if failure is not None:  # handled outside the except clause: no implicit exception chain
            self._fail(run, plan, book, applied, failure)
        state = self.backend.read().configuration(book)
        status: Status = "pending_reset" if pending else "complete"
        if self.journal:
            self.journal.end(run, status, state)
        return ApplyResult(status, plan, tuple(applied), state, pending)

    def _execute(
        self, run: str, plan: Transition, book: OwnerBook, applied: list[Operation], pending: dict[int, str]
    ) -> None:
        drained: set[tuple[int, object]] = set()  # MIG instances whose owner this run drained
        for seq, op in enumerate(plan.operations):
            if op.gpu in pending:
                continue  # its MIG mode change waits for a reset: nothing more can happen on it
            if self.journal:
                self.journal.intent(run, seq, op)
            try:
                if op.kind == "drain":
                    assert op.owner is not None
                    self.hooks.drain(op.gpu, op.instance, op.owner)
                    if op.instance is not None:
                        drained.add((op.gpu, op.instance))
                elif op.kind == "start":
                    assert op.owner is not None
                    if (op.gpu, op.instance) in drained:
                        self._wait_until_empty(op)
                    self.hooks.start(op.gpu, op.instance, op.owner)
                else:
                    if (
                        op.kind == "destroy_gi"
                        and op.instance is not None
                        and self.device_holders is not None
                    ):
                        self._check_holders(op)
                    note = self.backend.run(op)
                    if note:
                        pending[op.gpu] = note
            except Exception as exc:
                if self.journal:
                    self.journal.failed(run, seq, _one_line(exc))
                raise _Failed(op, exc) from _chainable(exc)
            if self.journal:
                self.journal.done(run, seq)
            book.apply(op)
            applied.append(op)

    def _check_holders(self, op: Operation) -> None:
        """Refuse to destroy an instance while the node's pods hold more devices of its profile than
        would remain: some pod would lose the device the kubelet gave it (pigeonhole; the kubelet's
        device plugin hands out devices per node and profile, so this is the check without its
        PodResources API)."""
        assert op.instance is not None and self.device_holders is not None
        profile = op.instance.profile
        held = self.device_holders.holders(profile)
        remaining = (
            sum(1 for g in self.backend.read().gpus for o in g.instances if o.instance.profile == profile) - 1
        )
        if held > remaining:
            raise InstanceBusyError(
                f"GPU {op.gpu}: {op.describe()} refused: {held} running pods on this node hold "
                f"{profile.name} devices and only {remaining} would remain (drain those pods first)"
            )

    def _wait_until_empty(self, op: Operation) -> None:
        """Wait (up to `drain_wait_s`) for the instance of a start to run no process: its previous owner
        was drained, but a drain hook may return before the processes exit, and two tenants must never
        share an instance."""
        waited, step = 0.0, 0.5
        while True:
            observed = self.backend.read().find(op.gpu, op.instance) if op.instance is not None else None
            pids = observed.pids if observed is not None else ()
            if not pids:
                return
            if waited >= self.drain_wait_s:
                shown = ", ".join(map(str, pids[:5])) + (", ..." if len(pids) > 5 else "")
                raise InstanceBusyError(
                    f"GPU {op.gpu}: {op.instance} still runs processes {shown} {self.drain_wait_s:g} s "
                    f"after its drain: not starting {op.owner} there"
                )
            self.sleep(step)
            waited += step

    def _fail(
        self, run: str, plan: Transition, book: OwnerBook, applied: list[Operation], exc: Exception
    ) -> NoReturn:
        """Roll back to the plan's start after `exc`; raise `ApplyError` saying where the node is."""
        cause = exc.cause if isinstance(exc, _Failed) else exc
        error = _one_line(cause)
        if isinstance(exc, _Failed) and not error.startswith("GPU "):
            error = f"{exc.op}: {error}"
        if self.journal:
            self.journal.end(run, "failed", None)
        rollback_run = uuid.uuid4().hex[:12]
        undone: list[Operation] = []
        stop: Exception | None = None
        try:
            state = self.backend.read()
            back = self._plan(state, state.configuration(book), plan.current)
            if self.journal:
                self.journal.begin(rollback_run, "rollback", back)
            self._execute(rollback_run, back, book, undone, {})
        except Exception as again:
            stop = again
        if stop is not None:
            reason = _one_line(stop.cause if isinstance(stop, _Failed) else stop)
            try:
                reached: Configuration | None = self.backend.read().configuration(book)
            except Exception:
                reached = None
            if self.journal:
                self.journal.end(rollback_run, "stopped", reached)
            result = ApplyResult("stopped", plan, (*applied, *undone), reached, error=error)
            message = f"{error}; rolling back failed too ({reason}): stopped in a valid state"
            raise ApplyError(message, result) from _chainable(cause)
        reached = self.backend.read().configuration(book)
        if self.journal:
            self.journal.end(rollback_run, "rolled_back", reached)
        result = ApplyResult("rolled_back", plan, (*applied, *undone), reached, error=error)
        outcome = (
            "nothing was changed"
            if not applied and not undone
            else "rolled back to the starting configuration"
        )
        raise ApplyError(f"{error}; {outcome}", result) from _chainable(cause)


def _chainable(exc: BaseException) -> BaseException | None:
    """`exc`, to chain for debugging, unless it is a pynvml error (whose __eq__ fails on other objects)."""
    return None if isinstance(getattr(exc, "value", None), int) else exc


class _Failed(Exception):
    """An operation failed (wraps the cause with the operation)."""

    def __init__(self, op: Operation, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.op = op
        self.cause = cause
