"""Learned policies on the node side, numpy only: the decision codec (observation, masks, decoding of
sub-actions) and the checkpoint format (weights, card, compatibility check)."""

from rlmig.policy.checkpoint import (
    CARD_FORMAT,
    SetPolicy,
    checkpoint_spec,
    load_checkpoint,
    load_policy,
    policy_card,
    save_policy,
)
from rlmig.policy.codec import MAX_TENANTS, OBS_VERSION, DecisionCodec, PolicySpec, owner_action

__all__ = [
    "CARD_FORMAT",
    "MAX_TENANTS",
    "OBS_VERSION",
    "DecisionCodec",
    "PolicySpec",
    "SetPolicy",
    "checkpoint_spec",
    "load_checkpoint",
    "load_policy",
    "owner_action",
    "policy_card",
    "save_policy",
]
