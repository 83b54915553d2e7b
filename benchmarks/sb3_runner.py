"""Runs stable-baselines3's DQN with qzoo-named hyperparameters; prints one JSON line. Runs in .sb3-venv."""

import json
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.evaluation import evaluate_policy

spec = json.loads(sys.argv[1])
if spec.get("torch_threads"):
    torch.set_num_threads(spec["torch_threads"])
model = DQN(
    "MlpPolicy", spec["env_id"], learning_rate=spec["learning_rate"], buffer_size=spec["buffer_size"],
    learning_starts=spec["learning_starts"], batch_size=spec["batch_size"], gamma=spec["gamma"],
    train_freq=spec["train_freq"], gradient_steps=spec["gradient_steps"],
    target_update_interval=spec["target_update_interval"], exploration_fraction=spec["exploration_fraction"],
    exploration_final_eps=spec["exploration_final_eps"], max_grad_norm=spec["max_grad_norm"],
    policy_kwargs={"net_arch": spec["net_arch"]}, seed=spec["seed"], device="cpu", verbose=0)
start = time.perf_counter()
model.learn(total_timesteps=spec["n_timesteps"])
seconds = time.perf_counter() - start
result = {"steps": spec["n_timesteps"], "seconds": seconds, "steps_per_s": spec["n_timesteps"] / seconds}
if spec.get("eval_episodes"):
    env = gym.make(spec["env_id"])
    returns, _ = evaluate_policy(model, env, n_eval_episodes=spec["eval_episodes"], deterministic=True,
                                 return_episode_rewards=True)
    result["eval_mean"], result["eval_std"] = float(np.mean(returns)), float(np.std(returns))
print(json.dumps(result))
