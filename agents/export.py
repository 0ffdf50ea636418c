"""Export a trained MaskablePPO policy to a checkpoint folder (`rlmig.policy`'s numpy form + card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmig.policy import NumpyPolicy, PolicySpec, policy_card, save_policy

_ACTIVATIONS = {torch.nn.Tanh: "tanh", torch.nn.ReLU: "relu"}


def numpy_policy(policy: torch.nn.Module) -> NumpyPolicy:
    """The actor of a MaskableActorCriticPolicy (flatten features, MLP, action logits) as numpy."""
    layers = [m for m in policy.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)]
    activations = {type(m) for m in policy.mlp_extractor.policy_net if not isinstance(m, torch.nn.Linear)}
    if len(activations) > 1 or (activations and next(iter(activations)) not in _ACTIVATIONS):
        raise ValueError(f"cannot export activations {activations}")
    name = _ACTIVATIONS[next(iter(activations))] if activations else "tanh"
    linear = [*layers, policy.action_net]
    with torch.no_grad():
        weights = tuple(np.asarray(m.weight.detach().cpu().numpy(), np.float32) for m in linear)
        biases = tuple(np.asarray(m.bias.detach().cpu().numpy(), np.float32) for m in linear)
    return NumpyPolicy(weights, biases, name)


def export_checkpoint(
    policy: torch.nn.Module, spec: PolicySpec, folder: str | Path, card: dict[str, Any]
) -> Path:
    """Write the checkpoint: numpy weights and a card with what the policy is for and how it was made."""
    return save_policy(folder, numpy_policy(policy), policy_card(spec, **card))
