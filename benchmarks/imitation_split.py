"""How well does cloning the oracle generalise? Held-out accuracy of the set network on a run's labels.

    python -m benchmarks.imitation_split runs/a100-80gb/demonstrations.npz [--labels expert|equivalent]
        [--epochs 60] [--hidden 64] [--seed 0]

Splits a training run's demonstrations (`rlmig train` writes them to its run folder) at random into 90%
to train on and 10% held out, clones a fresh set network (`rlmig.agents.set_policy.SetNetwork`, the
policy's actor) on the 90% with the masked log-likelihood of the expert's action (`expert`) or of the
set of actions as good as the expert's (`equivalent`, `Expert.equivalent_actions`), and prints the
accuracy on both parts every 20 epochs, in all and per phase (layout, owner): how often the most likely
legal action is among the equally good ones, and how often it is the expert's own. The gap between the
two parts says how much of what cloning reaches is memorised. States of one episode fall on both sides,
so the held-out figure is an upper bound for unseen episodes.
"""

from __future__ import annotations

import argparse

import torch

from rlmig.agents.imitation import Demonstrations, labelled_log_prob
from rlmig.agents.set_policy import SetNetwork
from rlmig.geometry import DEFAULT_GPU_MODEL, gpu_model
from rlmig.policy import PolicySpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demonstrations")
    parser.add_argument("--labels", choices=["expert", "equivalent"], default="expert")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu", default=DEFAULT_GPU_MODEL, help="the GPU model the run was trained for")
    args = parser.parse_args()
    demos = Demonstrations.load(args.demonstrations)
    spec = PolicySpec.for_gpu(gpu_model(args.gpu))
    tenants = (demos.obs.shape[1] - len(spec.context_names())) // spec.tenant_width
    if tenants < 1 or demos.obs.shape[1] != spec.sized(tenants).obs_size:
        width = demos.obs.shape[1]
        parser.error(f"{args.demonstrations}: observations of {width} entries are not {args.gpu}'s")
    torch.manual_seed(args.seed)
    obs, masks = torch.as_tensor(demos.obs), torch.as_tensor(demos.masks)
    expert = torch.as_tensor(demos.actions)
    equal = torch.as_tensor(demos.labels)
    target = torch.as_tensor(demos.targets(args.labels == "equivalent"))
    in_layout = obs[:, tenants * spec.tenant_width + spec.phase_index] > 0.5
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(expert), generator=generator)
    held, train = order[: len(order) // 10], order[len(order) // 10 :]
    net = SetNetwork(
        spec.tenant_width,
        len(spec.encoded_names()),
        len(spec.context_names()),
        spec.phase_index,
        len(spec.layouts) + 1,
        args.hidden,
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def log_probs(rows: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(net.forward_actor(obs[rows]).masked_fill(~masks[rows], -1e9), dim=1)

    def accuracy(rows: torch.Tensor) -> str:
        with torch.no_grad():
            best = log_probs(rows).argmax(dim=1)
        good = equal[rows].gather(1, best[:, None])[:, 0].float()
        same = (best == expert[rows]).float()
        layout = in_layout[rows]
        return (
            f"equally good {good.mean():.3f} (layout {good[layout].mean():.3f}, "
            f"owner {good[~layout].mean():.3f}), the expert's {same.mean():.3f}"
        )

    print(f"{len(expert)} states, {float((equal.sum(1) > 1).float().mean()):.3f} with an equal alternative")
    for epoch in range(args.epochs):
        shuffled = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(shuffled), 256):
            rows = shuffled[start : start + 256]
            loss = -labelled_log_prob(log_probs(rows), target[rows]).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
        if (epoch + 1) % 20 == 0 or epoch + 1 == args.epochs:
            print(f"epoch {epoch + 1}: trained on: {accuracy(train)}; held out: {accuracy(held)}", flush=True)


if __name__ == "__main__":
    main()
