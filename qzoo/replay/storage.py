"""Circular storage of complete transitions (s_tm1, a_tm1, r_t, discount_t, s_t) in preallocated numpy arrays,
for flat observations. Environment steps reach it through an n-step accumulator, so it has the same ``add``
as :class:`qzoo.replay.frames.FrameStorage` and the replay buffer treats both alike."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from qzoo.replay.frames import AddResult
from qzoo.replay.nstep import NStepAccumulator

_NO_ROWS = np.zeros(0, np.int64)


@runtime_checkable
class Storage(Protocol):
    """Where a replay buffer's steps live (:class:`TransitionStorage`, :class:`qzoo.replay.frames.FrameStorage`):
    all that :class:`qzoo.replay.ReplayBuffer` and the samplers use of one."""

    size: int  # transitions stored

    @property
    def n_rows(self) -> int:
        """Rows [0, n_rows) a sampler may draw from (a row without a valid transition has priority 0)."""

    @property
    def max_rows(self) -> int:
        """Rows it can ever hold: a prioritized sampler's tree size."""

    def add(self, obs_tm1, action_tm1, reward_t, obs_t, terminated_t, truncated_t) -> AddResult:
        """One environment step per env; the rows that became sampleable and those that stopped being so."""

    def get(self, rows: np.ndarray) -> tuple:
        """(obs_tm1, action_tm1, reward_t, discount_t, obs_t) of ``rows``."""

    def sample_uniform(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` sampleable rows, uniformly with replacement."""

    def reset(self) -> None:
        """Forget the steps of unfinished episodes; stored transitions stay."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class TransitionStorage:
    def __init__(self, capacity: int, obs_shape: tuple, obs_dtype=np.float32, *, n_step: int = 1,
                 gamma: float = 0.99, n_envs: int = 1):
        self.capacity = capacity
        self.obs_tm1 = np.zeros((capacity, *obs_shape), obs_dtype)
        self.obs_t = np.zeros((capacity, *obs_shape), obs_dtype)
        self.action_tm1 = np.zeros(capacity, np.int64)
        self.reward_t = np.zeros(capacity, np.float32)
        self.discount_t = np.zeros(capacity, np.float32)
        self.accumulator = NStepAccumulator(n_step, gamma, n_envs)
        self.pos = 0  # next row to write
        self.size = 0  # rows holding data

    @property
    def n_rows(self) -> int:
        """Rows that may be sampled: [0, size)."""
        return self.size

    @property
    def max_rows(self) -> int:
        return self.capacity

    def add(self, obs_tm1, action_tm1, reward_t, obs_t, terminated_t, truncated_t) -> AddResult:
        """One environment step per env (leading axis = env); writes the transitions whose n-step window is
        complete. An overwritten row is re-added at once, so ``removed`` is always empty."""
        ready = self.accumulator.push(obs_tm1, action_tm1, reward_t, obs_t, terminated_t, truncated_t)
        return AddResult(self.write(*ready), _NO_ROWS)

    def write(self, obs_tm1, action_tm1, reward_t, discount_t, obs_t) -> np.ndarray:
        """Write ``n`` rows (leading axis) at the cursor, wrapping around the end; returns the rows written."""
        n = len(action_tm1)
        rows = (self.pos + np.arange(n)) % self.capacity
        where = slice(self.pos, self.pos + n) if self.pos + n <= self.capacity else rows  # a slice: ~2x faster
        self.obs_tm1[where] = obs_tm1
        self.action_tm1[where] = action_tm1
        self.reward_t[where] = reward_t
        self.discount_t[where] = discount_t
        self.obs_t[where] = obs_t
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        return rows

    def reset(self) -> None:
        """Drop the pending n-step steps (the envs start new episodes)."""
        self.accumulator.reset()

    def state_dict(self) -> dict:
        """The filled rows (views, not copies), the write cursor and the accumulator's pending steps."""
        filled = slice(0, self.size)
        return {"obs_tm1": self.obs_tm1[filled], "obs_t": self.obs_t[filled], "action_tm1": self.action_tm1[filled],
                "reward_t": self.reward_t[filled], "discount_t": self.discount_t[filled], "pos": self.pos,
                "size": self.size, "accumulator": self.accumulator.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        size = int(state["size"])
        if size > self.capacity or state["obs_tm1"].shape[1:] != self.obs_tm1.shape[1:]:
            raise ValueError(f"replay of {size} rows of {state['obs_tm1'].shape[1:]} does not fit capacity "
                             f"{self.capacity} of {self.obs_tm1.shape[1:]}")
        for name in ("obs_tm1", "obs_t", "action_tm1", "reward_t", "discount_t"):
            getattr(self, name)[:size] = state[name]
        self.pos, self.size = int(state["pos"]), size
        self.accumulator.load_state_dict(state["accumulator"])

    def sample_uniform(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        return rng.integers(0, self.size, batch_size)

    def get(self, rows: np.ndarray):
        return (self.obs_tm1[rows], self.action_tm1[rows], self.reward_t[rows], self.discount_t[rows],
                self.obs_t[rows])
