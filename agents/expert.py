"""The oracle as a teacher: the ILP's sub-action in any state of the environment (DAgger's labels).

The expert answers from the state the environment is in, including the choices already made in the
interval being decided (Ross, Gordon & Bagnell, AISTATS 2011): it re-solves the ILP with those choices
fixed (`rlmig.planners.ilp.FixedChoices`) only when they depart from its last plan.

Usage::

    env = MigReconfigEnv(workload)
    expert = Expert(env, IlpPlanner(mig_off=False))
    env.reset(seed=0)
    label = expert.action()
"""

from __future__ import annotations

import numpy as np

from rlmig.configuration import GpuConfig, Owner
from rlmig.envs.mig_reconfig import MigReconfigEnv
from rlmig.geometry import Instance, Layout
from rlmig.planners.ilp import ExpertChoices, FixedChoices, IlpPlanner
from rlmig.policy.codec import LAYOUT, OWNER


class Expert:
    """The ILP oracle's next sub-action from the environment's state."""

    def __init__(self, env: MigReconfigEnv, planner: IlpPlanner | None = None) -> None:
        self.env = env
        self.planner = planner or IlpPlanner(mig_off=False)
        if self.planner.mig_off:
            raise ValueError(
                "the expert's ILP must plan MIG layouts only (mig_off=False): no action turns MIG off"
            )
        # The myopic variant plans exactly as far as the forecast goes; the window-aware default plans
        # past it, the forecast's last row repeated (as a forecaster's own long-range forecast does).
        steps = self.planner.steps
        if steps is not None and steps > env.forecast_horizon:
            raise ValueError(
                f"the expert plans {steps} intervals ahead; the environment forecasts "
                f"{env.forecast_horizon} (give it forecast_horizon={steps})"
            )
        self._cache: ExpertChoices | None = None
        self._episode: object = None

    def action(self) -> int:
        """The oracle's sub-action in the environment's state now."""
        codec = self.env.codec
        choices = self._choices()
        g = codec.gpu_cursor
        if codec.phase == LAYOUT:
            planned = choices.decision.configuration.gpus[g]
            if planned == codec.current_gpu(g) and codec.keep_is_legal():
                return codec.spec.keep_action
            return codec.layout_number[choices.layouts[g]]
        inst = codec.layout.instances[codec.instance_cursor]
        return codec.owner_action(choices.owners.get((g, inst)))

    def equivalent_actions(self) -> np.ndarray:
        """Every legal sub-action that leads to a configuration as good as the oracle's plan (a mask;
        `action` is among them). The oracle's plan is one of many equal ones: GPUs that are alike now
        can trade their plans, and two instances of one profile that both change owner can trade
        owners. Cloning one arbitrary member of such a set would teach the policy to guess which one
        the solver returned; the set is what the policy should learn."""
        codec = self.env.codec
        choices = self._choices()
        legal = codec.action_masks()
        same = np.zeros_like(legal)
        same[self.action()] = True
        g = codec.gpu_cursor
        plan = choices.decision.configuration.gpus
        if codec.phase == LAYOUT:
            now = codec.current_gpu(g)
            for other in range(g + 1, codec.n_gpus):
                if codec.current_gpu(other) != now:
                    continue
                if plan[other] == now:
                    same[codec.spec.keep_action] = True
                else:
                    same[codec.layout_number[choices.layouts[other]]] = True
            return same & legal
        inst = codec.layout.instances[codec.instance_cursor]
        mine = choices.owners.get((g, inst))
        here = _owner_now(codec.current_gpu(g), inst)
        later = [(g, i) for i in codec.layout.instances[codec.instance_cursor + 1 :]]
        later += [(o, i) for o in range(g + 1, codec.n_gpus) for i in choices.layouts[o].instances]
        for other, other_inst in later:
            if other_inst.profile != inst.profile:
                continue
            theirs = choices.owners.get((other, other_inst))
            there = _owner_now(codec.current_gpu(other), other_inst)
            if all(o != now for o in (mine, theirs) for now in (here, there)):
                same[codec.owner_action(theirs)] = True
        return same & legal

    def _choices(self) -> ExpertChoices:
        env, codec = self.env, self.env.codec
        cached = self._cache if self._episode is env.sim else None  # a new episode: a new simulator
        if cached is not None and self._agrees(cached):
            return cached
        fixed_layouts: dict[int, Layout] = {g: config.layout for g, config in enumerate(codec.decided)}
        fixed_owners: dict[tuple[int, Instance], Owner | None] = {
            (g, inst): owner for g, config in enumerate(codec.decided) for inst, owner in config.items()
        }
        if codec.phase == OWNER:
            g = codec.gpu_cursor
            fixed_layouts[g] = codec.layout
            for inst in codec.layout.instances[: codec.instance_cursor]:
                fixed_owners[g, inst] = codec.owners.get(inst)
        fixed = FixedChoices(fixed_layouts, fixed_owners) if fixed_layouts else None
        self._cache = self.planner.expert_choices(env.cluster_state(), fixed)
        self._episode = env.sim
        return self._cache

    def _agrees(self, choices: ExpertChoices) -> bool:
        """Whether the choices made so far in this interval are the ones `choices` planned."""
        codec = self.env.codec
        if choices.interval != self.env.interval:
            return False
        planned = choices.decision.configuration.gpus
        if any(planned[g] != config for g, config in enumerate(codec.decided)):
            return False
        if codec.phase == OWNER:
            g = codec.gpu_cursor
            if choices.layouts[g] != codec.layout:
                return False
            done = codec.layout.instances[: codec.instance_cursor]
            return all(choices.owners.get((g, inst)) == codec.owners.get(inst) for inst in done)
        return True


_ABSENT = Owner("", "inference")  # the owner of an instance a GPU does not have (never a real owner)


def _owner_now(gpu: GpuConfig, inst: Instance) -> Owner | None:
    """Who owns `inst` on `gpu` now: its owner, None when it is idle, `_ABSENT` when it does not exist."""
    for placed, owner in gpu.items():
        if placed == inst:
            return owner
    return _ABSENT
