"""A tiny corridor whose optimal policy is known, for tests and quick checks (``qzoo/Corridor-v0``).

States 0 .. length-1, observed one-hot. The agent starts at 0; action 1 moves right, action 0 moves left
(a wall at 0). Reaching the last cell gives reward 1 and terminates; nothing else gives reward. The
registered id truncates episodes after 30 steps, so a random walk sometimes fails to reach the goal.
Optimal: always move right; return 1.0 in ``length - 1`` steps; Q*(s, right) = gamma ** (length - 2 - s).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    metadata = {"render_modes": ["ansi"]}

    def __init__(self, length: int = 8, render_mode: str | None = None):
        if length < 2:
            raise ValueError("length must be >= 2")
        self.length = length
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length, np.float32)
        obs[self.pos] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = min(self.pos + 1, self.length - 1) if int(action) == 1 else max(self.pos - 1, 0)
        terminated = self.pos == self.length - 1
        return self._obs(), float(terminated), terminated, False, {}

    def render(self):
        return "".join("A" if i == self.pos else "." for i in range(self.length))
