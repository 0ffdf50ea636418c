"""Learning from the ILP oracle: demonstrations, behaviour cloning, DAgger.

Behaviour cloning trains the MaskablePPO policy itself, in plain torch: it maximises the log-probability
of the oracle's sub-action under the action mask (the policy's own masked distribution), and regresses
the value head on the discounted return, so that PPO fine-tuning starts from both. The solver returns one
of several equal plans (in expert episodes of up to 8 GPUs and 8 tenants about a quarter of its owner
choices have an equal alternative); with `equivalent_actions` cloning maximises instead the probability
of the set of sub-actions as good as the oracle's (`Expert.equivalent_actions`: those that trade places
with it among GPUs alike now or instances of one profile), so that the policy does not learn to guess
which plan the solver returned. DAgger (Ross, Gordon & Bagnell, AISTATS 2011) then rolls out a mixture of
expert and policy (the expert's action with probability beta) and labels every visited state with the
oracle's action from that state (`rlmig.agents.expert.Expert`, which re-solves the ILP with the choices
already made fixed).
Episodes are labelled in parallel processes (`label_episodes`); the policy goes to them in its numpy
form, whose masked argmax is the torch policy's deterministic action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmig.agents.expert import Expert
from rlmig.envs.mig_reconfig import MigReconfigEnv
from rlmig.geometry import DEFAULT_GPU_MODEL
from rlmig.parallel import fan_out
from rlmig.planners.ilp import IlpPlanner
from rlmig.policy import SetPolicy

Act = Callable[[np.ndarray, np.ndarray], int]


@dataclass
class Demonstrations:
    """Labelled states: observations, masks, the expert's actions, discounted returns, and per state
    every action as good as the expert's (`Expert.equivalent_actions`; by default the expert's alone)."""

    obs: np.ndarray
    masks: np.ndarray
    actions: np.ndarray
    returns: np.ndarray
    labels: np.ndarray | None = None  # (states, actions) bool; None: the expert's action alone

    def __post_init__(self) -> None:
        if self.labels is None:
            self.labels = self.targets(equivalent_actions=False)

    @classmethod
    def empty(cls, obs_size: int, n_actions: int) -> Demonstrations:
        return cls(
            np.zeros((0, obs_size), np.float32),
            np.zeros((0, n_actions), bool),
            np.zeros(0, np.int64),
            np.zeros(0),
        )

    def __len__(self) -> int:
        return len(self.actions)

    def targets(self, equivalent_actions: bool = True) -> np.ndarray:
        """Per state, the actions cloning counts as right: the equally good ones, or the expert's alone."""
        if equivalent_actions:
            return self.labels
        own = np.zeros(self.masks.shape, bool)
        own[np.arange(len(self.actions)), self.actions] = True
        return own

    def extend(self, other: Demonstrations) -> Demonstrations:
        return Demonstrations(
            np.concatenate([self.obs, other.obs]),
            np.concatenate([self.masks, other.masks]),
            np.concatenate([self.actions, other.actions]),
            np.concatenate([self.returns, other.returns]),
            np.concatenate([self.labels, other.labels]),
        )

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path,
            obs=self.obs,
            masks=self.masks,
            actions=self.actions,
            returns=self.returns,
            labels=self.labels,
        )

    @classmethod
    def load(cls, path: str | Path) -> Demonstrations:
        """Demonstrations saved by `save` (files from before the label sets: the expert's action alone)."""
        with np.load(path, allow_pickle=False) as data:
            labels = data["labels"] if "labels" in data.files else None
            return cls(data["obs"], data["masks"], data["actions"], data["returns"], labels)


def rollout(
    expert: Expert,
    seed: int,
    act: Act | None = None,
    beta: float = 1.0,
    gamma: float = 0.999,
    label_fraction: float = 1.0,
    rng: np.random.Generator | None = None,
) -> tuple[Demonstrations, float]:
    """One episode; the expert acts with probability `beta`, `act` (the policy) otherwise. Every state
    where the expert acts is labelled, and a `label_fraction` of the others (each label is an ILP solve
    once the policy has left the expert's plan). Returns the demonstrations and the episode's return."""
    rng = rng or np.random.default_rng(seed)
    env = expert.env
    obs, _ = env.reset(seed=seed)
    observations, masks, actions, labels, steps, rewards = [], [], [], [], [], []
    while True:
        mask = env.action_masks().copy()
        expert_acts = act is None or rng.random() < beta
        if expert_acts or rng.random() < label_fraction:
            label = expert.action()
            observations.append(obs)
            masks.append(mask)
            actions.append(label)
            labels.append(expert.equivalent_actions())
            steps.append(len(rewards))
        action = label if expert_acts else act(obs, mask)
        obs, reward, terminated, _, _ = env.step(action)
        rewards.append(reward)
        if terminated:
            break
    to_go = np.zeros(len(rewards))
    running = 0.0
    for i in range(len(rewards) - 1, -1, -1):
        running = rewards[i] + gamma * running
        to_go[i] = running
    demos = Demonstrations(
        np.array(observations, np.float32).reshape(len(actions), -1),
        np.array(masks, bool).reshape(len(actions), -1),
        np.array(actions, np.int64),
        to_go[steps],
        np.array(labels, bool).reshape(len(actions), -1),
    )
    return demos, float(sum(rewards))


@dataclass(frozen=True)
class Labelling:
    """What a worker process needs to roll out and label episodes on its own: the scenario sampler,
    the oracle's gap and time limit, and (DAgger) the policy with the expert's share `beta`."""

    sampler: Callable[[np.random.Generator], Any]
    expert_gap: float | None
    expert_time_limit: float | None
    gamma: float = 0.999
    policy: SetPolicy | None = None
    beta: float = 1.0
    label_fraction: float = 1.0
    gpu: str = DEFAULT_GPU_MODEL  # the sampler's GPU model


def _label_episode(job: tuple[Labelling, int]) -> tuple[Demonstrations, float]:
    labelling, seed = job
    planner = IlpPlanner(gap=labelling.expert_gap, time_limit=labelling.expert_time_limit, mig_off=False)
    env = MigReconfigEnv(sampler=labelling.sampler, gpu=labelling.gpu, forecast_horizon=planner.horizon)
    policy = labelling.policy
    return rollout(
        Expert(env, planner),
        seed,
        act=policy.act if policy is not None else None,
        beta=labelling.beta,
        gamma=labelling.gamma,
        label_fraction=labelling.label_fraction,
    )


def label_episodes(
    labelling: Labelling, seeds: Sequence[int], workers: int = 1, ray: str | None = None
) -> Iterator[tuple[Demonstrations, float]]:
    """Roll out and label one episode per seed, in `workers` processes (1: in this one) or as Ray tasks
    (`ray`: see `rlmig.parallel`); yields each episode's demonstrations and return in the order of
    `seeds`, as soon as it and those before are done. An episode depends on its seed alone, so the
    results do not depend on `workers` or `ray`."""
    yield from fan_out(_label_episode, [(labelling, seed) for seed in seeds], workers=workers, ray=ray)


def labelled_log_prob(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per state, the log of the probability the policy gives its labelled actions (`log_probs`: the
    policy's log-probabilities per action, `labels`: a mask of the actions counted as right)."""
    return torch.logsumexp(log_probs.masked_fill(~labels, -torch.inf), dim=1)


def behaviour_cloning(
    policy: torch.nn.Module,
    demos: Demonstrations,
    *,
    epochs: int,
    batch_size: int = 256,
    learning_rate: float = 3e-4,
    value_coef: float = 0.5,
    equivalent_actions: bool = True,
    seed: int = 0,
    log: Callable[[str, float, int], None] | None = None,
    step: int = 0,
) -> dict[str, float]:
    """Fit a MaskablePPO policy to the demonstrations: the masked log-likelihood that the policy takes
    an action as good as the expert's (the log of its probabilities summed over `Demonstrations.labels`;
    with one label, the expert's action's), plus `value_coef` times the squared error of the value head
    on the returns; with `equivalent_actions` False, the expert's own action alone is the label.
    Accuracy counts states whose most likely action is among the labels."""
    device = next(policy.parameters()).device
    obs = torch.as_tensor(demos.obs, device=device)
    masks = torch.as_tensor(demos.masks, device=device)
    labels = torch.as_tensor(demos.targets(equivalent_actions), device=device)
    returns = torch.as_tensor(demos.returns, dtype=torch.float32, device=device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    policy.set_training_mode(True)
    stats = {"loss": 0.0, "accuracy": 0.0}
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        total, correct, seen = 0.0, 0, 0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            dist = policy.get_distribution(obs[batch], action_masks=masks[batch].cpu().numpy())
            log_probs = dist.distribution.logits  # normalised over the legal actions
            log_prob = labelled_log_prob(log_probs, labels[batch])
            values = policy.predict_values(obs[batch])
            loss = -log_prob.mean() + value_coef * torch.nn.functional.mse_loss(
                values.flatten(), returns[batch]
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                mode = log_probs.argmax(dim=1)
                correct += int(labels[batch].gather(1, mode[:, None]).sum())
            total += float(loss.detach()) * len(batch)
            seen += len(batch)
        stats = {"loss": total / seen, "accuracy": correct / seen}
        if log is not None:
            log("imitation/loss", stats["loss"], step + epoch)
            log("imitation/accuracy", stats["accuracy"], step + epoch)
    policy.set_training_mode(False)
    return stats
