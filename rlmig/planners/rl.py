"""The learned policy behind the planner interface, with a guard.

A workload beyond the policy's limits (more GPUs or tenants than it was trained for, another GPU model)
is planned by the first fallback heuristic instead.

The policy decides an interval as the codec's sequence of masked sub-actions (`rlmig.policy.codec`:
`begin`, `choose`, `decided_configuration`), with numpy alone: no Gymnasium, no torch. The guard then asks
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
from rlmig.errors import RlmigError
from rlmig.geometry import DEFAULT_GPU_MODEL, gpu_model
from rlmig.loop import predicted_goodput
from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.policy import DecisionCodec, NumpyPolicy, PolicySpec, load_checkpoint
from rlmig.workload import Workload

DEFAULT_CHECKPOINT = CHECKPOINTS_DIR / "a100-80gb"


class RlPlanner(Planner):
    """A trained policy (a checkpoint folder; the shipped A100-80GB policy by default), guarded."""

    name = "rl"
    objective = (
        "the learned policy's proposal, overruled by its guard when keeping the configuration or parva "
        "is predicted better over the next intervals"
    )

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        guard: bool = True,
        guard_horizon: int = 3,
        fallback: str | Sequence[str] | None = "parva",
        policy: NumpyPolicy | None = None,
        gpu: str = DEFAULT_GPU_MODEL,
    ) -> None:
        if policy is None:
            policy, _, spec = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
        else:
            spec = PolicySpec.for_gpu(gpu_model(gpu))
        self.policy = policy
        self.spec = spec
        self.codec = DecisionCodec(spec)
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
        codec = self.codec
        obs = codec.begin(state)
        while not codec.choose(self.policy.act(obs, codec.action_masks())):
            obs = codec.observation()
        return codec.decided_configuration()

    def fits(self, workload: Workload) -> bool:
        """Whether the policy can decide this workload (its GPU model, at most its GPUs and tenants)."""
        return self.spec.fits(workload) is None

    def plan(self, state: ClusterState) -> Decision:
        if not self.fits(state.workload):
            # Beyond the policy's limits (more GPUs or tenants, another GPU model): the fallback decides.
            if not self.fallback_names:
                raise RlmigError(
                    f"the policy handles {self.spec.gpu.name} with up to {self.spec.max_gpus} GPUs "
                    f"and {self.spec.max_tenants} tenants, and has no fallback planner"
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
