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


@pytest.fixture
def clip_norms(monkeypatch):
    """The global gradient norm of every update that goes through ``qzoo.agent``'s clipping (the reference,
    per-batch path), before it clips: the tests of the fast update paths count in how many of their compared
    updates clipping acted."""
    import torch

    import qzoo.agent
    from qzoo.fastpath import clip_grad_norm

    norms = []

    def record_then_clip(grads, max_norm):
        norms.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))))
        clip_grad_norm(grads, max_norm)

    monkeypatch.setattr(qzoo.agent, "clip_grad_norm", record_then_clip)
    return norms
