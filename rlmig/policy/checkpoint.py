"""Policy checkpoints: numpy weights and a JSON card, no torch, no pickle; the one place that writes,
reads and checks them, and the numpy forward pass of the policy (`SetPolicy`).

A checkpoint is a folder with two files::

    policy.npz   the actor's weights (`SetPolicy.PARAMETERS`), loaded with numpy.load(allow_pickle=False)
    card.json    what the policy is for and how it was made (format `CARD_FORMAT`)

Usage::

    from rlmig.policy import load_checkpoint
    policy, card, spec = load_checkpoint("checkpoints/a100-80gb")
    action = policy.act(observation, action_mask)        # the masked argmax, as the torch policy's

The card's contract fields (`policy_card`) are the GPU model and the names of every tenant-row entry,
every context entry and every layout action (`rlmig.policy.codec.PolicySpec`); not the number of GPUs
or tenants, which the weights do not depend on. `load_checkpoint` refuses, in one line, a checkpoint
whose names differ from this installation's in name or order, not only in size, and weights that are
missing, misshapen or not finite. `rlmig.agents.export` writes checkpoints from a trained MaskablePPO
model (`rlmig.agents.set_policy`); `rlmig.planners.rl` runs them behind the planner interface.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rlmig.errors import RlmigError
from rlmig.geometry import gpu_model
from rlmig.inputs import read_json
from rlmig.policy.codec import OBS_VERSION, PAIR_FEATURE_NAMES, PolicySpec

CARD_FORMAT = "rlmig-policy/3"


@dataclass(frozen=True)
class SetPolicy:
    """The actor of a set policy: one encoder shared by every tenant row (the row's first
    `encoded_width` entries), pooled (mean and max over the tenants present) with the context into a
    state encoding, which scores each layout; each tenant's encoding, the state encoding and the rest
    of its row (its relation to the GPU and instance being decided) score it as the instance's owner
    (inference, retraining), and the state encoding scores leaving it idle. Deep Sets (Zaheer et al.,
    NeurIPS 2017) over tenants; nothing depends on the number of tenants or GPUs. tanh throughout.

    Logits follow the codec's actions: in the layout phase the layouts then keep, in the owner phase
    idle, inference of each tenant row, retraining of each tenant row (zeros where nothing applies).
    A decision's sub-steps change few tenants' encoded entries, so `act` keeps the encodings of the
    rows it saw last and encodes again only the rows that changed (the result is the same)."""

    params: dict[str, np.ndarray]
    tenant_width: int  # entries per tenant row
    encoded_width: int  # the row's first entries, which the tenant encoder reads
    context_width: int  # context entries after the rows
    phase_index: int  # the context entry that is 1 in the layout phase
    _cache: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    PARAMETERS: ClassVar[tuple[str, ...]] = (
        "enc0.w", "enc0.b", "enc1.w", "enc1.b", "ctx0.w", "ctx0.b", "ctx1.w", "ctx1.b",
        "layout.w", "layout.b", "own0.w", "own0.b", "own1.w", "own1.b", "idle.w", "idle.b",
    )  # fmt: skip

    def __getstate__(self) -> dict[str, object]:
        """Pickled without the encodings `act` keeps (Ray hands arrays over read-only)."""
        return {**self.__dict__, "_cache": {}}

    @classmethod
    def initial(cls, spec: PolicySpec, hidden: int = 64, seed: int = 0, scale: float = 0.1) -> SetPolicy:
        """Untrained weights for `spec` (normal, standard deviation `scale`; zero biases): for tests
        and benchmarks, where what is decided does not matter, only how."""
        rng = np.random.default_rng(seed)
        params = {}
        for name, shape in _shapes(hidden, spec.tenant_width, len(spec.encoded_names()),
                                   len(spec.context_names()), spec.keep_action + 1).items():  # fmt: skip
            params[name] = (
                rng.normal(0.0, scale, shape).astype(np.float32)
                if name.endswith(".w")
                else np.zeros(shape, np.float32)
            )
        return cls(
            params, spec.tenant_width, len(spec.encoded_names()), len(spec.context_names()), spec.phase_index
        )

    @property
    def hidden(self) -> int:
        return int(self.params["enc1.w"].shape[0])

    @property
    def layout_actions(self) -> int:
        return int(self.params["layout.w"].shape[0])

    def check(self) -> str | None:
        """What is wrong with the weights' shapes or values, or None."""
        p = self.params
        if "enc1.w" not in p or "layout.w" not in p:
            return "weights enc1.w or layout.w missing"
        shapes = _shapes(
            self.hidden, self.tenant_width, self.encoded_width, self.context_width, self.layout_actions
        )
        for name in self.PARAMETERS:
            if name not in p:
                return f"weights {name} missing"
            if p[name].shape != shapes[name]:
                return f"weights {name} have shape {p[name].shape}, expected {shapes[name]}"
            if not np.isfinite(p[name]).all():
                return f"weights {name} hold NaN or infinite values"
        return None

    def _encode(self, rows: np.ndarray) -> np.ndarray:
        p = self.params
        return np.tanh(np.tanh(rows @ p["enc0.w"].T + p["enc0.b"]) @ p["enc1.w"].T + p["enc1.b"])

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """Action logits for one observation (or a batch, last axis the entries)."""
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        x = x[None] if single else x
        tenants = (x.shape[1] - self.context_width) // self.tenant_width
        rows = x[:, : tenants * self.tenant_width].reshape(len(x), tenants, self.tenant_width)
        encoded = rows[..., : self.encoded_width]
        out = self._logits(x, rows, self._encode(encoded))
        return out[0] if single else out

    def _logits(self, x: np.ndarray, rows: np.ndarray, e: np.ndarray) -> np.ndarray:
        p, h = self.params, self.hidden
        tenants = rows.shape[1]
        context = x[:, tenants * self.tenant_width :]
        present = rows[..., :1] > 0.5
        count = np.maximum(present.sum(axis=1), 1)
        mean = np.where(present, e, 0.0).sum(axis=1) / count
        top = np.where(present, e, -1.0).max(axis=1)
        state = np.concatenate([context, mean, top], axis=1)
        s = np.tanh(np.tanh(state @ p["ctx0.w"].T + p["ctx0.b"]) @ p["ctx1.w"].T + p["ctx1.b"])
        out = np.zeros((len(x), max(self.layout_actions, 1 + 2 * tenants)), np.float32)
        layout = context[:, self.phase_index] > 0.5
        if layout.any():
            out[layout, : self.layout_actions] = s[layout] @ p["layout.w"].T + p["layout.b"]
        owner = ~layout
        if owner.any():
            # own0 reads [encoding, state, pair entries]: its three blocks applied apart
            w = p["own0.w"]
            so = s[owner]
            hidden = (
                e[owner] @ w[:, :h].T
                + (so @ w[:, h : 2 * h].T + p["own0.b"])[:, None]
                + rows[owner][..., self.encoded_width :] @ w[:, 2 * h :].T
            )
            scores = np.tanh(hidden) @ p["own1.w"].T + p["own1.b"]
            out[owner, 0] = (so @ p["idle.w"].T + p["idle.b"])[:, 0]
            out[owner, 1 : 1 + tenants] = scores[..., 0]
            out[owner, 1 + tenants : 1 + 2 * tenants] = scores[..., 1]
        return out

    def act(self, obs: np.ndarray, mask: np.ndarray) -> int:
        """The most likely legal action (the deterministic policy), from `logits`' terms with the rows'
        encodings kept from the previous call where the rows did not change."""
        p, h = self.params, self.hidden
        x = np.asarray(obs, dtype=np.float32)
        tenants = (len(x) - self.context_width) // self.tenant_width
        rows = x[: tenants * self.tenant_width].reshape(tenants, self.tenant_width)
        context = x[tenants * self.tenant_width :]
        encoded = rows[:, : self.encoded_width]
        cache = self._cache
        seen = cache.get("rows")
        if seen is not None and seen.shape == encoded.shape:
            changed = np.flatnonzero((seen != encoded).any(axis=1))
            if len(changed):
                e = self._encode(encoded[changed])
                cache["e"][changed] = e
                cache["own"][changed] = e @ p["own0.w"][:, :h].T
                seen[changed] = encoded[changed]
                cache["present"] = np.flatnonzero(seen[:, 0] > 0.5)
        else:
            cache["rows"], cache["e"] = encoded.copy(), self._encode(encoded)
            cache["own"] = cache["e"] @ p["own0.w"][:, :h].T
            cache["present"] = np.flatnonzero(encoded[:, 0] > 0.5)
        e = cache["e"][cache["present"]]
        if len(e):
            pooled = (e.sum(axis=0) / len(e), e.max(axis=0))
        else:
            pooled = (np.zeros(h, np.float32), np.full(h, -1.0, np.float32))
        state = np.concatenate([context, *pooled])
        s = np.tanh(np.tanh(state @ p["ctx0.w"].T + p["ctx0.b"]) @ p["ctx1.w"].T + p["ctx1.b"])
        logits = np.zeros(len(mask), np.float32)  # as `logits`: 0 where nothing applies
        if context[self.phase_index] > 0.5:
            logits[: self.layout_actions] = s @ p["layout.w"].T + p["layout.b"]
        else:
            w = p["own0.w"]
            hidden = (
                cache["own"]
                + (s @ w[:, h : 2 * h].T + p["own0.b"])
                + rows[:, self.encoded_width :] @ w[:, 2 * h :].T
            )
            scores = np.tanh(hidden) @ p["own1.w"].T + p["own1.b"]
            logits[0] = float((s @ p["idle.w"].T + p["idle.b"])[0])
            logits[1 : 1 + tenants] = scores[:, 0]
            logits[1 + tenants : 1 + 2 * tenants] = scores[:, 1]
        return int(np.argmax(np.where(mask, logits, -np.inf)))


def _shapes(hidden: int, width: int, encoded: int, context: int, layouts: int) -> dict[str, tuple[int, ...]]:
    """The shape of every weight of a set policy."""
    h = hidden
    weights = {
        "enc0": (h, encoded), "enc1": (h, h), "ctx0": (h, context + 2 * h), "ctx1": (h, h),
        "layout": (layouts, h), "own0": (h, 2 * h + width - encoded), "own1": (2, h), "idle": (1, h),
    }  # fmt: skip
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in weights.items():
        shapes[f"{name}.w"], shapes[f"{name}.b"] = shape, (shape[0],)
    return shapes


def save_policy(folder: str | Path, policy: SetPolicy, card: dict[str, Any]) -> Path:
    """Write `policy.npz` and `card.json` into `folder` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "policy.npz", **{k: policy.params[k] for k in SetPolicy.PARAMETERS})
    full_card = {"format": CARD_FORMAT, "architecture": "set", "hidden": policy.hidden, **card}
    (folder / "card.json").write_text(json.dumps(full_card, indent=2, sort_keys=False) + "\n")
    return folder


def load_policy(folder: str | Path) -> tuple[SetPolicy, dict[str, Any]]:
    """Read a checkpoint folder; never unpickles. Raises `RlmigError` with one line when it is not one
    this installation can run."""
    folder = Path(folder)
    card_path, weights_path = folder / "card.json", folder / "policy.npz"
    card = read_json(card_path, "the checkpoint card")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise RlmigError(f"{card_path}: not an {CARD_FORMAT} card")
    try:
        tenant_width, context_width = len(card["tenant_features"]), len(card["context_features"])
        encoded_width = tenant_width - len(card["pair_features"])
        phase_index = list(card["context_features"]).index("phase=layout")
    except (KeyError, TypeError, ValueError):
        raise RlmigError(
            f"{card_path}: no tenant_features, pair_features and context_features with phase=layout"
        ) from None
    try:
        with np.load(weights_path, allow_pickle=False) as data:
            params = {k: np.asarray(data[k], np.float32) for k in SetPolicy.PARAMETERS if k in data}
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        raise RlmigError(f"{weights_path}: cannot read the weights ({type(exc).__name__}: {exc})") from None
    policy = SetPolicy(params, tenant_width, encoded_width, context_width, phase_index)
    problem = policy.check()
    if problem is not None:
        raise RlmigError(f"{weights_path}: {problem}")
    return policy, card


def policy_card(spec: PolicySpec, **extra: object) -> dict[str, object]:
    """The card fields that tie a policy to its decision codec (what `load_checkpoint` checks), plus
    `extra` (training configuration, data, evaluation)."""
    return {
        "gpu_model": spec.gpu.name,
        "observation_version": OBS_VERSION,
        **extra,
        "tenant_features": list(spec.tenant_names()),
        "pair_features": list(PAIR_FEATURE_NAMES),  # the last entries of a tenant row
        "context_features": list(spec.context_names()),
        "layout_actions": spec.action_names()["layout"],
    }


def checkpoint_spec(card: dict[str, Any]) -> PolicySpec:
    """The decision spec a card was made for (its GPU model)."""
    try:
        return PolicySpec.for_gpu(gpu_model(str(card.get("gpu_model"))))
    except (KeyError, TypeError, ValueError) as exc:
        raise RlmigError(f"card: missing or unknown GPU model ({exc})") from None


def load_checkpoint(folder: str | Path) -> tuple[SetPolicy, dict[str, Any], PolicySpec]:
    """A checkpoint this installation can run, with its card and decision spec. The card must name a
    known GPU model and the very tenant-row entries, context entries and layout actions (names and
    order) that this installation's codec produces and reads."""
    policy, card = load_policy(folder)
    spec = checkpoint_spec(card)
    ours = policy_card(spec)
    for key, what in (
        ("observation_version", "observation version differs"),
        ("tenant_features", "tenant features differ"),
        ("pair_features", "pair features differ"),
        ("context_features", "context features differ"),
        ("layout_actions", "layout actions differ"),
    ):
        if card.get(key) != ours[key]:
            differ = _first_difference(card.get(key), ours[key])
            raise RlmigError(f"{folder}: its {what} from this installation's ({differ})")
    if policy.layout_actions != spec.keep_action + 1:
        raise RlmigError(f"{folder}: the weights score {policy.layout_actions} layouts, the card names more")
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
