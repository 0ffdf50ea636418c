"""What a node really holds (as read back from NVML), and who the executor believes owns each instance.

Usage::

    >>> from rlmig.configuration import Configuration
    >>> from rlmig.geometry import gpu_model
    >>> gpu = gpu_model("A100-80GB")
    >>> book = OwnerBook.from_configuration(Configuration.parse(gpu, [["3g.40gb@4=bert"]]))
    >>> half_built = ObservedInstance(gpu.instance("3g.40gb@4"), gi_id=2)  # no compute instance
    >>> state = NodeState(gpu, (ObservedGpu(0, True, True, (half_built,)),))
    >>> print(state.configuration(book))
    GPU 0: 3g.40gb@4=bert
    >>> sorted(str(i) for _, i in state.incomplete())
    ['3g.40gb@4']

NVML knows instances, placements and processes, not tenants: owners come from what the executor itself
did (its journal) or from what the caller says runs where. The layout always comes from the hardware.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.errors import RlmigError
from rlmig.executor.transition import Operation
from rlmig.geometry import GpuModel, Instance


@dataclass(frozen=True, slots=True)
class ObservedInstance:
    """A GPU instance as read back: its placement, NVML IDs and running processes."""

    instance: Instance
    gi_id: int
    ci_ids: tuple[int, ...] = ()
    pids: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether it has a compute instance (a GPU instance without one is half-built)."""
        return bool(self.ci_ids)


@dataclass(frozen=True, slots=True)
class ObservedGpu:
    """One GPU as read back: its MIG mode (current and pending) and instances, or its processes when
    MIG is off."""

    index: int
    mig_enabled: bool
    mig_pending: bool
    instances: tuple[ObservedInstance, ...] = ()
    pids: tuple[int, ...] = ()
    # GPU instances of profiles rlmig's data does not hold (created by someone else): "profile ID at
    # start:size (GPU instance N)". They take memory slots rlmig cannot account for.
    foreign: tuple[str, ...] = ()

    @property
    def reset_pending(self) -> bool:
        """A MIG mode change waits for a GPU reset (NVML_ERROR_RESET_REQUIRED)."""
        return self.mig_enabled != self.mig_pending


@dataclass(frozen=True, slots=True)
class NodeState:
    """Every GPU of a node, as read back."""

    gpu: GpuModel
    gpus: tuple[ObservedGpu, ...]

    def find(self, gpu: int, instance: Instance) -> ObservedInstance | None:
        if gpu >= len(self.gpus):
            return None
        return next((o for o in self.gpus[gpu].instances if o.instance == instance), None)

    def incomplete(self) -> set[tuple[int, Instance]]:
        """The half-built GPU instances (no compute instance)."""
        return {(g.index, o.instance) for g in self.gpus for o in g.instances if not o.complete}

    def ids(self) -> dict[tuple[int, Instance], tuple[int, tuple[int, ...]]]:
        """(GPU, instance) -> (GPU instance ID, compute instance IDs), for ``nvidia-smi`` commands."""
        return {(g.index, o.instance): (o.gi_id, o.ci_ids) for g in self.gpus for o in g.instances}

    def configuration(self, owners: OwnerBook | None = None) -> Configuration:
        """The layouts read back, with the owners the book knows (an instance it does not know is idle)."""
        owners = owners or OwnerBook()
        configs = []
        for g in self.gpus:
            if not g.mig_enabled:
                configs.append(GpuConfig.whole(self.gpu, owners.shared.get(g.index, ())))
                continue
            try:
                layout = self.gpu.layout(o.instance for o in g.instances)
            except RlmigError as exc:
                raise RlmigError(f"GPU {g.index} as read back: {exc}") from None
            configs.append(GpuConfig(layout, tuple(owners.instances.get((g.index, i)) for i in layout)))
        return Configuration(self.gpu, tuple(configs))


@dataclass
class OwnerBook:
    """Who the executor believes runs where: per (GPU, instance) an owner, per MIG-off GPU its tenants."""

    instances: dict[tuple[int, Instance], Owner] = field(default_factory=dict)
    shared: dict[int, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_configuration(cls, config: Configuration) -> OwnerBook:
        book = cls()
        for p in config.placed():
            if p.owner is not None:
                book.instances[(p.gpu, p.instance)] = p.owner
        for index, g in enumerate(config.gpus):
            if g.time_shared:
                book.shared[index] = g.time_shared
        return book

    def apply(self, op: Operation) -> None:
        """Record a completed operation."""
        key = (op.gpu, op.instance)
        if op.kind in ("start", "drain") and op.instance is None:
            assert op.owner is not None
            tenants = tuple(t for t in self.shared.get(op.gpu, ()) if t != op.owner.tenant)
            self.shared[op.gpu] = (*tenants, op.owner.tenant) if op.kind == "start" else tenants
        elif op.kind == "start":
            assert op.owner is not None and op.instance is not None
            self.instances[(op.gpu, op.instance)] = op.owner
        elif op.kind == "drain" and self.instances.get(key) == op.owner:  # type: ignore[arg-type]
            del self.instances[key]  # type: ignore[arg-type]
        elif op.kind == "destroy_gi":
            self.instances.pop(key, None)  # type: ignore[arg-type]
        elif op.kind == "set_mig_mode":
            self.shared.pop(op.gpu, None)
            for k in [k for k in self.instances if k[0] == op.gpu]:
                del self.instances[k]

    def replay(self, ops: Iterable[Operation]) -> OwnerBook:
        for op in ops:
            self.apply(op)
        return self
