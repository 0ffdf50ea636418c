"""Shared helpers for the executor tests: random configurations, a fake node, and the invariants checked
after every state-changing NVML call."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from hypothesis import strategies as st

from rlmig.configuration import Configuration, GpuConfig, Owner
from rlmig.executor import Executor, FakeNvml, FakeTenantHooks, Journal, NvmlBackend
from rlmig.geometry import GpuModel, Instance, gpu_model

TENANTS = ("bert", "gpt", "resnet", "vit")
MODELS = ("A100-80GB", "A30-24GB", "H100-80GB")


@functools.cache
def every_layout(name: str) -> tuple:
    model = gpu_model(name)
    return (model.empty_layout(), *model.layouts(media_extensions=True))


owners = st.one_of(
    st.none(), st.builds(Owner, st.sampled_from(TENANTS), st.sampled_from(("inference", "retraining")))
)


@st.composite
def gpu_configs(draw, gpu: GpuModel, whole: bool) -> GpuConfig:
    if whole and draw(st.integers(0, 5)) == 0:
        return GpuConfig.whole(gpu, draw(st.lists(st.sampled_from(TENANTS), unique=True, max_size=2)))
    layout = draw(st.sampled_from(every_layout(gpu.name)))
    return GpuConfig(layout, tuple(draw(owners) for _ in layout.instances))


@st.composite
def config_pairs(draw, models: tuple[str, ...] = MODELS, max_gpus: int = 3, whole: bool = True):
    gpu = gpu_model(draw(st.sampled_from(models)))
    count = draw(st.integers(1, max_gpus))
    current = Configuration(gpu, tuple(draw(gpu_configs(gpu, whole)) for _ in range(count)))
    target = Configuration(gpu, tuple(draw(gpu_configs(gpu, whole)) for _ in range(count)))
    return current, target


def tenants_of(config: Configuration, index: int) -> dict[Instance | None, list[str]]:
    g = config.gpus[index]
    found: dict[Instance | None, list[str]] = {}
    if g.time_shared:
        found[None] = sorted(g.time_shared)
    for inst, owner in g.items():
        if owner is not None:
            found[inst] = [str(owner)]
    return found


@dataclass
class Node:
    """A fake node in `current`, an executor over it, and the invariants watched on every NVML change."""

    current: Configuration
    target: Configuration
    fake: FakeNvml
    executor: Executor
    untouched: dict[tuple[int, Instance], int] = field(default_factory=dict)
    steps: int = 0

    @classmethod
    def make(
        cls,
        current: Configuration,
        target: Configuration,
        *,
        journal: Journal | None = None,
        owners: bool = True,
        reset_required: bool = False,
    ) -> Node:
        fake = FakeNvml.from_configuration(current, reset_required=reset_required)
        backend = NvmlBackend(current.gpu, fake, allow_mode_change=True)
        executor = Executor(
            backend, hooks=FakeTenantHooks(fake), journal=journal, owners=current if owners else None
        )
        node = cls(current, target, fake, executor)
        for index, (cur, tgt) in enumerate(zip(current.gpus, target.gpus, strict=True)):
            if cur.mig_enabled and tgt.mig_enabled:
                theirs = dict(tgt.items())
                for inst, owner in cur.items():
                    if inst in theirs and theirs[inst] == owner:
                        node.untouched[(index, inst)] = fake.instances(index)[inst].serial
        fake.observe(node.check)
        return node

    def fresh_executor(self, journal: Journal | None) -> Executor:
        """A new executor over the same node (a restart): owners only from the journal."""
        backend = NvmlBackend(self.current.gpu, self.fake, allow_mode_change=True)
        return Executor(backend, hooks=FakeTenantHooks(self.fake), journal=journal)

    def check(self, _call: str = "") -> None:
        """Every GPU valid, no stray instance, untouched instances never disturbed."""
        self.steps += 1
        gpu = self.current.gpu
        for index, g in enumerate(self.fake.gpus):
            if not g.mig_current:
                continue
            instances = list(self.fake.instances(index))
            assert gpu.why_invalid(instances) is None
            allowed = set(self.current.gpus[index].layout.instances) | set(
                self.target.gpus[index].layout.instances
            )
            assert set(instances) <= allowed, f"stray instance on GPU {index}: {set(instances) - allowed}"
        for (index, inst), serial in self.untouched.items():
            gi = self.fake.instances(index).get(inst)
            assert gi is not None and gi.serial == serial, f"untouched {inst} on GPU {index} was recreated"
            assert self.fake.tenants(index).get(inst) == tenants_of(self.current, index).get(inst)

    def at(self, config: Configuration) -> bool:
        """Whether the fake node is exactly in `config` (layouts, modes, processes), nothing half-built."""
        for index, g in enumerate(config.gpus):
            fg = self.fake.gpus[index]
            if fg.mig_current != g.mig_enabled or self.fake.half_built(index):
                return False
            if g.mig_enabled and self.fake.layout(index) != g.layout:
                return False
            found = {k: sorted(v) for k, v in self.fake.tenants(index).items()}
            if found != tenants_of(config, index):
                return False
        return True
