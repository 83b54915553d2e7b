"""Experience replay, composed of parts.

    ReplayBuffer = accumulator (n-step returns)  ->  storage (where transitions live)
                   + sampler (which rows a batch takes: uniform or prioritized)

Design decisions:
- Each stored row is a complete transition (s_tm1, a_tm1, r_t, discount_t, s_t). The discount is stored
  per transition: gamma * (1 - terminated) for 1-step, gamma^k or 0 for n-step (the accumulator computes it),
  so the loss never special-cases n-step.
- Batches carry importance weights (None for uniform sampling) and the storage rows they came from, so a
  prioritized sampler needs no special case in the loss either: the agent multiplies by the weights and hands
  back new priorities, which the buffer forwards to the sampler.
- s_t is the *true* next observation, also when the episode ended (the vector env's ``final_obs``), so a
  time-limit truncation bootstraps from where the episode really stopped; ``terminated`` alone zeroes the
  discount.
- Rows are written in a circular array: once full, the oldest row is overwritten first.
- Sampling returns numpy arrays in a :class:`Batch`; turning them into tensors is the agent's job.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from qzoo.replay.nstep import NStepAccumulator
from qzoo.replay.samplers import PrioritizedSampler, UniformSampler
from qzoo.replay.storage import TransitionStorage
from qzoo.schedules import LinearSchedule


class Batch(NamedTuple):
    obs_tm1: np.ndarray
    action_tm1: np.ndarray
    reward_t: np.ndarray
    discount_t: np.ndarray
    obs_t: np.ndarray
    weights: np.ndarray | None  # importance weights; None for uniform sampling (all equal)
    indices: np.ndarray  # storage rows, for priority updates


class ReplayBuffer:
    def __init__(self, storage: TransitionStorage, sampler: UniformSampler | PrioritizedSampler,
                 accumulator: NStepAccumulator, seed: int = 0):
        self.storage = storage
        self.sampler = sampler
        self.accumulator = accumulator
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.storage.size

    def add(self, obs_tm1, action_tm1, reward_t, obs_t, terminated_t, truncated_t) -> None:
        """Add one environment step per env (leading axis = env); n-step windows are completed here."""
        ready = self.accumulator.push(obs_tm1, action_tm1, reward_t, obs_t, terminated_t, truncated_t)
        if len(ready.action_tm1):
            self.sampler.on_add(self.storage.add(*ready))

    def sample(self, batch_size: int, step: int = 0) -> Batch:
        indices, weights = self.sampler.sample(self.storage.size, batch_size, self.rng, step)
        return Batch(*self.storage.get(indices), weights=weights, indices=indices)

    def update_priorities(self, indices: np.ndarray, td_errors) -> None:
        """New priorities from the TD errors (or C51 losses) of a batch; a no-op for uniform sampling."""
        if self.sampler.uses_priorities:
            self.sampler.update_priorities(indices, td_errors.cpu().numpy())


def make_replay(config, observation_space) -> ReplayBuffer:
    storage = TransitionStorage(config.buffer_size, observation_space.shape, observation_space.dtype)
    if config.prioritized:
        beta = LinearSchedule(config.prioritized_beta, 1.0, config.n_timesteps)  # beta annealed to 1 over training
        sampler = PrioritizedSampler(config.buffer_size, config.prioritized_alpha, beta, config.prioritized_eps)
    else:
        sampler = UniformSampler()
    accumulator = NStepAccumulator(config.n_step, config.gamma, config.n_envs)
    return ReplayBuffer(storage, sampler, accumulator, seed=config.seed)
