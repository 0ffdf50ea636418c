"""An in-memory NVML: the pynvml functions, constants and errors the executor uses, over simulated GPUs.

Usage::

    >>> import ctypes, pynvml
    >>> fake = FakeNvml("A100-40GB", 1)
    >>> fake.nvmlInit()
    >>> h = fake.nvmlDeviceGetHandleByIndex(0)
    >>> info = fake.nvmlDeviceGetGpuInstanceProfileInfo(h, fake.NVML_GPU_INSTANCE_PROFILE_3_SLICE)
    >>> (info.id, info.sliceCount, info.instanceCount, info.memorySizeMB)
    (9, 3, 2, 19968)
    >>> placement = fake.c_nvmlGpuInstancePlacement_t(4, 4)
    >>> gi = fake.nvmlDeviceCreateGpuInstanceWithPlacement(h, 9, ctypes.byref(placement))
    >>> taken = fake.c_nvmlGpuInstancePlacement_t(4, 2)
    >>> try:
    ...     fake.nvmlDeviceCreateGpuInstanceWithPlacement(h, 14, ctypes.byref(taken))
    ... except pynvml.NVMLError_InsufficientResources as exc:
    ...     print(exc.value)
    23

`FakeNvml` stands in for the ``pynvml`` module: the same function names and signatures (handles are
ctypes pointers, arrays and counts are filled through ctypes as the real library does), the same
constants, and errors raised as ``pynvml.NVMLError`` subclasses with the real codes. The rules come from
`rlmig.geometry`: profile index constant -> profile ID per GPU model, valid placements, maximum counts,
compute slices. GPU instances get IDs as unpredictable as the driver's (any free one, drawn from a
generator seeded with `seed`), and an ID may be reused after a destroy; `serial` tells instances apart
across that.

Beyond NVML it runs processes on instances (`spawn`, `kill`, used by `FakeTenantHooks`), resets a GPU
(`reset`), and injects faults: `fail` (the n-th call of a function raises an NVML error),
`fail_operation` (the n-th state-changing call raises), `crash_after` (after n state-changing calls,
raise `FakeCrash`, as if the process had died), `deny_permission` (not root). `observe` registers a
callback run after every state-changing call, to check each intermediate state.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pynvml

from rlmig.configuration import Configuration, Owner
from rlmig.errors import RlmigError
from rlmig.executor.nvml import gi_profile_index
from rlmig.executor.transition import CI_PROFILE_INDEX
from rlmig.geometry import GpuModel, Instance, Layout, Profile, gpu_model

F = TypeVar("F", bound=Callable[..., Any])

_CI_SLICES = {index: slices for slices, index in CI_PROFILE_INDEX.items()}
_NO_ID = 0xFFFFFFFF


class FakeBufferOverflow(BaseException):
    """The real driver would have written past the end of a caller's buffer (memory corruption)."""


class FakeCrash(BaseException):
    """The executor's process 'died' (fault injection). Not an Exception: no handler catches it."""


def _error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


@dataclass(eq=False)
class _Process:
    pid: int
    tag: str


@dataclass(eq=False)
class _Ci:
    id: int
    slices: int
    key: int
    mig_key: int
    processes: list[_Process] = field(default_factory=list)


@dataclass(eq=False)
class _Gi:
    id: int
    profile: Profile
    start: int
    key: int
    serial: int
    cis: dict[int, _Ci] = field(default_factory=dict)

    @property
    def instance(self) -> Instance:
        return Instance(self.profile, self.start)


@dataclass(eq=False)
class _Gpu:
    index: int
    key: int
    mig_current: bool
    mig_pending: bool
    reset_required: bool
    gis: dict[int, _Gi] = field(default_factory=dict)
    processes: list[_Process] = field(default_factory=list)


@dataclass
class _Fault:
    function: str | None  # None: any state-changing call
    nth: int
    error: int
    times: int | None
    nvml_only: bool = False  # only NVML calls (not the fake's own process simulation)
    seen: int = 0


def _api(mutating: bool = False) -> Callable[[F], F]:
    """Count the call, inject faults, and after a state change run observers and the crash countdown."""

    def wrap(fn: F) -> F:
        name = fn.__name__

        @functools.wraps(fn)
        def call(self: FakeNvml, *args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name.startswith("nvml") and not name.startswith("nvmlInit") and not self.initialized:
                raise _error(pynvml.NVML_ERROR_UNINITIALIZED)
            self._inject(name, mutating)
            result = fn(self, *args, **kwargs)
            if mutating:
                self.operations += 1
                for observer in self.observers:
                    observer(name)
                if self._crash_at is not None and self.operations >= self._crash_at:
                    self._crash_at = None
                    raise FakeCrash(f"crashed after {name} (state-changing call {self.operations})")
            return result

        return call  # type: ignore[return-value]

    return wrap


def _deref(ref: Any) -> Any:
    """The object behind ``ctypes.byref(x)`` or ``ctypes.pointer(x)``; INVALID_ARGUMENT otherwise."""
    if ref is None:
        return None
    if hasattr(ref, "_obj"):
        return ref._obj
    if isinstance(ref, ctypes._Pointer):
        return ref.contents
    raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)


def _fill(array: Any, handles: list[Any], count_ref: Any) -> None:
    count = _deref(count_ref)
    if count is None:
        raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    if array is None:
        count.value = len(handles)
        return
    if len(array) < len(handles):
        count.value = len(handles)
        raise _error(pynvml.NVML_ERROR_INSUFFICIENT_SIZE)
    for n, handle in enumerate(handles):
        array[n] = handle
    count.value = len(handles)


class FakeNvml:
    """A node of `count` GPUs of one model behind the pynvml API (see the module docstring)."""

    def __init__(
        self,
        gpu: GpuModel | str,
        count: int = 1,
        *,
        mig_enabled: bool | Iterable[bool] = True,
        reset_required: bool | None = None,
        extra_placements: dict[str, tuple[int, ...]] | None = None,
        seed: int = 0,
        foreign_profiles: dict[int, Profile] | None = None,
    ) -> None:
        """`extra_placements`: per profile name, starts the driver lists among a profile's possible
        placements beyond the GPU model's (a driver that knows more than rlmig's data); listed only."""
        self.gpu = gpu_model(gpu)
        self.extra_placements = dict(extra_placements or {})
        # profile index constant -> a profile the driver offers beyond the GPU model's (rlmig's data):
        # someone else may create its instances (nvidia-smi), rlmig does not know it
        self.foreign_profiles = dict(foreign_profiles or {})
        self._ids = random.Random(seed)  # GPU instance IDs (`seed`: which ones)
        enabled = [mig_enabled] * count if isinstance(mig_enabled, bool) else list(mig_enabled)
        if len(enabled) != count:
            raise RlmigError(f"mig_enabled names {len(enabled)} GPUs, not {count}")
        if reset_required is None:  # Ampere holds a mode change until a reset; Hopper and later do not
            reset_required = self.gpu.name.startswith(("A100", "A30"))
        self.initialized = False
        self.calls: Counter[str] = Counter()
        self.operations = 0
        self.observers: list[Callable[[str], None]] = []
        self._faults: list[_Fault] = []
        self._crash_at: int | None = None
        self._objects: dict[int, object] = {}
        self._keys = itertools.count(0x1000, 0x10)
        self._serials = itertools.count(1)
        self._pids = itertools.count(4200)
        self.gpus: list[_Gpu] = []
        for index, on in enumerate(enabled):
            g = _Gpu(index, 0, on, on, reset_required)
            g.key = self._register(g)
            self.gpus.append(g)

    @classmethod
    def from_configuration(cls, config: Configuration, count: int | None = None, **kwargs: Any) -> FakeNvml:
        """A fake node already in `config` (extra GPUs empty), each owner running one process."""
        count = max(count or 0, len(config.gpus))
        enabled = [g.mig_enabled for g in config.gpus] + [True] * (count - len(config.gpus))
        fake = cls(config.gpu, count, mig_enabled=enabled, **kwargs)
        for index, g in enumerate(config.gpus):
            for tenant in g.time_shared:
                fake.gpus[index].processes.append(_Process(next(fake._pids), tenant))
            for inst, owner in g.items():
                gi = fake._new_gi(fake.gpus[index], inst)
                ci = fake._new_ci(gi, inst.profile.compute)
                if owner is not None:
                    ci.processes.append(_Process(next(fake._pids), str(owner)))
        return fake

    # -- handles ----------------------------------------------------------------------------

    def _register(self, obj: object) -> int:
        key = next(self._keys)
        self._objects[key] = obj
        return key

    @staticmethod
    def _handle(key: int, kind: Any) -> Any:
        return ctypes.cast(ctypes.c_void_p(key), kind)

    def _resolve(self, handle: Any, cls: type) -> Any:
        try:
            key = ctypes.cast(handle, ctypes.c_void_p).value
        except (TypeError, ctypes.ArgumentError):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT) from None
        obj = self._objects.get(key or 0)
        if isinstance(obj, cls):
            return obj
        if cls is _Gpu and isinstance(obj, _Ci):
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)  # a MIG device handle where a GPU is wanted
        raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def _device(self, handle: Any) -> _Gpu:
        return self._resolve(handle, _Gpu)

    def _mig(self, handle: Any) -> tuple[_Gpu, _Gi, _Ci]:
        ci = self._resolve(handle, _Ci)
        for g in self.gpus:
            for gi in g.gis.values():
                if ci in gi.cis.values():
                    return g, gi, ci
        raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)  # pragma: no cover - stale handles are unregistered

    def _gi(self, handle: Any) -> tuple[_Gpu, _Gi]:
        gi = self._resolve(handle, _Gi)
        return next(g for g in self.gpus if gi in g.gis.values()), gi

    def _ci(self, handle: Any) -> tuple[_Gpu, _Gi, _Ci]:
        ci = self._resolve(handle, _Ci)
        return self._mig(self._handle(ci.key, pynvml.c_nvmlComputeInstance_t))

    # -- faults -----------------------------------------------------------------------------

    def fail(self, function: str, error: int, nth: int = 1, times: int | None = 1) -> None:
        """From now on, the `nth` call of `function` (and the next `times - 1`; None: all) raises `error`."""
        self._faults.append(_Fault(function, nth, error, times))

    def fail_operation(self, nth: int, error: int) -> None:
        """The `nth` state-changing call from now on raises `error` (no effect)."""
        self._faults.append(_Fault(None, nth, error, 1))

    def deny_permission(self) -> None:
        """Every state-changing NVML call raises NVML_ERROR_NO_PERMISSION, as for a user who is not root."""
        self._faults.append(_Fault(None, 1, pynvml.NVML_ERROR_NO_PERMISSION, None, nvml_only=True))

    def crash_after(self, n: int) -> None:
        """Raise `FakeCrash` right after the `n`-th state-changing call from now on has taken effect."""
        self._crash_at = self.operations + n

    def disarm(self) -> None:
        """Drop every pending fault and crash."""
        self._faults.clear()
        self._crash_at = None

    def observe(self, callback: Callable[[str], None]) -> None:
        """Run `callback(function name)` after every state-changing call."""
        self.observers.append(callback)

    def _inject(self, name: str, mutating: bool) -> None:
        for fault in self._faults:
            if fault.nvml_only and not name.startswith("nvml"):
                continue
            if fault.function == name or (fault.function is None and mutating):
                fault.seen += 1
                last = None if fault.times is None else fault.nth + fault.times - 1
                if fault.seen >= fault.nth and (last is None or fault.seen <= last):
                    raise _error(fault.error)

    # -- inspection and processes (not NVML) ------------------------------------------------

    def layout(self, index: int) -> Layout | None:
        """The GPU's layout (half-built instances included), validated; None while MIG is off."""
        g = self.gpus[index]
        return self.gpu.layout(gi.instance for gi in g.gis.values()) if g.mig_current else None

    def instances(self, index: int) -> dict[Instance, _Gi]:
        return {gi.instance: gi for gi in self.gpus[index].gis.values()}

    def half_built(self, index: int) -> list[Instance]:
        return [gi.instance for gi in self.gpus[index].gis.values() if not gi.cis]

    def tenants(self, index: int) -> dict[Instance | None, list[str]]:
        """Process tags per instance (None: the whole GPU)."""
        g = self.gpus[index]
        found: dict[Instance | None, list[str]] = {}
        if g.processes:
            found[None] = [p.tag for p in g.processes]
        for gi in g.gis.values():
            tags = [p.tag for ci in gi.cis.values() for p in ci.processes]
            if tags:
                found[gi.instance] = tags
        return found

    def _processes(self, index: int, inst: Instance | None) -> list[_Process]:
        g = self.gpus[index]
        if inst is None:
            if g.mig_current:
                raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return g.processes
        gi = self.instances(index).get(inst)
        if gi is None:
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        if not gi.cis:
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)  # nothing can run without a compute instance
        return min(gi.cis.values(), key=lambda c: c.id).processes

    @_api(mutating=True)
    def spawn(self, index: int, inst: Instance | None, tag: str) -> int:
        """Start a process tagged `tag` on an instance (None: the whole GPU); returns its PID."""
        pid = next(self._pids)
        self._processes(index, inst).append(_Process(pid, tag))
        return pid

    @_api(mutating=True)
    def kill(self, index: int, inst: Instance | None, tag: str | None = None) -> int:
        """Kill the processes on an instance (only those tagged `tag` when given); returns how many."""
        procs = self._processes(index, inst)
        doomed = [p for p in procs if tag is None or p.tag == tag]
        for p in doomed:
            procs.remove(p)
        return len(doomed)

    def reset(self, index: int) -> None:
        """A GPU reset: the pending MIG mode takes effect and every instance and process is gone."""
        g = self.gpus[index]
        for gi in list(g.gis.values()):
            self._drop_gi(g, gi)
        g.processes.clear()
        g.mig_current = g.mig_pending

    # -- internals --------------------------------------------------------------------------

    def _new_gi(self, g: _Gpu, inst: Instance) -> _Gi:
        # The driver's GPU instance IDs follow no rule a caller may rely on: any free one of 1 .. 14.
        gi_id = self._ids.choice([i for i in range(1, 15) if i not in g.gis])
        gi = _Gi(gi_id, inst.profile, inst.start, 0, next(self._serials))
        gi.key = self._register(gi)
        g.gis[gi_id] = gi
        return gi

    def _new_ci(self, gi: _Gi, slices: int) -> _Ci:
        ci_id = next(i for i in itertools.count(0) if i not in gi.cis)
        ci = _Ci(ci_id, slices, 0, 0)
        ci.key = self._register(ci)
        ci.mig_key = ci.key  # the MIG device handle of a compute instance
        gi.cis[ci_id] = ci
        return ci

    def _drop_gi(self, g: _Gpu, gi: _Gi) -> None:
        for ci in gi.cis.values():
            self._objects.pop(ci.key, None)
        del g.gis[gi.id]
        self._objects.pop(gi.key, None)

    def _profile_by_index(self, g: _Gpu, index: int) -> Profile:
        if not 0 <= index < pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if index in self.foreign_profiles:
            return self.foreign_profiles[index]
        for p in self.gpu.profiles:
            if gi_profile_index(pynvml, p) == index:
                return p
        raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def _profile_by_id(self, profile_id: int) -> Profile:
        for p in self.foreign_profiles.values():
            if p.id == int(profile_id):
                return p
        try:
            return self.gpu.profile(int(profile_id))
        except RlmigError:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED) from None

    def _layout(self, g: _Gpu) -> Layout:
        return Layout(
            self.gpu, tuple(sorted((gi.instance for gi in g.gis.values()), key=lambda i: i.sort_key))
        )

    def _require_mig(self, g: _Gpu) -> None:
        if not g.mig_current:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def _gi_info(self, g: _Gpu, gi: _Gi) -> Any:
        info = pynvml.c_nvmlGpuInstanceInfo_t()
        info.device = self._handle(g.key, pynvml.c_nvmlDevice_t)
        info.id, info.profileId = gi.id, gi.profile.id
        info.placement.start, info.placement.size = gi.start, gi.profile.slots
        return info

    # -- NVML: library and devices ----------------------------------------------------------

    @_api()
    def nvmlInit(self) -> None:
        self.initialized = True

    @_api()
    def nvmlInitWithFlags(self, flags: int) -> None:
        self.initialized = True

    @_api()
    def nvmlShutdown(self) -> None:
        self.initialized = False

    @_api()
    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    @_api()
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        if not 0 <= index < len(self.gpus):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._handle(self.gpus[index].key, pynvml.c_nvmlDevice_t)

    @_api()
    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._device(handle)
        return f"NVIDIA {self.gpu.name} (fake)"

    @_api()
    def nvmlDeviceGetMigMode(self, device: Any) -> list[int]:
        g = self._device(device)
        return [int(g.mig_current), int(g.mig_pending)]

    @_api(mutating=True)
    def nvmlDeviceSetMigMode(self, device: Any, mode: int) -> int:
        g = self._device(device)
        if mode not in (pynvml.NVML_DEVICE_MIG_DISABLE, pynvml.NVML_DEVICE_MIG_ENABLE):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if g.gis and bool(mode) != g.mig_current:
            raise _error(pynvml.NVML_ERROR_IN_USE)
        g.mig_pending = bool(mode)
        if g.mig_current != g.mig_pending and g.processes:
            return pynvml.NVML_ERROR_IN_USE  # the activation status: pending, the GPU is not idle
        if g.mig_current != g.mig_pending and g.reset_required:
            return pynvml.NVML_ERROR_RESET_REQUIRED  # the activation status: pending until a reset
        g.mig_current = g.mig_pending
        return pynvml.NVML_SUCCESS

    @_api()
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        try:
            g, gi, ci = self._mig(handle)
            procs = [(p, gi.id, ci.id) for p in ci.processes]
        except pynvml.NVMLError:
            g = self._device(handle)
            procs = [(p, _NO_ID, _NO_ID) for p in g.processes]
            for gi in g.gis.values():
                procs += [(p, gi.id, ci.id) for ci in gi.cis.values() for p in ci.processes]
        return [
            pynvml.nvmlFriendlyObject(
                {"pid": p.pid, "usedGpuMemory": 1 << 30, "gpuInstanceId": gi_id, "computeInstanceId": ci_id}
            )
            for p, gi_id, ci_id in procs
        ]

    # -- NVML: GPU instances ----------------------------------------------------------------

    @_api()
    def nvmlDeviceGetGpuInstanceProfileInfo(self, device: Any, profile: int, version: int = 2) -> Any:
        g = self._device(device)
        self._require_mig(g)
        p = self._profile_by_index(g, profile)
        info = (
            pynvml.c_nvmlGpuInstanceProfileInfo_v2_t()
            if version == 2
            else pynvml.c_nvmlGpuInstanceProfileInfo_t()
        )
        info.id, info.sliceCount, info.instanceCount = p.id, p.compute, p.max_count
        info.multiprocessorCount = p.sms or 0
        info.memorySizeMB = p.memory_mb or int(p.memory_gb * 1024)
        if version == 2:
            info.name = f"MIG {p.name}".encode()
        return info

    @_api()
    def nvmlDeviceGetGpuInstanceRemainingCapacity(self, device: Any, profileId: int) -> int:
        g = self._device(device)
        self._require_mig(g)
        p = self._profile_by_id(profileId)
        layout, added = self._layout(g), 0
        for start in p.starts:
            if layout.can_add(Instance(p, start)):
                layout, added = layout.plus(Instance(p, start)), added + 1
        return added

    @_api()
    def nvmlDeviceGetGpuInstancePossiblePlacements(
        self, device: Any, profileId: int, placementsRef: Any, countRef: Any
    ) -> int:
        g = self._device(device)
        self._require_mig(g)
        p = self._profile_by_id(profileId)
        starts = (*p.starts, *self.extra_placements.get(p.name, ()))
        count = _deref(countRef)  # output only: the driver does not read it
        if placementsRef is not None:
            if len(placementsRef) < len(starts):
                # The driver writes every placement it has: past the end of a short buffer.
                raise FakeBufferOverflow(
                    f"nvmlDeviceGetGpuInstancePossiblePlacements would write {len(starts)} placements into "
                    f"a buffer of {len(placementsRef)}"
                )
            for n, start in enumerate(starts):
                placementsRef[n].start, placementsRef[n].size = start, p.slots
        count.value = len(starts)
        return pynvml.NVML_SUCCESS

    def _create_gi(self, g: _Gpu, p: Profile, start: int) -> Any:
        inst = Instance(p, start)
        if not self._layout(g).can_add(inst):
            raise _error(pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
        return self._handle(self._new_gi(g, inst).key, pynvml.c_nvmlGpuInstance_t)

    @_api(mutating=True)
    def nvmlDeviceCreateGpuInstanceWithPlacement(self, device: Any, profileId: int, placement: Any) -> Any:
        g = self._device(device)
        self._require_mig(g)
        p = self._profile_by_id(profileId)
        place = _deref(placement)
        if not isinstance(place, pynvml.c_nvmlGpuInstancePlacement_t):
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if place.start not in p.starts or place.size != p.slots:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._create_gi(g, p, place.start)

    @_api(mutating=True)
    def nvmlDeviceCreateGpuInstance(self, device: Any, profileId: int) -> Any:
        g = self._device(device)
        self._require_mig(g)
        p = self._profile_by_id(profileId)
        layout = self._layout(g)
        # The driver's own choice is not first-fit; the fake takes the last start that fits.
        start = next((s for s in reversed(p.starts) if layout.can_add(Instance(p, s))), p.starts[0])
        return self._create_gi(g, p, start)

    @_api()
    def nvmlDeviceGetGpuInstances(
        self, device: Any, profileId: int, gpuInstancesRef: Any, countRef: Any
    ) -> int:
        g = self._device(device)
        self._require_mig(g)
        p = self._profile_by_id(profileId)
        found = sorted((gi for gi in g.gis.values() if gi.profile == p), key=lambda gi: gi.start)
        _fill(gpuInstancesRef, [self._handle(gi.key, pynvml.c_nvmlGpuInstance_t) for gi in found], countRef)
        return pynvml.NVML_SUCCESS

    @_api()
    def nvmlDeviceGetGpuInstanceById(self, device: Any, gpuInstanceId: int) -> Any:
        g = self._device(device)
        self._require_mig(g)
        if gpuInstanceId not in g.gis:
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        return self._handle(g.gis[gpuInstanceId].key, pynvml.c_nvmlGpuInstance_t)

    @_api()
    def nvmlGpuInstanceGetInfo(self, gpuInstance: Any) -> Any:
        g, gi = self._gi(gpuInstance)
        return self._gi_info(g, gi)

    @_api(mutating=True)
    def nvmlGpuInstanceDestroy(self, gpuInstance: Any) -> int:
        g, gi = self._gi(gpuInstance)
        if gi.cis:
            raise _error(pynvml.NVML_ERROR_IN_USE)
        self._drop_gi(g, gi)
        return pynvml.NVML_SUCCESS

    # -- NVML: compute instances ------------------------------------------------------------

    def _ci_slices(self, gi: _Gi, profile: int) -> int:
        if not 0 <= profile < pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        slices = _CI_SLICES.get(profile)
        if slices is None or slices > gi.profile.compute:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return slices

    @_api()
    def nvmlGpuInstanceGetComputeInstanceProfileInfo(
        self, device: Any, profile: int, engProfile: int, version: int = 2
    ) -> Any:
        _, gi = self._gi(device)  # pynvml names the GPU instance argument `device`
        if engProfile != pynvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED:
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        slices = self._ci_slices(gi, profile)
        info = (
            pynvml.c_nvmlComputeInstanceProfileInfo_v2_t()
            if version == 2
            else pynvml.c_nvmlComputeInstanceProfileInfo_t()
        )
        info.id, info.sliceCount, info.instanceCount = profile, slices, gi.profile.compute // slices
        if gi.profile.sms:
            info.multiprocessorCount = gi.profile.sms * slices // gi.profile.compute
        return info

    @_api()
    def nvmlGpuInstanceGetComputeInstanceRemainingCapacity(self, gpuInstance: Any, profileId: int) -> int:
        _, gi = self._gi(gpuInstance)
        slices = self._ci_slices(gi, profileId)
        return (gi.profile.compute - sum(ci.slices for ci in gi.cis.values())) // slices

    @_api(mutating=True)
    def nvmlGpuInstanceCreateComputeInstance(self, gpuInstance: Any, profileId: int) -> Any:
        _, gi = self._gi(gpuInstance)
        slices = self._ci_slices(gi, profileId)
        if sum(ci.slices for ci in gi.cis.values()) + slices > gi.profile.compute:
            raise _error(pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
        return self._handle(self._new_ci(gi, slices).key, pynvml.c_nvmlComputeInstance_t)

    @_api()
    def nvmlGpuInstanceGetComputeInstances(
        self, gpuInstance: Any, profileId: int, computeInstancesRef: Any, countRef: Any
    ) -> int:
        _, gi = self._gi(gpuInstance)
        slices = self._ci_slices(gi, profileId)
        found = [ci for ci in sorted(gi.cis.values(), key=lambda c: c.id) if ci.slices == slices]
        _fill(
            computeInstancesRef,
            [self._handle(ci.key, pynvml.c_nvmlComputeInstance_t) for ci in found],
            countRef,
        )
        return pynvml.NVML_SUCCESS

    @_api()
    def nvmlGpuInstanceGetComputeInstanceById(self, gpuInstance: Any, computeInstanceId: int) -> Any:
        _, gi = self._gi(gpuInstance)
        if computeInstanceId not in gi.cis:
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        return self._handle(gi.cis[computeInstanceId].key, pynvml.c_nvmlComputeInstance_t)

    @_api()
    def nvmlComputeInstanceGetInfo(self, computeInstance: Any) -> Any:
        g, gi, ci = self._ci(computeInstance)
        info = pynvml.c_nvmlComputeInstanceInfo_t()
        info.device = self._handle(g.key, pynvml.c_nvmlDevice_t)
        info.gpuInstance = self._handle(gi.key, pynvml.c_nvmlGpuInstance_t)
        info.id, info.profileId = ci.id, CI_PROFILE_INDEX[ci.slices]
        info.placement.start, info.placement.size = 0, ci.slices
        return info

    nvmlComputeInstanceGetInfo_v2 = nvmlComputeInstanceGetInfo

    @_api(mutating=True)
    def nvmlComputeInstanceDestroy(self, computeInstance: Any) -> int:
        _, gi, ci = self._ci(computeInstance)
        if ci.processes:
            raise _error(pynvml.NVML_ERROR_IN_USE)
        del gi.cis[ci.id]
        self._objects.pop(ci.key, None)
        return pynvml.NVML_SUCCESS

    # -- NVML: MIG devices ------------------------------------------------------------------

    def _mig_devices(self, g: _Gpu) -> list[_Ci]:
        gis = sorted(g.gis.values(), key=lambda gi: gi.instance.sort_key)
        return [ci for gi in gis for ci in sorted(gi.cis.values(), key=lambda c: c.id)]

    @_api()
    def nvmlDeviceGetMaxMigDeviceCount(self, device: Any) -> int:
        return self.gpu.compute_slices if self._device(device).mig_current else 0

    @_api()
    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: Any, index: int) -> Any:
        g = self._device(device)
        if not 0 <= index < self.gpu.compute_slices:
            raise _error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        devices = self._mig_devices(g)
        if index >= len(devices):
            raise _error(pynvml.NVML_ERROR_NOT_FOUND)
        return self._handle(devices[index].mig_key, pynvml.c_nvmlDevice_t)

    @_api()
    def nvmlDeviceIsMigDeviceHandle(self, device: Any) -> bool:
        try:
            self._mig(device)
        except pynvml.NVMLError:
            self._device(device)
            return False
        return True

    @_api()
    def nvmlDeviceGetGpuInstanceId(self, device: Any) -> int:
        try:
            _, gi, _ = self._mig(device)
        except pynvml.NVMLError:
            self._device(device)
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED) from None
        return gi.id

    @_api()
    def nvmlDeviceGetComputeInstanceId(self, device: Any) -> int:
        try:
            _, _, ci = self._mig(device)
        except pynvml.NVMLError:
            self._device(device)
            raise _error(pynvml.NVML_ERROR_NOT_SUPPORTED) from None
        return ci.id


# pynvml's constants, error classes and ctypes structures, under the same names.
for _name in dir(pynvml):
    if _name.startswith(("NVML_", "NVMLError", "c_nvml")) or _name in (
        "nvmlFriendlyObject",
        "nvmlExceptionClass",
        "NVMLLibraryMismatchError",
    ):
        setattr(FakeNvml, _name, getattr(pynvml, _name))
del _name


class FakeTenantHooks:
    """Tenant hooks for the fake: a start runs one process tagged with the owner, a drain kills them."""

    def __init__(self, fake: FakeNvml) -> None:
        self.fake = fake

    def drain(self, gpu: int, instance: Instance | None, owner: Owner) -> None:
        with contextlib.suppress(pynvml.NVMLError_NotFound):  # gone, or no compute instance: nothing runs
            self.fake.kill(gpu, instance, str(owner))

    def start(self, gpu: int, instance: Instance | None, owner: Owner) -> None:
        if str(owner) not in self.fake.tenants(gpu).get(instance, []):
            self.fake.spawn(gpu, instance, str(owner))
