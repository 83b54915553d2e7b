"""Circular storage of complete transitions in preallocated numpy arrays."""

from __future__ import annotations

import numpy as np


class TransitionStorage:
    def __init__(self, capacity: int, obs_shape: tuple, obs_dtype=np.float32):
        self.capacity = capacity
        self.obs_tm1 = np.zeros((capacity, *obs_shape), obs_dtype)
        self.obs_t = np.zeros((capacity, *obs_shape), obs_dtype)
        self.action_tm1 = np.zeros(capacity, np.int64)
        self.reward_t = np.zeros(capacity, np.float32)
        self.discount_t = np.zeros(capacity, np.float32)
        self.pos = 0  # next row to write
        self.size = 0  # rows holding data

    def add(self, obs_tm1, action_tm1, reward_t, discount_t, obs_t) -> np.ndarray:
        """Write ``n`` rows (leading axis) at the cursor, wrapping around the end; returns the rows written."""
        n = len(action_tm1)
        rows = (self.pos + np.arange(n)) % self.capacity
        self.obs_tm1[rows] = obs_tm1
        self.action_tm1[rows] = action_tm1
        self.reward_t[rows] = reward_t
        self.discount_t[rows] = discount_t
        self.obs_t[rows] = obs_t
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        return rows

    def get(self, rows: np.ndarray):
        return (self.obs_tm1[rows], self.action_tm1[rows], self.reward_t[rows], self.discount_t[rows],
                self.obs_t[rows])
