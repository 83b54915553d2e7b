"""Evaluation with several envs side by side: each env plays what it would alone, its fixed share of the episodes."""

import numpy as np
import pytest

from qzoo.agent import epsilon_greedy
from qzoo.envs import make_env, make_eval_envs
from qzoo.evaluation import episode_shares, evaluate
from qzoo.resolve import resolve


class RulePolicy:
    """A deterministic 'agent' with QAgent's acting interface: greedily push the cart towards the side the pole
    leans to (CartPole), or an action read off the frame (Atari); counts the greedy calls and observations."""

    def __init__(self, atari: bool = False, n_actions: int = 2):
        self.atari, self.n_actions, self.calls, self.rows = atari, n_actions, 0, 0

    def greedy(self, obs):
        self.calls += 1
        self.rows += len(obs)
        if self.atari:
            return obs.reshape(len(obs), -1).sum(axis=1).astype(np.int64) % self.n_actions
        return (obs[:, 2] > 0).astype(np.int64)

    def act(self, obs, epsilon, rng):
        return epsilon_greedy(self.greedy, obs, epsilon, rng, self.n_actions)


def test_episode_shares_are_fixed_and_add_up():
    assert episode_shares(10, 8) == [1, 1, 1, 1, 1, 1, 2, 2]
    assert episode_shares(100, 8) == [12, 12, 12, 12, 13, 13, 13, 13]
    assert episode_shares(5, 5) == [1, 1, 1, 1, 1]
    assert episode_shares(7, 1) == [7]


@pytest.mark.parametrize(("epsilon", "max_steps"), [(0.0, 100_000), (0.3, 100_000), (0.0, 30)])
def test_side_by_side_plays_what_each_env_plays_alone(epsilon, max_steps):
    config = resolve("CartPole-v1")
    envs = [make_env("CartPole-v1", config=config)() for _ in range(3)]
    policy = RulePolicy()
    together = evaluate(policy, envs, 7, epsilon, seed=5, max_steps=max_steps)
    alone = [evaluate(RulePolicy(), make_env("CartPole-v1", config=config)(), share, epsilon, seed=5 + i,
                      max_steps=max_steps)
             for i, share in enumerate(episode_shares(7, 3))]
    assert len(together.returns) == 7
    assert np.array_equal(together.returns, np.concatenate([r.returns for r in alone]))
    assert np.array_equal(together.lengths, np.concatenate([r.lengths for r in alone]))
    if epsilon == 0:  # one greedy call per step of the env that plays longest, with the envs still playing
        assert policy.rows == together.lengths.sum()
        assert policy.calls == max(r.lengths.sum() for r in alone) < policy.rows
    else:  # exploring steps skip the network
        assert policy.rows < together.lengths.sum()
    if max_steps == 30:
        assert together.lengths.max() == 30  # the rule balances the pole: capped episodes count their reward


def test_a_list_of_one_env_is_the_env_itself():
    config = resolve("CartPole-v1")
    one = evaluate(RulePolicy(), [make_env("CartPole-v1", config=config)()], 3, 0.2, seed=1)
    plain = evaluate(RulePolicy(), make_env("CartPole-v1", config=config)(), 3, 0.2, seed=1)
    assert np.array_equal(one.returns, plain.returns) and np.array_equal(one.lengths, plain.lengths)
    with pytest.raises(ValueError, match="single"):
        evaluate(RulePolicy(), make_eval_envs(config.replace(eval_envs=2)), 2, 0.0, 0, on_step=lambda e, r: None)


def test_side_by_side_atari_games_report_each_games_score():
    """Whole games, truncated at 400 emulator frames, ε 0.05: each env's game score is what it reports alone."""
    config = resolve("ALE/Pong-v5", sets=["max_episode_frames=400"])
    envs = make_eval_envs(config, episodes=3)
    assert len(envs) == 3  # auto: the Nature CNN plays side by side, capped at the episodes asked for
    policy = RulePolicy(atari=True, n_actions=6)
    together = evaluate(policy, envs, 3, 0.05, seed=2)
    alone = [evaluate(RulePolicy(atari=True, n_actions=6), make_env("ALE/Pong-v5", config=config)(), 1, 0.05, 2 + i)
             for i in range(3)]
    assert np.array_equal(together.returns, [r.returns[0] for r in alone])
    assert np.array_equal(together.lengths, [r.lengths[0] for r in alone])
    assert 90 <= together.lengths.min() and together.lengths.max() <= 100  # 400 frames at frame skip 4, no-ops first
    assert policy.calls <= together.lengths.max()


def test_resolved_eval_envs():
    pong = resolve("ALE/Pong-v5")
    assert pong.resolved_eval_envs((4, 84, 84)) == 8
    assert pong.replace(eval_episodes=5).resolved_eval_envs((4, 84, 84)) == 5
    assert pong.resolved_eval_envs((4, 84, 84), episodes=100) == 8
    assert pong.replace(eval_envs=1).resolved_eval_envs((4, 84, 84)) == 1
    cartpole = resolve("CartPole-v1")
    assert cartpole.resolved_eval_envs((4,)) == 1
    assert cartpole.replace(eval_envs=4).resolved_eval_envs((4,)) == 4
    assert resolve("MinAtar/Breakout-v1").resolved_eval_envs((4, 10, 10)) == 1  # the small CNN acts fast alone


@pytest.mark.parametrize("n_actions", [2, 6, 18])
def test_one_observation_draws_what_the_array_path_draws(n_actions):
    """epsilon_greedy's path for one observation (scalar draws) takes the same actions, and leaves the generator in
    the same state, as the array path's two size-1 draws (the code it replaced, written out here)."""
    def array_path(greedy, obs, epsilon, rng):
        explore = rng.random(1) < epsilon
        actions = rng.integers(0, n_actions, 1)
        return actions if explore.all() else np.where(explore, actions, greedy(obs))

    greedy = lambda obs: np.array([int(obs[0, 0]) % n_actions])  # noqa: E731
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    for i in range(3000):
        obs, epsilon = np.full((1, 4), i, np.float32), (0.0, 0.05, 0.5, 1.0)[i % 4]
        got, want = epsilon_greedy(greedy, obs, epsilon, a, n_actions), array_path(greedy, obs, epsilon, b)
        assert got.dtype == np.int64 and got.shape == (1,) and got[0] == want[0]
    assert a.bit_generator.state == b.bit_generator.state
