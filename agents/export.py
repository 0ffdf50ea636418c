"""Export a trained MaskablePPO set policy to a checkpoint folder (`rlmig.policy`'s numpy form + card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmig.agents.set_policy import SetNetwork
from rlmig.policy import PolicySpec, SetPolicy, policy_card, save_policy


def numpy_policy(policy: torch.nn.Module) -> SetPolicy:
    """The actor of a `SetActorCriticPolicy` as numpy (`rlmig.policy.SetPolicy`)."""
    net = policy.mlp_extractor
    if not isinstance(net, SetNetwork):
        raise ValueError(f"cannot export a {type(net).__name__}: only set policies are exported")
    params = {}
    with torch.no_grad():
        for name in SetPolicy.PARAMETERS:
            layer, kind = name.split(".")
            tensor = getattr(getattr(net, layer), "weight" if kind == "w" else "bias")
            params[name] = np.asarray(tensor.detach().cpu().numpy(), np.float32)
    return SetPolicy(params, net.tenant_width, net.encoded_width, net.context_width, net.phase_index)


def export_checkpoint(
    policy: torch.nn.Module, spec: PolicySpec, folder: str | Path, card: dict[str, Any]
) -> Path:
    """Write the checkpoint: numpy weights and a card with what the policy is for and how it was made."""
    return save_policy(folder, numpy_policy(policy), policy_card(spec, **card))
