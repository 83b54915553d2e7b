"""n-step accumulation on hand-written episodes. Observation k is [k] (env e: [100 e + k]), action k is k."""

import numpy as np
import pytest

from qzoo.replay.nstep import NStepAccumulator
from qzoo.replay.storage import TransitionStorage


def step1(acc, k, reward, terminated=False, truncated=False):
    """One env: the step s_k --a=k, r--> s_{k+1}."""
    return acc.push(np.array([[k]], np.float32), np.array([k]), np.array([reward]), np.array([[k + 1]], np.float32),
                    np.array([terminated]), np.array([truncated]))


def rows(out):
    """(obs_tm1, action, reward, discount, obs_t) per transition, as plain floats."""
    return [(float(o[0]), int(a), float(r), float(d), float(n[0])) for o, a, r, d, n in zip(*out, strict=True)]


def approx_rows(expected):
    return [pytest.approx(row) for row in expected]


def run_episode(end):
    acc = NStepAccumulator(n=3, gamma=0.5, n_envs=1)
    got = []
    for k, r in enumerate([1.0, 2.0, 4.0, 8.0]):
        got.append(rows(step1(acc, k, r)))
    got.append(rows(step1(acc, 4, 16.0, terminated=end == "terminated", truncated=end == "truncated")))
    return got


def test_terminated_episode_flushes_with_discount_zero():
    got = run_episode("terminated")
    assert got[0] == [] and got[1] == []
    # s0: 1 + 0.5*2 + 0.25*4 = 3, discount 0.5^3 = 0.125, next obs s3
    assert got[2] == approx_rows([(0, 0, 3.0, 0.125, 3)])
    # s1: 2 + 0.5*4 + 0.25*8 = 6
    assert got[3] == approx_rows([(1, 1, 6.0, 0.125, 4)])
    # termination after s4: s2: 4 + 0.5*8 + 0.25*16 = 12 ; s3: 8 + 0.5*16 = 16 ; s4: 16 ; all discount 0, next obs s5
    assert got[4] == approx_rows([(2, 2, 12.0, 0.0, 5), (3, 3, 16.0, 0.0, 5), (4, 4, 16.0, 0.0, 5)])


def test_truncated_episode_bootstraps_with_gamma_to_the_k():
    got = run_episode("truncated")
    assert got[2] == approx_rows([(0, 0, 3.0, 0.125, 3)])
    # same rewards, but the shorter windows bootstrap from the true final obs s5: 0.5^3, 0.5^2, 0.5^1
    assert got[4] == approx_rows([(2, 2, 12.0, 0.125, 5), (3, 3, 16.0, 0.25, 5), (4, 4, 16.0, 0.5, 5)])


def test_episode_shorter_than_n_and_the_next_episode_starts_fresh():
    acc = NStepAccumulator(n=5, gamma=0.9, n_envs=1)
    assert rows(step1(acc, 0, 1.0)) == []
    # termination at the 2nd step: s0: 1 + 0.9*2 = 2.8 ; s1: 2
    assert rows(step1(acc, 1, 2.0, terminated=True)) == approx_rows([(0, 0, 2.8, 0.0, 2), (1, 1, 2.0, 0.0, 2)])
    # new episode: nothing from the old one remains, so 4 steps emit nothing and the 5th emits its first window
    for k in range(10, 14):
        assert rows(step1(acc, k, 1.0)) == []
    # 1 + 0.9 + 0.81 + 0.729 + 0.6561 = 4.0951, discount 0.9^5 = 0.59049
    assert rows(step1(acc, 14, 1.0)) == approx_rows([(10, 10, 4.0951, 0.59049, 15)])


def test_three_envs_end_at_different_times():
    acc = NStepAccumulator(n=2, gamma=0.9, n_envs=3)

    def push(k, rewards, terminated, truncated):
        obs = np.array([[100 * e + k] for e in range(3)], np.float32)
        return rows(acc.push(obs, np.full(3, k), np.array(rewards), obs + 1, np.array(terminated),
                             np.array(truncated)))

    # step 0: env 2 truncates after one step: 100, discount 0.9^1, next obs 201
    assert push(0, [1.0, 10.0, 100.0], [False, False, False], [False, False, True]) == approx_rows(
        [(200, 0, 100.0, 0.9, 201)])
    # step 1: env 0 fills its window from s0: 1 + 0.9*2 = 2.8, discount 0.81, next obs 2;
    # env 1 terminates: from s100: 10 + 0.9*20 = 28, from s101: 20, both discount 0 and next obs 102;
    # env 2 started a new episode: pending
    assert push(1, [2.0, 20.0, 200.0], [False, True, False], [False, False, False]) == approx_rows(
        [(0, 0, 2.8, 0.81, 2), (100, 0, 28.0, 0.0, 102), (101, 1, 20.0, 0.0, 102)])
    # step 2: env 0 from s1: 2 + 0.9*3 = 4.7; env 1's new episode is pending; env 2 from s201: 200 + 0.9*300 = 470
    assert push(2, [3.0, 30.0, 300.0], [False, False, False], [False, False, False]) == approx_rows(
        [(1, 1, 4.7, 0.81, 3), (201, 1, 470.0, 0.81, 203)])


def test_n1_reproduces_plain_transitions_in_storage():
    gamma, n_envs = 0.99, 2
    acc = NStepAccumulator(n=1, gamma=gamma, n_envs=n_envs)
    plain = TransitionStorage(64, (3,))  # 1-step rows written by hand: discount = gamma * (1 - terminated)
    via_acc = TransitionStorage(64, (3,))
    rng = np.random.default_rng(0)
    for _ in range(40):
        obs_tm1 = rng.normal(size=(n_envs, 3)).astype(np.float32)
        obs_t = rng.normal(size=(n_envs, 3)).astype(np.float32)
        action, reward = rng.integers(0, 4, n_envs), rng.normal(size=n_envs).astype(np.float32)
        terminated, truncated = rng.random(n_envs) < 0.2, rng.random(n_envs) < 0.2
        plain.write(obs_tm1, action, reward, gamma * (1.0 - terminated), obs_t)
        via_acc.write(*acc.push(obs_tm1, action, reward, obs_t, terminated, truncated))
    assert via_acc.size == plain.size == 64 and via_acc.pos == plain.pos
    for name in ["obs_tm1", "action_tm1", "reward_t", "discount_t", "obs_t"]:
        np.testing.assert_array_equal(getattr(via_acc, name), getattr(plain, name), err_msg=name)


def test_output_arrays_are_typed_and_empty_when_nothing_is_ready():
    acc = NStepAccumulator(n=3, gamma=0.9, n_envs=2)
    out = acc.push(np.zeros((2, 4, 4), np.uint8), np.zeros(2, np.int64), np.zeros(2), np.zeros((2, 4, 4), np.uint8),
                   np.zeros(2, bool), np.zeros(2, bool))
    assert out.obs_tm1.shape == (0, 4, 4) and out.obs_t.shape == (0, 4, 4) and out.obs_tm1.dtype == np.uint8
    assert out.action_tm1.shape == (0,) and out.action_tm1.dtype == np.int64
    assert out.reward_t.dtype == np.float32 and out.discount_t.dtype == np.float32
    storage = TransitionStorage(4, (4, 4), np.uint8)
    storage.write(*out)  # an empty batch goes straight into storage
    assert storage.size == 0


def test_observations_are_copied_on_push():
    acc = NStepAccumulator(n=2, gamma=0.9, n_envs=1)
    obs = np.array([[7.0]], np.float32)
    acc.push(obs, np.array([0]), np.array([1.0]), obs + 1, np.array([False]), np.array([False]))
    obs[0, 0] = -1.0  # the caller reuses its buffer
    out = step1(acc, 8, 1.0)
    assert rows(out)[0][0] == 7.0


def test_wrong_number_of_envs_is_an_error():
    acc = NStepAccumulator(n=2, gamma=0.9, n_envs=2)
    with pytest.raises(ValueError):
        step1(acc, 0, 1.0)
    with pytest.raises(ValueError):
        NStepAccumulator(n=0, gamma=0.9, n_envs=1)
