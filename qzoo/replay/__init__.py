"""Experience replay, composed of parts.

    ReplayBuffer = storage (where steps live; n-step returns)  +  sampler (which rows a batch takes)

    storage:  TransitionStorage  flat observations: n-step accumulator -> rows of complete transitions
              FrameStorage       stacked frames (Atari): each frame stored once, stacks and n-step returns
                                 rebuilt when sampling (qzoo/replay/frames.py)
    sampler:  UniformSampler | PrioritizedSampler (proportional, on a sum tree)
    augment:  None | random_shift of s and s' in each sampled batch (qzoo/replay/augment.py; training only)

    The parts' seams are declared: any :class:`~qzoo.replay.storage.Storage` with any
    :class:`~qzoo.replay.samplers.Sampler` (typing Protocols); the buffer never asks which one it holds.

Design decisions:
- Both storages take environment steps, ``add(obs_tm1, a, r, obs_t, terminated, truncated)``, and answer with
  the rows that became sampleable (and those that stopped being so); the sampler hears of both. Both return the
  same transitions for the same steps (tested bit for bit), so nothing downstream knows which one it got.
- A transition's discount is gamma * (1 - terminated) for 1-step, gamma^k or 0 for n-step, stored or computed
  per row, so the loss never special-cases n-step.
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

import json
from typing import NamedTuple

import numpy as np

from qzoo.config import ConfigError
from qzoo.replay.augment import augmentation_problem, make_augment
from qzoo.replay.frames import FrameStorage
from qzoo.replay.samplers import PrioritizedSampler, Sampler, UniformSampler
from qzoo.replay.storage import Storage, TransitionStorage
from qzoo.schedules import LinearSchedule


class Batch(NamedTuple):
    obs_tm1: np.ndarray
    action_tm1: np.ndarray
    reward_t: np.ndarray
    discount_t: np.ndarray
    obs_t: np.ndarray
    weights: np.ndarray | None  # importance weights; None for uniform sampling (all equal)
    indices: np.ndarray  # storage rows, for priority updates


def concat_batches(batches: list[Batch]) -> Batch:
    """The batches' rows one after the other, as one batch."""
    weights = None if batches[0].weights is None else np.concatenate([b.weights for b in batches])
    return Batch(*(np.concatenate(parts) for parts in zip(*(b[:5] for b in batches), strict=True)),
                 weights=weights, indices=np.concatenate([b.indices for b in batches]))


def batch_slice(batch: Batch, i: int, batch_size: int) -> Batch:
    """Batch i of a phase's batches (:meth:`ReplayBuffer.sample_phase`): views of its rows."""
    rows = slice(i * batch_size, (i + 1) * batch_size)
    return Batch(*(None if x is None else x[rows] for x in batch))


class ReplayBuffer:
    def __init__(self, storage: Storage, sampler: Sampler, seed: int = 0, augment=None):
        self.storage = storage
        self.sampler = sampler
        self.rng = np.random.default_rng(seed)
        self.augment = augment  # f(obs, rng) -> obs applied to s and s' of every sampled batch, or None

    def __len__(self) -> int:
        return self.storage.size

    @property
    def uses_priorities(self) -> bool:
        """Whether each batch's TD errors must come back (:meth:`update_priorities`) before the next is drawn."""
        return self.sampler.uses_priorities

    def add(self, obs_tm1, action_tm1, reward_t, obs_t, terminated_t, truncated_t) -> None:
        """Add one environment step per env (leading axis = env)."""
        added, removed = self.storage.add(obs_tm1, action_tm1, reward_t, obs_t, terminated_t, truncated_t)
        self.sampler.on_remove(removed)
        self.sampler.on_add(added)

    def sample(self, batch_size: int, step: int = 0) -> Batch:
        indices, weights = self.sampler.sample(self.storage, batch_size, self.rng, step)
        obs_tm1, action_tm1, reward_t, discount_t, obs_t = self.storage.get(indices)
        if self.augment is not None:  # s and s' each get their own shifts, drawn after the rows
            obs_tm1, obs_t = self.augment(obs_tm1, self.rng), self.augment(obs_t, self.rng)
        return Batch(obs_tm1, action_tm1, reward_t, discount_t, obs_t, weights=weights, indices=indices)

    def sample_phase(self, n_batches: int, batch_size: int, step: int = 0) -> Batch:
        """``n_batches`` batches as one :class:`Batch` of ``n_batches * batch_size`` rows, batch i in rows
        [i * batch_size, (i + 1) * batch_size) (:func:`batch_slice`). The same rows, from the same generator draws
        in the same order, as ``n_batches`` calls of :meth:`sample`; uniform sampling without augmentation reads
        the storage once for all of them instead of once per batch."""
        if self.augment is not None or self.uses_priorities:  # draws interleave with the rows' draws
            return concat_batches([self.sample(batch_size, step) for _ in range(n_batches)])
        rows = np.concatenate([self.sampler.sample(self.storage, batch_size, self.rng, step)[0]
                               for _ in range(n_batches)])
        return Batch(*self.storage.get(rows), weights=None, indices=rows)

    def update_priorities(self, indices: np.ndarray, td_errors) -> None:
        """New priorities from the TD errors (or C51 losses) of a batch; a no-op for uniform sampling."""
        if self.uses_priorities:
            td = td_errors.cpu().numpy() if hasattr(td_errors, "cpu") else np.asarray(td_errors)  # torch or numpy
            self.sampler.update_priorities(indices, td)


    def reset(self) -> None:
        """Forget the steps of unfinished episodes (the envs start new ones); stored transitions stay."""
        self.storage.reset()

    def state_dict(self) -> dict:
        """Storage, sampler (sum tree, max priority) and sampling RNG: arrays (views) and scalars only."""
        return {"storage": self.storage.state_dict(), "sampler": self.sampler.state_dict(),
                "rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        self.storage.load_state_dict(state["storage"])
        self.sampler.load_state_dict(state.get("sampler", {}))  # uniform sampling has no state
        self.rng.bit_generator.state = json.loads(state["rng"])


def uses_frame_storage(config, observation_space) -> bool:
    """Stacked grayscale Atari frames (stack, H, W) uint8: each frame is stored once."""
    from qzoo.env_ids import is_atari_id

    return is_atari_id(config.env_id) and config.grayscale and len(observation_space.shape) == 3


def make_replay(config, observation_space) -> ReplayBuffer:
    shape = observation_space.shape
    problem = augmentation_problem(config, shape)  # check_env refuses it earlier; kept for direct callers
    if problem:
        raise ConfigError(problem)
    if uses_frame_storage(config, observation_space):
        storage = FrameStorage(config.buffer_size, shape[1:], shape[0], config.n_envs, config.n_step, config.gamma,
                               observation_space.dtype)
    else:
        storage = TransitionStorage(config.buffer_size, shape, observation_space.dtype, n_step=config.n_step,
                                    gamma=config.gamma, n_envs=config.n_envs)
    if config.prioritized:
        beta = LinearSchedule(config.prioritized_beta, config.prioritized_beta_final, config.schedule_horizon)
        sampler = PrioritizedSampler(storage.max_rows, config.prioritized_alpha, beta, config.prioritized_eps)
    else:
        sampler = UniformSampler()
    return ReplayBuffer(storage, sampler, seed=config.seed,
                        augment=make_augment(config.augmentation, config.augmentation_pad))
