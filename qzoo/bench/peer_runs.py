"""What the peers' runners share (``sb3_runner.py``, ``sbx_runner.py``): the DQN hyperparameters named as qzoo names
them, the MinAtar adapter, the learning-start clock, the timed ``learn`` and the greedy evaluation. Loaded by the
runners from this folder inside the peers' venvs, so it imports stable-baselines3 (SBX is built on it), never qzoo."""

import importlib.util
import os
import resource
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy


def load_minatar_adapter():
    """qzoo's MinAtar adapter (qzoo/envs/minatar.py, which imports no qzoo), loaded by path; registers the
    ``MinAtar/<Game>-v1`` ids, as qzoo does."""
    path = Path(__file__).resolve().parent.parent / "envs" / "minatar.py"
    spec = importlib.util.spec_from_file_location("qzoo_minatar_adapter", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.register_minatar_envs()
    return module


class LearningStart(BaseCallback):
    """Remembers when the step counter reached learning_starts (SB3 trains once num_timesteps > learning_starts)."""

    def __init__(self, learning_starts: int):
        super().__init__()
        self.learning_starts, self.time = learning_starts, None

    def _on_step(self) -> bool:
        if self.time is None and self.num_timesteps >= self.learning_starts:
            self.time = time.perf_counter()
        return True


def dqn_hyperparameters(spec: dict) -> dict:
    """The DQN constructor's hyperparameters from a qzoo config dict (same names in SB3 and SBX)."""
    keys = ("learning_rate", "buffer_size", "learning_starts", "batch_size", "gamma", "tau", "train_freq",
            "gradient_steps", "target_update_interval", "exploration_fraction", "exploration_initial_eps",
            "exploration_final_eps")
    return {**{k: spec[k] for k in keys}, "seed": spec["seed"], "verbose": 0}


def learn_timed(model, spec: dict) -> dict:
    """``model.learn`` for the spec's steps; wall and CPU seconds, steps/s (also after learning starts), the mean
    training return and peak RSS."""
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
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    if callback.time is not None and end > callback.time:
        result["learning_steps_per_s"] = (model.num_timesteps - spec["learning_starts"]) / (end - callback.time)
    return result


def evaluate(model, spec: dict, env_kwargs: dict) -> dict:
    """Mean and std of ``eval_episodes`` greedy episodes on a fresh env seeded seed + 10,000 (as qzoo evaluates)."""
    eval_env = gym.make(spec["env_id"], **env_kwargs)
    eval_env.reset(seed=spec["seed"] + 10_000)
    returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=spec["eval_episodes"], deterministic=True,
                                 return_episode_rewards=True)
    return {"eval_mean": float(np.mean(returns)), "eval_std": float(np.std(returns))}
