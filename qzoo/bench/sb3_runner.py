"""Runs stable-baselines3's DQN with qzoo-named hyperparameters; prints one JSON line. Runs in the SB3 venv
(qzoo/bench/peer.py), which has no qzoo: MinAtar ids are registered from qzoo/envs/minatar.py loaded by path.

MinAtar observations get a features extractor equal to qzoo's MinAtar torso (conv 16 3x3 -> fc 128; SB3's
NatureCNN cannot take 10x10 grids) and a linear head (net_arch []), so both sides train the same network; the
optimizer follows the config (centered RMSprop with alpha 0.95, as qzoo, or Adam).

Atari ids (``"atari": true`` in the spec, as benchmarks/speed_atari.py sends) are built as RL Zoo builds them:
``AtariWrapper`` (no-op starts, frame skip 4 with max-pool, life-loss episodes, FIRE reset, clipped rewards, 84x84
grayscale) on the game created with ``frameskip=1, repeat_action_probability=0``, 4 stacked frames
(``VecFrameStack``), ``CnnPolicy``. Every result has the steps/s after learning started
(``learning_steps_per_s``) and the process's peak RSS.
"""

import importlib.util
import json
import os
import resource
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


def load_minatar_adapter():
    path = Path(__file__).resolve().parent.parent / "envs" / "minatar.py"
    spec = importlib.util.spec_from_file_location("qzoo_minatar_adapter", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.register_minatar_envs()
    return module


class MinAtarCNN(BaseFeaturesExtractor):
    """qzoo's MinAtar torso: conv 16 3x3 stride 1, ReLU, fc 128, ReLU."""

    def __init__(self, observation_space, features_dim: int = 128):
        super().__init__(observation_space, features_dim)
        channels, height, width = observation_space.shape
        self.convs = nn.Sequential(nn.Conv2d(channels, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        self.fc = nn.Linear(16 * (height - 2) * (width - 2), features_dim)

    def forward(self, obs):
        return torch.relu(self.fc(self.convs(obs.float())))


class LearningStart(BaseCallback):
    """Remembers when the step counter passed learning_starts (SB3 trains once num_timesteps > learning_starts)."""

    def __init__(self, learning_starts: int):
        super().__init__()
        self.learning_starts, self.time = learning_starts, None

    def _on_step(self) -> bool:
        if self.time is None and self.num_timesteps >= self.learning_starts:
            self.time = time.perf_counter()
        return True


def make_atari(spec):
    import ale_py
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    return VecFrameStack(make_atari_env(spec["env_id"], n_envs=spec.get("n_envs", 1), seed=spec["seed"],
                                        env_kwargs={"frameskip": 1, "repeat_action_probability": 0.0}), 4)


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("torch_threads", 0) is not None:  # qzoo's 0 (auto) means one thread; null keeps torch's default
        torch.set_num_threads(spec.get("torch_threads") or 1)
    policy_kwargs = {"net_arch": spec["net_arch"]}
    if spec["env_id"].startswith("MinAtar/"):
        load_minatar_adapter()
        policy_kwargs = {"features_extractor_class": MinAtarCNN, "features_extractor_kwargs": {"features_dim": 128},
                         "net_arch": []}
    if spec.get("optimizer") == "rmsprop":
        policy_kwargs.update(optimizer_class=torch.optim.RMSprop,
                             optimizer_kwargs={"alpha": 0.95, "eps": spec["optimizer_eps"], "centered": True})
    else:
        policy_kwargs.update(optimizer_kwargs={"eps": spec.get("optimizer_eps", 1e-8)})
    env_kwargs = spec.get("env_kwargs") or {}
    if spec.get("atari"):
        env, policy = make_atari(spec), "CnnPolicy"
        policy_kwargs.pop("net_arch")  # the Nature CNN and its linear head
    else:
        env = make_vec_env(spec["env_id"], n_envs=spec.get("n_envs", 1), seed=spec["seed"], env_kwargs=env_kwargs)
        policy = "MlpPolicy"
    model = DQN(
        policy, env, learning_rate=spec["learning_rate"], buffer_size=spec["buffer_size"],
        learning_starts=spec["learning_starts"], batch_size=spec["batch_size"], gamma=spec["gamma"], tau=spec["tau"],
        train_freq=spec["train_freq"], gradient_steps=spec["gradient_steps"],
        target_update_interval=spec["target_update_interval"], exploration_fraction=spec["exploration_fraction"],
        exploration_initial_eps=spec["exploration_initial_eps"], exploration_final_eps=spec["exploration_final_eps"],
        max_grad_norm=spec["max_grad_norm"], policy_kwargs=policy_kwargs, seed=spec["seed"], device="cpu",
        verbose=0)
    callback = LearningStart(spec["learning_starts"])
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=spec["n_timesteps"], callback=callback)
    end, cpu = time.perf_counter(), time.process_time() - cpu
    seconds = end - start
    returns = [ep["r"] for ep in model.ep_info_buffer]
    result = {"steps": spec["n_timesteps"], "seconds": seconds, "steps_per_s": spec["n_timesteps"] / seconds,
              "cpu_seconds": cpu, "steps_per_cpu_s": spec["n_timesteps"] / cpu,
              "train_return": float(np.mean(returns)) if returns else None,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    if callback.time is not None and end > callback.time:
        result["learning_steps_per_s"] = (model.num_timesteps - spec["learning_starts"]) / (end - callback.time)
    if spec.get("run_dir"):
        model.save(Path(spec["run_dir"]) / "model.zip")
    if spec.get("eval_episodes") and not spec.get("atari"):
        eval_env = gym.make(spec["env_id"], **env_kwargs)
        eval_env.reset(seed=spec["seed"] + 10_000)
        returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=spec["eval_episodes"], deterministic=True,
                                     return_episode_rewards=True)
        result["eval_mean"], result["eval_std"] = float(np.mean(returns)), float(np.std(returns))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
