"""MIG reconfiguration as a masked sequential decision (a Gymnasium environment).

Usage::

    import gymnasium as gym
    import rlmig.envs  # registers the environment
    from rlmig.agents.expert import Expert

    env = gym.make("rlmig/MigReconfig-v0", workload="eval/scenarios/azure-retrain.yaml")
    obs, info = env.reset(seed=0)
    expert = Expert(env.unwrapped)                        # the ILP oracle's sub-actions (DAgger labels)
    while True:
        action = expert.action()                          # or a policy's action under env.action_masks()
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated:
            break
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlmig.configuration import Configuration
from rlmig.geometry import DEFAULT_GPU_MODEL, gpu_model
from rlmig.loop import ClusterState, DecisionLoop
from rlmig.policy.codec import FORECAST, LAYOUT, DecisionCodec, PolicySpec
from rlmig.workload import Workload, load_workload


class MigReconfigEnv(gym.Env):
    """One episode is one run of a scenario (a workload); each interval's configuration is decided as a
    short sequence of masked discrete choices, then simulated. The choices, their masks and the
    observation are the core's policy codec (`rlmig.policy.codec`), which the RL planner runs on GPU
    nodes without Gymnasium; this class only adds episodes, simulation and reward.

    Decisions of one interval: for each GPU in turn, a *layout* choice: one of the GPU model's maximal
    layouts, or "keep" (the GPU's current layout and owners, unchanged); after a layout choice, an
    *owner* choice for each instance of that layout in slot order: idle, tenant t serving inference, or
    tenant t retraining. Masks (`action_masks()`, sb3-contrib's convention) allow only owners with an
    SLO-feasible segment on the instance (or a retraining throughput), at most one retraining instance
    per tenant, and only tenants and layouts that exist; every action therefore leads to a valid
    configuration, and there is always a legal action (keep, idle).

    Action space: ``Discrete(max(#maximal layouts + 1, 1 + 2 x tenant rows))`` (79 on A100-80GB with 8
    tenant rows), read by phase.

    Observation: ``Box(0, 10, (obs_size,), float32)``: one row per tenant (8 rows, or as many as a
    fixed workload has tenants; padding is zero), then the context; every entry named by
    `PolicySpec.feature_names`. Per tenant: present, recent rates and forecast (in units of the
    tenant's full-GPU capacity), SLO, capacity per instance size, accuracy, post-retraining accuracy,
    drift, retraining progress, job running, window phase, capacity of the previous interval and
    capacity decided so far in this one (relative to its forecast), retraining decided, its unmet
    demand per GPU left to decide, per instance size the share of what is left of its retraining job
    one instance would train by the end of the window (`finish`), its share of the decided GPU now,
    its capacity and `finish` on the instance being decided and whether it holds that instance now.
    Context: the decided GPU's slots (profile and owner's role now, the chosen layout's profile), the
    cluster in aggregate (GPUs decided, compute in use, size, load and tenants per GPU, capacity decided
    against demand), phase, the instance being decided (profile, start, owner's role now) and the
    interval's progress. Nothing in it grows with
    the number of GPUs.

    Reward: the simulator's goodput of the interval divided by the run's mean arrivals per interval,
    paid with the interval's last choice (0 otherwise), so the episode's return divided by its number
    of intervals is the run's goodput ratio. Nothing else is rewarded.

    Episode end: terminated after the last interval's last choice; never truncated.

    An action outside the mask (a policy without masks, gymnasium's checker) is taken as the default:
    keep in the layout phase (the first layout when keep is not legal), idle in the owner phase;
    ``info["illegal_action"]`` says so.

    Each interval is a round of the one decision loop (`rlmig.loop.DecisionLoop`), as in `run_planner`:
    the same forecasts and accounting, so an episode decided by the oracle (`rlmig.agents.expert.Expert`)
    reproduces the ILP planner's run.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012

    def __init__(
        self,
        workload: Workload | str | Path | None = None,
        *,
        sampler: Callable[[np.random.Generator], Workload] | None = None,
        gpu: str = DEFAULT_GPU_MODEL,
        forecaster: str = "auto",
        forecast_horizon: int = FORECAST,
        render_mode: str | None = None,
    ) -> None:
        self._fixed_workload = load_workload(workload) if isinstance(workload, str | Path) else workload
        self._sampler = sampler
        model = self._fixed_workload.gpu if self._fixed_workload is not None else gpu_model(gpu)
        self.spec_ = PolicySpec.for_gpu(model)
        if self._fixed_workload is not None:
            self.spec_ = self.spec_.sized(len(self._fixed_workload.tenants))
        self.codec = DecisionCodec(self.spec_)
        self.forecaster = forecaster
        self.forecast_horizon = max(forecast_horizon, FORECAST)
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(self.spec_.n_actions)
        self.observation_space = gym.spaces.Box(0.0, 10.0, (self.spec_.obs_size,), np.float32)
        self.workload: Workload | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        workload = (options or {}).get("workload") or self._fixed_workload
        if workload is None and self._sampler is None:
            raise ValueError("reset needs a workload: give one, or a scenario sampler, to the environment")
        if workload is None:
            workload = self._sampler(self.np_random)
        why = self.spec_.fits(workload)
        if why is not None:
            raise ValueError(why)
        self.workload = workload
        self.loop = DecisionLoop(
            workload, forecaster=self.forecaster, horizon=self.forecast_horizon, cache=False
        )
        self.sim = self.loop.simulator
        self.norm = max(float(workload.rates.sum(axis=1).mean()) * workload.interval_s, 1e-9)
        self.goodputs: list[float] = []
        self.loop.observe(workload.rates[0])  # round 0: seeds the forecasters
        self._begin_interval()
        return self.codec.observation(), self._info()

    @property
    def interval(self) -> int:
        """The interval being decided."""
        return self.loop.k

    @property
    def current(self) -> Configuration | None:
        """The configuration in place before the interval being decided."""
        return self.loop.placed

    def cluster_state(self) -> ClusterState:
        """What a planner sees before the interval being decided."""
        return self.loop.cluster_state(self.loop.placed, self.forecast)

    def _begin_interval(self) -> None:
        self.forecast = self.loop.forecast()
        self.codec.begin(self.cluster_state(), self.loop.placed_encoded)

    def action_masks(self) -> np.ndarray:
        """Legal actions now (always at least one)."""
        return self.codec.action_masks()

    def step(self, action: int):
        action = int(action)
        illegal = not self.codec.action_masks()[action]
        if illegal:  # outside the mask: the default, keep (else the first layout) or idle
            action = self.codec.default_action()
        complete = self.codec.choose(action)
        reward = self._simulate() if complete else 0.0
        info = {**self._info(), "illegal_action": illegal}
        if self.interval >= self.workload.intervals:
            return np.zeros(self.spec_.obs_size, np.float32), reward, True, False, info
        return self.codec.observation(), reward, False, False, info

    def _simulate(self) -> float:
        k = self.loop.k
        self.loop.commit(self.codec.decided_configuration())
        outcome = self.loop.observe(self.workload.rates[k])  # accounts interval k
        self.goodputs.append(float(outcome.goodput.sum()))
        self.last_outcome = outcome
        if self.interval < self.workload.intervals:
            self._begin_interval()
        return float(outcome.goodput.sum()) / self.norm

    def _info(self) -> dict[str, Any]:
        return {"interval": self.interval, "phase": "layout" if self.codec.phase == LAYOUT else "owner"}

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.workload is None:
            return None
        codec = self.codec
        phase = self._info()["phase"]
        lines = [f"interval {self.interval}/{self.workload.intervals}, GPU {codec.gpu_cursor}, phase {phase}"]
        lines += [f"  decided GPU {g}: {config}" for g, config in enumerate(codec.decided)]
        if self.current is not None:
            lines.append("  current:\n    " + str(self.current).replace("\n", "\n    "))
        return "\n".join(lines)
