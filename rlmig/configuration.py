"""Configurations: per GPU a valid MIG layout, and per instance an owner (DESIGN.md §3).

An owner is a tenant serving inference, a tenant retraining its model, or nobody (idle). In files and
on the command line an owned instance is written ``PROFILE@START=TENANT[:retraining]``, an idle one
``PROFILE@START``. A GPU with MIG disabled, time-sliced among tenants (the as-is baseline), is written
``whole=TENANT,TENANT`` (or ``whole`` when idle) in place of its list of instances.

A tenant retrains on at most one instance at a time: a training job cannot span MIG instances (CUDA IPC
and peer-to-peer transfers do not cross GPU instances, so data-parallel training across them is not
supported), so the simulator refuses a configuration that gives a tenant two retraining instances.

Usage::

    >>> from rlmig.geometry import gpu_model
    >>> gpu = gpu_model("A100-80GB")
    >>> config = Configuration.parse(gpu, [["4g.40gb@0=bert", "3g.40gb@4=bert:retraining"], ["7g.80gb@0"]])
    >>> print(config)
    GPU 0: 4g.40gb@0=bert 3g.40gb@4=bert:retraining
    GPU 1: 7g.80gb@0
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rlmig.errors import RlmigError
from rlmig.geometry import GpuModel, Instance, Layout

Role = Literal["inference", "retraining"]
ROLES: tuple[Role, ...] = ("inference", "retraining")


@dataclass(frozen=True, slots=True)
class Owner:
    """Who uses an instance: a tenant and what for."""

    tenant: str
    role: Role = "inference"

    def __str__(self) -> str:
        return self.tenant if self.role == "inference" else f"{self.tenant}:{self.role}"


@dataclass(frozen=True, slots=True)
class Placed:
    """One instance of a configuration: which GPU, which instance, and its owner (None: idle)."""

    gpu: int
    instance: Instance
    owner: Owner | None


@dataclass(frozen=True, slots=True)
class GpuConfig:
    """One GPU: its MIG layout and the owner of each instance (aligned with ``layout.instances``), or,
    with MIG disabled, the tenants that time-share the whole GPU (`GpuConfig.whole`)."""

    layout: Layout
    owners: tuple[Owner | None, ...]
    time_shared: tuple[str, ...] = ()
    mig_enabled: bool = True

    def __post_init__(self) -> None:
        if len(self.owners) != len(self.layout.instances):
            raise RlmigError(
                f"{len(self.owners)} owners given for {len(self.layout.instances)} instances of {self.layout}"
            )
        if not self.mig_enabled and self.layout.instances:
            raise RlmigError("a GPU with MIG disabled has no MIG instances")
        if self.time_shared and self.mig_enabled:
            raise RlmigError("only a GPU with MIG disabled is time-shared")
        if len(set(self.time_shared)) != len(self.time_shared):
            raise RlmigError(f"a tenant is listed twice on a time-shared GPU: {', '.join(self.time_shared)}")

    @classmethod
    def whole(cls, gpu: GpuModel, tenants: Iterable[str] = ()) -> GpuConfig:
        """A GPU with MIG disabled, time-sliced among `tenants` (serving inference), kept sorted."""
        return cls(gpu.empty_layout(), (), tuple(sorted(tenants)), mig_enabled=False)

    @property
    def used(self) -> bool:
        """Whether any instance of this GPU has an owner (or any tenant time-shares it)."""
        return bool(self.time_shared) or any(owner is not None for owner in self.owners)

    def items(self) -> Iterator[tuple[Instance, Owner | None]]:
        return zip(self.layout.instances, self.owners, strict=True)

    def __str__(self) -> str:
        if not self.mig_enabled:
            return "whole=" + ",".join(self.time_shared) if self.time_shared else "whole"
        if not self.layout.instances:
            return "(empty)"
        return " ".join(f"{inst}={owner}" if owner else str(inst) for inst, owner in self.items())


@dataclass(frozen=True, slots=True)
class Configuration:
    """A configuration of a cluster of GPUs of one model."""

    gpu: GpuModel
    gpus: tuple[GpuConfig, ...]

    @classmethod
    def empty(cls, gpu: GpuModel, count: int) -> Configuration:
        """Every GPU with no instance."""
        return cls(gpu, tuple(GpuConfig(gpu.empty_layout(), ()) for _ in range(count)))

    @classmethod
    def parse(
        cls, gpu: GpuModel, specs: Sequence[Iterable[str]], where: str = "configuration"
    ) -> Configuration:
        """Parse per GPU a list of ``PROFILE@START[=TENANT[:retraining]]``; errors name the entry."""
        gpus = []
        for index, entries in enumerate(specs):
            if isinstance(entries, str):
                name, _, tenants = entries.partition("=")
                if name.strip() != "whole":
                    raise RlmigError(f"{where}[{index}]: must be a list of instances or 'whole=TENANT,...'")
                shared = [t.strip() for t in tenants.split(",") if t.strip()]
                try:
                    gpus.append(GpuConfig.whole(gpu, shared))
                except RlmigError as exc:
                    raise RlmigError(f"{where}[{index}]: {exc}") from None
                continue
            instances: list[Instance] = []
            owners: list[Owner | None] = []
            for n, spec in enumerate(entries):
                try:
                    inst, owner = parse_owned_instance(gpu, spec)
                except RlmigError as exc:
                    raise RlmigError(f"{where}[{index}][{n}]: {exc}") from None
                instances.append(inst)
                owners.append(owner)
            try:
                layout = gpu.layout(instances)
            except RlmigError as exc:
                raise RlmigError(f"{where}[{index}]: {exc}") from None
            by_instance = dict(zip(instances, owners, strict=True))
            gpus.append(GpuConfig(layout, tuple(by_instance[i] for i in layout.instances)))
        return cls(gpu, tuple(gpus))

    def placed(self) -> Iterator[Placed]:
        """Every instance of every GPU with its owner, GPU by GPU in slot order."""
        for index, gpu_config in enumerate(self.gpus):
            for inst, owner in gpu_config.items():
                yield Placed(index, inst, owner)

    def tenants(self) -> set[str]:
        """The tenants that own at least one instance or time-share a GPU."""
        shared = {t for g in self.gpus for t in g.time_shared}
        return shared | {p.owner.tenant for p in self.placed() if p.owner is not None}

    def to_json(self) -> list[dict[str, object]]:
        """Per GPU: its index, whether MIG is on, the time-sharing tenants (MIG off) and the instances
        with profile, start, tenant (or null) and role."""
        return [
            {
                "index": index,
                "mig_enabled": gpu_config.mig_enabled,
                "time_shared": list(gpu_config.time_shared),
                "instances": [
                    {
                        **inst.to_json(),
                        "tenant": owner.tenant if owner else None,
                        "role": owner.role if owner else "idle",
                    }
                    for inst, owner in gpu_config.items()
                ],
            }
            for index, gpu_config in enumerate(self.gpus)
        ]

    def __str__(self) -> str:
        return "\n".join(f"GPU {i}: {g}" for i, g in enumerate(self.gpus))


def settle(layout: Layout, owners: Mapping[Instance, Owner], existing: Layout) -> GpuConfig:
    """A GPU's configuration from a chosen (maximal) layout and the owners of some of its instances,
    keeping idle only the instances that already exist (`existing`): none is created for nothing."""
    kept = [inst for inst in layout.instances if inst in owners or inst in existing.instances]
    settled = Layout(layout.gpu, tuple(kept))
    return GpuConfig(settled, tuple(owners.get(inst) for inst in settled.instances))


def parse_owned_instance(gpu: GpuModel, spec: str) -> tuple[Instance, Owner | None]:
    """Parse ``PROFILE@START[=TENANT[:ROLE]]`` with ROLE inference (default) or retraining."""
    if not isinstance(spec, str):
        raise RlmigError(f"expected PROFILE@START[=TENANT[:retraining]], got {spec!r}")
    placement, _, owner_spec = spec.partition("=")
    inst = gpu.instance(placement)
    if not owner_spec:
        return inst, None
    tenant, _, role = owner_spec.strip().partition(":")
    role = role.strip() or "inference"
    if not tenant.strip():
        raise RlmigError(f"{spec!r}: the tenant after '=' is empty")
    if role not in ROLES:
        raise RlmigError(f"{spec!r}: role must be one of {', '.join(ROLES)}, not {role!r}")
    return inst, Owner(tenant.strip(), role)  # type: ignore[arg-type]
