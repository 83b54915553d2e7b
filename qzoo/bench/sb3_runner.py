"""Runs stable-baselines3's DQN with qzoo-named hyperparameters; prints one JSON line. Runs in the SB3 venv
(qzoo/bench/peer.py), which has no qzoo: MinAtar ids are registered from qzoo/envs/minatar.py loaded by path.

MinAtar observations get a features extractor equal to qzoo's MinAtar torso (conv 16 3x3 -> fc 128; SB3's
NatureCNN cannot take 10x10 grids) and a linear head (net_arch []), so both sides train the same network; the
optimizer follows the config (centered RMSprop with alpha 0.95, as qzoo, or Adam).

Atari ids (``"atari": true`` in the spec, as benchmarks/speed_atari.py sends) are built as RL Zoo builds them:
``AtariWrapper`` (no-op starts, frame skip 4 with max-pool, life-loss episodes, FIRE reset, clipped rewards, 84x84
grayscale) on the game created with ``frameskip=1, repeat_action_probability=0``, 4 stacked frames
(``VecFrameStack``), ``CnnPolicy``. Every result has the steps/s after learning started (``learning_steps_per_s``)
and the process's peak RSS.

SB3 trains on the spec's ``device`` (qzoo's names are SB3's: ``auto`` is CUDA when present; the peer venv's torch is
a CPU build, so only a ``$QZOO_SB3_PYTHON`` with CUDA torch reaches a GPU).
"""

import json
import sys
from pathlib import Path

import gymnasium as gym
import torch
from peer_runs import (  # this folder (the runner's sys.path[0])
    dqn_hyperparameters,
    evaluate,
    learn_timed,
    load_minatar_adapter,
)
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class MinAtarCNN(BaseFeaturesExtractor):
    """qzoo's MinAtar torso: conv 16 3x3 stride 1, ReLU, fc 128, ReLU."""

    def __init__(self, observation_space, features_dim: int = 128):
        super().__init__(observation_space, features_dim)
        channels, height, width = observation_space.shape
        self.convs = nn.Sequential(nn.Conv2d(channels, 16, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        self.fc = nn.Linear(16 * (height - 2) * (width - 2), features_dim)

    def forward(self, obs):
        return torch.relu(self.fc(self.convs(obs.float())))


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
    model = DQN(policy, env, **dqn_hyperparameters(spec), max_grad_norm=spec["max_grad_norm"],
                policy_kwargs=policy_kwargs, device=spec.get("device", "cpu"))
    result = {**learn_timed(model, spec), "torch_threads": torch.get_num_threads()}
    if spec.get("run_dir"):
        model.save(Path(spec["run_dir"]) / "model.zip")
    if spec.get("eval_episodes") and not spec.get("atari"):
        result.update(evaluate(model, spec, env_kwargs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
