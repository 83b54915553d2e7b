"""Q-networks: a torso (features) followed by a head (one value per action).

Torsos and heads are separate so that later variants (Nature CNN torso, dueling / noisy / categorical
heads) compose with each other instead of being copied.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from qzoo.config import Config


def mlp(in_dim: int, sizes: list[int]) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    for size in sizes:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        in_dim = size
    return nn.Sequential(*layers), in_dim


class QNetwork(nn.Module):
    """Q(s, ·) = head(torso(s)). ``forward`` returns a (batch, n_actions) tensor of action values."""

    def __init__(self, torso: nn.Module, feature_dim: int, n_actions: int):
        super().__init__()
        self.torso = torso
        self.head = nn.Linear(feature_dim, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dtype != torch.float32:
            obs = obs.float()
        return self.head(self.torso(obs.flatten(1) if obs.dim() > 2 else obs))


def build_q_network(config: Config, observation_space: gym.spaces.Space, n_actions: int) -> QNetwork:
    if config.network == "mlp":
        in_dim = int(torch.tensor(observation_space.shape).prod())
        torso, feature_dim = mlp(in_dim, list(config.net_arch))
        return QNetwork(torso, feature_dim, n_actions)
    raise ValueError(f"unknown network {config.network!r}")
