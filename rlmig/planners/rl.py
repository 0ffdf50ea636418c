"""The learned policy behind the planner interface, with a guard.

The policy's weights do not depend on the number of GPUs or tenants (`rlmig.policy.SetPolicy`): one
checkpoint decides any cluster of its GPU model. A workload of another GPU model is an error, or is
planned by a fallback planner when one is asked for (each such decision is labelled).

The policy decides an interval as the codec's sequence of masked sub-actions (`rlmig.policy.codec`:
`begin`, `choose`, `decided_configuration`), with numpy alone: no Gymnasium, no torch. The guard then asks
the simulator what the proposal, the current configuration and (optionally) a heuristic fallback would
yield if held for the next `guard_horizon` intervals of the forecast, and keeps the best: a policy
that proposes something worse than doing nothing, or than the heuristic, is overruled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from rlmig.checkpoints import CHECKPOINTS_DIR, shipped_models
from rlmig.configuration import Configuration
from rlmig.errors import RlmigError
from rlmig.geometry import DEFAULT_GPU_MODEL, gpu_model
from rlmig.loop import predicted_goodput
from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.policy import DecisionCodec, PolicySpec, SetPolicy, load_checkpoint
from rlmig.workload import Workload

DEFAULT_CHECKPOINT = CHECKPOINTS_DIR / "a100-80gb"


class RlPlanner(Planner):
    """A trained policy (a checkpoint folder; by default the shipped checkpoint for the workload's GPU
    model, `rlmig.checkpoints.shipped_models`), guarded.

    `guard_with` names the heuristics whose plans the guard weighs against the policy's proposal and the
    configuration in place (a list, or one comma-separated string; none: only those two); `guard=False`
    runs the policy alone. A workload the policy cannot decide (another GPU model than its own) is a
    one-line error unless `fallback` names a planner to decide it instead; every such decision says so
    (`Decision.fallback`), and a guard's choice of another candidate than the proposal is counted
    (`Decision.overruled`)."""

    name = "rl"
    can_defer = True

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        guard: bool = True,
        guard_horizon: int = 3,
        guard_with: str | Sequence[str] | None = "parva",
        fallback: str | None = None,
        policy: SetPolicy | None = None,
        gpu: str = DEFAULT_GPU_MODEL,
    ) -> None:
        self._by_gpu_model = policy is None and checkpoint is None  # the shipped one per GPU model
        if policy is None:
            policy, _, spec = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
        else:
            spec = PolicySpec.for_gpu(gpu_model(gpu))
        if guard_horizon < 1:
            raise RlmigError(f"the guard's horizon must be at least 1 interval, got {guard_horizon}")
        self.policy = policy
        self.spec = spec
        self.codec = DecisionCodec(spec)
        self.guard = guard
        self.guard_horizon = guard_horizon
        self.horizon = guard_horizon
        names = guard_with.split(",") if isinstance(guard_with, str) else list(guard_with or [])
        self.guard_names = [n.strip() for n in names if n.strip()] if guard else []
        self.fallback_name = fallback or None
        # built now (a bad name fails here, not mid-run) and reset with the planner
        self._guards = [_make(name) for name in self.guard_names]
        self._fallback = _make(self.fallback_name) if self.fallback_name else None
        if not guard:
            self.objective = "the learned policy's proposal, unguarded"
        else:
            others = " or ".join(["keeping the configuration", *self.guard_names])
            self.objective = (
                f"the learned policy's proposal, overruled by its guard when {others} is predicted better "
                f"over the next {guard_horizon} intervals (serve mode: as good with fewer GPUs)"
            )

    def forbid_mig_off(self) -> None:
        """Its guard's and fallback's planners plan no GPU with MIG disabled (the policy never does)."""
        for planner in [*self._guards, *([self._fallback] if self._fallback else [])]:
            planner.forbid_mig_off()

    def reset(self, workload: Workload) -> None:
        """Reset the guard's and the fallback's planners; a workload the policy cannot decide, with no
        fallback, is an error here, before any decision."""
        self._beyond(workload)
        for planner in [*self._guards, *([self._fallback] if self._fallback else [])]:
            planner.reset(workload)

    def propose(self, state: ClusterState) -> Configuration:
        """The policy's configuration, without the guard."""
        codec = self.codec
        if codec.spec.fits(state.workload) is not None:  # more tenants than the codec has rows for
            codec = self.codec = DecisionCodec(self.spec.sized(len(state.workload.tenants)))
        obs = codec.begin(state)
        while not codec.choose(self.policy.act(obs, codec.action_masks())):
            obs = codec.observation()
        return codec.decided_configuration()

    def fits(self, workload: Workload) -> bool:
        """Whether the policy can decide this workload (its GPU model; any number of GPUs and tenants)."""
        self._select(workload)
        return self.spec.sized(len(workload.tenants)).fits(workload) is None

    def _select(self, workload: Workload) -> None:
        """Without a checkpoint given, load the shipped one for the workload's GPU model (when one ships)."""
        if not self._by_gpu_model or workload.gpu.name == self.spec.gpu.name:
            return
        folder = shipped_models().get(workload.gpu.name)
        if folder is not None:
            self.policy, _, self.spec = load_checkpoint(folder)
            self.codec = DecisionCodec(self.spec)

    def _beyond(self, workload: Workload) -> bool:
        """Whether the workload is beyond the policy (then the fallback decides); an error without one."""
        self._select(workload)
        why = self.spec.sized(len(workload.tenants)).fits(workload)
        if why is not None and self._fallback is None and self._by_gpu_model:
            models = ", ".join(shipped_models())
            raise RlmigError(
                f"no shipped policy for {workload.gpu.name} (shipped: {models}); train one and pass "
                "--checkpoint, or ask for a fallback planner (e.g. --fallback parva)"
            )
        if why is not None and self._fallback is None:
            raise RlmigError(f"{why} (a fallback planner, e.g. --fallback parva, would plan it instead)")
        return why is not None

    def plan(self, state: ClusterState) -> Decision:
        if self._beyond(state.workload):
            assert self._fallback is not None
            decision = self._fallback.plan(state)
            return replace(decision, fallback=f"{self.fallback_name}: another GPU model than the policy's")
        proposal = self.propose(state)
        if not self.guard:
            return Decision(proposal)
        candidates = [proposal]
        if state.current is not None:
            candidates.append(state.current)
        candidates.extend(planner.plan(state).configuration for planner in self._guards)
        values = [predicted_goodput(state, c, self.guard_horizon) for c in candidates]
        best = int(np.argmax(values))  # ties go to the earliest: the proposal
        if state.workload.mode == "serve":  # serve mode's objective: the load with the fewest GPUs
            top = values[best]
            level = [i for i, v in enumerate(values) if v >= top - 1e-9 * max(abs(top), 1.0)]
            best = min(level, key=lambda i: (sum(g.used for g in candidates[i].gpus), i))
        overruled = best > 0 and candidates[best] != proposal
        return Decision(candidates[best], objective=float(values[best]), overruled=overruled)


def _make(name: str) -> Planner:
    from rlmig.planners import make_planner  # rlmig.planners loads this module on first use

    return make_planner(name)
