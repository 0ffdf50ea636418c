"""What the agent holds of a node: read its configuration, apply a target, recover, stop cleanly.

Usage::

    >>> from rlmig.executor import FakeNvml, FakeTenantHooks, NvmlBackend
    >>> from rlmig.configuration import Configuration
    >>> fake = FakeNvml("A100-80GB", 1)
    >>> node = ExecutorNode(NvmlBackend("A100-80GB", fake), hooks=FakeTenantHooks(fake))
    >>> target = Configuration.parse(fake.gpu, [["4g.40gb@0=bert", "3g.40gb@4=gpt"]])
    >>> node.apply(target).status, node.read() == target
    ('complete', True)

`ExecutorNode` is the nvml path (and the fake's): `rlmig.executor.Executor` plans from the node as read
back, journals, rolls back a failed apply and recovers an interrupted one. Its backend and hooks are
wrapped by a `StopSignal`: once a stop is requested (SIGTERM) and `grace_s` has passed, the next
operation raises `AgentStopped` before it starts, a BaseException that the executor does not catch, so
the apply ends with its journal run open, exactly as after a crash, and the next start's `recover()`
finishes it. Within the grace the apply in flight runs to its end.

`MigPartedNode` is the mig-parted path: it writes the nvidia-mig-parted config of each target (to a
file, and with a `MigManagerPublisher` into the GPU Operator's ConfigMap, then the node label) and takes
the target, as mig-parted will place it, for the node's configuration; it reads nothing back, but when
mig-manager reports ``failed`` for its label it forgets that target, so the next round applies again
(under a new label value, which mig-manager needs to act again).
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from rlmig.configuration import Configuration, Owner
from rlmig.errors import RlmigError
from rlmig.executor import ApplyResult, Executor, Journal, MigPartedBackend, NoopHooks, Operation, TenantHooks
from rlmig.executor.executor import DeviceHolders, OpBackend
from rlmig.executor.migparted import mig_parted_layouts
from rlmig.executor.state import NodeState
from rlmig.executor.transition import MIG_OPS
from rlmig.geometry import GpuModel, Instance
from rlmig.migparted import dump_mig_parted
from rlmig.node.kube import MigManagerPublisher
from rlmig.node.logs import event

log = logging.getLogger("rlmig.node")


class AgentStopped(BaseException):
    """The agent stopped between two operations of an apply; the journal holds the open run."""


class StopSignal:
    """A stop request (SIGTERM), and the grace an apply in flight gets before it is cut short."""

    def __init__(self, grace_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace_s = grace_s
        self.clock = clock
        self.event = threading.Event()
        self.at: float | None = None

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def request(self) -> None:
        if not self.event.is_set():
            self.at = self.clock()
            self.event.set()

    def check(self) -> None:
        """Raise `AgentStopped` when a stop was requested and its grace has passed."""
        if self.at is not None and self.clock() - self.at >= self.grace_s:
            raise AgentStopped(f"stopped {self.grace_s:g} s after the stop request, between two operations")


class Node(Protocol):
    """The node as the agent uses it."""

    name: str

    def read(self) -> Configuration:
        """The configuration in place, with the owners known."""

    def apply(self, target: Configuration) -> ApplyResult:
        """Bring the node to `target`; `rlmig.executor.ApplyError` when it cannot."""

    def recover(self) -> ApplyResult | None:
        """Finish an interrupted apply (None when there was none)."""


class _GuardedBackend:
    def __init__(self, backend: OpBackend, stop: StopSignal) -> None:
        self.backend = backend
        self.stop = stop
        self.name = backend.name

    @property
    def allow_mode_change(self) -> bool:
        return self.backend.allow_mode_change

    def read(self) -> NodeState:
        return self.backend.read()

    def run(self, op: Operation) -> str | None:
        self.stop.check()
        return self.backend.run(op)


class _GuardedHooks:
    def __init__(self, hooks: TenantHooks, stop: StopSignal) -> None:
        self.hooks = hooks
        self.stop = stop

    def drain(self, gpu: int, instance: Instance | None, owner: Owner) -> None:
        self.stop.check()
        self.hooks.drain(gpu, instance, owner)

    def start(self, gpu: int, instance: Instance | None, owner: Owner) -> None:
        self.stop.check()
        self.hooks.start(gpu, instance, owner)


class AroundMigChange(Protocol):
    """What runs around an apply that changes MIG instances (`rlmig.node.kube.GpuClients`)."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class ExecutorNode:
    """The nvml (or fake) path through `rlmig.executor.Executor` (see the module docstring).

    Around an apply that creates or destroys MIG instances (or changes a MIG mode), as mig-manager does:
    `gpu_clients` pauses the node's GPU clients before and brings them back after, whatever the apply's
    outcome; `post_apply` (a command, no shell) runs after a successful one, before the clients come
    back, for example ``nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml`` where CDI is used.
    Its failure is an apply error (the instances are in place; the next round finds nothing to do and
    does not run it again, so fix its cause and restart the clients by hand)."""

    def __init__(
        self,
        backend: OpBackend,
        *,
        journal: Journal | str | Path | None = None,
        hooks: TenantHooks | None = None,
        owners: Configuration | None = None,
        stop: StopSignal | None = None,
        name: str | None = None,
        gpu_clients: AroundMigChange | None = None,
        post_apply: Sequence[str] | None = None,
        post_apply_timeout_s: float = 300.0,
        device_holders: DeviceHolders | None = None,
    ) -> None:
        self.stop = stop or StopSignal()
        self.name = name or backend.name
        self.backend = backend
        self.gpu_clients = gpu_clients
        self.post_apply = list(post_apply) if post_apply else None
        self.post_apply_timeout_s = post_apply_timeout_s
        self.executor = Executor(
            _GuardedBackend(backend, self.stop),
            journal=journal,
            hooks=_GuardedHooks(hooks or NoopHooks(), self.stop),
            owners=owners,
            device_holders=device_holders,
        )

    def read(self) -> Configuration:
        return self.executor.observe()[1]

    def apply(self, target: Configuration) -> ApplyResult:
        if self.gpu_clients is None and self.post_apply is None:
            return self.executor.apply(target)
        if not any(op.kind in MIG_OPS for op in self.executor.plan(target).operations):
            return self.executor.apply(target)  # owners only: the GPU clients see the same devices
        if self.gpu_clients is not None:
            try:
                self.gpu_clients.pause()
            except BaseException:
                self.gpu_clients.resume()  # those already paused come back; nothing was applied
                raise
            event(log, "gpu_clients_paused")
        try:
            result = self.executor.apply(target)
            if self.post_apply is not None:
                self._run_post_apply()
            return result
        finally:
            if self.gpu_clients is not None:
                self.gpu_clients.resume()
                event(log, "gpu_clients_resumed")

    def _run_post_apply(self) -> None:
        assert self.post_apply is not None
        what = " ".join(self.post_apply)
        try:
            done = subprocess.run(
                self.post_apply,
                capture_output=True,
                text=True,
                timeout=self.post_apply_timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RlmigError(f"post-apply command {what!r}: {exc}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            raise RlmigError(f"post-apply command {what!r} exited {done.returncode}: {tail[0][:200]}")
        event(log, "post_apply_done", command=what)

    def recover(self) -> ApplyResult | None:
        return self.executor.recover() if self.executor.journal is not None else None

    def close(self) -> None:
        """Close the backend (NVML's shutdown), where it has anything to close."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()


def config_name(target: Configuration, prefix: str = "rlmig") -> str:
    """A label value naming the target's mig-parted layouts by their content."""
    text = dump_mig_parted(mig_parted_layouts(target), prefix)
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


class MigPartedNode:
    """The mig-parted path (see the module docstring)."""

    name = "mig-parted"

    def __init__(
        self,
        gpu: GpuModel,
        gpus: int,
        *,
        path: str | Path | None = None,
        publisher: MigManagerPublisher | None = None,
        current: Configuration | None = None,
        prefix: str = "rlmig",
    ) -> None:
        self.gpu = gpu
        self.path = Path(path) if path is not None else None
        self.publisher = publisher
        self.prefix = prefix
        self.current = current or Configuration.empty(gpu, gpus)
        self._before: Configuration | None = None  # the configuration before the last published target
        self._label: str | None = None
        self._attempt = 0

    def read(self) -> Configuration:
        if self.publisher is not None and self._label is not None and self._before is not None:
            label, state = self.publisher.state()
            if label == self._label and state == "failed":
                event(log, "mig_manager_failed", level=logging.ERROR, label=label)
                self.current, self._before, self._attempt = self._before, None, self._attempt + 1
            elif label == self._label and state == "success":
                self._before = None
        return self.current

    def apply(self, target: Configuration) -> ApplyResult:
        if self.publisher is not None and self._label is not None and self._before is not None:
            label, state = self.publisher.state()
            if label == self._label and state in (None, "pending", "rebooting"):
                raise RlmigError(
                    f"mig-manager is still applying {label} (nvidia.com/mig.config.state={state}): "
                    "not changing the label under it"
                )
        name = config_name(target, self.prefix) + (f"-r{self._attempt}" if self._attempt else "")
        backend = MigPartedBackend(self.path, config_name=name, current=self.current)
        result = backend.apply(target)
        if self.publisher is not None:
            if not self.publisher.publish(name, backend.config_text(target)):
                raise AgentStopped("stopped before labelling the node; nothing changed")
            self._label = name
            self._before = self.current
        self.current = result.plan.target
        return result

    def recover(self) -> ApplyResult | None:
        return None


def require_gpus(node: Node, gpu: GpuModel, gpus: int) -> Configuration:
    """The node's configuration, checked to hold at least `gpus` GPUs of model `gpu`."""
    config = node.read()
    if config.gpu != gpu:
        raise RlmigError(f"the node's GPUs are {config.gpu.name}, the workload's {gpu.name}")
    if len(config.gpus) < gpus:
        raise RlmigError(f"the workload needs {gpus} GPUs; the node has {len(config.gpus)}")
    return config
