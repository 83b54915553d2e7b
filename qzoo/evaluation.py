"""Evaluation: run whole episodes with a fixed epsilon and report returns as the environment gives them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EvalResult:
    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def summary(self) -> str:
        return (f"return {self.mean:.2f} ± {self.std:.2f}, length {np.mean(self.lengths):.1f} "
                f"± {np.std(self.lengths):.1f} over {len(self.returns)} episodes")


def evaluate(agent, env, n_episodes: int, epsilon: float, seed: int, max_steps: int = 100_000) -> EvalResult:
    """Play ``n_episodes`` episodes in ``env`` (a single, non-vector env). The first reset is seeded, so
    every call with the same seed faces the same start states; ``max_steps`` caps an episode that never ends."""
    rng = np.random.default_rng(seed)
    returns, lengths = [], []
    obs, _ = env.reset(seed=seed)
    for _ in range(n_episodes):
        total, length, done = 0.0, 0, False
        while not done and length < max_steps:
            action = int(agent.act(np.asarray(obs)[None], epsilon, rng)[0])  # asarray: Discrete states are ints
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(length)
        obs, _ = env.reset()
    return EvalResult(np.array(returns), np.array(lengths))
