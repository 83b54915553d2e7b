"""Replay storage for stacked frames (Atari) that keeps every frame once and rebuilds stacks when sampling.

A stacked observation of ``stack`` frames shares ``stack - 1`` frames with the observation before it, and
s_tm1 shares them with s_t, so storing (s_tm1, s_t) per transition holds each 84x84 frame 2 * stack = 8 times
(56 GB for 1M transitions). :class:`FrameStorage` holds each frame once (7.06 GB) and gives back the same
``(obs_tm1, action_tm1, reward_t, discount_t, obs_t)`` as ``NStepAccumulator`` + ``TransitionStorage`` fed the
same steps, bit for bit, so the agent and the loss cannot tell the two apart.

Layout (one row = one frame):

    env e owns rows [e * C, (e + 1) * C), C = capacity // n_envs, a circular sequence of its frames.
    An episode s_0 --a_0, r_1--> s_1 ... --a_{L-1}, r_L--> s_L (s_L: the true final observation) occupies
    stack + L consecutive rows:

        | s_0[0] ... s_0[stack-2] | s_0[-1]       | s_1[-1]       | ... | s_{L-1}[-1]       | s_L[-1] |
        |   earlier frames of s_0 | a_0 r_1 flags | a_1 r_2 flags | ... | a_{L-1} r_L flags | (none)  |

    so the stacked observation s_j is the ``stack`` rows ending at the row of s_j, and the row of s_j also holds
    the step taken from it (action, reward, terminated/truncated flags).

Design decisions:
- Stacks are rebuilt from consecutive rows. Each episode begins with its first stacked observation written in
  full, so a stack never reaches into another episode's rows and needs no boundary masking, and the start-of-
  episode padding is exactly what the env produced (FrameStackObservation's zeros or repeats, or anything else).
- ``add`` takes the same arguments as ``ReplayBuffer.add`` (leading env axis, observations of shape
  (n_envs, stack, *frame_shape)) and writes only the newest frame of obs_t per step, plus all of obs_tm1 when
  an episode starts. That relies on sliding frame stacks (obs_t[:-1] == obs_tm1[1:]) and on SAME_STEP autoreset
  (the next obs_tm1 is obs_t, except after an episode end, where obs_t is the true final observation and the
  next obs_tm1 starts a new episode). ``check=True`` (the default; ~2 memcmp of one stack per env and step)
  verifies both and raises ValueError instead of storing wrong stacks.
- ``capacity`` counts frames, split evenly across envs (envs step together; contiguous per-env rings keep every
  row id stable: row = env * C + position). Rows beyond n_envs * C (capacity not divisible) are unused. An
  episode of L steps costs stack + L rows, so the storage holds slightly fewer than ``capacity`` transitions
  (``stack`` rows per episode: < 1% for Atari episodes).
- n-step returns are computed when sampling, from the stored rewards, with the accumulator's arithmetic:
  reward_t = sum_{i<k} gamma^i r_{i+1} in float64 (rewards are stored as float64, gamma^i as Python computes it),
  discount_t = 0 if the window ends in a termination, else gamma^k; k = n, or fewer when the episode ends
  (terminated or truncated) inside the window; obs_t is the stack k rows later (the true final observation
  when the episode ended). Both then cast to float32, as the accumulator does.
- A row is a *valid* transition (sampleable) from the ``add`` at which NStepAccumulator would have emitted it
  (its window is full, or its episode ended) until the oldest frame of its obs_tm1 stack is overwritten: the
  ring overwrites oldest first, and that frame is the oldest one the transition reads. Padding rows, final-
  observation rows, starts whose window is still open (or was dropped by ``reset``) are never valid. ``valid``
  is a bool array over rows; ``size`` counts its True entries; ``valid_indices()`` lists them.
- ``add`` returns :class:`AddResult` (added, removed), disjoint: ``added`` are the rows that became valid, in the
  accumulator's emission order (env 0 first, oldest start first); ``removed`` are rows that were valid before
  this add and are not after. A row reused within one add (old transition dropped, new one written) is only in
  ``added``.
- Prioritized replay: priorities are keyed by row (``n_rows`` leaves). A removed row must get priority 0, an
  added one the max priority (``PrioritizedSampler.on_add``); the sampler's ``size`` argument is ``n_rows``
  (invalid rows carry 0 mass, so they are never drawn; the N of w_i = (N P_i)^-beta cancels in the batch-max
  normalisation). ``qzoo.replay.ReplayBuffer`` wires this up for both storages.
- Uniform sampling (``sample_uniform``) draws rows uniformly among the written rows and rejects invalid ones:
  i.i.d. uniform over valid rows at almost no cost, since nearly all written rows are valid (an exact draw over
  ``valid_indices()`` is the fallback when few are).
- Each env's ring must hold a whole transition (C >= stack + n_step), so a window never outlives its first frame.
- Memory: the frames (n_rows * prod(frame_shape) bytes for uint8) plus 14 bytes per row: action int32, reward
  float64, flags uint8, valid bool. ``nbytes`` reports the total.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

TERMINATED, TRUNCATED, HAS_STEP = 1, 2, 4  # bits of ``flags``; HAS_STEP: the row holds a step (action, reward)
ENDED = TERMINATED | TRUNCATED


class AddResult(NamedTuple):
    added: np.ndarray  # int64 rows that became valid transitions (give them max priority)
    removed: np.ndarray  # int64 rows that stopped being valid (give them priority 0)


class FrameStorage:
    def __init__(self, capacity: int, frame_shape: tuple = (84, 84), stack: int = 4, n_envs: int = 1,
                 n_step: int = 1, gamma: float = 0.99, dtype=np.uint8, check: bool = True):
        if stack < 1 or n_step < 1 or n_envs < 1:
            raise ValueError(f"stack, n_step and n_envs must be >= 1, got {stack}, {n_step}, {n_envs}")
        if capacity // n_envs < stack + n_step:
            raise ValueError(f"capacity {capacity} is too small: each of the {n_envs} envs needs at least "
                             f"stack + n_step = {stack + n_step} frames")
        self.frame_shape = tuple(frame_shape)
        self.stack, self.n_envs, self.n_step, self.gamma = stack, n_envs, n_step, gamma
        self.check = check
        self.env_capacity = capacity // n_envs  # C: rows per env
        self.n_rows = self.env_capacity * n_envs
        self.frames = np.zeros((self.n_rows, *self.frame_shape), dtype)
        self.action = np.zeros(self.n_rows, np.int32)
        self.reward = np.zeros(self.n_rows, np.float64)
        self.flags = np.zeros(self.n_rows, np.uint8)
        self.valid = np.zeros(self.n_rows, bool)
        self.size = 0  # number of valid rows
        self.written = np.zeros(n_envs, np.int64)  # frames written so far per env (absolute positions)
        self.episode_start = np.full(n_envs, -1, np.int64)  # absolute row of s_0 of the open episode; -1: none
        self.gamma_pow = np.array([gamma**i for i in range(n_step + 1)], np.float64)  # as the accumulator's
        self._offsets = np.arange(1 - stack, 1)  # a stack: the rows [row - stack + 1, row]

    @property
    def max_rows(self) -> int:
        """Rows it can ever hold (every row may hold a transition): a prioritized sampler's tree size."""
        return self.n_rows

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.frames, self.action, self.reward, self.flags, self.valid))

    def reset(self) -> None:
        """Drop the open episodes (e.g. after the envs were reset by hand): their pending starts never become
        valid, and each env's next ``add`` starts a new episode."""
        self.episode_start[:] = -1

    def state_dict(self) -> dict:
        """The frames each env has written (a view of the filled part of each ring), the per-row step data and
        the write positions."""
        held = np.minimum(self.written, self.env_capacity)
        C = self.env_capacity
        return {"frames": {str(e): self.frames[e * C:e * C + held[e]] for e in range(self.n_envs)},
                "action": self.action, "reward": self.reward, "flags": self.flags, "valid": self.valid,
                "size": self.size, "written": self.written, "episode_start": self.episode_start}

    def load_state_dict(self, state: dict) -> None:
        if len(state["valid"]) != self.n_rows or len(state["written"]) != self.n_envs:
            raise ValueError(f"frame replay of {len(state['valid'])} rows / {len(state['written'])} envs does not "
                             f"fit {self.n_rows} rows / {self.n_envs} envs")
        C = self.env_capacity
        for e in range(self.n_envs):
            frames = state["frames"][str(e)]
            self.frames[e * C:e * C + len(frames)] = frames
        for name in ("action", "reward", "flags", "valid", "written", "episode_start"):
            getattr(self, name)[:] = state[name]
        self.size = int(state["size"])

    def valid_indices(self) -> np.ndarray:
        return np.flatnonzero(self.valid)

    # ---- writing --------------------------------------------------------------------------------------------
    def add(self, obs_tm1, action_tm1, reward_t, obs_t, terminated_t, truncated_t) -> AddResult:
        """One step per env (leading axis = env), as ``ReplayBuffer.add``; obs_t is the true next observation."""
        obs_tm1, obs_t = np.asarray(obs_tm1), np.asarray(obs_t)
        shape = (self.n_envs, self.stack, *self.frame_shape)
        if obs_tm1.shape != shape or obs_t.shape != shape:
            raise ValueError(f"observations must have shape {shape}, got {obs_tm1.shape} and {obs_t.shape}")
        action_tm1, reward_t = np.asarray(action_tm1), np.asarray(reward_t)
        terminated, truncated = np.asarray(terminated_t, bool), np.asarray(truncated_t, bool)
        if self.check:  # before writing anything, so a refused step leaves the storage as it was
            self._check_layout(obs_tm1, obs_t)
        added: list[int] = []
        removed: list[int] = []
        C, base_rows = self.env_capacity, np.arange(self.n_envs) * self.env_capacity
        for e in range(self.n_envs):
            base = base_rows[e]
            if self.episode_start[e] < 0:  # a new episode: write its first stack in full
                for frame in obs_tm1[e]:
                    self._write(e, frame, removed)
                self.episode_start[e] = self.written[e] - 1
            cur = self.written[e] - 1  # absolute row of obs_tm1: it takes this step
            row = base + cur % C
            self.action[row] = action_tm1[e]
            self.reward[row] = reward_t[e]
            ended = bool(terminated[e] or truncated[e])
            self.flags[row] = HAS_STEP | (TERMINATED * bool(terminated[e])) | (TRUNCATED * bool(truncated[e]))
            self._write(e, obs_t[e, -1], removed)
            # the starts whose window closes now: all pending ones at an episode end, else the one n steps back
            oldest = cur - self.n_step + 1  # the start whose window this step fills
            if ended:
                starts = range(max(self.episode_start[e], oldest), cur + 1)
                self.episode_start[e] = -1
            else:
                starts = (oldest,) if oldest >= self.episode_start[e] else ()
            for a in starts:
                r = base + a % C
                if not self.valid[r]:
                    self.valid[r] = True
                    self.size += 1
                added.append(r)
        added_rows = np.asarray(added, np.int64)
        removed_rows = np.asarray(removed, np.int64)
        if len(removed_rows):
            removed_rows = removed_rows[~self.valid[removed_rows]]
        return AddResult(added_rows, removed_rows)

    def _check_layout(self, obs_tm1: np.ndarray, obs_t: np.ndarray) -> None:
        """Stacks must slide (obs_t[:-1] == obs_tm1[1:]), and within an episode obs_tm1 must be the stored stack
        of the previous obs_t. Compared as bytes: a memcmp, ~1 us per stack."""
        if obs_t[:, :-1].tobytes() != obs_tm1[:, 1:].tobytes():
            raise ValueError("obs_t is not obs_tm1 shifted by one frame: FrameStorage needs sliding frame stacks")
        for e in np.flatnonzero(self.episode_start >= 0):
            if self._stack_at(e, self.written[e] - 1).tobytes() != obs_tm1[e].tobytes():
                raise ValueError(f"obs_tm1 of env {e} is not the previous step's obs_t: FrameStorage needs "
                                 "SAME_STEP autoreset and the true final observation as obs_t")

    def _stack_at(self, e: int, position: int) -> np.ndarray:
        """The stack ending at env ``e``'s absolute row ``position``: a slice when it does not wrap."""
        C, pos = self.env_capacity, position % self.env_capacity
        if pos >= self.stack - 1:
            return self.frames[e * C + pos - self.stack + 1:e * C + pos + 1]
        return self.frames[e * C + (pos + self._offsets) % C]

    def _write(self, e: int, frame: np.ndarray, removed: list[int]) -> None:
        """Write env ``e``'s next frame. Overwriting absolute row w - C drops the start whose stack begins there:
        w - C + stack - 1 (older starts were dropped by earlier writes; none is younger than stack - 1)."""
        C, w, base = self.env_capacity, int(self.written[e]), e * self.env_capacity
        if w >= C:
            r = base + (w - C + self.stack - 1) % C
            if self.valid[r]:
                self.valid[r] = False
                self.size -= 1
                removed.append(r)
        row = base + w % C
        self.frames[row] = frame
        self.flags[row] = 0  # no step until the next add fills it in
        self.written[e] = w + 1

    # ---- reading --------------------------------------------------------------------------------------------
    def get(self, rows: np.ndarray):
        """(obs_tm1, action_tm1, reward_t, discount_t, obs_t) of valid ``rows``, as TransitionStorage.get."""
        rows = np.asarray(rows, np.int64)
        C = self.env_capacity
        base, pos = rows - rows % C, rows % C
        obs_tm1 = self.frames[base[:, None] + (pos[:, None] + self._offsets) % C]
        reward = np.zeros(len(rows), np.float64)
        k = np.full(len(rows), self.n_step, np.int64)
        terminated = np.zeros(len(rows), bool)
        done = np.zeros(len(rows), bool)
        for i in range(self.n_step):  # stop at the first step that ends the episode
            r = base + (pos + i) % C
            live = ~done
            reward += np.where(live, self.gamma_pow[i] * self.reward[r], 0.0)
            flags = self.flags[r]
            ends = live & (flags & ENDED != 0)
            k[ends] = i + 1
            terminated |= ends & (flags & TERMINATED != 0)
            done |= ends
        discount = np.where(terminated, 0.0, self.gamma_pow[k])
        obs_t = self.frames[base[:, None] + (pos[:, None] + k[:, None] + self._offsets) % C]
        return (obs_tm1, self.action[rows].astype(np.int64), reward.astype(np.float32),
                discount.astype(np.float32), obs_t)

    def sample_uniform(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` valid rows, i.i.d. uniform (with replacement)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer (no complete transition yet)")
        held = np.minimum(self.written, self.env_capacity)  # rows written per env: [0, held) of its ring
        ends = np.cumsum(held)
        out = np.empty(batch_size, np.int64)
        filled = 0
        for _ in range(8):  # rejection sampling over the written rows
            need = batch_size - filled
            u = rng.integers(0, ends[-1], 2 * need + 8)
            env = np.searchsorted(ends, u, side="right")
            rows = env * self.env_capacity + u - (ends[env] - held[env])
            rows = rows[self.valid[rows]][:need]
            out[filled:filled + len(rows)] = rows
            filled += len(rows)
            if filled == batch_size:
                return out
        out[filled:] = rng.choice(self.valid_indices(), batch_size - filled)  # few rows valid: draw exactly
        return out
