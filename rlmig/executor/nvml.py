"""The nvml backend: MIG operations with explicit placements through NVML, and the node read back.

Usage::

    >>> from rlmig.executor.fake import FakeNvml
    >>> fake = FakeNvml("A100-80GB", 1)
    >>> backend = NvmlBackend("A100-80GB", fake)
    >>> backend.run(Operation("create_gi", 0, backend.gpu.instance("3g.40gb@4")))
    >>> backend.run(Operation("create_ci", 0, backend.gpu.instance("3g.40gb@4")))
    >>> [(str(o.instance), o.gi_id > 0, o.ci_ids) for o in backend.read().gpus[0].instances]
    [('3g.40gb@4', True, (0,))]

The backend takes the NVML module as a parameter (default: ``import pynvml``), so the same code runs
against the in-memory `rlmig.executor.fake.FakeNvml`. The calls are those of DESIGN.md §2: profiles by
their ``NVML_GPU_INSTANCE_PROFILE_*`` index constant (the result's ``.id`` is the profile ID, checked
against rlmig's geometry), ``nvmlDeviceCreateGpuInstanceWithPlacement`` with the plan's placement (checked
against the driver's possible placements first), the full-size compute instance with the shared engine
profile, destroys compute instances then the GPU instance, and processes read per MIG device handle.
Every NVML error becomes an `NvmlError` naming the GPU, the operation and the NVML error code.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from rlmig.errors import RlmigError
from rlmig.executor.state import NodeState, ObservedGpu, ObservedInstance
from rlmig.executor.transition import CI_PROFILE_INDEX, Operation
from rlmig.geometry import GpuModel, Instance, Profile, gpu_model

T = TypeVar("T")

#: NVML_GPU_INSTANCE_PROFILE_* index constant (name suffix) by (compute slices, memory slots, media
#: extension); the same table holds for the 8-slot GPUs (A100, H100, H200, B200) and the A30.
GI_PROFILE_CONSTANT: Mapping[tuple[int, int, bool], str] = {
    (1, 1, False): "1_SLICE",
    (1, 1, True): "1_SLICE_REV1",
    (1, 2, False): "1_SLICE_REV2",
    (2, 2, False): "2_SLICE",
    (2, 2, True): "2_SLICE_REV1",
    (3, 4, False): "3_SLICE",
    (4, 4, False): "4_SLICE",
    (7, 8, False): "7_SLICE",
}

_HINTS = {
    "NVML_ERROR_NO_PERMISSION": "MIG management needs root",
    "NVML_ERROR_NOT_SUPPORTED": "MIG is off on this GPU or it does not offer the profile",
    "NVML_ERROR_NOT_FOUND": "no such instance",
    "NVML_ERROR_IN_USE": "processes or compute instances still use it",
    "NVML_ERROR_INSUFFICIENT_RESOURCES": "no room: the placement is taken or the compute slices are used",
    "NVML_ERROR_RESET_REQUIRED": "the GPU needs a reset",
    "NVML_ERROR_LIBRARY_NOT_FOUND": "no NVIDIA driver (libnvidia-ml.so) on this machine",
    "NVML_ERROR_DRIVER_NOT_LOADED": "the NVIDIA driver is not loaded",
}


class NvmlError(RlmigError):
    """An NVML call failed; `code` is the NVML error code (`nvml_name` its NVML_ERROR_* name)."""

    def __init__(self, message: str, code: int, nvml_name: str) -> None:
        super().__init__(message)
        self.code = code
        self.nvml_name = nvml_name


class InstanceBusyError(RlmigError):
    """An instance to destroy still runs processes (no drain hook emptied it)."""


class ModeChangeRefused(RlmigError):
    """A MIG mode change that was not allowed."""


def gi_profile_index(nvml: Any, profile: Profile) -> int:
    """The NVML_GPU_INSTANCE_PROFILE_* index constant of a profile (a profile index, not its ID)."""
    key = (profile.compute, profile.slots, profile.media_extension)
    if key not in GI_PROFILE_CONSTANT:
        raise RlmigError(f"no NVML profile constant known for {profile.name}")
    return int(getattr(nvml, f"NVML_GPU_INSTANCE_PROFILE_{GI_PROFILE_CONSTANT[key]}"))


class NvmlBackend:
    """MIG operations on the GPUs of one node, through an NVML module (pynvml or the fake)."""

    name = "nvml"

    def __init__(self, gpu: GpuModel | str, nvml: Any = None, *, allow_mode_change: bool = False) -> None:
        if nvml is None:
            import pynvml as nvml
        self.gpu = gpu_model(gpu)
        self.nvml = nvml
        self.allow_mode_change = allow_mode_change
        self._error_names = {
            getattr(nvml, n): n
            for n in dir(nvml)
            if n.startswith("NVML_ERROR_") and isinstance(getattr(nvml, n), int)
        }
        self._initialized = False

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        mismatch = getattr(self.nvml, "NVMLLibraryMismatchError", ())  # not an NVMLError subclass
        try:
            return fn(*args)
        except self.nvml.NVMLError as exc:
            code = int(exc.value)
        except mismatch as exc:
            raise RlmigError(
                f"{what}: the NVML library does not match the driver ({exc or 'NVMLLibraryMismatchError'}); "
                "install the libnvidia-ml.so of the running driver"
            ) from None
        # Raised outside the handler: no __context__ (pynvml's NVMLError.__eq__ fails on other objects).
        name = self._error_names.get(code, f"NVML error {code}")
        hint = _HINTS.get(name)
        raise NvmlError(f"{what}: {name} ({code}){': ' + hint if hint else ''}", code, name)

    def _is(self, exc: NvmlError, name: str) -> bool:
        return self._is_code(exc.code, name)

    def _unsupported(self, exc: NvmlError) -> bool:
        """The driver has no such profile here (NOT_SUPPORTED, or INVALID_ARGUMENT for an index)."""
        return self._is(exc, "NVML_ERROR_NOT_SUPPORTED") or self._is(exc, "NVML_ERROR_INVALID_ARGUMENT")

    def _is_code(self, code: int, name: str) -> bool:
        return code == getattr(self.nvml, name, None)

    def open(self) -> NvmlBackend:
        """Initialise NVML (idempotent); `read` and `run` call it."""
        if not self._initialized:
            self._call("nvmlInit", self.nvml.nvmlInit)
            self._initialized = True
        return self

    def close(self) -> None:
        if self._initialized:
            self._initialized = False
            self._call("nvmlShutdown", self.nvml.nvmlShutdown)

    def __enter__(self) -> NvmlBackend:
        return self.open()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.close()
        except NvmlError:
            if exc_type is None:
                raise

    def _device(self, index: int) -> Any:
        self.open()
        return self._call(f"GPU {index}", self.nvml.nvmlDeviceGetHandleByIndex, index)

    def _profile_info(self, index: int, device: Any, profile: Profile) -> Any:
        what = f"GPU {index}: profile info of {profile.name}"
        info = self._call(
            what, self.nvml.nvmlDeviceGetGpuInstanceProfileInfo, device, gi_profile_index(self.nvml, profile)
        )
        if (info.id, info.sliceCount, info.instanceCount) != (profile.id, profile.compute, profile.max_count):
            raise RlmigError(
                f"GPU {index} is not a {self.gpu.name}: NVML reports {profile.name} as profile {info.id} "
                f"({info.sliceCount} slices, at most {info.instanceCount}), rlmig knows profile {profile.id} "
                f"({profile.compute} slices, at most {profile.max_count})"
            )
        return info

    def _list_gpu_instances(self, index: int, device: Any, info: Any) -> list[tuple[Any, Any]]:
        """(handle, GPU instance info) of every GPU instance of the profile `info` describes."""
        handles = (self.nvml.c_nvmlGpuInstance_t * max(int(info.instanceCount), 1))()
        count = ctypes.c_uint(0)
        what = f"GPU {index}: list the GPU instances of profile {info.id}"
        self._call(what, self.nvml.nvmlDeviceGetGpuInstances, device, info.id, handles, ctypes.byref(count))
        return [
            (handles[n], self._call(what, self.nvml.nvmlGpuInstanceGetInfo, handles[n]))
            for n in range(count.value)
        ]

    def _gpu_instances(self, index: int, device: Any, profile: Profile) -> list[tuple[Any, int, int]]:
        """(handle, GPU instance ID, placement start) of every GPU instance of a profile."""
        info = self._profile_info(index, device, profile)
        listed = self._list_gpu_instances(index, device, info)
        return [(handle, int(gi.id), int(gi.placement.start)) for handle, gi in listed]

    def _find(self, index: int, device: Any, inst: Instance) -> tuple[Any, int]:
        for handle, gi_id, start in self._gpu_instances(index, device, inst.profile):
            if start == inst.start:
                return handle, gi_id
        raise RlmigError(f"GPU {index}: no GPU instance {inst} (read back from NVML)")

    def _compute_instances(self, index: int, gi: Any, inst: Instance) -> list[tuple[Any, int]]:
        """(handle, compute instance ID) of every compute instance of a GPU instance, whatever its size."""
        found = []
        for slices, ci_index in sorted(CI_PROFILE_INDEX.items()):
            if slices > inst.profile.compute:
                continue
            what = f"GPU {index}: compute instance profile of {inst}"
            try:
                info = self._call(
                    what,
                    self.nvml.nvmlGpuInstanceGetComputeInstanceProfileInfo,
                    gi,
                    ci_index,
                    self.nvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
                )
            except NvmlError as exc:
                if self._unsupported(exc):
                    continue
                raise
            handles = (self.nvml.c_nvmlComputeInstance_t * max(info.instanceCount, 1))()
            count = ctypes.c_uint(0)
            what = f"GPU {index}: list compute instances of {inst}"
            self._call(
                what, self.nvml.nvmlGpuInstanceGetComputeInstances, gi, info.id, handles, ctypes.byref(count)
            )
            for n in range(count.value):
                ci_info = self._call(what, self.nvml.nvmlComputeInstanceGetInfo, handles[n])
                found.append((handles[n], int(ci_info.id)))
        return found

    def _mig_processes(self, index: int, device: Any) -> dict[int, list[int]]:
        """GPU instance ID -> PIDs of the processes running on it, through the MIG device handles."""
        by_gi: dict[int, list[int]] = {}
        what = f"GPU {index}: MIG devices"
        for n in range(self._call(what, self.nvml.nvmlDeviceGetMaxMigDeviceCount, device)):
            try:
                mig = self._call(what, self.nvml.nvmlDeviceGetMigDeviceHandleByIndex, device, n)
            except NvmlError as exc:
                if self._is(exc, "NVML_ERROR_NOT_FOUND"):
                    continue
                raise
            gi_id = self._call(what, self.nvml.nvmlDeviceGetGpuInstanceId, mig)
            procs = self._call(f"GPU {index}: processes", self.nvml.nvmlDeviceGetComputeRunningProcesses, mig)
            by_gi.setdefault(int(gi_id), []).extend(int(p.pid) for p in procs)
        return by_gi

    # -- reading back -----------------------------------------------------------------------

    def device_count(self) -> int:
        self.open()
        return int(self._call("GPU count", self.nvml.nvmlDeviceGetCount))

    def read(self) -> NodeState:
        """Every GPU of the node: MIG mode, instances with placements and IDs, running processes."""
        gpus = []
        for index in range(self.device_count()):
            device = self._device(index)
            try:
                current, pending = self._call(
                    f"GPU {index}: MIG mode", self.nvml.nvmlDeviceGetMigMode, device
                )
            except NvmlError as exc:
                if not self._is(exc, "NVML_ERROR_NOT_SUPPORTED"):
                    raise
                current = pending = 0
            enabled = current == self.nvml.NVML_DEVICE_MIG_ENABLE
            pending_enabled = pending == self.nvml.NVML_DEVICE_MIG_ENABLE
            if not enabled:
                procs = self._call(
                    f"GPU {index}: processes", self.nvml.nvmlDeviceGetComputeRunningProcesses, device
                )
                gpus.append(ObservedGpu(index, False, pending_enabled, (), tuple(int(p.pid) for p in procs)))
                continue
            by_gi = self._mig_processes(index, device)
            observed = []
            for profile in self.gpu.profiles:
                for handle, gi_id, start in self._gpu_instances(index, device, profile):
                    inst = Instance(profile, start)
                    ci_ids = tuple(sorted(ci for _, ci in self._compute_instances(index, handle, inst)))
                    observed.append(ObservedInstance(inst, gi_id, ci_ids, tuple(by_gi.get(gi_id, ()))))
            observed.sort(key=lambda o: o.instance.sort_key)
            foreign = self._foreign_instances(index, device)
            gpus.append(ObservedGpu(index, True, pending_enabled, tuple(observed), foreign=foreign))
        return NodeState(self.gpu, tuple(gpus))

    def _foreign_instances(self, index: int, device: Any) -> tuple[str, ...]:
        """GPU instances of every profile index the driver offers that rlmig's data does not hold (for
        example ``1_SLICE_REV1`` where gpus.yaml lacks it): made by someone else, invisible otherwise."""
        known = {p.id for p in self.gpu.profiles}
        found = []
        for profile_index in range(int(getattr(self.nvml, "NVML_GPU_INSTANCE_PROFILE_COUNT", 0))):
            try:
                info = self._call(
                    f"GPU {index}: profile info",
                    self.nvml.nvmlDeviceGetGpuInstanceProfileInfo,
                    device,
                    profile_index,
                )
            except NvmlError as exc:
                if self._unsupported(exc):
                    continue
                raise
            if int(info.id) in known:
                continue
            for _, gi in self._list_gpu_instances(index, device, info):
                place = gi.placement
                found.append(f"profile {info.id} at {place.start}:{place.size} (GPU instance {gi.id})")
        return tuple(found)

    def processes(self, index: int, inst: Instance | None) -> list[int]:
        """PIDs running on an instance (None: on the whole GPU)."""
        device = self._device(index)
        if inst is None:
            procs = self._call(
                f"GPU {index}: processes", self.nvml.nvmlDeviceGetComputeRunningProcesses, device
            )
            return [int(p.pid) for p in procs]
        _, gi_id = self._find(index, device, inst)
        return self._mig_processes(index, device).get(gi_id, [])

    # -- operations -------------------------------------------------------------------------

    def run(self, op: Operation) -> str | None:
        """Carry out one MIG operation; returns a note when its effect waits (a mode change before a reset).

        Tenant operations (drain, start) belong to the tenant hooks, not here.
        """
        device = self._device(op.gpu)
        inst = op.instance
        where = f"GPU {op.gpu}: {op.describe()}"
        nvml = self.nvml
        if op.kind == "set_mig_mode":
            return self._set_mig_mode(op, device)
        assert inst is not None
        if op.kind == "create_gi":
            self._profile_info(op.gpu, device, inst.profile)
            # `count` is output only and the driver writes every placement it has: ask for the count
            # first (a NULL array), then size the array from it (as go-nvml does).
            count = ctypes.c_uint(0)
            find = nvml.nvmlDeviceGetGpuInstancePossiblePlacements
            self._call(where, find, device, inst.profile.id, None, ctypes.byref(count))
            placements = (nvml.c_nvmlGpuInstancePlacement_t * max(count.value, 1))()
            self._call(where, find, device, inst.profile.id, placements, ctypes.byref(count))
            possible = {(placements[n].start, placements[n].size) for n in range(count.value)}
            if (inst.start, inst.profile.slots) not in possible:
                starts = ", ".join(str(s) for s, _ in sorted(possible))
                raise RlmigError(f"{where}: the driver does not offer this placement (starts: {starts})")
            placement = nvml.c_nvmlGpuInstancePlacement_t()
            placement.start, placement.size = inst.start, inst.profile.slots
            self._call(
                where,
                nvml.nvmlDeviceCreateGpuInstanceWithPlacement,
                device,
                inst.profile.id,
                ctypes.byref(placement),
            )
            return None
        gi, gi_id = self._find(op.gpu, device, inst)
        if op.kind == "create_ci":
            info = self._call(
                where,
                nvml.nvmlGpuInstanceGetComputeInstanceProfileInfo,
                gi,
                CI_PROFILE_INDEX[inst.profile.compute],
                nvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
            )
            self._call(where, nvml.nvmlGpuInstanceCreateComputeInstance, gi, info.id)
            return None
        pids = self._mig_processes(op.gpu, device).get(gi_id, [])
        if pids:
            shown = ", ".join(map(str, pids[:5])) + (", ..." if len(pids) > 5 else "")
            raise InstanceBusyError(
                f"{where}: refused, it still runs processes {shown} "
                "(drain its tenant first; no drain hook emptied it)"
            )
        if op.kind == "destroy_ci":
            for handle, _ in self._compute_instances(op.gpu, gi, inst):
                self._call(where, nvml.nvmlComputeInstanceDestroy, handle)
        else:
            self._call(where, nvml.nvmlGpuInstanceDestroy, gi)
        return None

    def _set_mig_mode(self, op: Operation, device: Any) -> str | None:
        state = "on" if op.mig_enabled else "off"
        if not self.allow_mode_change:
            raise ModeChangeRefused(
                f"GPU {op.gpu} needs its MIG mode turned {state}: not allowed (pass --allow-mode-change; "
                "on A100 and A30 the change then waits for a GPU reset)"
            )
        mode = self.nvml.NVML_DEVICE_MIG_ENABLE if op.mig_enabled else self.nvml.NVML_DEVICE_MIG_DISABLE
        where = f"GPU {op.gpu}: {op.describe()}"
        # The call returns the activation status: NVML_SUCCESS (done), NVML_ERROR_RESET_REQUIRED (pending
        # until a GPU reset) or NVML_ERROR_IN_USE (pending: processes still hold the GPU).
        status = int(self._call(where, self.nvml.nvmlDeviceSetMigMode, device, mode) or 0)
        device = self._device(op.gpu)  # a mode change may invalidate the handle: take it afresh
        current, _ = self._call(where, self.nvml.nvmlDeviceGetMigMode, device)
        if current == mode:
            return None
        name = self._error_names.get(status, f"status {status}")
        if self._is_code(status, "NVML_ERROR_IN_USE"):
            return (
                f"GPU {op.gpu}: MIG mode change to {state} is pending while the GPU is in use ({name}); "
                f"stop the processes on it, reset it (nvidia-smi -i {op.gpu} -r) and apply again"
            )
        if self._is_code(status, "NVML_ERROR_RESET_REQUIRED"):
            return (
                f"GPU {op.gpu}: MIG mode change to {state} is pending until a GPU reset ({name}); "
                f"reset it (nvidia-smi -i {op.gpu} -r) and apply again"
            )
        return f"GPU {op.gpu}: MIG mode change to {state} is pending ({name}); apply again later"
