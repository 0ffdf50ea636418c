"""The policy codec: what a learned policy sees and what its actions mean, in numpy alone.

One interval's configuration is decided as a sequence of masked discrete sub-actions. For each GPU in
turn, a *layout* choice: one of the GPU model's maximal layouts, or "keep" (the GPU's current layout and
owners, unchanged); after a layout choice, an *owner* choice for each instance of that layout in slot
order: idle, tenant t serving inference, or tenant t retraining. Masks allow only owners with an
SLO-feasible segment on the instance (or a retraining throughput), at most one retraining instance per
tenant, and only tenants and layouts that exist; every legal action therefore leads to a valid
configuration, and there is always a legal action (keep, idle). Idle instances that did not exist are
not created (`rlmig.configuration.settle`).

Actions: ``max(#maximal layouts + 1, 1 + 2 x max_tenants)`` of them (79 on A100-80GB), read by phase;
`action_names` says what each stands for. The observation is a fixed-size float32 vector for up to
`MAX_GPUS` GPUs and `MAX_TENANTS` tenants (padding is zero); `feature_names` names every entry, and those
names, with the action names, are the contract a checkpoint is checked against (`rlmig.policy.checkpoint`).

Usage (what the RL planner does; the Gymnasium environment `rlmig.envs.MigReconfigEnv` is a thin shell
over the same codec and the simulator)::

    codec = DecisionCodec(PolicySpec.for_gpu(gpu_model("A100-80GB")))
    obs = codec.begin(cluster_state)
    while not codec.choose(policy.act(obs, codec.action_masks())):
        obs = codec.observation()
    configuration = codec.decided_configuration()
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlmig.configuration import Configuration, GpuConfig, Owner, settle
from rlmig.geometry import GpuModel, Instance, Layout, Profile
from rlmig.loop import ClusterState, pad_forecast
from rlmig.simulator import EncodedConfig, Simulator, TenantState
from rlmig.workload import Workload

MAX_GPUS = 8
MAX_TENANTS = 8
HISTORY = 3  # past intervals of rates in the observation
FORECAST = 2  # forecast intervals in the observation
OBS_VERSION = 1
TENANT_FEATURE_NAMES = (
    "present",
    *(f"rate[-{HISTORY - i}]" for i in range(HISTORY)),
    *(f"forecast[+{i}]" for i in range(FORECAST)),
    "slo_s",
    "accuracy",
    "accuracy_after_retraining",
    "drift",
    "retraining_progress",
    "retraining_running",
    "has_retraining",
    "window_phase",
    "previous_capacity",
    "decided_capacity",
    "retraining_decided",
    "full_gpu_capacity_k",
    "demand",
)
TENANT_FEATURES = len(TENANT_FEATURE_NAMES)
_DECIDED = TENANT_FEATURE_NAMES.index("decided_capacity")
_RETRAINING_DECIDED = TENANT_FEATURE_NAMES.index("retraining_decided")
LAYOUT, OWNER = 0, 1


@dataclass(frozen=True)
class PolicySpec:
    """The shape of the decision for one GPU model: what a policy checkpoint is tied to."""

    gpu: GpuModel
    layouts: tuple[Layout, ...]  # the layout choices: the GPU model's maximal layouts
    max_gpus: int = MAX_GPUS
    max_tenants: int = MAX_TENANTS
    profiles: tuple[Profile, ...] = ()  # instance sizes in the observation: the base profiles

    def __post_init__(self) -> None:
        if not self.profiles:
            object.__setattr__(self, "profiles", self.gpu.base_profiles())

    @classmethod
    def for_gpu(cls, gpu: GpuModel) -> PolicySpec:
        """The spec of a GPU model: its maximal layouts, the default limits."""
        return cls(gpu, tuple(gpu.layouts(maximal=True)))

    @property
    def keep_action(self) -> int:
        """The layout-phase action that keeps the GPU's current configuration unchanged."""
        return len(self.layouts)

    @property
    def n_actions(self) -> int:
        return max(len(self.layouts) + 1, 1 + 2 * self.max_tenants)

    @property
    def obs_size(self) -> int:
        return len(self.feature_names())

    def feature_names(self) -> tuple[str, ...]:
        """The name of every observation entry, in order (the observation's contract)."""
        profiles = [p.name for p in self.profiles]
        owners = ["idle"] + [f"inference{t}" for t in range(self.max_tenants)]
        owners += [f"retraining{t}" for t in range(self.max_tenants)]
        names: list[str] = []
        for t in range(self.max_tenants):
            names += [f"tenant{t}.{name}" for name in TENANT_FEATURE_NAMES]
            names += [f"tenant{t}.capacity[{p}]" for p in profiles]
        for block in ("current", "owner", "chosen"):
            for s in range(self.gpu.slots):
                if block == "owner":
                    names += [f"gpu.slot{s}.owner={o}" for o in owners]
                else:
                    names += [f"gpu.slot{s}.{block}={p}" for p in [*profiles, "free"]]
        for g in range(self.max_gpus):
            names += [f"gpu{g}.present", f"gpu{g}.decided", f"gpu{g}.compute_used"]
        names += ["phase=layout", "phase=owner", *(f"cursor.gpu{g}" for g in range(self.max_gpus))]
        names += [f"cursor.instance={p}" for p in [*profiles, "none"]]
        names += ["cursor.instance.start", *(f"cursor.instance.owner={o}" for o in owners)]
        names += ["interval_progress", "gpus_in_use", "tenants_in_use"]
        return tuple(names)

    def action_names(self) -> dict[str, list[str]]:
        """What each action stands for, per phase (the action's contract)."""
        layouts = [" ".join(str(inst) for inst in layout.instances) for layout in self.layouts]
        owners = ["idle"] + [f"inference:tenant{t}" for t in range(self.max_tenants)]
        owners += [f"retraining:tenant{t}" for t in range(self.max_tenants)]
        return {"layout": [*layouts, "keep"], "owner": owners}

    def fits(self, workload: Workload) -> str | None:
        """Why a workload is beyond this spec (GPU model, GPUs, tenants), or None when it fits."""
        if workload.gpu != self.gpu:
            return f"the policy is for {self.gpu.name}, the workload for {workload.gpu.name}"
        if workload.gpu_count > self.max_gpus or len(workload.tenants) > self.max_tenants:
            return (
                f"the policy handles at most {self.max_gpus} GPUs and {self.max_tenants} tenants; the "
                f"workload has {workload.gpu_count} GPUs and {len(workload.tenants)} tenants"
            )
        return None


def owner_action(owner: Owner | None, tenant_index: dict[str, int], max_tenants: int = MAX_TENANTS) -> int:
    """Owner-phase action of an owner: 0 idle, 1 + t inference, 1 + max_tenants + t retraining."""
    if owner is None:
        return 0
    t = tenant_index[owner.tenant]
    return 1 + t if owner.role == "inference" else 1 + max_tenants + t


class DecisionCodec:
    """Encodes the state of an interval being decided as an observation, gives the action masks, and
    decodes sub-actions into the interval's configuration (see the module docstring)."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self._profile_slot = {prof.id: i for i, prof in enumerate(spec.profiles)}
        self._layout_slots = np.stack([self._slot_profiles(layout) for layout in spec.layouts])
        self.layout_number = {layout: n for n, layout in enumerate(spec.layouts)}
        self._no_layout = np.zeros((spec.gpu.slots, len(spec.profiles) + 1), np.float32)
        self.workload: Workload | None = None
        self.sim: Simulator | None = None
        self._mask: np.ndarray | None = None

    def _slot_profiles(self, layout: Layout) -> np.ndarray:
        """Per memory slot, a one-hot of the profile there (last column: free)."""
        p = len(self.spec.profiles)
        table = np.zeros((self.spec.gpu.slots, p + 1), np.float32)
        table[:, p] = 1.0
        for inst in layout.instances:
            if inst.profile.id in self._profile_slot:
                table[inst.start : inst.end, p] = 0.0
                table[inst.start : inst.end, self._profile_slot[inst.profile.id]] = 1.0
        return table

    # -- the interval being decided ----------------------------------------------------------------

    def _use_workload(self, workload: Workload, simulator: Simulator) -> None:
        """Tables that hold for a whole run of `workload`."""
        why = self.spec.fits(workload)
        if why is not None:
            raise ValueError(why)
        self.workload = workload
        self.sim = simulator
        self.n_gpus, self.n_tenants = workload.gpu_count, len(workload.tenants)
        full = simulator.profile_index[simulator.full_profile.id]
        self.scale = np.maximum(simulator.serve_rate[:, full], 1e-6)
        cols = [simulator.profile_index[p.id] for p in self.spec.profiles]
        self.cap_by_size = simulator.serve_rate[:, cols] / self.scale[:, None]
        self._mask = None

    def begin(self, cluster: ClusterState, current_encoded: EncodedConfig | None = None) -> np.ndarray:
        """Start deciding the interval of `cluster`; returns the first observation. `current_encoded`
        may pass the simulator's encoding of ``cluster.current`` when the caller has it."""
        if self.workload is not cluster.workload or self.sim is not cluster.simulator:
            self._use_workload(cluster.workload, cluster.simulator)
        self.interval = cluster.interval
        self.history = cluster.history  # the rates observed so far (measured ones on a node)
        self.tenants: TenantState = cluster.tenants
        self.current = cluster.current
        if current_encoded is None and cluster.current is not None:
            current_encoded = self.sim.encode(cluster.current)
        self.current_encoded = current_encoded
        self.forecast = pad_forecast(np.asarray(cluster.forecast, dtype=float), FORECAST)
        self._mask = None
        self.gpu_cursor = 0
        self.phase = LAYOUT
        self.decided: list[GpuConfig] = []
        self.layout: Layout | None = None
        self.owners: dict[Instance, Owner] = {}
        self.instance_cursor = 0
        self.decided_capacity = np.zeros(self.n_tenants)
        self.retraining_taken = np.zeros(self.n_tenants, bool)
        if current_encoded is not None:
            self.previous_capacity = np.bincount(
                np.where(current_encoded.tenant >= 0, current_encoded.tenant, 0),
                weights=current_encoded.serve_rate,
                minlength=self.n_tenants,
            )
        else:
            self.previous_capacity = np.zeros(self.n_tenants)
        self._interval_features()
        return self.observation()

    @property
    def complete(self) -> bool:
        """Whether every GPU of the interval is decided."""
        return self.gpu_cursor == self.n_gpus

    def current_gpu(self, g: int) -> GpuConfig:
        """GPU `g` as it is now (empty when nothing is in place)."""
        if self.current is None or g >= len(self.current.gpus):
            return GpuConfig(self.spec.gpu.empty_layout(), ())
        return self.current.gpus[g]

    def default_action(self) -> int:
        """What an action outside the mask is taken as: keep in the layout phase (the first layout when
        keep is not legal), idle in the owner phase."""
        if self.phase == LAYOUT and self.action_masks()[self.spec.keep_action]:
            return self.spec.keep_action
        return 0

    def choose(self, action: int) -> bool:
        """Take one legal sub-action; True when the interval's configuration is complete."""
        if not self.action_masks()[action]:
            raise ValueError(f"action {action} is masked")
        self._mask = None
        self._apply(action)
        return self.complete

    def decided_configuration(self) -> Configuration:
        """The configuration the sub-actions so far decided (every GPU must be decided)."""
        return Configuration(self.spec.gpu, tuple(self.decided))

    def _apply(self, action: int) -> None:
        g = self.gpu_cursor
        if self.phase == LAYOUT:
            if action == self.spec.keep_action:
                kept = self.current_gpu(g)
                for inst, owner in kept.items():
                    self._account(inst, owner)
                self._finish_gpu(kept)
            else:
                self.layout = self.spec.layouts[action]
                self._layout_index = action
                self.owners = {}
                self.instance_cursor = 0
                self.phase = OWNER
            return
        inst = self.layout.instances[self.instance_cursor]
        owner = self.owner_of_action(action)
        self._account(inst, owner)
        if owner is not None:
            self.owners[inst] = owner
        self.instance_cursor += 1
        if self.instance_cursor == len(self.layout.instances):
            self._finish_gpu(settle(self.layout, self.owners, self.current_gpu(g).layout))

    def owner_of_action(self, action: int) -> Owner | None:
        """The owner an owner-phase action stands for."""
        if action == 0:
            return None
        t = (action - 1) % self.spec.max_tenants
        role = "inference" if action <= self.spec.max_tenants else "retraining"
        return Owner(self.workload.tenants[t].name, role)

    def owner_action(self, owner: Owner | None) -> int:
        """The owner-phase action standing for `owner`."""
        return owner_action(owner, self.sim.tenant_index, self.spec.max_tenants)

    def _account(self, inst: Instance, owner: Owner | None) -> None:
        """Record an owner decided in this interval (capacity so far, retraining taken)."""
        if owner is None:
            return
        t = self.sim.tenant_index[owner.tenant]
        if owner.role == "inference":
            self.decided_capacity[t] += self.sim.serve_rate[t, self.sim.profile_index[inst.profile.id]]
        else:
            self.retraining_taken[t] = True

    def _finish_gpu(self, config: GpuConfig) -> None:
        self.decided.append(config)
        self.gpu_cursor += 1
        self.phase = LAYOUT
        self.layout = None

    # -- masks -------------------------------------------------------------------------------------

    def action_masks(self) -> np.ndarray:
        """Legal actions now (always at least one)."""
        if self._mask is None:
            self._mask = self._compute_mask()
        return self._mask

    def _compute_mask(self) -> np.ndarray:
        spec = self.spec
        mask = np.zeros(spec.n_actions, bool)
        if self.phase == LAYOUT:
            mask[: len(spec.layouts)] = True
            mask[spec.keep_action] = self.keep_is_legal()
            return mask
        inst = self.layout.instances[self.instance_cursor]
        j = self.sim.profile_index[inst.profile.id]
        n, T = self.n_tenants, spec.max_tenants
        mask[0] = True
        mask[1 : 1 + n] = self.sim.serve_rate[:n, j] > 0
        mask[1 + T : 1 + T + n] = (self.sim.train_rate[:n, j] > 0) & ~self.retraining_taken
        return mask

    def keep_is_legal(self) -> bool:
        """Whether "keep" is legal for the GPU being decided (no second retraining instance)."""
        kept = self.current_gpu(self.gpu_cursor)
        for owner in kept.owners:
            if (
                owner is not None
                and owner.role == "retraining"
                and self.retraining_taken[self.sim.tenant_index[owner.tenant]]
            ):
                return False
        return True

    # -- observation -------------------------------------------------------------------------------

    def _interval_features(self) -> None:
        """The parts of the observation fixed for the whole interval being decided."""
        spec, sim = self.spec, self.sim
        n, P, T, G = self.n_tenants, len(spec.profiles), spec.max_tenants, spec.max_gpus
        k = self.interval
        history = np.zeros((HISTORY, n))
        past = self.history[max(0, k - HISTORY) : k]
        if len(past):
            history[HISTORY - len(past) :] = past
        demand = np.maximum(self.forecast[0], 1e-6)
        self._demand = demand
        columns = [
            np.ones(n),
            *(history / self.scale),
            *(self.forecast[:FORECAST] / self.scale),
            np.array([t.slo_ms for t in self.workload.tenants]) / 1000.0,
            self.tenants.accuracy,
            sim.accuracy_after,
            sim.drift,
            np.divide(self.tenants.progress, np.maximum(sim.samples, 1e-9)),
            self.tenants.active.astype(float),
            sim.has_retraining.astype(float),
            sim.dynamics.window_phase(k),
            np.minimum(self.previous_capacity / demand, 5.0),
            np.zeros(n),  # capacity decided so far: filled per sub-step
            np.zeros(n),  # retraining decided so far: filled per sub-step
            np.minimum(self.scale / 1000.0, 10.0),
            np.minimum(demand / self.scale, 10.0),
        ]
        tenants = np.zeros((T, TENANT_FEATURES + P), np.float32)
        tenants[:n, :TENANT_FEATURES] = np.clip(np.stack(columns, axis=1), 0.0, 10.0)
        tenants[:n, TENANT_FEATURES:] = np.minimum(self.cap_by_size, 10.0)
        self._tenants = tenants
        slots = spec.gpu.slots
        self._gpu_slots = np.zeros((G + 1, slots, P + 1), np.float32)
        self._gpu_slots[:, :, P] = 1.0
        self._gpu_owners = np.zeros((G + 1, slots, 2 * T + 1), np.float32)
        self._gpu_owners[:, :, 0] = 1.0
        self._gpus = np.zeros((G, 3), np.float32)
        self._gpus[: self.n_gpus, 0] = 1.0
        self._previous_owner: list[dict[Instance, int]] = []
        for g in range(self.n_gpus):
            kept = self.current_gpu(g)
            self._gpu_slots[g] = self._slot_profiles(kept.layout)
            owners = {}
            for inst, owner in kept.items():
                action = self.owner_action(owner)
                owners[inst] = action
                self._gpu_owners[g, inst.start : inst.end, 0] = 0.0
                self._gpu_owners[g, inst.start : inst.end, action] = 1.0
            self._previous_owner.append(owners)
            self._gpus[g, 2] = kept.layout.compute_used / spec.gpu.compute_slices

    def observation(self) -> np.ndarray:
        """The observation of the sub-step now (see `PolicySpec.feature_names`)."""
        spec = self.spec
        n, P, T, G = self.n_tenants, len(spec.profiles), spec.max_tenants, spec.max_gpus
        tenants = self._tenants
        tenants[:n, _DECIDED] = np.minimum(self.decided_capacity / self._demand, 5.0)
        tenants[:n, _RETRAINING_DECIDED] = self.retraining_taken
        g = self.gpu_cursor
        gpus = self._gpus
        gpus[:, 1] = 0.0
        gpus[:g, 1] = 1.0
        cursor = np.zeros(2 + G + (P + 1) + 1 + (2 * T + 1) + 3, np.float32)
        cursor[self.phase] = 1.0
        if g < G:
            cursor[2 + g] = 1.0
        offset = 2 + G
        if self.phase == OWNER:
            chosen = self._layout_slots[self._layout_index]
            inst = self.layout.instances[self.instance_cursor]
            cursor[offset + self._profile_slot[inst.profile.id]] = 1.0
            cursor[offset + P + 1] = inst.start / spec.gpu.slots
            previous = self._previous_owner[g].get(inst) if g < self.n_gpus else None
            if previous is not None:
                cursor[offset + P + 2 + previous] = 1.0
        else:
            chosen = self._no_layout
            cursor[offset + P] = 1.0
        tail = offset + P + 2 + 2 * T + 1
        cursor[tail] = self.interval / max(self.workload.intervals, 1)
        cursor[tail + 1] = self.n_gpus / G
        cursor[tail + 2] = n / T
        row = min(g, G)
        return np.concatenate(
            [
                tenants.ravel(),
                self._gpu_slots[row].ravel(),
                self._gpu_owners[row].ravel(),
                chosen.ravel(),
                gpus.ravel(),
                cursor,
            ]
        )
