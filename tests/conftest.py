"""Shared test fixtures: tiny environments with known answers, registered for the tests only."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import qzoo.envs  # noqa: F401  (registers qzoo/Corridor-v0)


class ConstantReward(gym.Env):
    """One state, reward 1 every step, never terminates; the test id truncates after 5 steps.
    With discount gamma the true value is 1 / (1 - gamma) for every action: only correct bootstrapping at
    the time limit learns it (treating truncation as termination gives a lower value)."""

    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        return np.ones(1, np.float32), 1.0, False, False, {}


gym.register(id="qzootest/ConstantReward-v0", entry_point=ConstantReward, max_episode_steps=5)


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"
