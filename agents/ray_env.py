"""Environment rollouts on Ray: a Stable-Baselines3 `VecEnv` whose environments live in Ray actors.

`RayVecEnv(env_fns)` starts one actor per environment (https://docs.ray.io/en/latest/ray-core/actors.html);
each actor holds a one-environment `DummyVecEnv`, so resets, auto-reset on episode end, seeds and the
``terminal_observation`` info follow SB3's own rules. A step sends every action at once and waits for
every actor: the environments step in parallel, the policy stays in the learner's process. MaskablePPO
reads the action masks through `env_method("action_masks")`, which each actor answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn


class _EnvWorker:
    """What runs in one actor: a one-environment DummyVecEnv."""

    def __init__(self, env_fn: Callable[[], gym.Env]) -> None:
        self.vec = DummyVecEnv([env_fn])

    def spaces(self) -> tuple[gym.Space, gym.Space]:
        return self.vec.observation_space, self.vec.action_space

    def reset(self, seed: int | None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self.vec.seed(seed)
        obs = self.vec.reset()
        return obs, self.vec.reset_infos[0]

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, dict[str, Any], dict[str, Any]]:
        obs, reward, done, infos = self.vec.step(np.array([action]))
        return obs, float(reward[0]), bool(done[0]), infos[0], self.vec.reset_infos[0]

    def call(self, kind: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kind == "method":
            return self.vec.env_method(name, *args, **kwargs)[0]
        if kind == "get":
            return self.vec.get_attr(name)[0]
        if kind == "set":
            self.vec.set_attr(name, args[0])
            return None
        return self.vec.env_is_wrapped(args[0])[0]


class RayVecEnv(VecEnv):
    """SB3's vectorised-environment interface over one Ray actor per environment (see the module
    docstring). Ray must be initialised (`rlmig.parallel.ray_session`)."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]) -> None:
        import ray

        self._ray = ray
        worker = ray.remote(num_cpus=0)(_EnvWorker)  # env steps are light: place actors anywhere
        self.workers = [worker.remote(fn) for fn in env_fns]
        observation_space, action_space = ray.get(self.workers[0].spaces.remote())
        super().__init__(len(env_fns), observation_space, action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        answers = self._ray.get([w.reset.remote(self._seeds[i]) for i, w in enumerate(self.workers)])
        self.reset_infos = [info for _, info in answers]
        self._reset_seeds()
        self._reset_options()
        return np.concatenate([obs for obs, _ in answers])

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None
        answers = self._ray.get([w.step.remote(a) for w, a in zip(self.workers, self._actions, strict=True)])
        self.reset_infos = [reset_info for *_, reset_info in answers]
        obs = np.concatenate([a[0] for a in answers])
        rewards = np.array([a[1] for a in answers], dtype=np.float32)
        dones = np.array([a[2] for a in answers], dtype=bool)
        return obs, rewards, dones, [a[3] for a in answers]

    def close(self) -> None:
        for worker in self.workers:
            self._ray.kill(worker)
        self.workers = []

    def _call(self, kind: str, name: str, indices: VecEnvIndices, *args: Any, **kwargs: Any) -> list[Any]:
        targets = [self.workers[i] for i in self._get_indices(indices)]
        return self._ray.get([w.call.remote(kind, name, args, kwargs) for w in targets])

    def env_method(
        self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        return self._call("method", method_name, indices, *args, **kwargs)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._call("get", attr_name, indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._call("set", attr_name, indices, value)

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return self._call("wrapped", "", indices, wrapper_class)
