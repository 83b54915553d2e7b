"""Proportional prioritised sampling: priorities, importance weights and beta annealing on tiny buffers."""

import numpy as np
import pytest

from qzoo.replay.samplers import PrioritizedSampler
from qzoo.schedules import LinearSchedule


class MidpointRng:
    """Stands in for np.random.Generator: every uniform draw is 0.5, so stratified draws sit mid-segment."""

    def random(self, n):
        return np.full(n, 0.5)


def constant(beta):
    return lambda step: beta


def known_buffer(beta_schedule):
    # alpha = 1, eps = 1: p = |delta| + 1 = [1, 2, 3, 4]; total 10; P = [0.1, 0.2, 0.3, 0.4]
    sampler = PrioritizedSampler(8, alpha=1.0, beta_schedule=beta_schedule, eps=1.0)
    sampler.on_add(np.arange(4))
    sampler.update_priorities(np.arange(4), np.array([0.0, -1.0, 2.0, -3.0]))
    return sampler


def test_new_rows_get_the_max_priority_seen_so_far():
    sampler = PrioritizedSampler(8, alpha=0.5, beta_schedule=constant(0.4), eps=0.5)
    sampler.on_add(np.array([0, 1, 2]))
    np.testing.assert_array_equal(sampler.tree[np.arange(3)], [1.0, 1.0, 1.0])  # initial max priority 1 -> 1^0.5
    sampler.update_priorities(np.array([1]), np.array([3.5]))  # p = 3.5 + 0.5 = 4 -> tree 4^0.5 = 2
    assert sampler.max_priority == 4.0
    assert sampler.tree[np.array([1])][0] == 2.0
    sampler.update_priorities(np.array([1]), np.array([0.5]))  # p = 1 -> tree 1; the max stays 4
    assert sampler.max_priority == 4.0
    sampler.on_add(np.array([3]))
    assert sampler.tree[np.array([3])][0] == 2.0  # 4^0.5
    assert sampler.tree.total == 5.0  # 1 + 1 + 1 + 2


def test_update_priorities_uses_absolute_td_error_plus_eps():
    sampler = PrioritizedSampler(4, alpha=0.5, beta_schedule=constant(0.4), eps=0.25)
    sampler.on_add(np.arange(4))
    sampler.update_priorities(np.array([0, 2, 3]), np.array([-2.0, 0.0, 8.75]))
    # p = [2.25, 0.25, 9]: tree = sqrt = [1.5, 0.5, 3]; row 1 untouched at 1
    np.testing.assert_allclose(sampler.tree[np.arange(4)], [1.5, 1.0, 0.5, 3.0])
    assert sampler.max_priority == 9.0


def test_importance_weights_hand_computed():
    sampler = known_buffer(constant(1.0))
    # 4 segments of [0, 10): midpoints 1.25, 3.75, 6.25, 8.75; cumsum [1, 3, 6, 10] -> rows 1, 2, 3, 3
    indices, weights = sampler.sample_rows(4, 4, MidpointRng(), step=0)
    np.testing.assert_array_equal(indices, [1, 2, 3, 3])
    # beta = 1: w = 1 / (4 P) = 1/0.8, 1/1.2, 1/1.6, 1/1.6 = 1.25, 0.833, 0.625, 0.625; / max 1.25
    np.testing.assert_allclose(weights, [1.0, 2 / 3, 0.5, 0.5], rtol=1e-6)
    assert weights.dtype == np.float32

    sampler.beta_schedule = constant(0.5)
    _, weights = sampler.sample_rows(4, 4, MidpointRng(), step=0)
    # beta = 0.5: w_i / w_max = (P_i / P_min)^-0.5 = 1, (0.3/0.2)^-0.5 = 0.8165, (0.4/0.2)^-0.5 = 0.7071
    np.testing.assert_allclose(weights, [1.0, 0.816497, 0.707107, 0.707107], rtol=1e-5)

    sampler.beta_schedule = constant(0.0)
    _, weights = sampler.sample_rows(4, 4, MidpointRng(), step=0)
    np.testing.assert_array_equal(weights, np.ones(4))  # beta = 0: no correction


def test_beta_follows_its_schedule():
    sampler = known_buffer(LinearSchedule(0.4, 1.0, 100))
    # rows 1, 2, 3, 3 as above: P = 0.2, 0.3, 0.4, 0.4, so w / max w = (P / 0.2)^-beta = 1, 1.5^-b, 2^-b, 2^-b
    for step, beta in [(0, 0.4), (50, 0.7), (100, 1.0), (1000, 1.0)]:  # 0.4 + (1 - 0.4) * min(1, step/100)
        _, weights = sampler.sample_rows(4, 4, MidpointRng(), step=step)
        np.testing.assert_allclose(weights, [1.0, 1.5**-beta, 2.0**-beta, 2.0**-beta], rtol=1e-6)
    _, weights = sampler.sample_rows(4, 4, MidpointRng(), step=50)
    np.testing.assert_allclose(weights[1:3], [0.752898, 0.615572], rtol=1e-5)  # 1.5^-0.7, 2^-0.7


def test_sampling_is_stratified():
    sampler = PrioritizedSampler(16, alpha=0.6, beta_schedule=constant(0.4))
    sampler.on_add(np.arange(8))  # equal priorities: segment k of 4 covers exactly rows 2k, 2k+1
    rng = np.random.default_rng(0)
    for _ in range(50):
        indices, weights = sampler.sample_rows(8, 4, rng, step=0)
        np.testing.assert_array_equal(indices // 2, [0, 1, 2, 3])
        np.testing.assert_array_equal(weights, np.ones(4))  # equal priorities: equal weights


def test_sampling_frequencies_follow_p_to_the_alpha():
    sampler = PrioritizedSampler(2, alpha=0.5, beta_schedule=constant(0.4), eps=1e-6)
    sampler.on_add(np.arange(2))
    sampler.update_priorities(np.arange(2), np.array([1.0, 4.0]) - 1e-6)  # p = [1, 4] -> p^0.5 = [1, 2]
    rng = np.random.default_rng(1)
    draws = np.concatenate([sampler.sample_rows(2, 1, rng, step=0)[0] for _ in range(30_000)])
    # P(1) = 2 / 3; std of the mean over 30k draws = sqrt(2/9 / 30000) = 0.0027
    assert abs(draws.mean() - 2 / 3) < 0.015


def test_alpha_zero_is_uniform():
    sampler = PrioritizedSampler(4, alpha=0.0, beta_schedule=constant(1.0))
    sampler.on_add(np.arange(4))
    sampler.update_priorities(np.arange(4), np.array([0.0, 10.0, 100.0, 1000.0]))
    np.testing.assert_array_equal(sampler.tree[np.arange(4)], np.ones(4))  # p^0 = 1


def test_rows_beyond_size_are_never_sampled():
    sampler = PrioritizedSampler(8, alpha=1.0, beta_schedule=constant(1.0))
    sampler.on_add(np.arange(3))
    sampler.update_priorities(np.array([5]), np.array([100.0]))  # a stale, huge priority beyond size
    rng = np.random.default_rng(0)
    indices = np.concatenate([sampler.sample_rows(3, 32, rng, step=0)[0] for _ in range(100)])
    assert set(indices.tolist()) == {0, 1, 2}
    # weights use P(i) over the filled rows only: all three have priority 1 -> P = 1/3 -> weights 1
    _, weights = sampler.sample_rows(3, 4, rng, step=0)
    np.testing.assert_array_equal(weights, np.ones(4))


def test_state_dict_round_trip():
    sampler = known_buffer(constant(0.5))
    state = sampler.state_dict()
    restored = PrioritizedSampler(8, alpha=1.0, beta_schedule=constant(0.5), eps=1.0)
    restored.load_state_dict(state)
    assert restored.max_priority == 4.0 and restored.tree.total == 10.0
    a = sampler.sample_rows(4, 16, np.random.default_rng(7), step=0)
    b = restored.sample_rows(4, 16, np.random.default_rng(7), step=0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    state["tree"][1] = -5.0  # the saved state is a copy: changing it does not touch the sampler
    assert sampler.tree.total == 10.0
    with pytest.raises(ValueError):
        PrioritizedSampler(16, alpha=1.0, beta_schedule=constant(0.5)).load_state_dict(sampler.state_dict())


def test_errors():
    sampler = PrioritizedSampler(4, alpha=0.6, beta_schedule=constant(0.4))
    with pytest.raises(ValueError):
        sampler.sample_rows(0, 4, np.random.default_rng(0), step=0)
    sampler.on_add(np.arange(2))
    with pytest.raises(ValueError):
        sampler.update_priorities(np.array([0]), np.array([np.nan]))


def test_beta_final_sets_where_the_annealing_ends():
    """Dopamine's Rainbow keeps beta at 0.5 (loss weights 1 / sqrt(P(i)), over their batch maximum):
    prioritized_beta_final = prioritized_beta gives that constant; the default anneals to 1."""
    import gymnasium as gym

    from qzoo.config import Config
    from qzoo.replay import make_replay

    space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    base = Config(env_id="CartPole-v1", prioritized=True, prioritized_beta=0.5, n_timesteps=1000)
    annealed = make_replay(base, space).sampler.beta_schedule
    constant_beta = make_replay(base.replace(prioritized_beta_final=0.5), space).sampler.beta_schedule
    assert [annealed(s) for s in (0, 500, 1000)] == [0.5, 0.75, 1.0]
    assert [constant_beta(s) for s in (0, 500, 1000)] == [0.5, 0.5, 0.5]
    sampler = known_buffer(constant_beta)
    _, weights = sampler.sample_rows(4, 4, MidpointRng(), step=900)
    # P = 0.2, 0.3, 0.4, 0.4: Dopamine's 1 / sqrt(P) / max = sqrt(0.2 / P)
    np.testing.assert_allclose(weights, np.sqrt(0.2 / np.array([0.2, 0.3, 0.4, 0.4])), rtol=1e-6)
