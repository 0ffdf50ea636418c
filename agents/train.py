"""Train a MIG reconfiguration policy: imitate the ILP oracle, then fine-tune with MaskablePPO.

    rlmig train agents/configs/a100-80gb.yaml [--out runs/a100-80gb] [--export checkpoints/a100-80gb]

Reads top to bottom, in the manner of a CleanRL script:

1. seed everything; build training environments over the scenario sampler (training split);
2. behaviour cloning on expert episodes (the window-aware ILP oracle labels every sub-action, and
   names the sub-actions as good as its own for `imitation.equivalent_actions`; episodes are labelled
   in `imitation.workers` parallel processes);
3. DAgger rounds: roll out a mixture of expert and policy, the expert labels the visited states,
   clone again on everything gathered so far;
4. MaskablePPO fine-tuning from the imitated weights, on vectorised environments; with
   `ppo.select_episodes`, the weights kept are those (imitated, each PPO checkpoint, final) whose policy
   alone scores best on validation scenarios of the training split (seeds training does not draw);
5. evaluate against the ILP on held-out scenarios (evaluation split, never seen in training) and
   export the numpy checkpoint with its card.

The run folder keeps every phase's output (demonstrations, imitated weights, PPO checkpoints,
TensorBoard logs under tb/); a rerun of the same command resumes after the last finished phase.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.progress import Progress
from sb3_contrib import MaskablePPO
from sb3_contrib.common.wrappers import ActionMasker
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.vec_env import DummyVecEnv
from torch.utils.tensorboard import SummaryWriter

from rlmig.agents.export import export_checkpoint, numpy_policy
from rlmig.agents.imitation import Demonstrations, Labelling, behaviour_cloning, label_episodes
from rlmig.agents.ray_env import RayVecEnv
from rlmig.agents.set_policy import SetActorCriticPolicy, set_policy_kwargs
from rlmig.bound import hindsight_bound
from rlmig.envs.mig_reconfig import MigReconfigEnv
from rlmig.envs.scenarios import ScenarioSampler
from rlmig.errors import ConfigError
from rlmig.geometry import DEFAULT_GPU_MODEL, gpu_model
from rlmig.inputs import read_yaml
from rlmig.parallel import ray_session
from rlmig.planners import make_planner, run_planner
from rlmig.planners.rl import RlPlanner
from rlmig.policy import PolicySpec
from rlmig.workload import Workload, load_workload


@dataclass
class ImitationConfig:
    episodes: int = 40
    dagger_rounds: int = 2
    dagger_episodes: int = 10
    dagger_label_fraction: float = 0.3
    beta: list[float] = field(default_factory=lambda: [0.5, 0.0])
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 3e-4
    expert_gap: float = 1e-2  # the oracle's MIP gap and time limit per solve while labelling
    expert_time_limit: float = 2.0
    workers: int = 2  # processes that roll out and label episodes
    # clone the set of sub-actions as good as the oracle's (Expert.equivalent_actions), not its one
    equivalent_actions: bool = False


@dataclass
class PpoConfig:
    timesteps: int = 100_000
    n_envs: int = 2
    n_steps: int = 512
    batch_size: int = 256
    n_epochs: int = 4
    learning_rate: float = 1e-4
    ent_coef: float = 0.0
    clip_range: float = 0.1
    gamma: float = 0.999
    gae_lambda: float = 0.95
    checkpoint_every: int = 20_000
    select_episodes: int = 0  # validation scenarios that choose the weights kept (0: PPO's last)


@dataclass
class EvaluationConfig:
    episodes: int = 5
    scenarios: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=lambda: ["ilp"])


@dataclass
class TrainConfig:
    name: str
    seed: int = 0
    gpu: str = DEFAULT_GPU_MODEL
    scenarios: dict[str, Any] = field(default_factory=dict)  # ScenarioSampler parameters
    hidden: int = 64  # width of the set policy's encodings (agents.set_policy)
    imitation: ImitationConfig = field(default_factory=ImitationConfig)
    ppo: PpoConfig = field(default_factory=PpoConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    export: str | None = None


def load_config(path: str | Path) -> TrainConfig:
    """Read a training config; unknown or mistyped fields get a one-line error naming them."""
    path = Path(path)
    raw = read_yaml(path, "the training config")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a training config is a mapping")
    sections = {"imitation": ImitationConfig, "ppo": PpoConfig, "evaluation": EvaluationConfig}
    known = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {"name": path.stem}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{path}: {key}: unknown field (known: {', '.join(sorted(known))})")
        if not _of_type(value, known[key]):
            raise ConfigError(f"{path}: {key}: {value!r} is not {_TYPE_NAMES[known[key]]}")
        if key in sections:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {key}: must be a mapping")
            fields = {f.name: f.type for f in dataclasses.fields(sections[key])}
            for sub, given in value.items():
                if sub not in fields:
                    raise ConfigError(
                        f"{path}: {key}.{sub}: unknown field (known: {', '.join(sorted(fields))})"
                    )
                if not _of_type(given, fields[sub]):
                    raise ConfigError(f"{path}: {key}.{sub}: {given!r} is not {_TYPE_NAMES[fields[sub]]}")
            value = sections[key](**value)
        values[key] = value
    try:
        ScenarioSampler(**values.get("scenarios", {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: scenarios: {exc}") from None
    return TrainConfig(**values)


_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}


def _of_type(value: Any, annotation: str) -> bool:
    """Whether a config value fits a field annotated int, float, str or bool (others: not checked)."""
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation == "str":
        return isinstance(value, str)
    return True


def masked(env: MigReconfigEnv) -> ActionMasker:
    return ActionMasker(env, lambda e: e.action_masks())


def train(
    config_path: str | Path,
    out: str | Path | None = None,
    export: str | Path | None = None,
    ray: str | None = None,
) -> Path:
    """Run (or resume) the training described by `config_path`; returns the checkpoint folder. With
    `ray` (``"local"`` or a cluster address, `rlmig.parallel`), the oracle labels episodes in Ray tasks
    and PPO's environments step in Ray actors; without it, in `imitation.workers` processes and here."""
    with ray_session(ray):
        return _train(load_config(config_path), out, export, ray)


def _train(cfg: TrainConfig, out: str | Path | None, export: str | Path | None, ray: str | None) -> Path:
    run = Path(out or Path("runs") / cfg.name)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    progress_file = run / "progress.json"
    done = json.loads(progress_file.read_text()) if progress_file.exists() else {}
    console = Console(stderr=True)
    writer = SummaryWriter(str(run / "tb" / "imitation"))

    # seconds of training when each phase finished, over every session of this run
    earlier = max((float(v.get("elapsed_s", 0.0)) for v in done.values()), default=0.0)
    session_start = time.time()

    def mark(phase: str, **info: Any) -> None:
        elapsed = round(earlier + time.time() - session_start, 1)
        done[phase] = {"finished": time.time(), "elapsed_s": elapsed, **info}
        progress_file.write_text(json.dumps(done, indent=2))

    # 1. Seeds and environments. -----------------------------------------------------------------
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    sampler = ScenarioSampler(split="train", gpu=cfg.gpu, **cfg.scenarios)
    demo_env = MigReconfigEnv(sampler=sampler, gpu=cfg.gpu)  # the shapes of observations and actions
    env_fns = [lambda: masked(MigReconfigEnv(sampler=sampler, gpu=cfg.gpu)) for _ in range(cfg.ppo.n_envs)]
    vec_env = RayVecEnv(env_fns) if ray is not None else DummyVecEnv(env_fns)
    vec_env.seed(cfg.seed)
    policy_kwargs = set_policy_kwargs(demo_env.spec_, cfg.hidden)
    ppo = cfg.ppo
    model = MaskablePPO(
        SetActorCriticPolicy,
        vec_env,
        learning_rate=ppo.learning_rate,
        n_steps=ppo.n_steps,
        batch_size=ppo.batch_size,
        n_epochs=ppo.n_epochs,
        gamma=ppo.gamma,
        gae_lambda=ppo.gae_lambda,
        clip_range=ppo.clip_range,
        ent_coef=ppo.ent_coef,
        policy_kwargs=policy_kwargs,
        tensorboard_log=str(run / "tb"),
        seed=cfg.seed,
        device="cpu",
        verbose=0,
    )
    imitated = run / "imitated.zip"

    # 2. Behaviour cloning on expert episodes, labelled in parallel processes. ----------------------
    im = cfg.imitation
    demos_path = run / "demonstrations.npz"
    labelling = Labelling(sampler, im.expert_gap, im.expert_time_limit, gamma=ppo.gamma, gpu=cfg.gpu)
    if "dagger" not in done:
        collected = done.get("demonstrations", {}).get(
            "episodes", im.episodes if "demonstrations" in done else 0
        )
        demos = (
            Demonstrations.load(demos_path)
            if collected
            else Demonstrations.empty(demo_env.spec_.obs_size, demo_env.spec_.n_actions)
        )
        if collected < im.episodes:
            seeds = [cfg.seed * 100_003 + episode for episode in range(collected, im.episodes)]
            with Progress(console=console) as bar:
                task = bar.add_task("expert episodes", total=im.episodes, completed=collected)
                for episode, (episode_demos, _) in enumerate(
                    label_episodes(labelling, seeds, im.workers, ray), start=collected
                ):
                    demos = demos.extend(episode_demos)
                    demos.save(demos_path)  # every episode: a rerun resumes from here
                    mark("demonstrations", episodes=episode + 1, states=len(demos))
                    bar.advance(task)

        def clone(demos: Demonstrations, round_: int) -> dict[str, float]:
            return behaviour_cloning(
                model.policy,
                demos,
                epochs=im.epochs,
                batch_size=im.batch_size,
                learning_rate=im.learning_rate,
                equivalent_actions=im.equivalent_actions,
                seed=cfg.seed + round_,
                log=writer.add_scalar,
                step=round_ * im.epochs,
            )

        stats = clone(demos, 0)
        console.print(f"behaviour cloning on {len(demos)} states: {stats}")

        # 3. DAgger: the expert labels the states the policy visits. -----------------------------
        for round_ in range(im.dagger_rounds):
            beta = im.beta[min(round_, len(im.beta) - 1)] if im.beta else 0.0
            learner = dataclasses.replace(
                labelling,
                policy=numpy_policy(model.policy),
                beta=beta,
                label_fraction=im.dagger_label_fraction,
            )
            seeds = [cfg.seed * 100_003 + 50_000 + round_ * 1000 + e for e in range(im.dagger_episodes)]
            returns = []
            with Progress(console=console) as bar:
                task = bar.add_task(f"DAgger round {round_ + 1} (beta {beta})", total=im.dagger_episodes)
                for new, ret in label_episodes(learner, seeds, im.workers, ray):
                    demos = demos.extend(new)
                    returns.append(ret)
                    bar.advance(task)
            demos.save(demos_path)
            stats = clone(demos, round_ + 1)
            writer.add_scalar("dagger/episode_return", float(np.mean(returns)), round_)
            console.print(
                f"DAgger round {round_ + 1}: {len(demos)} states, return {np.mean(returns):.3f}, {stats}"
            )
        model.save(imitated)
        mark("dagger", states=len(demos), **stats)

    # 4. MaskablePPO fine-tuning from the imitated weights. -----------------------------------------
    final = run / "ppo_final.zip"
    if "ppo" not in done and ppo.timesteps > 0:
        saved = sorted((run / "ppo").glob("ppo_*_steps.zip"), key=_steps)
        start = saved[-1] if saved else imitated
        model = MaskablePPO.load(start, env=vec_env, device="cpu", tensorboard_log=str(run / "tb"))
        remaining = ppo.timesteps - (model.num_timesteps if saved else 0)
        if remaining > 0:
            callback = CheckpointCallback(max(ppo.checkpoint_every // ppo.n_envs, 1), str(run / "ppo"), "ppo")
            model.learn(remaining, callback=callback, reset_num_timesteps=not saved, progress_bar=True)
        model.save(final)
        mark("ppo", timesteps=int(model.num_timesteps))
    else:
        model = MaskablePPO.load(final if final.exists() else imitated, device="cpu")
    selection = None
    if ppo.select_episodes > 0:
        candidates = [imitated, *sorted((run / "ppo").glob("ppo_*_steps.zip"), key=_steps)]
        candidates += [final] if final.exists() else []
        validation = ScenarioSampler(split="train", gpu=cfg.gpu, **cfg.scenarios).fixed(
            ppo.select_episodes, cfg.seed + VALIDATION_SEED
        )
        scores = {}
        for path in candidates:
            weights = numpy_policy(MaskablePPO.load(path, device="cpu").policy)
            ratios = [
                run_planner(
                    w, RlPlanner(policy=weights, gpu=cfg.gpu, guard=False)
                ).result.metrics.goodput_ratio
                for w in validation
            ]
            scores[path.name] = round(float(np.mean(ratios)), 4)
        kept = max(candidates, key=lambda path: scores[path.name])  # the first of equals: fewer PPO steps
        model = MaskablePPO.load(kept, device="cpu")
        selection = {
            "validation_scenarios": len(validation),
            "goodput_ratio_alone": scores,
            "kept": kept.name,
        }
        console.print(f"kept {kept.name}: {scores}")

    # 5. Evaluate on held-out scenarios; export the checkpoint. -------------------------------------
    policy = numpy_policy(model.policy)
    held_out = ScenarioSampler(split="eval", gpu=cfg.gpu, **cfg.scenarios).fixed(
        cfg.evaluation.episodes, cfg.seed
    )
    named = [load_workload(p) for p in cfg.evaluation.scenarios]
    evaluation = evaluate(policy, cfg.gpu, held_out + named, cfg.evaluation.baselines, console)
    card = {
        "name": cfg.name,
        "trained": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training_config": dataclasses.asdict(cfg),
        # seconds into the training when each phase ended, the evaluation included
        "training_elapsed_s": {
            **{k: v.get("elapsed_s") for k, v in done.items()},
            "evaluation": round(earlier + time.time() - session_start, 1),
        },
        "evaluation": evaluation,
        **({"selection": selection} if selection else {}),
    }
    folder = Path(export or cfg.export or run / "checkpoint")
    export_checkpoint(model.policy, PolicySpec.for_gpu(gpu_model(cfg.gpu)), folder, card)
    console.print(f"checkpoint written to {folder}")
    writer.close()
    return folder


VALIDATION_SEED = 7919  # added to the run's seed: the validation scenarios `ppo.select_episodes` draws


def _steps(path: Path) -> int:
    return int(path.stem.split("_")[1])


def evaluate(
    policy: Any, gpu: str, workloads: list[Workload], baselines: list[str], console: Console
) -> dict[str, Any]:
    """Goodput ratio of the policy (guarded and unguarded) and the baselines on each workload, and the
    hindsight bound (`rlmig.bound`: no planner exceeds it) of each dynamic one."""
    rows = []
    for workload in workloads:
        row: dict[str, Any] = {
            "scenario": workload.name,
            "gpus": workload.gpu_count,
            "tenants": len(workload.tenants),
        }
        for label, planner in (
            ("rl", RlPlanner(policy=policy, gpu=gpu)),
            ("rl-unguarded", RlPlanner(policy=policy, gpu=gpu, guard=False)),
            *((name, make_planner(name)) for name in baselines),
        ):
            result = run_planner(workload, planner)
            row[label] = round(result.result.metrics.goodput_ratio, 4)
            row[f"{label}_decision_ms_p99"] = round(result.decision_ms_p99, 2)
        if workload.mode == "dynamic":
            bound = hindsight_bound(workload)
            row["bound"] = round(bound.upper_bound, 4)
            row["bound_proven"] = bound.proven
        rows.append(row)
        console.print(row)
    summary = {
        label: float(np.mean([r[label] for r in rows])) for label in ("rl", "rl-unguarded", *baselines)
    }
    return {"per_scenario": rows, "mean_goodput_ratio": summary}
