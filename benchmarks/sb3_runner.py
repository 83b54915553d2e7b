"""Runs stable-baselines3's DQN with qzoo-named hyperparameters; prints one JSON line. Runs in .sb3-venv.

Atari ids (``"atari": true`` in the spec) are built as RL Zoo builds them: ``AtariWrapper`` (no-op starts, frame
skip 4 with max-pool, life-loss episodes, FIRE reset, clipped rewards, 84x84 grayscale) on the game created with
``frameskip=1, repeat_action_probability=0``, 4 stacked frames (``VecFrameStack``), ``CnnPolicy``. The result
then also has the steps/s after learning started (``learning_steps_per_s``) and the process's peak RSS."""

import json
import resource
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy

spec = json.loads(sys.argv[1])
if spec.get("torch_threads"):
    torch.set_num_threads(spec["torch_threads"])


class LearningStart(BaseCallback):
    """Remembers when the step counter passed learning_starts (SB3 trains once num_timesteps > learning_starts)."""

    def __init__(self, learning_starts: int):
        super().__init__()
        self.learning_starts, self.time = learning_starts, None

    def _on_step(self) -> bool:
        if self.time is None and self.num_timesteps >= self.learning_starts:
            self.time = time.perf_counter()
        return True


if spec.get("atari"):
    import ale_py
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env(spec["env_id"], n_envs=spec.get("n_envs", 1), seed=spec["seed"],
                                       env_kwargs={"frameskip": 1, "repeat_action_probability": 0.0}), 4)
    policy, policy_kwargs = "CnnPolicy", {}
else:
    env, policy, policy_kwargs = spec["env_id"], "MlpPolicy", {"net_arch": spec["net_arch"]}
model = DQN(
    policy, env, learning_rate=spec["learning_rate"], buffer_size=spec["buffer_size"],
    learning_starts=spec["learning_starts"], batch_size=spec["batch_size"], gamma=spec["gamma"],
    train_freq=spec["train_freq"], gradient_steps=spec["gradient_steps"],
    target_update_interval=spec["target_update_interval"], exploration_fraction=spec["exploration_fraction"],
    exploration_final_eps=spec["exploration_final_eps"], max_grad_norm=spec["max_grad_norm"],
    policy_kwargs=policy_kwargs, seed=spec["seed"], device="cpu", verbose=0)
callback = LearningStart(spec["learning_starts"])
start = time.perf_counter()
model.learn(total_timesteps=spec["n_timesteps"], callback=callback)
end = time.perf_counter()
seconds = end - start
result = {"steps": spec["n_timesteps"], "seconds": seconds, "steps_per_s": spec["n_timesteps"] / seconds,
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
if callback.time is not None and end > callback.time:
    result["learning_steps_per_s"] = (model.num_timesteps - spec["learning_starts"]) / (end - callback.time)
if spec.get("eval_episodes"):
    env = gym.make(spec["env_id"])
    returns, _ = evaluate_policy(model, env, n_eval_episodes=spec["eval_episodes"], deterministic=True,
                                 return_episode_rewards=True)
    result["eval_mean"], result["eval_std"] = float(np.mean(returns)), float(np.std(returns))
print(json.dumps(result))
