"""Policy checkpoints: numpy weights and a JSON card, no torch, no pickle; the one place that writes,
reads and checks them.

A checkpoint is a folder with two files::

    policy.npz   the actor's weights, loaded with numpy.load(allow_pickle=False)
    card.json    what the policy is for and how it was made (format `CARD_FORMAT`)

Usage::

    from rlmig.policy import load_checkpoint
    policy, card, spec = load_checkpoint("checkpoints/a100-80gb")
    action = policy.act(observation, action_mask)        # the masked argmax, as the torch policy's

The card's contract fields (`policy_card`) are the GPU model, the limits, and the names of every
observation feature and every action (`rlmig.policy.codec.PolicySpec`). `load_checkpoint` refuses, in
one line, a checkpoint whose features or actions differ from this installation's in name or order, not
only in size. `rlmig.agents.export` writes checkpoints from a trained MaskablePPO model;
`rlmig.planners.rl` runs them behind the planner interface.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlmig.errors import RlmigError
from rlmig.geometry import gpu_model
from rlmig.inputs import read_json
from rlmig.policy.codec import OBS_VERSION, PolicySpec

CARD_FORMAT = "rlmig-policy/2"
ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}


@dataclass(frozen=True)
class NumpyPolicy:
    """An MLP actor: hidden layers with an activation, then a linear layer of action logits."""

    weights: tuple[np.ndarray, ...]  # W0, W1, ..., Wout (each out x in)
    biases: tuple[np.ndarray, ...]
    activation: str = "tanh"

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """Action logits for one observation (or a batch, last axis the features)."""
        x = np.asarray(obs, dtype=np.float32)
        act = ACTIVATIONS[self.activation]
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            x = act(x @ w.T + b)
        return x @ self.weights[-1].T + self.biases[-1]

    def act(self, obs: np.ndarray, mask: np.ndarray) -> int:
        """The most likely legal action (the deterministic policy)."""
        logits = self.logits(obs)
        return int(np.argmax(np.where(mask, logits, -np.inf)))


def save_policy(folder: str | Path, policy: NumpyPolicy, card: dict[str, Any]) -> Path:
    """Write `policy.npz` and `card.json` into `folder` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"w{i}": w for i, w in enumerate(policy.weights)} | {
        f"b{i}": b for i, b in enumerate(policy.biases)
    }
    np.savez(folder / "policy.npz", **arrays)
    full_card = {
        "format": CARD_FORMAT,
        "activation": policy.activation,
        "layers": len(policy.weights),
        **card,
    }
    (folder / "card.json").write_text(json.dumps(full_card, indent=2, sort_keys=False) + "\n")
    return folder


def load_policy(folder: str | Path) -> tuple[NumpyPolicy, dict[str, Any]]:
    """Read a checkpoint folder; never unpickles. Raises `RlmigError` with one line when it is not one
    this installation can run."""
    folder = Path(folder)
    card_path, weights_path = folder / "card.json", folder / "policy.npz"
    card = read_json(card_path, "the checkpoint card")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise RlmigError(f"{card_path}: not an {CARD_FORMAT} card")
    activation = card.get("activation")
    if activation not in ACTIVATIONS:
        raise RlmigError(f"{card_path}: unknown activation {activation!r}")
    layers = card.get("layers")
    try:
        with np.load(weights_path, allow_pickle=False) as data:
            weights = tuple(np.asarray(data[f"w{i}"], np.float32) for i in range(layers))
            biases = tuple(np.asarray(data[f"b{i}"], np.float32) for i in range(layers))
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        raise RlmigError(f"{weights_path}: cannot read the weights ({type(exc).__name__}: {exc})") from None
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if w.ndim != 2 or b.shape != (w.shape[0],) or (i and w.shape[1] != weights[i - 1].shape[0]):
            raise RlmigError(f"{weights_path}: layer {i} has inconsistent shapes {w.shape} and {b.shape}")
    if not all(np.isfinite(a).all() for a in (*weights, *biases)):
        raise RlmigError(f"{weights_path}: the weights hold NaN or infinite values")
    policy = NumpyPolicy(weights, biases, activation)
    if weights[0].shape[1] != card.get("obs_size") or weights[-1].shape[0] != card.get("n_actions"):
        raise RlmigError(f"{weights_path}: the weights do not match the card's observation and action sizes")
    return policy, card


def policy_card(spec: PolicySpec, **extra: object) -> dict[str, object]:
    """The card fields that tie a policy to its decision codec (what `load_checkpoint` checks), plus
    `extra` (training configuration, data, evaluation)."""
    return {
        "gpu_model": spec.gpu.name,
        "max_gpus": spec.max_gpus,
        "max_tenants": spec.max_tenants,
        "observation_version": OBS_VERSION,
        "obs_size": spec.obs_size,
        "n_actions": spec.n_actions,
        **extra,
        "features": list(spec.feature_names()),
        "actions": spec.action_names(),
    }


def checkpoint_spec(card: dict[str, Any]) -> PolicySpec:
    """The decision spec a card was made for (GPU model and limits)."""
    try:
        gpu = gpu_model(str(card.get("gpu_model")))
        spec = PolicySpec.for_gpu(gpu)
        return PolicySpec(spec.gpu, spec.layouts, int(card["max_gpus"]), int(card["max_tenants"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RlmigError(f"card: missing or bad limits ({exc})") from None


def load_checkpoint(folder: str | Path) -> tuple[NumpyPolicy, dict[str, Any], PolicySpec]:
    """A checkpoint this installation can run, with its card and decision spec. The card must name a
    known GPU model and the very observation features and actions (names and order) that this
    installation's codec produces and reads."""
    policy, card = load_policy(folder)
    spec = checkpoint_spec(card)
    ours = policy_card(spec)
    for key, what in (
        ("observation_version", "observation version"),
        ("features", "observation features"),
        ("actions", "actions"),
    ):
        if card.get(key) != ours[key]:
            differ = _first_difference(card.get(key), ours[key])
            raise RlmigError(f"{folder}: its {what} differ from this installation's ({differ})")
    return policy, card, spec


def _first_difference(theirs: object, ours: object) -> str:
    if isinstance(theirs, list) and isinstance(ours, list):
        for i, (a, b) in enumerate(zip(theirs, ours, strict=False)):
            if a != b:
                return f"entry {i}: {str(a)[:40]!r} here {str(b)[:40]!r}"
        return f"{len(theirs)} entries, here {len(ours)}"
    if isinstance(theirs, dict) and isinstance(ours, dict):
        for key in sorted(set(theirs) | set(ours)):
            if theirs.get(key) != ours.get(key):
                return f"{key}: " + _first_difference(theirs.get(key), ours.get(key))
    return f"{str(theirs)[:40]!r}, here {str(ours)[:40]!r}"
