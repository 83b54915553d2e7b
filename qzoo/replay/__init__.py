"""Experience replay, composed of parts.

    ReplayBuffer = storage (where transitions live) + sampler (which indices a batch takes)

Design decisions:
- Each stored row is a complete transition (s_tm1, a_tm1, r_t, discount_t, s_t). The discount is stored
  per transition: gamma * (1 - terminated). Later accumulators (n-step) write gamma^n there, so the loss never
  special-cases them.
- s_t is the *true* next observation, also when the episode ended (the vector env's ``final_obs``), so a
  time-limit truncation bootstraps from where the episode really stopped; ``terminated`` alone zeroes the
  discount.
- Rows are written in a circular array: once full, the oldest row is overwritten first.
- Sampling returns numpy arrays in a :class:`Batch`; turning them into tensors is the agent's job.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from qzoo.replay.samplers import UniformSampler
from qzoo.replay.storage import TransitionStorage


class Batch(NamedTuple):
    obs_tm1: np.ndarray
    action_tm1: np.ndarray
    reward_t: np.ndarray
    discount_t: np.ndarray
    obs_t: np.ndarray
    weights: np.ndarray | None  # importance weights; None for uniform sampling (all equal)
    indices: np.ndarray  # storage rows, for priority updates


class ReplayBuffer:
    def __init__(self, storage: TransitionStorage, sampler: UniformSampler, gamma: float, seed: int = 0):
        self.storage = storage
        self.sampler = sampler
        self.gamma = gamma
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.storage.size

    def add(self, obs_tm1, action_tm1, reward_t, obs_t, terminated_t) -> None:
        """Add one transition per environment (leading axis = env)."""
        discount_t = self.gamma * (1.0 - np.asarray(terminated_t, np.float32))
        self.storage.add(obs_tm1, action_tm1, reward_t, discount_t, obs_t)

    def sample(self, batch_size: int) -> Batch:
        indices = self.sampler.sample(self.storage.size, batch_size, self.rng)
        rows = self.storage.get(indices)
        return Batch(*rows, weights=None, indices=indices)


def make_replay(config, observation_space) -> ReplayBuffer:
    storage = TransitionStorage(config.buffer_size, observation_space.shape, observation_space.dtype)
    return ReplayBuffer(storage, UniformSampler(), config.gamma, seed=config.seed)
