"""MIG geometry: GPU models and profiles, layouts, their enumeration, and transitions between them.

Usage::

    >>> from rlmig.geometry import gpu_model
    >>> a100 = gpu_model("A100-40GB")
    >>> str(a100.layout(["4g.20gb@0", "3g.20gb@4"]))
    '4g.20gb@0 3g.20gb@4'
    >>> a100.why_invalid(a100.instances(["3g.20gb@0", "4g.20gb@0"]))
    '4g.20gb@0 overlaps 3g.20gb@0 on memory slots 0-3'
    >>> base = ["1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]
    >>> len(a100.layouts(profiles=base, maximal=True))
    19

The facts (profile IDs, memory slots, compute slices, maximum counts, valid starts) are data, in
``rlmig/data/gpus.yaml`` (sources named there); this module holds the rules over them. An instance
occupies the memory slots [start, start + slots); a layout is valid when every instance starts at a
valid slot, no two overlap, no profile exceeds its maximum count and the compute slices do not sum
past the GPU's total. Subsets of a valid layout are valid, which `diff_layouts` relies on.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import yaml

from rlmig.errors import InvalidLayoutError, RlmigError, UnknownGpuError, UnknownProfileError

_NAME_MEMORY = re.compile(r"^\d+g\.(\d+(?:\.\d+)?)gb(\+me)?$")
_INSTANCE_SPEC = re.compile(r"^\s*([^@\s]+)@(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Profile:
    """A GPU instance profile of one GPU model, keyed on its NVML profile ID."""

    id: int
    name: str
    compute: int
    slots: int
    max_count: int
    starts: tuple[int, ...]
    media_extension: bool = False
    memory_mb: int | None = None
    sms: int | None = None

    @property
    def memory_gb(self) -> float:
        """Nominal memory in GB, as the profile name states it."""
        match = _NAME_MEMORY.match(self.name)
        return float(match.group(1)) if match else 0.0

    def __str__(self) -> str:
        return self.name

    def __hash__(self) -> int:  # the NVML ID alone (equal profiles share it): cheap, as hot paths hash
        return hash(self.id)


@dataclass(frozen=True, slots=True)
class Instance:
    """One GPU instance: a profile placed at a start memory slot."""

    profile: Profile
    start: int

    def __hash__(self) -> int:  # (equal instances share profile ID and start)
        return hash((self.profile.id, self.start))

    @property
    def end(self) -> int:
        """One past the last memory slot the instance occupies."""
        return self.start + self.profile.slots

    @property
    def slot_mask(self) -> int:
        """Bit i is set when the instance occupies memory slot i."""
        return ((1 << self.profile.slots) - 1) << self.start

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (self.start, -self.profile.slots, self.profile.id)

    def to_json(self) -> dict[str, object]:
        return {"profile": self.profile.name, "start": self.start}

    def __str__(self) -> str:
        return f"{self.profile.name}@{self.start}"


def _slot_range(mask: int) -> str:
    slots = [i for i in range(mask.bit_length()) if mask >> i & 1]
    return f"{slots[0]}" if len(slots) == 1 else f"{slots[0]}-{slots[-1]}"


class GpuModel:
    """A MIG-capable GPU model: its memory slots, compute slices and instance profiles."""

    def __init__(
        self,
        name: str,
        *,
        slots: int,
        compute_slices: int,
        profiles: Sequence[Profile],
        memory_gb: float,
        sms: int | None = None,
        memory_bandwidth_gbps: float | None = None,
        inferred: bool = False,
    ) -> None:
        self.name = name
        self.slots = slots
        self.compute_slices = compute_slices
        self.profiles: tuple[Profile, ...] = tuple(
            sorted(profiles, key=lambda p: (p.compute, p.slots, p.media_extension, p.id))
        )
        self.memory_gb = memory_gb
        self.sms = sms
        self.memory_bandwidth_gbps = memory_bandwidth_gbps
        self.inferred = inferred
        self._by_id = {p.id: p for p in self.profiles}
        self._by_name = {p.name.lower(): p for p in self.profiles}

    def __repr__(self) -> str:
        return f"GpuModel({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GpuModel) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    # -- profiles and instances -------------------------------------------------------------

    def profile(self, key: str | int | Profile) -> Profile:
        """The profile with this name (as shown, case-insensitive) or NVML profile ID."""
        if isinstance(key, Profile):
            key = key.id
        if isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit()):
            found = self._by_id.get(int(key))
        else:
            name = key.strip().lower()
            found = self._by_name.get(name.removeprefix("mig ").removeprefix("mig-"))
        if found is None:
            known = ", ".join(p.name for p in self.profiles)
            raise UnknownProfileError(f"unknown profile {key!r} on {self.name} (known: {known})")
        return found

    def base_profiles(self) -> tuple[Profile, ...]:
        """The profiles without media extensions."""
        return tuple(p for p in self.profiles if not p.media_extension)

    def select_profiles(
        self, profiles: Iterable[str | int | Profile] | None = None, *, media_extensions: bool = False
    ) -> tuple[Profile, ...]:
        """Resolve a profile selection: all base profiles by default, plus +me ones when asked."""
        chosen = set(self.base_profiles()) if profiles is None else {self.profile(key) for key in profiles}
        if media_extensions:
            chosen |= {p for p in self.profiles if p.media_extension}
        return tuple(p for p in self.profiles if p in chosen)

    def instance(self, spec: str | Instance) -> Instance:
        """Parse ``PROFILE@START`` (for example ``3g.20gb@4``) into an instance of this GPU."""
        if isinstance(spec, Instance):
            return Instance(self.profile(spec.profile.id), spec.start)
        match = _INSTANCE_SPEC.match(spec) if isinstance(spec, str) else None
        if match is None or len(match.group(2)) > 3:  # a start slot has at most 3 digits (a GPU has <= 8)
            shown = spec if len(str(spec)) <= 60 else str(spec)[:57] + "..."
            raise RlmigError(f"malformed instance {shown!r}: expected PROFILE@START, for example 3g.20gb@4")
        return Instance(self.profile(match.group(1)), int(match.group(2)))

    def instances(self, specs: Iterable[str | Instance]) -> list[Instance]:
        """Parse several instance specs (no validity check beyond each profile being known)."""
        return [self.instance(spec) for spec in specs]

    def candidates(self, profiles: Iterable[Profile] | None = None) -> tuple[Instance, ...]:
        """Every (profile, valid start) pair of the given profiles, in slot order."""
        chosen = self.base_profiles() if profiles is None else tuple(profiles)
        return tuple(sorted((Instance(p, s) for p in chosen for s in p.starts), key=lambda i: i.sort_key))

    # -- validity ---------------------------------------------------------------------------

    def why_invalid(self, instances: Iterable[Instance]) -> str | None:
        """The reason these instances cannot coexist on this GPU, or None when they can.

        Checked in order: unknown profile, bad start, count over the maximum, overlap (naming the
        later instance of the input first), compute.
        """
        items = list(instances)
        for inst in items:
            if self._by_id.get(inst.profile.id) != inst.profile:
                return f"unknown profile {inst.profile.name!r} on {self.name}"
            if inst.start not in inst.profile.starts:
                starts = ", ".join(map(str, inst.profile.starts))
                return (
                    f"{inst.profile.name} cannot start at memory slot {inst.start} (valid starts: {starts})"
                )
        counts = Counter(inst.profile for inst in items)
        for profile, count in counts.items():
            if count > profile.max_count:
                return f"{count} x {profile.name} exceeds its maximum count of {profile.max_count}"
        for i, a in enumerate(items):
            for b in items[:i]:
                if a.slot_mask & b.slot_mask:
                    return f"{a} overlaps {b} on memory slots {_slot_range(a.slot_mask & b.slot_mask)}"
        compute = sum(inst.profile.compute for inst in items)
        if compute > self.compute_slices:
            return f"compute slices sum to {compute}, over the {self.compute_slices} of {self.name}"
        return None

    def layout(self, instances: Iterable[str | Instance] = ()) -> Layout:
        """A validated layout of this GPU; raises `InvalidLayoutError` with the reason."""
        parsed = self.instances(instances)
        reason = self.why_invalid(parsed)
        if reason is not None:
            raise InvalidLayoutError(f"invalid layout on {self.name}: {reason}")
        return Layout(self, tuple(sorted(parsed, key=lambda i: i.sort_key)))

    def empty_layout(self) -> Layout:
        """The layout with no instances."""
        return Layout(self, ())

    # -- enumeration ------------------------------------------------------------------------

    def layouts(
        self,
        profiles: Iterable[str | int | Profile] | None = None,
        *,
        maximal: bool = False,
        media_extensions: bool = False,
    ) -> list[Layout]:
        """All non-empty valid layouts over the selected profiles (or only the maximal ones).

        A layout is maximal when no instance of a selected profile can be added to it. The result is
        ordered by compute slices used (most first), then by placement.
        """
        chosen = self.select_profiles(profiles, media_extensions=media_extensions)
        return list(_enumerate(self, chosen, maximal))

    def layout_for_counts(self, counts: dict[Profile, int]) -> Layout:
        """A valid layout with exactly these profile counts, placed to leave the most room.

        Used where placements are not given (nvidia-mig-parted configs): among the layouts with these
        counts it picks one to which the most further instances could be added.
        """
        wanted = {p: n for p, n in counts.items() if n > 0}
        if not wanted:
            return self.empty_layout()
        chosen = tuple(wanted)
        matching = [lay for lay in _enumerate(self, chosen, False) if lay.counts() == wanted]
        if not matching:
            mix = ", ".join(f"{n} x {p.name}" for p, n in wanted.items())
            raise InvalidLayoutError(f"no valid placement of {mix} on {self.name}")
        every = self.candidates(self.base_profiles())
        return max(matching, key=lambda lay: sum(lay.can_add(c) for c in every))


def _enumerate(gpu: GpuModel, profiles: tuple[Profile, ...], maximal: bool) -> tuple[Layout, ...]:
    return _enumerate_cached(gpu, tuple(sorted(p.id for p in profiles)), maximal)


@functools.lru_cache(maxsize=256)
def _enumerate_cached(gpu: GpuModel, profile_ids: tuple[int, ...], maximal: bool) -> tuple[Layout, ...]:
    candidates = gpu.candidates(gpu.profile(i) for i in profile_ids)
    found: list[tuple[Instance, ...]] = []

    def extend(first: int, chosen: list[Instance], mask: int, compute: int, counts: Counter[int]) -> None:
        if chosen:
            found.append(tuple(chosen))
        for index in range(first, len(candidates)):
            inst = candidates[index]
            p = inst.profile
            if (
                mask & inst.slot_mask
                or compute + p.compute > gpu.compute_slices
                or counts[p.id] >= p.max_count
            ):
                continue
            chosen.append(inst)
            counts[p.id] += 1
            extend(index + 1, chosen, mask | inst.slot_mask, compute + p.compute, counts)
            counts[p.id] -= 1
            chosen.pop()

    extend(0, [], 0, 0, Counter())
    layouts = [Layout(gpu, insts) for insts in found]
    if maximal:
        layouts = [lay for lay in layouts if not any(lay.can_add(c) for c in candidates)]
    layouts.sort(key=lambda lay: (-lay.compute_used, [i.sort_key for i in lay.instances]))
    return tuple(layouts)


@dataclass(frozen=True, slots=True)
class Layout:
    """A valid set of MIG instances on one GPU, in slot order. Build it with `GpuModel.layout`."""

    gpu: GpuModel
    instances: tuple[Instance, ...]
    slot_mask: int = field(init=False, compare=False, hash=False, repr=False)
    compute_used: int = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.instances, key=lambda i: i.sort_key))
        if ordered != self.instances:  # one canonical order, so equal layouts compare equal
            object.__setattr__(self, "instances", ordered)
        mask = 0
        for inst in self.instances:
            mask |= inst.slot_mask
        object.__setattr__(self, "slot_mask", mask)
        object.__setattr__(self, "compute_used", sum(i.profile.compute for i in self.instances))

    @property
    def free_compute(self) -> int:
        """Compute slices not used by any instance."""
        return self.gpu.compute_slices - self.compute_used

    def counts(self) -> dict[Profile, int]:
        """How many instances of each profile the layout holds."""
        return dict(Counter(i.profile for i in self.instances))

    def can_add(self, inst: Instance) -> bool:
        """Whether the instance can be created on this layout (valid start, room, counts, compute)."""
        p = inst.profile
        return (
            inst.start in p.starts
            and not self.slot_mask & inst.slot_mask
            and self.compute_used + p.compute <= self.gpu.compute_slices
            and sum(1 for i in self.instances if i.profile == p) < p.max_count
        )

    def plus(self, inst: Instance) -> Layout:
        """This layout with one more instance; raises `InvalidLayoutError` when it does not fit."""
        if self.gpu._by_id.get(inst.profile.id) == inst.profile and self.can_add(inst):
            return Layout(self.gpu, (*self.instances, inst))  # what `GpuModel.layout` checks, at once
        return self.gpu.layout([*self.instances, inst])  # raises with the reason

    def minus(self, inst: Instance) -> Layout:
        """This layout without the instance; raises `InvalidLayoutError` when it is not there."""
        if inst not in self.instances:
            raise InvalidLayoutError(f"{inst} is not in layout {self}")
        return Layout(self.gpu, tuple(i for i in self.instances if i != inst))

    def to_json(self) -> list[dict[str, object]]:
        """The layout as a JSON list of {"profile": name, "start": int}."""
        return [inst.to_json() for inst in self.instances]

    def __len__(self) -> int:
        return len(self.instances)

    def __iter__(self) -> Iterator[Instance]:
        return iter(self.instances)

    def __str__(self) -> str:
        return " ".join(map(str, self.instances)) if self.instances else "(empty)"


# -- transitions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One MIG operation of a transition: create or destroy one GPU instance."""

    op: Literal["create", "destroy"]
    instance: Instance

    def __str__(self) -> str:
        return f"{self.op} {self.instance}"


@dataclass(frozen=True, slots=True)
class LayoutDiff:
    """How to go from one layout of a GPU to another, one valid state after each step."""

    current: Layout
    target: Layout
    keep: tuple[Instance, ...]
    steps: tuple[Step, ...]

    @property
    def destroy(self) -> tuple[Instance, ...]:
        return tuple(s.instance for s in self.steps if s.op == "destroy")

    @property
    def create(self) -> tuple[Instance, ...]:
        return tuple(s.instance for s in self.steps if s.op == "create")

    def states(self) -> Iterator[Layout]:
        """The layout after each step (each one re-validated), ending at the target."""
        state = self.current
        for step in self.steps:
            state = state.plus(step.instance) if step.op == "create" else state.minus(step.instance)
            yield state


def diff_layouts(current: Layout, target: Layout) -> LayoutDiff:
    """Order the creates and destroys that turn `current` into `target` on the same GPU.

    Instances in both layouts are kept in place. Creation comes first wherever the new instance
    already fits (make-before-break, after MIG-serving, arXiv 2109.11067); otherwise the destroy that
    lets the most pending creates fit goes next. Every intermediate state is valid: while no create
    fits, some destroy is pending (a subset of the target always has room for the rest of it), and
    removing an instance from a valid layout leaves a valid layout.
    """
    if current.gpu != target.gpu:
        raise RlmigError(f"cannot diff a {current.gpu.name} layout against a {target.gpu.name} layout")
    keep = tuple(i for i in current.instances if i in target.instances)
    to_destroy = [i for i in current.instances if i not in target.instances]
    to_create = [i for i in target.instances if i not in current.instances]
    state = current
    steps: list[Step] = []
    while to_create or to_destroy:
        fitting = next((c for c in to_create if state.can_add(c)), None)
        if fitting is not None:
            to_create.remove(fitting)
            state = state.plus(fitting)
            steps.append(Step("create", fitting))
            continue

        def unblocked(victim: Instance, now: Layout = state) -> int:
            after = now.minus(victim)
            return sum(after.can_add(c) for c in to_create)

        victim = max(to_destroy, key=unblocked)
        to_destroy.remove(victim)
        state = state.minus(victim)
        steps.append(Step("destroy", victim))
    return LayoutDiff(current, target, keep, tuple(steps))


# -- the catalog of GPU models ----------------------------------------------------------------

DEFAULT_GPU_MODEL = "A100-80GB"
"""The GPU model a command, a policy or a scenario assumes when none is named."""


@functools.cache
def gpu_models() -> dict[str, GpuModel]:
    """Every GPU model rlmig knows, by name, loaded from ``rlmig/data/gpus.yaml``."""
    text = resources.files("rlmig").joinpath("data/gpus.yaml").read_text()
    data = yaml.safe_load(text)
    models: dict[str, GpuModel] = {}
    for name, spec in data["gpus"].items():
        family = data["families"][spec["family"]]
        profiles = []
        for pid, shape in family["profiles"].items():
            named = spec["profiles"][pid]
            profiles.append(
                Profile(
                    id=int(pid),
                    name=named["name"],
                    compute=shape["compute"],
                    slots=shape["slots"],
                    max_count=shape["max_count"],
                    starts=tuple(shape["starts"]),
                    media_extension=bool(shape.get("media_extension", False)),
                    memory_mb=named.get("memory_mb"),
                    sms=named.get("sms"),
                )
            )
        models[name] = GpuModel(
            name,
            slots=family["slots"],
            compute_slices=family["compute_slices"],
            profiles=profiles,
            memory_gb=spec["memory_gb"],
            sms=spec.get("sms"),
            memory_bandwidth_gbps=spec.get("memory_bandwidth_gbps"),
            inferred=bool(spec.get("inferred", False)),
        )
    return models


def gpu_model(name: str | GpuModel) -> GpuModel:
    """The GPU model with this name (case-insensitive), for example ``A100-80GB``."""
    if isinstance(name, GpuModel):
        return name
    models = gpu_models()
    for known, model in models.items():
        if known.lower() == name.strip().lower():
            return model
    raise UnknownGpuError(f"unknown GPU model {name!r} (known: {', '.join(models)})")
