"""The policy codec: what a learned policy sees and what its actions mean, in numpy alone.

One interval's configuration is decided as a sequence of masked discrete sub-actions. For each GPU in
turn, a *layout* choice: one of the GPU model's maximal layouts, or "keep" (the GPU's current layout and
owners, unchanged); after a layout choice, an *owner* choice for each instance of that layout in slot
order: idle, tenant t serving inference, or tenant t retraining. Masks allow only owners with an
SLO-feasible segment on the instance (or a retraining throughput), at most one retraining instance per
tenant and only for a tenant that may retrain now (`ClusterState.may_retrain`), and only tenants and
layouts that exist; every legal action therefore leads to a valid configuration, and there is always a
legal action (keep, idle). Idle instances that did not exist are
not created (`rlmig.configuration.settle`).

Actions: ``max(#maximal layouts + 1, 1 + 2 x tenants)`` of them (79 on A100-80GB with up to 39
tenants), read by phase; `action_names` says what each stands for.

The observation does not depend on the number of GPUs, and on the number of tenants only through one
row per tenant: a float32 vector of `max_tenants` tenant rows (`TENANT_FEATURE_NAMES`, padding is
zero) followed by the context (`PolicySpec.context_names`: the GPU being decided, the instance being
decided, and the cluster in aggregate). A policy that treats the rows as a set (`SetPolicy`) therefore
decides any number of GPUs and tenants with the same weights; the codec of a run is sized to its
workload (`PolicySpec.sized`). The row and context names, with the layout actions, are the contract a
checkpoint is checked against (`rlmig.policy.checkpoint`).

Usage (what the RL planner does; the Gymnasium environment `rlmig.envs.MigReconfigEnv` is a thin shell
over the same codec and the simulator)::

    codec = DecisionCodec(PolicySpec.for_gpu(gpu_model("A100-80GB")))
    obs = codec.begin(cluster_state)
    while not codec.choose(policy.act(obs, codec.action_masks())):
        obs = codec.observation()
    configuration = codec.decided_configuration()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from rlmig.configuration import Configuration, GpuConfig, Owner, settle
from rlmig.geometry import GpuModel, Instance, Layout, Profile
from rlmig.loop import ClusterState, pad_forecast
from rlmig.simulator import EncodedConfig, Simulator, TenantState
from rlmig.workload import Workload

MAX_TENANTS = 8  # the tenant rows of a codec sized by default (training pads to it)
HISTORY = 3  # past intervals of rates in the observation
FORECAST = 2  # forecast intervals in the observation
OBS_VERSION = 3
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
    "unmet",
)
"""Per tenant, what its encoding reads (then its capacity per base profile, `capacity[<profile>]`, and
the share of what is left of its retraining job one instance of that profile would train by the end
of its window, `finish[<profile>]`): rates, demand and capacities in units of the tenant's full-GPU
capacity, capacities decided relative to its forecast; accuracy and the job as the interval starts
(`ClusterState.upcoming`). These change within an interval only for the tenants a sub-action gives
capacity."""
PAIR_FEATURE_NAMES = (
    "gpu.inference_slots",
    "gpu.retraining_slots",
    "instance.capacity",
    "instance.finish",
    "instance.was_inference",
    "instance.was_retraining",
)
"""Per tenant, its relation to what is being decided, read beside its encoding when it is scored as an
owner: its share of the decided GPU's memory slots now (per role), its capacity on the instance being
decided (relative to its forecast), the share of its retraining job the instance would finish in the
window (`finish_share`: of what is left of the job) and whether it holds that instance now (per role)."""
TENANT_FEATURES = len(TENANT_FEATURE_NAMES)
_T = {name: i for i, name in enumerate(TENANT_FEATURE_NAMES)}
_PAIR = {name: i for i, name in enumerate(PAIR_FEATURE_NAMES)}
LAYOUT, OWNER = 0, 1
OWNER_ROLES = ("idle", "inference", "retraining")


@dataclass(frozen=True)
class PolicySpec:
    """The shape of the decision for one GPU model: what a policy checkpoint is tied to. `max_tenants`
    only sizes a codec's observation and actions (tenant rows, owner actions); a set policy's weights
    do not depend on it."""

    gpu: GpuModel
    layouts: tuple[Layout, ...]  # the layout choices: the GPU model's maximal layouts
    max_tenants: int = MAX_TENANTS
    profiles: tuple[Profile, ...] = ()  # instance sizes in the observation: the base profiles

    def __post_init__(self) -> None:
        if not self.profiles:
            object.__setattr__(self, "profiles", self.gpu.base_profiles())

    @classmethod
    def for_gpu(cls, gpu: GpuModel, max_tenants: int = MAX_TENANTS) -> PolicySpec:
        """The spec of a GPU model: its maximal layouts, `max_tenants` tenant rows."""
        return cls(gpu, tuple(gpu.layouts(maximal=True)), max_tenants)

    def sized(self, tenants: int) -> PolicySpec:
        """This spec with room for `tenants` tenants (never fewer rows than it has)."""
        return replace(self, max_tenants=max(self.max_tenants, tenants))

    @property
    def keep_action(self) -> int:
        """The layout-phase action that keeps the GPU's current configuration unchanged."""
        return len(self.layouts)

    @property
    def n_actions(self) -> int:
        return max(len(self.layouts) + 1, 1 + 2 * self.max_tenants)

    @property
    def tenant_width(self) -> int:
        """Entries per tenant row."""
        return len(self.tenant_names())

    @property
    def obs_size(self) -> int:
        return self.max_tenants * self.tenant_width + len(self.context_names())

    @property
    def phase_index(self) -> int:
        """The context entry that is 1 in the layout phase (the next one is 1 in the owner phase)."""
        return self.context_names().index("phase=layout")

    def tenant_names(self) -> tuple[str, ...]:
        """The name of every entry of a tenant row, in order: what the tenant's encoding reads, then
        `PAIR_FEATURE_NAMES`."""
        return (*self.encoded_names(), *PAIR_FEATURE_NAMES)

    def encoded_names(self) -> tuple[str, ...]:
        """The entries of a tenant row its encoding reads (the row's first ones)."""
        profiles = [p.name for p in self.profiles]
        return (
            *TENANT_FEATURE_NAMES,
            *(f"capacity[{p}]" for p in profiles),
            *(f"finish[{p}]" for p in profiles),
        )

    def context_names(self) -> tuple[str, ...]:
        """The name of every context entry (after the tenant rows), in order."""
        profiles = [p.name for p in self.profiles]
        names: list[str] = []
        for block in ("current", "owner", "chosen"):
            for s in range(self.gpu.slots):
                kinds = OWNER_ROLES if block == "owner" else [*profiles, "free"]
                names += [f"gpu.slot{s}.{block}={k}" for k in kinds]
        names += ["gpu.compute_used", "gpus.decided", "gpus.compute_used", "gpus.log2_count", "gpus.left"]
        names += ["load_per_gpu", "tenants_per_gpu", "decided_per_demand"]
        names += ["phase=layout", "phase=owner"]
        names += [f"cursor.instance={p}" for p in [*profiles, "none"]]
        names += ["cursor.instance.start", *(f"cursor.instance.owner={o}" for o in OWNER_ROLES)]
        names += ["interval_progress"]
        return tuple(names)

    def feature_names(self) -> tuple[str, ...]:
        """The name of every observation entry, in order (tenant rows, then the context)."""
        rows = [f"tenant{t}.{name}" for t in range(self.max_tenants) for name in self.tenant_names()]
        return (*rows, *self.context_names())

    def action_names(self) -> dict[str, list[str]]:
        """What each action stands for, per phase (the action's contract)."""
        layouts = [" ".join(str(inst) for inst in layout.instances) for layout in self.layouts]
        owners = ["idle"] + [f"inference:tenant{t}" for t in range(self.max_tenants)]
        owners += [f"retraining:tenant{t}" for t in range(self.max_tenants)]
        return {"layout": [*layouts, "keep"], "owner": owners}

    def fits(self, workload: Workload) -> str | None:
        """Why a workload is beyond this spec (GPU model, tenant rows), or None when it fits."""
        if workload.gpu != self.gpu:
            return f"the policy is for {self.gpu.name}, the workload for {workload.gpu.name}"
        if len(workload.tenants) > self.max_tenants:
            return (
                f"the codec has rows for {self.max_tenants} tenants; the workload has {len(workload.tenants)}"
            )
        return None


def owner_action(owner: Owner | None, tenant_index: dict[str, int], max_tenants: int = MAX_TENANTS) -> int:
    """Owner-phase action of an owner: 0 idle, 1 + t inference, 1 + max_tenants + t retraining."""
    if owner is None:
        return 0
    t = tenant_index[owner.tenant]
    return 1 + t if owner.role == "inference" else 1 + max_tenants + t


def finish_share(
    sim: Simulator, progress: np.ndarray, running: np.ndarray, seconds_left: np.ndarray
) -> np.ndarray:
    """(tenants, simulator profiles): the share of what is left of each tenant's running retraining job
    that one new instance of each profile would train by the end of its window (its training throughput
    over the seconds left, less one downtime, against the samples still to train), at most 2; 0 without
    a job."""
    remaining = np.maximum(sim.samples - progress, 0.0)
    seconds = np.maximum(seconds_left - sim.dynamics.downtime_s, 0.0)
    job = running & (remaining > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = sim.train_rate * (seconds / np.where(job, remaining, 1.0))[:, None]
    return np.where(job[:, None], np.minimum(share, 2.0), 0.0).astype(np.float32)


class DecisionCodec:
    """Encodes the state of an interval being decided as an observation, gives the action masks, and
    decodes sub-actions into the interval's configuration (see the module docstring)."""

    def __init__(self, spec: PolicySpec) -> None:
        self.spec = spec
        self._profile_slot = {prof.id: i for i, prof in enumerate(spec.profiles)}
        self._layout_slots = np.stack([self._slot_profiles(layout) for layout in spec.layouts])
        self.layout_number = {layout: n for n, layout in enumerate(spec.layouts)}
        self._no_layout = np.zeros((spec.gpu.slots, len(spec.profiles) + 1), np.float32)
        self._no_roles = np.zeros((spec.gpu.slots, len(OWNER_ROLES)), np.float32)
        self._no_roles[:, 0] = 1.0
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
        cols = self._profile_columns = [simulator.profile_index[p.id] for p in self.spec.profiles]
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
        self.may_retrain = cluster.may_retrain()
        self.upcoming = cluster.upcoming()
        self._finish = finish_share(self.sim, *self.upcoming[1:])
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
        mask[1 + T : 1 + T + n] = (self.sim.train_rate[:n, j] > 0) & self.may_retrain & ~self.retraining_taken
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
        n, T = self.n_tenants, spec.max_tenants
        k = self.interval
        history = np.zeros((HISTORY, n))
        past = self.history[max(0, k - HISTORY) : k]
        if len(past):
            history[HISTORY - len(past) :] = past
        demand = np.maximum(self.forecast[0], 1e-6)
        self._demand = demand
        accuracy, progress, running, _ = self.upcoming
        columns = [
            np.ones(n),
            *(history / self.scale),
            *(self.forecast[:FORECAST] / self.scale),
            np.array([t.slo_ms for t in self.workload.tenants]) / 1000.0,
            accuracy,
            sim.accuracy_after,
            sim.drift,
            np.divide(progress, np.maximum(sim.samples, 1e-9)),
            running.astype(float),
            sim.has_retraining.astype(float),
            sim.dynamics.window_phase(k),
            np.minimum(self.previous_capacity / demand, 5.0),
            *np.zeros((2, n)),  # capacity and retraining decided so far: filled per sub-step
            np.minimum(self.scale / 1000.0, 10.0),
            np.minimum(demand / self.scale, 10.0),
            np.zeros(n),  # unmet: per sub-step
        ]
        tenants = np.zeros((T, spec.tenant_width), np.float32)
        tenants[:n, :TENANT_FEATURES] = np.clip(np.stack(columns, axis=1), 0.0, 10.0)
        P = len(spec.profiles)
        tenants[:n, TENANT_FEATURES : TENANT_FEATURES + P] = np.minimum(self.cap_by_size, 10.0)
        tenants[:n, TENANT_FEATURES + P : TENANT_FEATURES + 2 * P] = self._finish[:, self._profile_columns]
        self._pair = len(spec.encoded_names())  # the first pair entry of a row
        self._tenants = tenants
        G = self.n_gpus
        compute = np.array([self.current_gpu(g).layout.compute_used for g in range(G)], float)
        load = float((demand / self.scale).sum())
        self._load = load
        self._cluster = np.array(
            [
                0.0,  # gpus.decided: per sub-step
                compute.mean() / spec.gpu.compute_slices,
                math.log2(G) / 4.0,
                1.0,  # gpus.left: per sub-step
                min(load / G, 10.0),
                min(n / G, 10.0),
            ],
            np.float32,
        )
        self._compute = compute / spec.gpu.compute_slices
        self._cursor_gpu = -1  # the GPU whose tables below are built

    def _gpu_tables(self, g: int) -> None:
        """Tables of GPU g as it is now: its slots' profiles and owners' roles, each tenant's share of
        its slots per role, and the owner of each of its instances (tenant, role)."""
        spec, sim = self.spec, self.sim
        kept = self.current_gpu(g)
        self._slots_now = self._slot_profiles(kept.layout)
        roles = np.zeros((spec.gpu.slots, len(OWNER_ROLES)), np.float32)
        roles[:, 0] = 1.0
        shares = np.zeros((self.n_tenants, 2), np.float32)
        self._previous_owner: dict[Instance, tuple[int, int]] = {}
        for inst, owner in kept.items():
            if owner is None:
                continue
            t, r = sim.tenant_index[owner.tenant], 1 + (owner.role == "retraining")
            roles[inst.start : inst.end, 0] = 0.0
            roles[inst.start : inst.end, r] = 1.0
            shares[t, r - 1] += inst.profile.slots / spec.gpu.slots
            self._previous_owner[inst] = (t, r)
        self._roles_now = roles
        self._shares = shares
        self._cursor_gpu = g

    def observation(self) -> np.ndarray:
        """The observation of the sub-step now (see `PolicySpec.feature_names`)."""
        spec = self.spec
        n, P = self.n_tenants, len(spec.profiles)
        g, G = self.gpu_cursor, self.n_gpus
        tenants = self._tenants
        decided = self.decided_capacity / self.scale
        tenants[:n, _T["decided_capacity"]] = np.minimum(self.decided_capacity / self._demand, 5.0)
        tenants[:n, _T["retraining_decided"]] = self.retraining_taken
        tenants[:n, _T["unmet"]] = np.minimum(np.maximum(self._demand / self.scale - decided, 0.0), 10.0)
        pair = tenants[:, self._pair :]
        pair[:] = 0.0
        cursor = np.zeros(2 + P + 1 + 1 + len(OWNER_ROLES) + 1, np.float32)
        cursor[self.phase] = 1.0
        if g < G:
            if self._cursor_gpu != g:
                self._gpu_tables(g)
            pair[:n, _PAIR["gpu.inference_slots"] : _PAIR["gpu.retraining_slots"] + 1] = self._shares
            slots_now, roles_now, used = self._slots_now, self._roles_now, self._compute[g]
        else:
            slots_now, roles_now, used = self._no_layout, self._no_roles, 0.0
        if self.phase == OWNER:
            chosen = self._layout_slots[self._layout_index]
            inst = self.layout.instances[self.instance_cursor]
            j = self.sim.profile_index[inst.profile.id]
            pair[:n, _PAIR["instance.capacity"]] = np.minimum(self.sim.serve_rate[:, j] / self._demand, 5.0)
            pair[:n, _PAIR["instance.finish"]] = self._finish[:, j]
            cursor[2 + self._profile_slot[inst.profile.id]] = 1.0
            cursor[2 + P + 1] = inst.start / spec.gpu.slots
            t, role = self._previous_owner.get(inst, (-1, 0))
            cursor[2 + P + 2 + role] = 1.0
            if t >= 0:
                pair[t, _PAIR["instance.was_inference"] + role - 1] = 1.0
        else:
            chosen = self._no_layout
            cursor[2 + P] = 1.0
            cursor[2 + P + 2] = 1.0  # no instance: "idle"
        cursor[-1] = self.interval / max(self.workload.intervals, 1)
        cluster = self._cluster
        cluster[0] = g / G
        cluster[3] = (G - g) / G
        total = float(decided.sum()) / max(self._load, 1e-9)
        return np.concatenate(
            [
                tenants.ravel(),
                slots_now.ravel(),
                roles_now.ravel(),
                chosen.ravel(),
                np.array([used], np.float32),
                cluster,
                np.array([min(total, 5.0)], np.float32),
                cursor,
            ]
        )
