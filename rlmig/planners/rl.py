"""The learned policy behind the planner interface, with a guard.

A workload beyond the policy's limits (more GPUs or tenants than it was trained for, another GPU model)
is planned by the first fallback heuristic instead.

The policy decides an interval as the environment's sequence of masked sub-actions (`MigReconfigEnv`
in decision mode: `begin`, `choose`, `decided_configuration`), with numpy alone. The guard then asks
the simulator what the proposal, the current configuration and (optionally) a heuristic fallback would
yield if held for the next `guard_horizon` intervals of the forecast, and keeps the best: a policy
that proposes something worse than doing nothing, or than the heuristic, is overruled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlmig.checkpoints import CHECKPOINTS_DIR
from rlmig.configuration import Configuration
from rlmig.envs.mig_reconfig import OBS_VERSION, EnvSpec, MigReconfigEnv
from rlmig.errors import RlmigError
from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.policy import NumpyPolicy, load_policy
from rlmig.workload import Workload

DEFAULT_CHECKPOINT = CHECKPOINTS_DIR / "a100-80gb"


def layout_actions(spec: EnvSpec) -> list[list[dict[str, object]]]:
    """What the layout actions of an environment stand for, as a checkpoint card records them."""
    return [[inst.to_json() for inst in layout.instances] for layout in spec.layouts]


def policy_card(spec: EnvSpec, **extra: object) -> dict[str, object]:
    """The card fields that tie a policy to an environment (what `load_checkpoint` checks), plus `extra`."""
    return {
        "gpu_model": spec.gpu.name,
        "max_gpus": spec.max_gpus,
        "max_tenants": spec.max_tenants,
        "observation_version": OBS_VERSION,
        "obs_size": spec.obs_size,
        "n_actions": spec.n_actions,
        **extra,
        "layouts": layout_actions(spec),
    }


def load_checkpoint(folder: str | Path) -> tuple[NumpyPolicy, dict]:
    """A checkpoint this installation can run: its card must name a known GPU model, the current
    observation layout version, and the same layout actions as this installation's MIG geometry."""
    policy, card = load_policy(folder)
    if card.get("observation_version") != OBS_VERSION:
        raise RlmigError(
            f"{folder}: observation version {card.get('observation_version')}, expected {OBS_VERSION}"
        )
    env = MigReconfigEnv(gpu=str(card.get("gpu_model")))
    if card.get("layouts") != layout_actions(env.spec_):
        raise RlmigError(f"{folder}: its layout actions do not match this installation's MIG geometry")
    if card.get("obs_size") != env.spec_.obs_size or card.get("n_actions") != env.spec_.n_actions:
        raise RlmigError(f"{folder}: observation or action size differs from this installation's")
    return policy, card


class RlPlanner(Planner):
    """A trained policy (a checkpoint folder; the shipped A100-80GB policy by default), guarded."""

    name = "rl"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        guard: bool = True,
        guard_horizon: int = 3,
        fallback: str | Sequence[str] | None = "parva",
        policy: NumpyPolicy | None = None,
        gpu: str = "A100-80GB",
    ) -> None:
        if policy is None:
            policy, card = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
            gpu = card["gpu_model"]
        self.policy = policy
        self.env = MigReconfigEnv(gpu=gpu)
        self.guard = guard
        self.guard_horizon = guard_horizon
        self.horizon = guard_horizon
        names = [fallback] if isinstance(fallback, str) else list(fallback or [])
        self.fallback_names = [n for n in names if n]
        self._fallbacks: list[Planner] | None = None

    def reset(self, workload: Workload) -> None:
        for planner in self._fallbacks or []:
            planner.reset(workload)

    def propose(self, state: ClusterState) -> Configuration:
        """The policy's configuration, without the guard."""
        env = self.env
        obs = env.begin(state)
        while True:
            if env.choose(self.policy.act(obs, env.action_masks())):
                return env.decided_configuration()
            obs = env._observation()

    def fits(self, workload: Workload) -> bool:
        """Whether the policy can decide this workload (its GPU model, at most its GPUs and tenants)."""
        spec = self.env.spec_
        return (
            workload.gpu == spec.gpu
            and workload.gpu_count <= spec.max_gpus
            and len(workload.tenants) <= spec.max_tenants
        )

    def plan(self, state: ClusterState) -> Decision:
        if not self.fits(state.workload):
            # Beyond the policy's limits (more GPUs or tenants, another GPU model): the fallback decides.
            if not self.fallback_names:
                raise RlmigError(
                    f"the policy handles {self.env.spec_.gpu.name} with up to {self.env.spec_.max_gpus} GPUs "
                    f"and {self.env.spec_.max_tenants} tenants, and has no fallback planner"
                )
            return self._fallback_planners()[0].plan(state)
        proposal = self.propose(state)
        if not self.guard:
            return Decision(proposal)
        candidates = [proposal]
        if state.current is not None:
            candidates.append(state.current)
        candidates.extend(planner.plan(state).configuration for planner in self._fallback_planners())
        values = [predicted_goodput(state, c, self.guard_horizon) for c in candidates]
        best = int(np.argmax(values))  # ties go to the earliest: the proposal
        return Decision(candidates[best], objective=float(values[best]))

    def _fallback_planners(self) -> list[Planner]:
        if self._fallbacks is None:
            from rlmig.planners import make_planner

            self._fallbacks = [make_planner(name) for name in self.fallback_names]
        return self._fallbacks


def predicted_goodput(state: ClusterState, config: Configuration, horizon: int) -> float:
    """Goodput the simulator predicts for holding `config` over the next `horizon` forecast intervals."""
    sim = state.simulator
    tenants = state.tenants.copy()
    previous = sim.encode(state.current) if state.current is not None else None
    encoded = sim.encode(config)
    total = 0.0
    for h in range(horizon):
        rates = state.forecast[min(h, len(state.forecast) - 1)]
        outcome, tenants = sim.step(state.interval + h, tenants, encoded, previous, rates)
        total += float(outcome.goodput.sum())
        previous = encoded
    return total
