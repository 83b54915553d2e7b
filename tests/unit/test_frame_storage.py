"""FrameStorage (each frame stored once) against the naive reference, NStepAccumulator + TransitionStorage fed the
same full stacked observations, on random episodes with terminations, truncations and wrap-around."""

import numpy as np
import pytest

from qzoo.replay import ReplayBuffer
from qzoo.replay.frames import FrameStorage
from qzoo.replay.nstep import NStepAccumulator
from qzoo.replay.samplers import PrioritizedSampler, UniformSampler
from qzoo.replay.storage import TransitionStorage

FRAME = (3, 4)  # tiny frames: the storage does not care about their shape


class StackedEnvs:
    """``n_envs`` envs emitting frame stacks as FrameStackObservation does under SAME_STEP autoreset: each
    observation is a sliding window over the env's frames; a new episode's first stack is padded with zeros,
    repeats of its first frame, or arbitrary frames; episodes end by termination, truncation or both.
    ``tag_frames``: every frame (padding included) is filled with its episode's number instead of noise."""

    def __init__(self, rng, n_envs, stack, max_len=12, tag_frames=False):
        self.rng, self.n_envs, self.stack, self.max_len, self.tag_frames = rng, n_envs, stack, max_len, tag_frames
        self.episodes = 0
        self.tags = np.zeros(n_envs, np.int64)
        self.left = np.zeros(n_envs, np.int64)  # steps left in each env's episode
        self.obs = np.stack([self._first_stack(e) for e in range(n_envs)])

    def _frame(self, e):
        if self.tag_frames:
            return np.full(FRAME, self.tags[e] % 256, np.uint8)
        return self.rng.integers(0, 256, FRAME, dtype=np.uint8)

    def _first_stack(self, e):
        self.episodes += 1
        self.tags[e] = self.episodes
        self.left[e] = self.rng.integers(1, self.max_len + 1)
        first = self._frame(e)
        padding = self.rng.integers(3) if not self.tag_frames else 2
        pad = [np.zeros(FRAME, np.uint8), first, None][padding]
        earlier = [pad if pad is not None else self._frame(e) for _ in range(self.stack - 1)]
        return np.stack([*earlier, first])

    def step(self):
        """One vector step: (obs_tm1, action_tm1, reward_t, true obs_t, terminated_t, truncated_t)."""
        obs_tm1 = self.obs
        action = self.rng.integers(0, 6, self.n_envs)
        reward = self.rng.normal(size=self.n_envs)  # float64, as gymnasium's vector envs give it
        new = np.stack([self._frame(e) for e in range(self.n_envs)])
        obs_t = np.concatenate([obs_tm1[:, 1:], new[:, None]], axis=1)
        self.left -= 1
        ended = self.left == 0
        kind = self.rng.integers(0, 5, self.n_envs)  # how an episode ends: 0-1 terminated, 2-3 truncated, 4 both
        terminated, truncated = ended & ((kind < 2) | (kind == 4)), ended & (kind >= 2)
        self.obs = obs_t.copy()
        for e in np.flatnonzero(ended):
            self.obs[e] = self._first_stack(e)  # autoreset: next obs_tm1 is the new episode's first stack
        return obs_tm1, action, reward, obs_t, terminated, truncated


def assert_transitions_equal(got, expected):
    for name, g, x in zip(("obs_tm1", "action_tm1", "reward_t", "discount_t", "obs_t"), got, expected, strict=True):
        assert g.dtype == x.dtype, name
        np.testing.assert_array_equal(g, x, err_msg=name)


class LayoutModel:
    """The documented frame layout, kept independently of the storage: an episode of L steps writes its first
    stack (``stack`` frames), then one frame per step; a transition stays valid while the first frame of its
    obs_tm1 is among the last C frames of its env. Also mirrors the accumulator's emission order."""

    def __init__(self, n_envs, stack, n_step, env_capacity):
        self.stack, self.n, self.C = stack, n_step, env_capacity
        self.written = [0] * n_envs
        self.pending = [[] for _ in range(n_envs)]  # absolute frame positions of each env's open starts
        self.in_episode = [False] * n_envs

    def push(self, terminated, truncated):
        """Return the (env, absolute position of obs_tm1's first frame) of each transition emitted now."""
        out = []
        for e in range(len(self.written)):
            if not self.in_episode[e]:
                self.written[e] += self.stack
                self.in_episode[e] = True
            self.pending[e].append(self.written[e] - 1)
            self.written[e] += 1  # obs_t's newest frame
            if terminated[e] or truncated[e]:
                out += [(e, p - self.stack + 1) for p in self.pending[e]]
                self.pending[e], self.in_episode[e] = [], False
            elif len(self.pending[e]) == self.n:
                out.append((e, self.pending[e].pop(0) - self.stack + 1))
        return out

    def alive(self, e, first_frame):
        return first_frame >= self.written[e] - self.C


@pytest.mark.parametrize("n_envs, n_step, stack", [(1, 1, 4), (1, 3, 4), (3, 1, 4), (3, 3, 4), (2, 2, 1)])
def test_matches_the_naive_reference_through_wrap_around(n_envs, n_step, stack):
    rng = np.random.default_rng(100 * n_envs + 10 * n_step + stack)
    gamma, steps, env_capacity = 0.9, 250, 37  # each env's ring wraps several times
    envs = StackedEnvs(rng, n_envs, stack)
    storage = FrameStorage(n_envs * env_capacity + (n_envs > 1), FRAME, stack, n_envs, n_step, gamma)
    assert storage.env_capacity == env_capacity  # the leftover row of an indivisible capacity is unused
    accumulator = NStepAccumulator(n_step, gamma, n_envs)
    reference_storage = TransitionStorage(steps * n_envs, (stack, *FRAME), np.uint8)  # never wraps: keeps all
    model = LayoutModel(n_envs, stack, n_step, env_capacity)
    alive = {}  # valid row -> (env, position of its obs_tm1's first frame, its row in reference_storage)
    held = []  # (env, first frame position, row) of every emitted transition whose frames the model says are held
    removed_total = 0
    for t in range(steps):
        obs_tm1, action, reward, obs_t, terminated, truncated = envs.step()
        reference = accumulator.push(obs_tm1, action, reward, obs_t, terminated, truncated)
        added, removed = storage.add(obs_tm1, action, reward, obs_t, terminated, truncated)
        emitted = model.push(terminated, truncated)
        # the same transitions become valid at the same step, in the same order, with identical contents
        assert len(added) == len(reference.action_tm1) == len(emitted)
        assert_transitions_equal(storage.get(added), reference)
        assert not set(added) & set(removed)
        for row in removed:
            assert alive.pop(int(row), None) is not None, "removed a row that was not valid"
        removed_total += len(removed)
        reference_rows = reference_storage.write(*reference) if len(added) else []
        for row, (e, first), reference_row in zip(added, emitted, reference_rows, strict=True):
            assert row // env_capacity == e
            alive[int(row)] = (e, first, reference_row)
            held.append((e, first, int(row)))
        # exactly the transitions whose frames are all still held are valid, and they still read the same
        held = [(e, first, row) for e, first, row in held if model.alive(e, first)]
        assert sorted(row for _, _, row in held) == sorted(alive), \
            f"step {t}: a transition outlived its frames, or was dropped too early"
        np.testing.assert_array_equal(storage.valid_indices(), sorted(alive))
        assert storage.size == len(alive)
        if t % 25 == 24:
            rows = np.array(sorted(alive))
            assert_transitions_equal(storage.get(rows), reference_storage.get(np.array([alive[r][2] for r in rows])))
    assert removed_total > 0 and storage.size > 0


def test_episode_boundaries_are_never_mixed():
    rng = np.random.default_rng(0)
    envs = StackedEnvs(rng, n_envs=2, stack=4, max_len=5, tag_frames=True)  # frames carry their episode number
    storage = FrameStorage(2 * 30, FRAME, stack=4, n_envs=2, n_step=3, gamma=0.99)
    for _ in range(120):
        storage.add(*envs.step())
    obs_tm1, _, _, _, obs_t = storage.get(storage.sample_uniform(512, rng))
    tags = obs_tm1[:, :, 0, 0]
    assert np.all(tags == tags[:, :1]) and np.all(obs_t[:, :, 0, 0] == tags[:, :1])


def test_n_step_windows_cut_by_truncation_and_termination_by_hand():
    # stack 2, frames are the numbers 1, 2, ...; one env; n = 3, gamma 0.5
    storage = FrameStorage(40, (1,), stack=2, n_envs=1, n_step=3, gamma=0.5)

    def obs(a, b):
        return np.array([[[a], [b]]], np.uint8)

    def step(k, reward, terminated=False, truncated=False, first=None):
        """s = (first or k-1, k) --a=k--> (k, k+1)"""
        return storage.add(obs(k - 1 if first is None else first, k), [k], [reward], obs(k, k + 1), [terminated],
                           [truncated])

    assert len(step(1, 1.0, first=0).added) == 0  # episode 1 starts with padding frame 0
    assert len(step(2, 2.0, truncated=True).added) == 2  # truncated after 2 steps: both windows flush
    assert len(step(11, 4.0, first=11).added) == 0  # episode 2 starts with its frame repeated as padding
    assert len(step(12, 8.0).added) == 0
    added = step(13, 16.0, terminated=True).added
    obs_tm1, action, reward, discount, obs_t = storage.get(storage.valid_indices())
    np.testing.assert_array_equal(obs_tm1[:, :, 0], [[0, 1], [1, 2], [11, 11], [11, 12], [12, 13]])
    np.testing.assert_array_equal(action, [1, 2, 11, 12, 13])
    np.testing.assert_allclose(reward, [1 + 0.5 * 2, 2, 4 + 0.5 * 8 + 0.25 * 16, 8 + 0.5 * 16, 16])
    np.testing.assert_allclose(discount, [0.25, 0.5, 0, 0, 0])  # truncation bootstraps with gamma^k
    np.testing.assert_array_equal(obs_t[:, :, 0], [[2, 3], [2, 3], [13, 14], [13, 14], [13, 14]])
    assert len(added) == 3 and storage.size == 5


def test_uniform_sampling_draws_only_valid_rows_uniformly():
    rng = np.random.default_rng(1)
    envs = StackedEnvs(rng, n_envs=3, stack=4, max_len=8)
    storage = FrameStorage(3 * 25, FRAME, stack=4, n_envs=3, n_step=2)
    with pytest.raises(ValueError, match="empty"):
        storage.sample_uniform(4, rng)
    for _ in range(60):
        storage.add(*envs.step())
    valid = storage.valid_indices()
    assert 0 < len(valid) < storage.n_rows  # padding / final-obs rows exist and are never drawn
    draws = storage.sample_uniform(20_000, rng)
    assert set(draws) == set(valid)
    counts = np.bincount(draws, minlength=storage.n_rows)[valid]
    expected = len(draws) / len(valid)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_prioritized_replay_never_draws_an_invalid_row():
    rng = np.random.default_rng(2)
    envs = StackedEnvs(rng, n_envs=2, stack=4, max_len=10)
    storage = FrameStorage(2 * 30, FRAME, stack=4, n_envs=2, n_step=3, gamma=0.9)
    sampler = PrioritizedSampler(storage.n_rows, alpha=0.6, beta_schedule=lambda step: 0.4)
    buffer = ReplayBuffer(storage, sampler, seed=3)
    for t in range(150):
        buffer.add(*envs.step())
        priorities = sampler.tree[np.arange(storage.n_rows)]
        np.testing.assert_array_equal(priorities > 0, storage.valid)  # invalid rows hold priority 0
        if len(buffer) and t % 5 == 0:
            batch = buffer.sample(16, t)
            assert storage.valid[batch.indices].all() and batch.weights.max() == 1.0
            assert batch.obs_tm1.shape == (16, 4, *FRAME) and batch.discount_t.dtype == np.float32
            buffer.update_priorities(batch.indices, rng.normal(size=16))
    uniform = ReplayBuffer(storage, UniformSampler())
    batch = uniform.sample(8)
    assert batch.weights is None and storage.valid[batch.indices].all()


def test_inputs_that_break_the_frame_layout_are_refused():
    storage = FrameStorage(20, FRAME, stack=2, n_envs=1)
    a, b, c, d = (np.full((1, *FRAME), v, np.uint8) for v in (1, 2, 3, 4))
    storage.add(np.stack([a, b], 1), [0], [0.0], np.stack([b, c], 1), [False], [False])
    before = storage.frames.copy(), storage.written.copy()
    with pytest.raises(ValueError, match="previous step's obs_t"):  # not the obs_t just stored
        storage.add(np.stack([b, d], 1), [0], [0.0], np.stack([d, a], 1), [False], [False])
    np.testing.assert_array_equal(storage.frames, before[0])  # a refused step writes nothing
    np.testing.assert_array_equal(storage.written, before[1])
    with pytest.raises(ValueError, match="sliding"):
        storage.add(np.stack([b, c], 1), [0], [0.0], np.stack([a, d], 1), [False], [False])
    with pytest.raises(ValueError, match="too small"):
        FrameStorage(9, FRAME, stack=4, n_envs=2, n_step=1)


def test_memory_is_one_frame_per_row_plus_a_few_bytes():
    frame_bytes = 84 * 84
    for capacity, n_envs in [(1000, 1), (3000, 3), (1001, 4)]:
        storage = FrameStorage(capacity, (84, 84), stack=4, n_envs=n_envs, n_step=3)
        assert storage.frames.nbytes == storage.n_rows * frame_bytes
        assert storage.nbytes <= 1.05 * capacity * frame_bytes + 1024
        assert storage.nbytes <= storage.n_rows * (frame_bytes + 16)
