"""Runs SBX's DQN (``sbx-rl``: Stable-Baselines3 in JAX, the fastest DQN on small networks that RL Zoo supports)
with qzoo-named hyperparameters; prints one JSON line. Runs in the SBX venv (qzoo/bench/peer.py), which has no qzoo.

SBX's MLP Q-network has two hidden layers of ``net_arch[0]`` units (RL Zoo's CartPole and LunarLander entries use
[256, 256]); its optimizer is optax's Adam with the config's learning rate and eps. SBX has no gradient clipping
(``max_grad_norm`` does not exist there), so it does a little less arithmetic per update than qzoo and SB3, which
clip at the config's max_grad_norm. Each training phase samples all of its batches at once and runs the gradient
steps inside one jitted ``lax.scan``; the first phase includes the jit compilation, as it does for a user.
"""

import json
import os
import resource
import sys
import time

import gymnasium as gym
import jax
import numpy as np
import optax
import torch
from sbx import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy


class LearningStart(BaseCallback):
    """Remembers when the step counter reached learning_starts."""

    def __init__(self, learning_starts: int):
        super().__init__()
        self.learning_starts, self.time = learning_starts, None

    def _on_step(self) -> bool:
        if self.time is None and self.num_timesteps >= self.learning_starts:
            self.time = time.perf_counter()
        return True


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(1)  # SB3's replay buffer (which SBX uses) samples with torch
    arch = list(spec["net_arch"])
    if len(arch) != 2 or arch[0] != arch[1]:
        raise SystemExit(f"sbx_runner: SBX's DQN has two equal hidden layers; net_arch {arch} has no equivalent")
    if spec.get("optimizer", "adam") != "adam" or spec["env_id"].startswith(("ALE/", "MinAtar/")):
        raise SystemExit("sbx_runner: only MLP Q-networks with Adam (classic control, Box2D)")
    policy_kwargs = {"net_arch": arch, "optimizer_class": optax.adam,
                     "optimizer_kwargs": {"eps": spec.get("optimizer_eps", 1e-8)}}
    env_kwargs = spec.get("env_kwargs") or {}
    env = make_vec_env(spec["env_id"], n_envs=spec.get("n_envs", 1), seed=spec["seed"], env_kwargs=env_kwargs)
    model = DQN(
        "MlpPolicy", env, learning_rate=spec["learning_rate"], buffer_size=spec["buffer_size"],
        learning_starts=spec["learning_starts"], batch_size=spec["batch_size"], gamma=spec["gamma"], tau=spec["tau"],
        train_freq=spec["train_freq"], gradient_steps=spec["gradient_steps"],
        target_update_interval=spec["target_update_interval"], exploration_fraction=spec["exploration_fraction"],
        exploration_initial_eps=spec["exploration_initial_eps"], exploration_final_eps=spec["exploration_final_eps"],
        policy_kwargs=policy_kwargs, seed=spec["seed"], verbose=0)
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
              "jax": jax.__version__, "backend": jax.default_backend(), "xla_flags": os.environ.get("XLA_FLAGS")}
    if callback.time is not None and end > callback.time:
        result["learning_steps_per_s"] = (model.num_timesteps - spec["learning_starts"]) / (end - callback.time)
    if spec.get("eval_episodes"):
        eval_env = gym.make(spec["env_id"], **env_kwargs)
        eval_env.reset(seed=spec["seed"] + 10_000)
        returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=spec["eval_episodes"], deterministic=True,
                                     return_episode_rewards=True)
        result["eval_mean"], result["eval_std"] = float(np.mean(returns)), float(np.std(returns))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
