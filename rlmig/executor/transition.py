"""Plans: the ordered MIG and tenant operations that turn a node's current configuration into a target.

Usage::

    >>> from rlmig.configuration import Configuration
    >>> from rlmig.geometry import gpu_model
    >>> gpu = gpu_model("A100-80GB")
    >>> current = Configuration.parse(gpu, [["4g.40gb@0=bert", "2g.20gb@4=gpt"]])
    >>> target = Configuration.parse(gpu, [["4g.40gb@0=gpt", "3g.40gb@4=bert"]])
    >>> print(plan_transition(current, target))
    1. GPU 0: drain gpt from 2g.20gb@4
    2. GPU 0: destroy compute instance of 2g.20gb@4
    3. GPU 0: destroy GPU instance 2g.20gb@4
    4. GPU 0: create GPU instance 3g.40gb@4 (profile 9, placement 4:4)
    5. GPU 0: create compute instance of 3g.40gb@4
    6. GPU 0: start bert on 3g.40gb@4
    7. GPU 0: drain bert from 4g.40gb@0
    8. GPU 0: start gpt on 4g.40gb@0

Per GPU the MIG steps come from `rlmig.geometry.diff_layouts` (make-before-break: a create runs as soon
as it fits; every intermediate layout is valid). An instance is identified by its GPU, profile and
placement, never by NVML IDs, which change whenever an instance is recreated. Instances kept in place
with the same owner are untouched; a kept instance whose owner changes is drained and restarted, not
recreated. Across GPUs the operations run in three phases, keeping each GPU's own order: first every
GPU's leading creates (before its first destroy), so that capacity comes up on all GPUs before any
goes down; then the rest of each GPU's steps and its MIG mode change, if any; last the re-owning of
kept instances, so that a tenant leaving an instance keeps serving there while its new ones come up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.errors import RlmigError
from rlmig.geometry import GpuModel, Instance, Layout, diff_layouts

OpKind = Literal["drain", "destroy_ci", "destroy_gi", "set_mig_mode", "create_gi", "create_ci", "start"]
OP_KINDS: tuple[OpKind, ...] = (
    "drain",
    "destroy_ci",
    "destroy_gi",
    "set_mig_mode",
    "create_gi",
    "create_ci",
    "start",
)
MIG_OPS: frozenset[str] = frozenset({"destroy_ci", "destroy_gi", "set_mig_mode", "create_gi", "create_ci"})
TENANT_OPS: frozenset[str] = frozenset({"drain", "start"})

#: NVML compute instance profile index (NVML_COMPUTE_INSTANCE_PROFILE_<n>_SLICE) by compute slices; on the
#: drivers rlmig knows the compute instance profile ID equals this index (``nvidia-smi mig -lcip``).
CI_PROFILE_INDEX: Mapping[int, int] = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4, 8: 5, 6: 6}


@dataclass(frozen=True, slots=True)
class Operation:
    """One step of a plan, on one GPU.

    `instance` is None for a tenant time-sharing a whole GPU (MIG disabled) and for `set_mig_mode`;
    `owner` is set for drain and start; `mig_enabled` for set_mig_mode.
    """

    kind: OpKind
    gpu: int
    instance: Instance | None = None
    owner: Owner | None = None
    mig_enabled: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise RlmigError(f"unknown operation {self.kind!r}")
        if self.kind in TENANT_OPS and self.owner is None:
            raise RlmigError(f"{self.kind} needs a tenant")
        if self.kind == "set_mig_mode" and self.mig_enabled is None:
            raise RlmigError("set_mig_mode needs the MIG mode to set")
        if self.kind in MIG_OPS - {"set_mig_mode"} and self.instance is None:
            raise RlmigError(f"{self.kind} needs an instance")

    def describe(self) -> str:
        """What the operation does, in words."""
        inst = str(self.instance) if self.instance is not None else "the whole GPU"
        match self.kind:
            case "drain":
                return f"drain {self.owner} from {inst}"
            case "start":
                return f"start {self.owner} on {inst}"
            case "destroy_ci":
                return f"destroy compute instance of {inst}"
            case "destroy_gi":
                return f"destroy GPU instance {inst}"
            case "create_ci":
                return f"create compute instance of {inst}"
            case "create_gi":
                assert self.instance is not None
                p = self.instance.profile
                return (
                    f"create GPU instance {inst} (profile {p.id}, placement {self.instance.start}:{p.slots})"
                )
            case _:
                return "enable MIG" if self.mig_enabled else "disable MIG"

    def __str__(self) -> str:
        return f"GPU {self.gpu}: {self.describe()}"

    def to_json(self) -> dict[str, Any]:
        """The operation as JSON (profiles by NVML ID, with the name shown alongside)."""
        doc: dict[str, Any] = {"op": self.kind, "gpu": self.gpu}
        if self.instance is not None:
            doc |= {"profile_id": self.instance.profile.id, "profile": self.instance.profile.name}
            doc["start"] = self.instance.start
        if self.owner is not None:
            doc |= {"tenant": self.owner.tenant, "role": self.owner.role}
        if self.mig_enabled is not None:
            doc["mig_enabled"] = self.mig_enabled
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], gpu: GpuModel) -> Operation:
        """Read back `to_json`."""
        instance = None
        if "profile_id" in doc:
            instance = Instance(gpu.profile(int(doc["profile_id"])), int(doc["start"]))
        owner = Owner(doc["tenant"], doc.get("role", "inference")) if doc.get("tenant") else None
        return cls(doc["op"], int(doc["gpu"]), instance, owner, doc.get("mig_enabled"))


@dataclass(frozen=True, slots=True)
class Transition:
    """The operations from `current` to `target`, in order, and the instances they leave untouched;
    `incomplete` names the GPU instances of `current` without a compute instance."""

    current: Configuration
    target: Configuration
    operations: tuple[Operation, ...]
    untouched: tuple[tuple[int, Instance], ...]
    incomplete: frozenset[tuple[int, Instance]] = frozenset()

    @property
    def gpu(self) -> GpuModel:
        return self.target.gpu

    @property
    def mode_changes(self) -> tuple[Operation, ...]:
        """The MIG mode changes (explicit operations: the nvml backend refuses them unless allowed)."""
        return tuple(op for op in self.operations if op.kind == "set_mig_mode")

    def count(self, kind: OpKind) -> int:
        return sum(op.kind == kind for op in self.operations)

    def summary(self) -> str:
        """One line: how many operations, and what they do to instances."""
        n = len(self.operations)
        kept = len(self.untouched)
        parts = [
            f"{kept} instance{'s' if kept != 1 else ''} untouched",
            f"{self.count('create_gi')} created",
            f"{self.count('destroy_gi')} destroyed",
        ]
        if self.mode_changes:
            modes = len(self.mode_changes)
            parts.append(f"{modes} MIG mode change{'s' if modes != 1 else ''}")
        return f"{n} operation{'s' if n != 1 else ''} ({', '.join(parts)})"

    def check(self) -> None:
        """Replay the plan over the current layouts; raise `RlmigError` at the first invalid step."""
        for _ in self.layouts():
            pass

    def layouts(self) -> Iterator[tuple[Operation, dict[int, Layout | None]]]:
        """After each operation, the layout of every GPU (None while MIG is off), each re-validated."""
        gpu = self.gpu
        layouts: dict[int, Layout | None] = {
            i: (g.layout if g.mig_enabled else None) for i, g in enumerate(self.current.gpus)
        }
        with_ci = {(p.gpu, p.instance) for p in self.current.placed()} - self.incomplete
        for op in self.operations:
            layout = layouts.get(op.gpu, gpu.empty_layout())
            inst = op.instance
            if op.kind == "set_mig_mode":
                if (layout is not None) == op.mig_enabled:
                    pass  # the mode it has: cancels a change that waits for a reset
                elif layout is not None and layout.instances:
                    raise RlmigError(f"{op}: GPU {op.gpu} still has instances")
                layouts[op.gpu] = gpu.empty_layout() if op.mig_enabled else None
            elif op.kind in MIG_OPS:
                assert inst is not None
                if layout is None:
                    raise RlmigError(f"{op}: MIG is off on GPU {op.gpu}")
                if op.kind == "create_gi":
                    layouts[op.gpu] = layout.plus(inst)
                elif op.kind == "destroy_gi":
                    if (op.gpu, inst) in with_ci:
                        raise RlmigError(f"{op}: its compute instance is still there")
                    layouts[op.gpu] = layout.minus(inst)
                elif inst not in layout.instances:
                    raise RlmigError(f"{op}: no such GPU instance")
                elif (op.kind == "create_ci") == ((op.gpu, inst) in with_ci):
                    raise RlmigError(
                        f"{op}: the compute instance {'is' if op.kind == 'create_ci' else 'is not'} there"
                    )
                elif op.kind == "create_ci":
                    with_ci.add((op.gpu, inst))
                else:
                    with_ci.discard((op.gpu, inst))
            yield op, dict(layouts)

    def nvidia_smi(
        self, ids: Mapping[tuple[int, Instance], tuple[int, tuple[int, ...]]] | None = None
    ) -> list[str]:
        """The equivalent ``nvidia-smi`` commands, one per operation (tenant hooks as comments).

        `ids` maps (GPU, instance) to the (GPU instance ID, compute instance IDs) of instances that exist
        now, as read back from the node; destroying one needs them. A GPU instance created by the plan
        gets its compute instance in the same command (``-cgi ID:START -C``), as its ID is not known yet.
        """
        ids = ids or {}
        lines: list[str] = []
        ops = self.operations
        skip_next = False
        for n, op in enumerate(ops):
            if skip_next:
                skip_next = False
                continue
            inst = op.instance
            where = f"nvidia-smi mig -i {op.gpu}"
            gi_id, ci_ids = ids.get((op.gpu, inst), (None, ())) if inst is not None else (None, ())
            gi = str(gi_id) if gi_id is not None else "<GI>"
            match op.kind:
                case "create_gi":
                    assert inst is not None
                    merged = n + 1 < len(ops) and ops[n + 1] == Operation("create_ci", op.gpu, inst)
                    lines.append(f"{where} -cgi {inst.profile.id}:{inst.start}" + (" -C" if merged else ""))
                    skip_next = merged
                case "create_ci":
                    assert inst is not None
                    lines.append(f"{where} -gi {gi} -cci {CI_PROFILE_INDEX[inst.profile.compute]}")
                case "destroy_ci":
                    lines.extend(f"{where} -dci -gi {gi} -ci {ci}" for ci in ci_ids or ("<CI>",))
                case "destroy_gi":
                    lines.append(f"{where} -dgi -gi {gi}")
                case "set_mig_mode":
                    lines.append(f"nvidia-smi -i {op.gpu} -mig {1 if op.mig_enabled else 0}")
                case _:
                    lines.append(f"# {op} (tenant hook)")
        return lines

    def __str__(self) -> str:
        if not self.operations:
            return "(nothing to do)"
        width = len(str(len(self.operations)))
        return "\n".join(f"{n:>{width}}. {op}" for n, op in enumerate(self.operations, 1))


def plan_transition(
    current: Configuration,
    target: Configuration,
    *,
    incomplete: Iterable[tuple[int, Instance]] = (),
    pending_modes: Mapping[int, bool] | None = None,
) -> Transition:
    """Order the operations that turn `current` into `target` (GPUs past the target's are left alone).

    `incomplete` names GPU instances of `current` that have no compute instance (half-built, as read
    back after a crash): kept ones are completed first, the others destroyed first. `pending_modes`
    gives, per GPU whose MIG mode change waits for a reset, the mode it would get: where the target
    keeps the current mode, the plan cancels the change (sets the current mode again) first.
    """
    if current.gpu != target.gpu:
        raise RlmigError(f"the node's GPUs are {current.gpu.name}, the target's are {target.gpu.name}")
    if len(target.gpus) > len(current.gpus):
        raise RlmigError(f"the target configures {len(target.gpus)} GPUs; the node has {len(current.gpus)}")
    half = set(incomplete)
    phases: tuple[list[Operation], list[Operation], list[Operation]] = ([], [], [])
    untouched: list[tuple[int, Instance]] = []
    for index, tgt in enumerate(target.gpus):
        cur = current.gpus[index]
        broken = {inst for g, inst in half if g == index and inst in cur.layout.instances}
        pending = (pending_modes or {}).get(index)
        if pending is not None and pending != cur.mig_enabled and cur.mig_enabled == tgt.mig_enabled:
            phases[0].append(Operation("set_mig_mode", index, mig_enabled=cur.mig_enabled))
        keep = _plan_gpu(index, cur, tgt, broken, phases)
        untouched.extend((index, inst) for inst in keep)
    ops = tuple(op for phase in phases for op in phase)
    return Transition(current, target, ops, tuple(untouched), frozenset(half))


def _plan_gpu(
    index: int,
    cur: GpuConfig,
    tgt: GpuConfig,
    broken: set[Instance],
    phases: tuple[list[Operation], list[Operation], list[Operation]],
) -> list[Instance]:
    """Append one GPU's operations to the three phases; return the instances left untouched."""
    early, middle, late = phases
    gpu = cur.layout.gpu
    cur_owner = dict(cur.items())
    tgt_owner = dict(tgt.items())

    def build(inst: Instance, owner: Owner | None) -> list[Operation]:
        ops = [Operation("create_gi", index, inst), Operation("create_ci", index, inst)]
        return ops + ([Operation("start", index, inst, owner)] if owner else [])

    def tear_down(inst: Instance, owner: Owner | None) -> list[Operation]:
        ops = [Operation("drain", index, inst, owner)] if owner else []
        if inst not in broken:
            ops.append(Operation("destroy_ci", index, inst))
        return [*ops, Operation("destroy_gi", index, inst)]

    def reown(inst: Instance | None, old: Owner | None, new: Owner | None) -> list[Operation]:
        ops = [Operation("drain", index, inst, old)] if old else []
        return ops + ([Operation("start", index, inst, new)] if new else [])

    if not cur.mig_enabled and not tgt.mig_enabled:
        early.extend(
            Operation("start", index, None, Owner(t)) for t in tgt.time_shared if t not in cur.time_shared
        )
        late.extend(
            Operation("drain", index, None, Owner(t)) for t in cur.time_shared if t not in tgt.time_shared
        )
        return []
    if cur.mig_enabled and not tgt.mig_enabled:
        for inst in cur.layout.instances:
            middle.extend(tear_down(inst, cur_owner[inst]))
        middle.append(Operation("set_mig_mode", index, mig_enabled=False))
        middle.extend(Operation("start", index, None, Owner(t)) for t in tgt.time_shared)
        return []
    if not cur.mig_enabled:
        middle.extend(Operation("drain", index, None, Owner(t)) for t in cur.time_shared)
        middle.append(Operation("set_mig_mode", index, mig_enabled=True))
        for step in diff_layouts(gpu.empty_layout(), tgt.layout).steps:
            middle.extend(build(step.instance, tgt_owner[step.instance]))
        return []

    # MIG on before and after: half-built instances first, then diff_layouts' steps.
    start = cur.layout
    for inst in cur.layout.instances:
        if inst in broken and inst not in tgt_owner:
            early.extend(tear_down(inst, cur_owner[inst]))
            start = start.minus(inst)
    diff = diff_layouts(start, tgt.layout)
    untouched: list[Instance] = []
    for inst in diff.keep:
        old, new = cur_owner[inst], tgt_owner[inst]
        if inst in broken:
            # Nothing can run without a compute instance: restart the owner even when it is unchanged.
            early.append(Operation("create_ci", index, inst))
            early.extend(reown(inst, old if old != new else None, new))
        elif old != new:
            late.extend(reown(inst, old, new))
        else:
            untouched.append(inst)
    leading = True
    for step in diff.steps:
        leading = leading and step.op == "create"
        bucket = early if leading else middle
        if step.op == "create":
            bucket.extend(build(step.instance, tgt_owner[step.instance]))
        else:
            bucket.extend(tear_down(step.instance, cur_owner[step.instance]))
    return untouched
