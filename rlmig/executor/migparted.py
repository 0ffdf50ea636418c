"""The mig-parted backend: hand the target to nvidia-mig-parted (and the GPU Operator) instead of NVML.

Usage::

    >>> from rlmig.configuration import Configuration
    >>> from rlmig.geometry import gpu_model
    >>> gpu = gpu_model("A100-80GB")
    >>> current = Configuration.parse(gpu, [["4g.40gb@0=bert", "2g.20gb@4=gpt"]])
    >>> target = Configuration.parse(gpu, [["4g.40gb@0=bert", "3g.40gb@4=gpt"]])
    >>> backend = MigPartedBackend(current=current, node="gpu-node-1")
    >>> print(backend.plan(target).summary())
    12 operations (0 instances untouched, 2 created, 2 destroyed)
    >>> backend.label_command()
    'kubectl label node gpu-node-1 nvidia.com/mig.config=rlmig --overwrite'

It writes the nvidia-mig-parted v1 config of the target (`rlmig.migparted`), to be applied by
``nvidia-mig-parted apply -f FILE -c NAME`` or, on Kubernetes, by the GPU Operator's mig-manager once the
node carries the label ``nvidia.com/mig.config=NAME`` (it reports progress in
``nvidia.com/mig.config.state``). rlmig calls no cluster: it prints the ``kubectl label`` command and the
equivalent merge patch. The trade-off: mig-parted takes profile counts, not placements, so it rebuilds
every GPU whose layout changed (drains all of that GPU's tenants, destroys every instance, recreates them
where it chooses) where the nvml backend touches only the instances that change; its plan here shows that
rebuild, with the placements rlmig expects it to pick. Tenants are not mig-parted's business.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.errors import RlmigError
from rlmig.executor.executor import ApplyResult
from rlmig.executor.transition import Operation, Transition
from rlmig.geometry import Instance, Layout, Profile, diff_layouts
from rlmig.migparted import DEFAULT_CONFIG_NAME, dump_mig_parted

LABEL = "nvidia.com/mig.config"
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


def mig_parted_layouts(target: Configuration) -> list[Layout | None]:
    """Per GPU its layout, or None where MIG is disabled (the input of `rlmig.migparted.to_mig_parted`)."""
    return [g.layout if g.mig_enabled else None for g in target.gpus]


def rebuild_plan(current: Configuration, target: Configuration) -> Transition:
    """What mig-parted does: every GPU whose profile counts or MIG mode differ is emptied and rebuilt.

    A GPU whose counts already match is left as it is (its tenants may still move between instances).
    The rebuilt instances are placed where `GpuModel.layout_for_counts` places them, which is what rlmig
    expects mig-parted to pick; mig-parted does not promise a placement. The plan's target carries
    those placements, with the target's owners assigned per profile in slot order.
    """
    if current.gpu != target.gpu:
        raise RlmigError(f"the node's GPUs are {current.gpu.name}, the target's are {target.gpu.name}")
    ops: list[Operation] = []
    untouched: list[tuple[int, Instance]] = []
    placed: list[GpuConfig] = []
    for index, tgt in enumerate(target.gpus):
        cur = current.gpus[index] if index < len(current.gpus) else GpuConfig(target.gpu.empty_layout(), ())
        same = cur.mig_enabled == tgt.mig_enabled and cur.layout.counts() == tgt.layout.counts()
        if not tgt.mig_enabled:
            placed.append(tgt)
        else:
            layout = cur.layout if same else tgt.layout.gpu.layout_for_counts(tgt.layout.counts())
            queues: dict[Profile, list[Owner | None]] = {}
            for inst, owner in tgt.items():
                queues.setdefault(inst.profile, []).append(owner)
            placed.append(GpuConfig(layout, tuple(queues[i.profile].pop(0) for i in layout.instances)))
        new = placed[-1]
        if same:
            for (inst, old), (_, owner) in zip(cur.items(), new.items(), strict=True):
                if old == owner:
                    untouched.append((index, inst))
                    continue
                ops.extend([Operation("drain", index, inst, old)] if old else [])
                ops.extend([Operation("start", index, inst, owner)] if owner else [])
            ops.extend(
                Operation("start", index, None, Owner(t)) for t in new.time_shared if t not in cur.time_shared
            )
            ops.extend(
                Operation("drain", index, None, Owner(t)) for t in cur.time_shared if t not in new.time_shared
            )
            continue
        ops.extend(Operation("drain", index, inst, owner) for inst, owner in cur.items() if owner)
        ops.extend(Operation("drain", index, None, Owner(t)) for t in cur.time_shared)
        for inst in cur.layout.instances:
            ops += [Operation("destroy_ci", index, inst), Operation("destroy_gi", index, inst)]
        if cur.mig_enabled != tgt.mig_enabled:
            ops.append(Operation("set_mig_mode", index, mig_enabled=tgt.mig_enabled))
        owners = dict(new.items())
        for step in diff_layouts(target.gpu.empty_layout(), new.layout).steps:
            ops += [
                Operation("create_gi", index, step.instance),
                Operation("create_ci", index, step.instance),
            ]
            owner = owners[step.instance]
            ops.extend([Operation("start", index, step.instance, owner)] if owner else [])
        ops.extend(Operation("start", index, None, Owner(t)) for t in new.time_shared)
    return Transition(current, Configuration(target.gpu, tuple(placed)), tuple(ops), tuple(untouched))


class MigPartedBackend:
    """Writes the mig-parted config for a target, and says how to label the node for the GPU Operator."""

    name = "mig-parted"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        config_name: str = DEFAULT_CONFIG_NAME,
        node: str | None = None,
        current: Configuration | None = None,
    ) -> None:
        if not _LABEL_VALUE.match(config_name):
            raise RlmigError(
                f"config name {config_name!r} cannot be a node label value "
                "(at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
            )
        self.path = Path(path) if path is not None else None
        self.config_name = config_name
        self.node = node
        self.current = current

    def config_text(self, target: Configuration) -> str:
        """The nvidia-mig-parted v1 YAML for the target."""
        return dump_mig_parted(mig_parted_layouts(target), self.config_name)

    def label_command(self) -> str | None:
        """The kubectl command that points the GPU Operator's mig-manager at the config (None: no node)."""
        if self.node is None:
            return None
        return f"kubectl label node {self.node} {LABEL}={self.config_name} --overwrite"

    def label_patch(self) -> dict[str, Any]:
        """The same label as a merge patch of the Node object."""
        return {"metadata": {"labels": {LABEL: self.config_name}}}

    def plan(self, target: Configuration) -> Transition:
        current = self.current or Configuration.empty(target.gpu, len(target.gpus))
        return rebuild_plan(current, target)

    def apply(self, target: Configuration) -> ApplyResult:
        """Write the config (atomically) where asked; the result's notes say what to run next."""
        plan = self.plan(target)
        notes = []
        if self.path is not None:
            _write_atomically(self.path, self.config_text(target))
            notes.append(
                f"wrote {self.path}: apply it with "
                f"nvidia-mig-parted apply -f {self.path} -c {self.config_name}"
            )
        command = self.label_command()
        if command:
            notes.append(f"or let the GPU Operator apply it: {command}")
        return ApplyResult("written", plan, (), None, notes=tuple(notes))


def _write_atomically(path: Path, text: str) -> None:
    if not path.parent.is_dir():  # never create directories the user did not ask for
        raise RlmigError(f"{path}: the folder {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise RlmigError(f"cannot write {path}: {exc.strerror or exc}") from None
