import numpy as np
import pytest

from qzoo.replay import ReplayBuffer
from qzoo.replay.samplers import UniformSampler
from qzoo.replay.storage import TransitionStorage


def make(capacity=5, gamma=0.9, n_envs=1):
    return ReplayBuffer(TransitionStorage(capacity, (2,), gamma=gamma, n_envs=n_envs), UniformSampler(), seed=0)


def add_one(buf, k, terminated=False, truncated=False):
    buf.add(np.full((1, 2), k, np.float32), np.array([k % 3]), np.array([float(k)]),
            np.full((1, 2), k + 0.5, np.float32), np.array([terminated]), np.array([truncated]))


def test_wrap_around_overwrites_oldest_first():
    buf = make(capacity=5)
    for k in range(7):
        add_one(buf, k)
    s = buf.storage
    assert len(buf) == 5 and s.pos == 2
    # rows 0,1 were overwritten by transitions 5,6; rows 2..4 still hold 2..4
    assert s.reward_t.tolist() == [5.0, 6.0, 2.0, 3.0, 4.0]
    assert s.obs_tm1[:, 0].tolist() == [5, 6, 2, 3, 4]
    assert s.obs_t[:, 0].tolist() == [5.5, 6.5, 2.5, 3.5, 4.5]


def test_batched_add_across_the_end():
    buf = make(capacity=4, n_envs=3)
    buf.storage.write(np.zeros((3, 2)), np.zeros(3), np.array([0.0, 1.0, 2.0]), np.zeros(3), np.zeros((3, 2)))
    # three envs at once: rows 3, 0, 1
    buf.add(np.arange(6, dtype=np.float32).reshape(3, 2), np.array([0, 1, 2]), np.array([10.0, 11.0, 12.0]),
            np.zeros((3, 2), np.float32), np.array([False, True, False]), np.zeros(3, bool))
    assert buf.storage.reward_t.tolist() == [11.0, 12.0, 2.0, 10.0]
    assert buf.storage.pos == 2 and len(buf) == 4


def test_discount_is_gamma_unless_terminated():
    buf = make(gamma=0.9)
    add_one(buf, 0, terminated=False)
    add_one(buf, 1, terminated=True)
    add_one(buf, 2, truncated=True)  # a time limit still bootstraps
    assert buf.storage.discount_t[:3].tolist() == pytest.approx([0.9, 0.0, 0.9])


def test_sampling_only_from_filled_rows_and_weights_are_one():
    buf = make(capacity=100)
    for k in range(10):
        add_one(buf, k)
    batch = buf.sample(1000)
    assert batch.indices.min() >= 0 and batch.indices.max() <= 9
    assert set(batch.indices.tolist()) == set(range(10))  # every filled row reachable
    assert batch.weights is None  # uniform: no importance weighting
    # rows are consistent: reward k sits with obs k
    np.testing.assert_array_equal(batch.obs_tm1[:, 0], batch.reward_t)


def test_sampling_an_empty_buffer_is_an_error():
    with pytest.raises(ValueError):
        make().sample(4)


def test_make_replay_stores_atari_frames_once_and_flat_observations_as_transitions():
    import gymnasium as gym

    from qzoo.replay import make_replay
    from qzoo.replay.frames import FrameStorage
    from qzoo.resolve import resolve

    atari = resolve("ALE/Pong-v5", sets=["buffer_size=1000", "n_step=3"])
    frames = make_replay(atari, gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    assert isinstance(frames.storage, FrameStorage) and frames.storage.nbytes < 1.05 * 1000 * 84 * 84 + 1024
    flat = make_replay(resolve("CartPole-v1"), gym.spaces.Box(-1, 1, (4,), np.float32))
    assert isinstance(flat.storage, TransitionStorage)


def test_both_storages_and_both_samplers_fill_the_declared_seams():
    """Storage and Sampler are typing Protocols: both storages and both samplers have every member, a
    prioritized sampler's tree covers every row its storage can hold (flat: capacity; frames: every env's rows,
    the buffer size rounded down to a multiple of n_envs), and the buffer answers uses_priorities itself."""
    import gymnasium as gym

    from qzoo.replay import make_replay
    from qzoo.replay.frames import FrameStorage
    from qzoo.replay.samplers import PrioritizedSampler, Sampler
    from qzoo.replay.storage import Storage
    from qzoo.resolve import resolve

    assert isinstance(TransitionStorage(10, (2,)), Storage) and isinstance(FrameStorage(20, (4, 4), 2), Storage)
    assert isinstance(UniformSampler(), Sampler) and isinstance(PrioritizedSampler(8, 0.5, lambda s: 0.4), Sampler)
    assert not isinstance(object(), Storage) and not isinstance(TransitionStorage(10, (2,)), Sampler)
    frames = make_replay(resolve("ALE/Pong-v5", algo="der", sets=["buffer_size=1001", "n_envs=2"]),
                         gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    flat = make_replay(resolve("CartPole-v1", sets=["buffer_size=37", "batch_size=8", "prioritized=true"]),
                       gym.spaces.Box(-1, 1, (4,), np.float32))
    assert frames.storage.max_rows == 1000 and flat.storage.max_rows == 37
    assert [r.sampler.tree.capacity for r in (frames, flat)] == [1000, 37]
    assert frames.uses_priorities and flat.uses_priorities and not make().uses_priorities
