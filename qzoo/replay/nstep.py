"""n-step transitions, accumulated between the env loop and the storage.

For a window of k steps starting at s_tm1 (k = n normally, k < n when the episode ends first):

    reward_t   = r_1 + gamma r_2 + ... + gamma^(k-1) r_k
    discount_t = 0           if the episode terminated inside the window
               = gamma^k     otherwise (window full, or cut by a time-limit truncation)
    obs_t      = the observation after the k-th step (the true final observation when the episode ended)

so the 1-step loss  y = reward_t + discount_t * max_a Q(obs_t, a)  becomes the n-step one unchanged.

Design decisions:
- One window (a list of at most n pending (obs, action, reward) steps) per env; envs never mix.
- A full window emits its oldest start and slides by one. When an episode ends (terminated OR truncated), every
  pending start of that env is flushed at once, each with its own shorter k, and the window is emptied, so the
  next push of that env begins a new episode. This needs SAME_STEP autoreset (qzoo.envs): no dummy step is
  pushed between episodes, and obs_t must be the true final observation when an episode ends.
- n = 1 reproduces plain transitions exactly: discount = gamma * (1 - terminated).
- Output order: env 0's transitions first (oldest start first), then env 1's, ... Arrays are always returned,
  with a leading axis of 0 when nothing is ready, so the caller can hand them straight to ``storage.add``.
- Observations are copied on push (n > 1): the caller may reuse its observation buffers. With n = 1 nothing is
  pending, so push is one vectorised expression and the storage does the copying.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Transitions(NamedTuple):
    """Ready transitions, in the argument order of ``TransitionStorage.add``."""

    obs_tm1: np.ndarray
    action_tm1: np.ndarray  # int64
    reward_t: np.ndarray  # float32, discounted sum of the window's rewards
    discount_t: np.ndarray  # float32, gamma^k or 0
    obs_t: np.ndarray  # how many: len(transitions.action_tm1)


class NStepAccumulator:
    def __init__(self, n: int, gamma: float, n_envs: int):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        self.gamma = gamma
        self.n_envs = n_envs
        self.windows: list[list[tuple[np.ndarray, int, float]]] = [[] for _ in range(n_envs)]

    def reset(self) -> None:
        """Drop every pending step (e.g. after the envs were reset by hand)."""
        self.windows = [[] for _ in range(self.n_envs)]

    def state_dict(self) -> dict:
        """The pending steps of every env as arrays: ``lengths[e]`` steps of env e, envs one after another."""
        steps = [step for window in self.windows for step in window]
        return {"lengths": np.array([len(w) for w in self.windows], np.int64),
                "obs": np.stack([s[0] for s in steps]) if steps else np.zeros(0, np.float32),
                "action": np.array([s[1] for s in steps], np.int64),
                "reward": np.array([s[2] for s in steps], np.float64)}

    def load_state_dict(self, state: dict) -> None:
        lengths = np.asarray(state["lengths"], np.int64)
        if len(lengths) != self.n_envs or np.any(lengths >= self.n):
            raise ValueError(f"pending n-step windows {lengths.tolist()} do not fit n={self.n}, n_envs={self.n_envs}")
        starts = np.concatenate([[0], np.cumsum(lengths)])
        self.windows = [[(np.array(state["obs"][i]), int(state["action"][i]), float(state["reward"][i]))
                         for i in range(starts[e], starts[e + 1])] for e in range(self.n_envs)]

    def push(self, obs_tm1, action_tm1, reward_t, obs_t, terminated_t, truncated_t) -> Transitions:
        """Add one step per env (leading axis = env); return the transitions that became ready."""
        obs_tm1, obs_t = np.asarray(obs_tm1), np.asarray(obs_t)
        if len(obs_tm1) != self.n_envs:
            raise ValueError(f"expected {self.n_envs} envs, got {len(obs_tm1)}")
        if self.n == 1:  # nothing to accumulate: the same transitions, vectorised
            discount = (self.gamma * (1.0 - np.asarray(terminated_t, np.float32))).astype(np.float32)
            return Transitions(obs_tm1, np.asarray(action_tm1, np.int64), np.asarray(reward_t, np.float32), discount,
                               obs_t)
        out: list[tuple] = []
        for e in range(self.n_envs):
            window = self.windows[e]
            window.append((obs_tm1[e].copy(), int(action_tm1[e]), float(reward_t[e])))
            if terminated_t[e] or truncated_t[e]:
                for start in range(len(window)):  # flush every pending start, each with its own k
                    out.append(self._transition(window[start:], obs_t[e], bool(terminated_t[e])))
                window.clear()
            elif len(window) == self.n:
                out.append(self._transition(window, obs_t[e], False))
                window.pop(0)
        return self._stack(out, obs_tm1)

    def _transition(self, steps, obs_t, terminated: bool) -> tuple:
        k = len(steps)
        reward = sum(self.gamma**i * r for i, (_, _, r) in enumerate(steps))
        discount = 0.0 if terminated else self.gamma**k
        obs_tm1, action_tm1, _ = steps[0]
        return obs_tm1, action_tm1, reward, discount, obs_t.copy()

    @staticmethod
    def _stack(out: list[tuple], like_obs: np.ndarray) -> Transitions:
        if not out:
            empty_obs = np.zeros((0, *like_obs.shape[1:]), like_obs.dtype)
            return Transitions(empty_obs, np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32),
                               empty_obs.copy())
        obs_tm1, action, reward, discount, obs_t = zip(*out, strict=True)
        return Transitions(np.stack(obs_tm1), np.asarray(action, np.int64), np.asarray(reward, np.float32),
                           np.asarray(discount, np.float32), np.stack(obs_t))
