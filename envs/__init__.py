"""Gymnasium environments over the rlmig core.

Importing this package registers ``rlmig/MigReconfig-v0``::

    import gymnasium as gym
    import rlmig.envs

    env = gym.make("rlmig/MigReconfig-v0", workload="eval/scenarios/spike-shift.yaml")
"""

from __future__ import annotations

import gymnasium as gym

from rlmig.envs.mig_reconfig import MigReconfigEnv

if "rlmig/MigReconfig-v0" not in gym.registry:
    gym.register(id="rlmig/MigReconfig-v0", entry_point="rlmig.envs.mig_reconfig:MigReconfigEnv")

__all__ = ["MigReconfigEnv"]
