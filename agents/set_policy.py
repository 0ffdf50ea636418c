"""The set policy in torch, for training with MaskablePPO: the network `rlmig.policy.SetPolicy` runs in
numpy on GPU nodes, with a value head.

Usage::

    model = MaskablePPO(SetActorCriticPolicy, env, policy_kwargs=set_policy_kwargs(env.spec_, hidden=64))

The policy's `mlp_extractor` is the whole network: its actor output is already the action logits (the
action net is the identity) and its critic output is the state encoding the value head reads (from
encoders of its own). Weights
are shared by every tenant row, so the network takes observations with any number of rows.
"""

from __future__ import annotations

from typing import Any

import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn

from rlmig.policy import PolicySpec


class SetNetwork(nn.Module):
    """Tenant encoder (shared), pooled state encoding, layout, owner and idle heads; see
    `rlmig.policy.SetPolicy`, whose numpy forward pass this one matches."""

    def __init__(
        self,
        tenant_width: int,
        encoded_width: int,
        context_width: int,
        phase_index: int,
        layout_actions: int,
        hidden: int,
    ) -> None:
        super().__init__()
        self.tenant_width, self.encoded_width, self.context_width = tenant_width, encoded_width, context_width
        self.phase_index, self.layout_actions, self.hidden = phase_index, layout_actions, hidden
        self.enc0, self.enc1 = nn.Linear(encoded_width, hidden), nn.Linear(hidden, hidden)
        self.ctx0, self.ctx1 = nn.Linear(context_width + 2 * hidden, hidden), nn.Linear(hidden, hidden)
        self.layout = nn.Linear(hidden, layout_actions)
        pair = tenant_width - encoded_width
        self.own0, self.own1 = nn.Linear(2 * hidden + pair, hidden), nn.Linear(hidden, 2)
        self.idle = nn.Linear(hidden, 1)
        # the critic: its own tenant encoder and state encoding (the value's scale, returns summed over
        # an episode, would otherwise pull the actor's encodings its way)
        self.critic_enc0, self.critic_enc1 = nn.Linear(encoded_width, hidden), nn.Linear(hidden, hidden)
        self.critic_ctx0 = nn.Linear(context_width + 2 * hidden, hidden)
        self.critic_ctx1 = nn.Linear(hidden, hidden)
        self.latent_dim_vf = hidden
        self.latent_dim_pi = layout_actions  # logits; the actual width follows the observation's rows

    def encode(
        self, obs: torch.Tensor, critic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-tenant encodings, the state encoding, the context, and the rows (the actor's, or the
        critic's with `critic`)."""
        enc0, enc1, ctx0, ctx1 = (
            (self.critic_enc0, self.critic_enc1, self.critic_ctx0, self.critic_ctx1)
            if critic
            else (self.enc0, self.enc1, self.ctx0, self.ctx1)
        )
        tenants = (obs.shape[1] - self.context_width) // self.tenant_width
        rows = obs[:, : tenants * self.tenant_width].reshape(len(obs), tenants, self.tenant_width)
        context = obs[:, tenants * self.tenant_width :]
        present = rows[..., :1] > 0.5
        e = torch.tanh(enc1(torch.tanh(enc0(rows[..., : self.encoded_width]))))
        count = present.sum(dim=1).clamp(min=1)
        mean = torch.where(present, e, 0.0).sum(dim=1) / count
        top = torch.where(present, e, -1.0).max(dim=1).values
        s = torch.tanh(ctx1(torch.tanh(ctx0(torch.cat([context, mean, top], dim=1)))))
        return e, s, context, rows

    def forward_actor(self, obs: torch.Tensor) -> torch.Tensor:
        e, s, context, rows = self.encode(obs)
        tenants = e.shape[1]
        n_actions = max(self.layout_actions, 1 + 2 * tenants)
        layout = nn.functional.pad(self.layout(s), (0, n_actions - self.layout_actions))
        pair = torch.cat([e, s[:, None].expand_as(e), rows[..., self.encoded_width :]], dim=2)
        scores = self.own1(torch.tanh(self.own0(pair)))
        owner = torch.cat([self.idle(s), scores[..., 0], scores[..., 1]], dim=1)
        owner = nn.functional.pad(owner, (0, n_actions - owner.shape[1]))
        in_layout = (context[:, self.phase_index : self.phase_index + 1] > 0.5).float()
        return in_layout * layout + (1.0 - in_layout) * owner

    def forward_critic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encode(obs, critic=True)[1]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(obs), self.forward_critic(obs)


class SetActorCriticPolicy(MaskableActorCriticPolicy):
    """MaskablePPO's policy with `SetNetwork` as its whole actor and the value head on its critic's
    encoding."""

    def __init__(
        self,
        *args: Any,
        tenant_width: int,
        encoded_width: int,
        context_width: int,
        phase_index: int,
        layout_actions: int,
        hidden: int = 64,
        **kwargs: Any,
    ) -> None:
        self._set_shape = (tenant_width, encoded_width, context_width, phase_index, layout_actions, hidden)
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = SetNetwork(*self._set_shape)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()  # the network's actor output is the logits
        nn.init.orthogonal_(self.mlp_extractor.layout.weight, gain=0.01)
        nn.init.orthogonal_(self.mlp_extractor.own1.weight, gain=0.01)
        nn.init.orthogonal_(self.mlp_extractor.idle.weight, gain=0.01)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


def set_policy_kwargs(spec: PolicySpec, hidden: int = 64) -> dict[str, Any]:
    """MaskablePPO's `policy_kwargs` for a set policy over `spec`'s codec."""
    return {
        "tenant_width": spec.tenant_width,
        "encoded_width": len(spec.encoded_names()),
        "context_width": len(spec.context_names()),
        "phase_index": spec.phase_index,
        "layout_actions": spec.keep_action + 1,
        "hidden": hidden,
    }
