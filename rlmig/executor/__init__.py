"""Apply a configuration to a node's GPUs, safely: plan, backends, journal, rollback and recovery.

Usage::

    >>> from rlmig.configuration import Configuration
    >>> from rlmig.executor import Executor, FakeNvml, FakeTenantHooks, NvmlBackend
    >>> from rlmig.geometry import gpu_model
    >>> gpu = gpu_model("H100-80GB")
    >>> fake = FakeNvml(gpu, 2)                       # or pynvml itself: NvmlBackend(gpu)
    >>> executor = Executor(NvmlBackend(gpu, fake), hooks=FakeTenantHooks(fake))
    >>> target = Configuration.parse(gpu, [["4g.40gb@0=bert", "3g.40gb@4=gpt"], ["7g.80gb@0=llama"]])
    >>> print(executor.plan(target).summary())
    9 operations (0 instances untouched, 3 created, 0 destroyed)
    >>> executor.apply(target).status
    'complete'

The parts: `plan` orders the operations (make-before-break per GPU through
`rlmig.geometry.diff_layouts`, phases across GPUs); `nvml` carries them out through an NVML module with
explicit placements and reads the node back; `fake` is an in-memory NVML with fault injection; `executor`
journals, rolls back and recovers; `migparted` hands the target to nvidia-mig-parted instead;
`hooks` drain and start tenants; `planfile` reads ``rlmig plan --json`` output. See docs/executor.md.
"""

from rlmig.executor.executor import Applier, ApplyError, ApplyResult, Executor, OpBackend
from rlmig.executor.fake import FakeBufferOverflow, FakeCrash, FakeNvml, FakeTenantHooks
from rlmig.executor.hooks import CommandHooks, NoopHooks, TenantHooks
from rlmig.executor.journal import Journal, JournalRun
from rlmig.executor.migparted import MigPartedBackend, rebuild_plan
from rlmig.executor.nvml import InstanceBusyError, ModeChangeRefused, NvmlBackend, NvmlError
from rlmig.executor.planfile import configuration_json, load_configuration, parse_configuration
from rlmig.executor.state import NodeState, ObservedGpu, ObservedInstance, OwnerBook
from rlmig.executor.transition import Operation, Transition, plan_transition

__all__ = [
    "Applier",
    "ApplyError",
    "ApplyResult",
    "CommandHooks",
    "Executor",
    "FakeBufferOverflow",
    "FakeCrash",
    "FakeNvml",
    "FakeTenantHooks",
    "InstanceBusyError",
    "Journal",
    "JournalRun",
    "MigPartedBackend",
    "ModeChangeRefused",
    "NodeState",
    "NoopHooks",
    "NvmlBackend",
    "NvmlError",
    "ObservedGpu",
    "ObservedInstance",
    "OpBackend",
    "Operation",
    "OwnerBook",
    "TenantHooks",
    "Transition",
    "configuration_json",
    "load_configuration",
    "parse_configuration",
    "plan_transition",
    "rebuild_plan",
]
