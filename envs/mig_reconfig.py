"""MIG reconfiguration as a masked sequential decision (a Gymnasium environment).

Usage::

    import gymnasium as gym
    import rlmig.envs  # registers the environment

    env = gym.make("rlmig/MigReconfig-v0", workload="eval/scenarios/azure-retrain.yaml")
    obs, info = env.reset(seed=0)
    while True:
        action = env.unwrapped.expert_action()           # or a policy's action under env.action_masks()
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated:
            break
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlmig.configuration import Configuration, GpuConfig, Owner, settle
from rlmig.geometry import GpuModel, Instance, Layout, Profile, gpu_model
from rlmig.planners.base import ClusterState, ForecastFeed
from rlmig.planners.ilp import ExpertChoices, FixedChoices, IlpPlanner
from rlmig.simulator import Simulator, TenantState
from rlmig.workload import Workload, load_workload

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
class EnvSpec:
    """The shape of the environment for one GPU model: what a policy checkpoint is tied to."""

    gpu: GpuModel
    layouts: tuple[Layout, ...]  # the layout choices: the GPU model's maximal layouts
    max_gpus: int = MAX_GPUS
    max_tenants: int = MAX_TENANTS
    profiles: tuple[Profile, ...] = ()  # instance sizes in the observation: the base profiles

    def __post_init__(self) -> None:
        if not self.profiles:
            object.__setattr__(self, "profiles", self.gpu.base_profiles())

    @property
    def keep_action(self) -> int:
        """The layout-phase action that keeps the GPU's current configuration unchanged."""
        return len(self.layouts)

    @property
    def n_actions(self) -> int:
        return max(len(self.layouts) + 1, 1 + 2 * self.max_tenants)

    @property
    def obs_size(self) -> int:
        p, s, t, g = len(self.profiles), self.gpu.slots, self.max_tenants, self.max_gpus
        tenants = t * (TENANT_FEATURES + p)
        current_gpu = s * ((p + 1) + (2 * t + 1)) + s * (p + 1)
        gpus = g * 3
        cursor = 2 + g + (p + 1) + 1 + (2 * t + 1) + 3
        return tenants + current_gpu + gpus + cursor


def owner_action(owner: Owner | None, tenant_index: dict[str, int]) -> int:
    """Owner-phase action of an owner: 0 idle, 1 + t inference, 1 + max_tenants + t retraining."""
    if owner is None:
        return 0
    t = tenant_index[owner.tenant]
    return 1 + t if owner.role == "inference" else 1 + MAX_TENANTS + t


class MigReconfigEnv(gym.Env):
    """One episode is one run of a scenario (a workload); each interval's configuration is decided as a
    short sequence of masked discrete choices, then simulated.

    Decisions of one interval: for each GPU in turn, a *layout* choice: one of the GPU model's maximal
    layouts, or "keep" (the GPU's current layout and owners, unchanged); after a layout choice, an
    *owner* choice for each instance of that layout in slot order: idle, tenant t serving inference, or
    tenant t retraining. Masks (`action_masks()`, sb3-contrib's convention) allow only owners with an
    SLO-feasible segment on the instance (or a retraining throughput), at most one retraining instance
    per tenant, and only tenants and layouts that exist; every action therefore leads to a valid
    configuration, and there is always a legal action (keep, idle). Idle instances that did not exist
    are not created (`rlmig.configuration.settle`).

    Action space: ``Discrete(max(#maximal layouts + 1, 1 + 2 x 8))`` (80 on A100-80GB), read by phase.

    Observation: ``Box(0, 10, (obs_size,), float32)``, fixed size for up to 8 GPUs and 8 tenants
    (padding is zero). Per tenant: present, recent rates and forecast (in units of the tenant's
    full-GPU capacity), SLO, capacity per instance size, accuracy, post-retraining accuracy, drift,
    retraining progress, job running, window phase, capacity of the previous interval and capacity
    decided so far in this one (relative to its forecast), retraining decided. The GPU being decided:
    per memory slot its current instance's profile and owner, and the chosen layout's profile. Per GPU:
    present, decided, current compute in use. Cursor: phase, GPU, instance profile and start, the
    instance's current owner, interval progress, GPUs and tenants in use.

    Reward: the simulator's goodput of the interval divided by the run's mean arrivals per interval,
    paid with the interval's last choice (0 otherwise), so the episode's return divided by its number
    of intervals is the run's goodput ratio. Nothing else is rewarded.

    Episode end: terminated after the last interval's last choice; never truncated.

    An action outside the mask (a policy without masks, gymnasium's checker) is taken as the default:
    keep in the layout phase (the first layout when keep is not legal), idle in the owner phase;
    ``info["illegal_action"]`` says so.

    Forecasts come from `rlmig.planners.base.ForecastFeed`, exactly as `run_planner` gives them to a
    planner, so an episode decided by `expert_action()` reproduces the ILP planner's run.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012

    def __init__(
        self,
        workload: Workload | str | Path | None = None,
        *,
        sampler: Callable[[np.random.Generator], Workload] | None = None,
        gpu: str = "A100-80GB",
        forecaster: str = "auto",
        expert: IlpPlanner | None = None,
        render_mode: str | None = None,
    ) -> None:
        self._fixed_workload = load_workload(workload) if isinstance(workload, str | Path) else workload
        self._sampler = sampler
        model = self._fixed_workload.gpu if self._fixed_workload is not None else gpu_model(gpu)
        self.spec_ = EnvSpec(model, tuple(model.layouts(maximal=True)))
        self.forecaster = forecaster
        self.expert_planner = expert or IlpPlanner()
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(self.spec_.n_actions)
        self.observation_space = gym.spaces.Box(0.0, 10.0, (self.spec_.obs_size,), np.float32)
        self._profile_slot = {prof.id: i for i, prof in enumerate(self.spec_.profiles)}
        self._layout_slots = self._build_layout_tables()
        self._layout_number = {layout: n for n, layout in enumerate(self.spec_.layouts)}
        self._no_layout = np.zeros((self.spec_.gpu.slots, len(self.spec_.profiles) + 1), np.float32)
        self.workload: Workload | None = None

    # -- static tables ---------------------------------------------------------------------------

    def _build_layout_tables(self) -> np.ndarray:
        """Per maximal layout and memory slot, a one-hot of the profile there (last column: free)."""
        spec = self.spec_
        tables = np.zeros((len(spec.layouts), spec.gpu.slots, len(spec.profiles) + 1), np.float32)
        for n, layout in enumerate(spec.layouts):
            tables[n] = self._slot_profiles(layout)
        return tables

    def _slot_profiles(self, layout: Layout) -> np.ndarray:
        p = len(self.spec_.profiles)
        table = np.zeros((self.spec_.gpu.slots, p + 1), np.float32)
        table[:, p] = 1.0
        for inst in layout.instances:
            if inst.profile.id in self._profile_slot:
                table[inst.start : inst.end, p] = 0.0
                table[inst.start : inst.end, self._profile_slot[inst.profile.id]] = 1.0
        return table

    # -- episode ---------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        workload = (options or {}).get("workload") or self._fixed_workload
        if workload is None and self._sampler is None:
            raise ValueError("reset needs a workload: give one, or a scenario sampler, to the environment")
        if workload is None:
            workload = self._sampler(self.np_random)
        if workload.gpu != self.spec_.gpu:
            raise ValueError(
                f"the environment is for {self.spec_.gpu.name}, the workload for {workload.gpu.name}"
            )
        if workload.gpu_count > MAX_GPUS or len(workload.tenants) > MAX_TENANTS:
            raise ValueError(f"at most {MAX_GPUS} GPUs and {MAX_TENANTS} tenants")
        self._use_workload(workload, Simulator(workload))
        self.interval = 0
        self.state: TenantState = self.sim.initial_state()
        self.current: Configuration | None = None
        self.current_encoded = None
        self.feed = ForecastFeed(workload, max(self.expert_planner.horizon, FORECAST), self.forecaster)
        self.goodputs: list[float] = []
        self._start_interval(self.feed.forecast(0))
        return self._observation(), self._info()

    def _use_workload(self, workload: Workload, simulator: Simulator) -> None:
        """Tables that hold for a whole run of `workload`."""
        self.workload = workload
        self.sim = simulator
        self.n_gpus, self.n_tenants = workload.gpu_count, len(workload.tenants)
        self.norm = max(float(workload.rates.sum(axis=1).mean()) * workload.interval_s, 1e-9)
        full = self.sim.profile_index[self.sim.full_profile.id]
        self.scale = np.maximum(self.sim.capacity[:, full], 1e-6)
        cols = [self.sim.profile_index[p.id] for p in self.spec_.profiles]
        self.cap_by_size = self.sim.capacity[:, cols] / self.scale[:, None]
        self._mask: np.ndarray | None = None

    def begin(self, cluster: ClusterState) -> np.ndarray:
        """Start deciding the interval a planner sees in `cluster` (no episode, no simulation): the RL
        planner's entry point. Take sub-actions with `choose` until `decided_configuration` is ready."""
        if self.workload is not cluster.workload or self.sim is not cluster.simulator:
            if cluster.workload.gpu != self.spec_.gpu:
                raise ValueError(f"the policy is for {self.spec_.gpu.name}, not {cluster.workload.gpu.name}")
            if cluster.workload.gpu_count > MAX_GPUS or len(cluster.workload.tenants) > MAX_TENANTS:
                raise ValueError(f"the policy handles at most {MAX_GPUS} GPUs and {MAX_TENANTS} tenants")
            self._use_workload(cluster.workload, cluster.simulator)
        self.interval = cluster.interval
        self.state = cluster.tenants
        self.current = cluster.current
        self.current_encoded = self.sim.encode(cluster.current) if cluster.current is not None else None
        forecast = np.asarray(cluster.forecast, dtype=float)
        if len(forecast) < FORECAST:
            forecast = np.vstack([forecast, np.repeat(forecast[-1:], FORECAST - len(forecast), 0)])
        self._mask = None
        self._start_interval(forecast)
        return self._observation()

    def choose(self, action: int) -> bool:
        """Take one sub-action of the interval being decided; True when its configuration is complete."""
        mask = self.action_masks()
        self._mask = None
        if not mask[action]:
            raise ValueError(f"action {action} is masked")
        self._apply(action)
        return self.gpu_cursor == self.n_gpus

    def decided_configuration(self) -> Configuration:
        """The configuration the sub-actions so far decided (every GPU must be decided)."""
        return Configuration(self.spec_.gpu, tuple(self.decided))

    def _start_interval(self, forecast: np.ndarray) -> None:
        self.forecast = forecast
        self.gpu_cursor = 0
        self.phase = LAYOUT
        self.decided: list[GpuConfig] = []
        self.layout: Layout | None = None
        self.owners: dict[Instance, Owner] = {}
        self.instance_cursor = 0
        self.decided_capacity = np.zeros(self.n_tenants)
        self.retraining_taken = np.zeros(self.n_tenants, bool)
        self._expert_cache: ExpertChoices | None = None
        if self.current is not None:
            self.previous_capacity = np.bincount(
                np.where(self.current_encoded.tenant >= 0, self.current_encoded.tenant, 0),
                weights=self.current_encoded.capacity,
                minlength=self.n_tenants,
            )
        else:
            self.previous_capacity = np.zeros(self.n_tenants)
        self._interval_features()

    def _current_gpu(self, g: int) -> GpuConfig:
        if self.current is None or g >= len(self.current.gpus):
            return GpuConfig(self.spec_.gpu.empty_layout(), ())
        return self.current.gpus[g]

    def step(self, action: int):
        action = int(action)
        mask = self.action_masks()
        self._mask = None
        illegal = not mask[action]
        if illegal:  # outside the mask: the default, keep (else the first layout) or idle
            action = self.spec_.keep_action if self.phase == LAYOUT and mask[self.spec_.keep_action] else 0
        self._apply(action)
        reward = self._simulate() if self.gpu_cursor == self.n_gpus else 0.0
        info = {**self._info(), "illegal_action": illegal}
        if self.interval >= self.workload.intervals:
            return np.zeros(self.spec_.obs_size, np.float32), reward, True, False, info
        return self._observation(), reward, False, False, info

    def _apply(self, action: int) -> None:
        g = self.gpu_cursor
        if self.phase == LAYOUT:
            if action == self.spec_.keep_action:
                kept = self._current_gpu(g)
                for inst, owner in kept.items():
                    self._account(inst, owner)
                self._finish_gpu(kept)
            else:
                self.layout = self.spec_.layouts[action]
                self._layout_index = action
                self.owners = {}
                self.instance_cursor = 0
                self.phase = OWNER
            return
        inst = self.layout.instances[self.instance_cursor]
        owner = self._owner_of_action(action)
        self._account(inst, owner)
        if owner is not None:
            self.owners[inst] = owner
        self.instance_cursor += 1
        if self.instance_cursor == len(self.layout.instances):
            self._finish_gpu(settle(self.layout, self.owners, self._current_gpu(g).layout))

    def _owner_of_action(self, action: int) -> Owner | None:
        if action == 0:
            return None
        t = (action - 1) % MAX_TENANTS
        role = "inference" if action <= MAX_TENANTS else "retraining"
        return Owner(self.workload.tenants[t].name, role)

    def _account(self, inst: Instance, owner: Owner | None) -> None:
        """Record an owner decided in this interval (capacity so far, retraining taken)."""
        if owner is None:
            return
        t = self.sim.tenant_index[owner.tenant]
        if owner.role == "inference":
            self.decided_capacity[t] += self.sim.capacity[t, self.sim.profile_index[inst.profile.id]]
        else:
            self.retraining_taken[t] = True

    def _finish_gpu(self, config: GpuConfig) -> None:
        self.decided.append(config)
        self.gpu_cursor += 1
        self.phase = LAYOUT
        self.layout = None

    def _simulate(self) -> float:
        config = self.decided_configuration()
        encoded = self.sim.encode(config, cache=False)
        outcome, self.state = self.sim.step(
            self.interval, self.state, encoded, self.current_encoded, self.workload.rates[self.interval]
        )
        self.current, self.current_encoded = config, encoded
        self.goodputs.append(float(outcome.goodput.sum()))
        self.last_outcome = outcome
        self.interval += 1
        if self.interval < self.workload.intervals:
            self._start_interval(self.feed.forecast(self.interval))
        return float(outcome.goodput.sum()) / self.norm

    # -- masks -----------------------------------------------------------------------------------

    def action_masks(self) -> np.ndarray:
        """Legal actions now (always at least one)."""
        if self._mask is None:
            self._mask = self._compute_mask()
        return self._mask

    def _compute_mask(self) -> np.ndarray:
        mask = np.zeros(self.spec_.n_actions, bool)
        if self.phase == LAYOUT:
            mask[: len(self.spec_.layouts)] = True
            mask[self.spec_.keep_action] = self._keep_is_legal()
            return mask
        inst = self.layout.instances[self.instance_cursor]
        j = self.sim.profile_index[inst.profile.id]
        n = self.n_tenants
        mask[0] = True
        mask[1 : 1 + n] = self.sim.capacity[:n, j] > 0
        mask[1 + MAX_TENANTS : 1 + MAX_TENANTS + n] = (
            self.sim.train_rate[:n, j] > 0
        ) & ~self.retraining_taken
        return mask

    def _keep_is_legal(self) -> bool:
        kept = self._current_gpu(self.gpu_cursor)
        for owner in kept.owners:
            if (
                owner is not None
                and owner.role == "retraining"
                and self.retraining_taken[self.sim.tenant_index[owner.tenant]]
            ):
                return False
        return True

    # -- observation -----------------------------------------------------------------------------

    def _interval_features(self) -> None:
        """The parts of the observation fixed for the whole interval being decided."""
        spec, sim = self.spec_, self.sim
        n, P = self.n_tenants, len(spec.profiles)
        k = self.interval
        history = np.zeros((HISTORY, n))
        past = self.workload.rates[max(0, k - HISTORY) : k]
        if len(past):
            history[HISTORY - len(past) :] = past
        demand = np.maximum(self.forecast[0], 1e-6)
        self._demand = demand
        window = np.maximum(sim.window_intervals, 1)
        columns = [
            np.ones(n),
            *(history / self.scale),
            *(self.forecast[:FORECAST] / self.scale),
            np.array([t.slo_ms for t in self.workload.tenants]) / 1000.0,
            self.state.accuracy,
            sim.accuracy_after,
            sim.drift,
            np.divide(self.state.progress, np.maximum(sim.samples, 1e-9)),
            self.state.active.astype(float),
            sim.has_retraining.astype(float),
            np.where(sim.has_retraining, (k % window) / window, 0.0),
            np.minimum(self.previous_capacity / demand, 5.0),
            np.zeros(n),  # capacity decided so far: filled per sub-step
            np.zeros(n),  # retraining decided so far: filled per sub-step
            np.minimum(self.scale / 1000.0, 10.0),
            np.minimum(demand / self.scale, 10.0),
        ]
        tenants = np.zeros((MAX_TENANTS, TENANT_FEATURES + P), np.float32)
        tenants[:n, :TENANT_FEATURES] = np.clip(np.stack(columns, axis=1), 0.0, 10.0)
        tenants[:n, TENANT_FEATURES:] = np.minimum(self.cap_by_size, 10.0)
        self._tenants = tenants
        slots = spec.gpu.slots
        self._gpu_slots = np.zeros((MAX_GPUS + 1, slots, P + 1), np.float32)
        self._gpu_slots[:, :, P] = 1.0
        self._gpu_owners = np.zeros((MAX_GPUS + 1, slots, 2 * MAX_TENANTS + 1), np.float32)
        self._gpu_owners[:, :, 0] = 1.0
        self._gpus = np.zeros((MAX_GPUS, 3), np.float32)
        self._gpus[: self.n_gpus, 0] = 1.0
        self._previous_owner: list[dict[Instance, int]] = []
        for g in range(self.n_gpus):
            kept = self._current_gpu(g)
            self._gpu_slots[g] = self._slot_profiles(kept.layout)
            owners = {}
            for inst, owner in kept.items():
                action = owner_action(owner, sim.tenant_index)
                owners[inst] = action
                self._gpu_owners[g, inst.start : inst.end, 0] = 0.0
                self._gpu_owners[g, inst.start : inst.end, action] = 1.0
            self._previous_owner.append(owners)
            self._gpus[g, 2] = kept.layout.compute_used / spec.gpu.compute_slices

    def _observation(self) -> np.ndarray:
        n, P, T = self.n_tenants, len(self.spec_.profiles), MAX_TENANTS
        tenants = self._tenants
        tenants[:n, _DECIDED] = np.minimum(self.decided_capacity / self._demand, 5.0)
        tenants[:n, _RETRAINING_DECIDED] = self.retraining_taken
        g = self.gpu_cursor
        gpus = self._gpus
        gpus[:, 1] = 0.0
        gpus[:g, 1] = 1.0
        cursor = np.zeros(2 + MAX_GPUS + (P + 1) + 1 + (2 * T + 1) + 3, np.float32)
        cursor[self.phase] = 1.0
        if g < MAX_GPUS:
            cursor[2 + g] = 1.0
        offset = 2 + MAX_GPUS
        if self.phase == OWNER:
            chosen = self._layout_slots[self._layout_index]
            inst = self.layout.instances[self.instance_cursor]
            cursor[offset + self._profile_slot[inst.profile.id]] = 1.0
            cursor[offset + P + 1] = inst.start / self.spec_.gpu.slots
            previous = self._previous_owner[g].get(inst) if g < self.n_gpus else None
            if previous is not None:
                cursor[offset + P + 2 + previous] = 1.0
        else:
            chosen = self._no_layout
            cursor[offset + P] = 1.0
        tail = offset + P + 2 + 2 * T + 1
        cursor[tail] = self.interval / max(self.workload.intervals, 1)
        cursor[tail + 1] = self.n_gpus / MAX_GPUS
        cursor[tail + 2] = n / MAX_TENANTS
        row = min(g, MAX_GPUS)
        obs = np.concatenate(
            [
                tenants.ravel(),
                self._gpu_slots[row].ravel(),
                self._gpu_owners[row].ravel(),
                chosen.ravel(),
                gpus.ravel(),
                cursor,
            ]
        )
        return obs

    def _info(self) -> dict[str, Any]:
        return {"interval": self.interval, "phase": "layout" if self.phase == LAYOUT else "owner"}

    # -- the expert ------------------------------------------------------------------------------

    def cluster_state(self) -> ClusterState:
        """What a planner would see before the interval being decided."""
        k = self.interval
        return ClusterState(
            self.workload,
            self.sim,
            k,
            self.current,
            self.state.copy(),
            self.workload.rates[:k],
            self.forecast,
        )

    def expert_action(self) -> int:
        """The ILP oracle's next sub-action from this state, given the choices already made in this
        interval; it re-solves only when those choices depart from its last plan (DAgger's states)."""
        choices = self._expert_choices()
        g = self.gpu_cursor
        if self.phase == LAYOUT:
            planned = choices.decision.configuration.gpus[g]
            if planned == self._current_gpu(g) and self._keep_is_legal():
                return self.spec_.keep_action
            return self._layout_number[choices.layouts[g]]
        inst = self.layout.instances[self.instance_cursor]
        return owner_action(choices.owners.get((g, inst)), self.sim.tenant_index)

    def _expert_choices(self) -> ExpertChoices:
        cached = self._expert_cache
        if cached is not None and self._agrees(cached):
            return cached
        fixed_layouts: dict[int, Layout] = {g: config.layout for g, config in enumerate(self.decided)}
        fixed_owners: dict[tuple[int, Instance], Owner | None] = {
            (g, inst): owner for g, config in enumerate(self.decided) for inst, owner in config.items()
        }
        if self.phase == OWNER:
            g = self.gpu_cursor
            fixed_layouts[g] = self.layout
            for inst in self.layout.instances[: self.instance_cursor]:
                fixed_owners[g, inst] = self.owners.get(inst)
        fixed = FixedChoices(fixed_layouts, fixed_owners) if fixed_layouts else None
        self._expert_cache = self.expert_planner.expert_choices(self.cluster_state(), fixed)
        return self._expert_cache

    def _agrees(self, choices: ExpertChoices) -> bool:
        """Whether the choices made so far in this interval are the ones `choices` planned."""
        if choices.interval != self.interval:
            return False
        planned = choices.decision.configuration.gpus
        if any(planned[g] != config for g, config in enumerate(self.decided)):
            return False
        if self.phase == OWNER:
            g = self.gpu_cursor
            if choices.layouts[g] != self.layout:
                return False
            done = self.layout.instances[: self.instance_cursor]
            return all(choices.owners.get((g, inst)) == self.owners.get(inst) for inst in done)
        return True

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.workload is None:
            return None
        phase = self._info()["phase"]
        lines = [f"interval {self.interval}/{self.workload.intervals}, GPU {self.gpu_cursor}, phase {phase}"]
        lines += [f"  decided GPU {g}: {config}" for g, config in enumerate(self.decided)]
        if self.current is not None:
            lines.append("  current:\n    " + str(self.current).replace("\n", "\n    "))
        return "\n".join(lines)
