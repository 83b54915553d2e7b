"""Tabular Q-learning: the update by hand, termination vs truncation, the Q-table file, one-hot observations."""

import math

import gymnasium as gym
import numpy as np
import pytest

from qzoo.config import Config, ConfigError
from qzoo.envs import OneHotObservation, check_env, make_env
from qzoo.qtable import QTable, load_qtable, read_qtable, write_qtable
from qzoo.resolve import resolve
from qzoo.schedules import ExponentialSchedule
from qzoo.tabular import train_tabular

FAST = ["progress_bar=false", "tensorboard=false"]


class OneStateForever(gym.Env):
    """One state (Discrete(1)), reward 1 every step, never terminates; the test id truncates after 5 steps.
    With discount gamma the true value is 1 / (1 - gamma): only bootstrapping at the time limit learns it."""

    observation_space = gym.spaces.Discrete(1)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 1.0, False, False, {}


class Offset(gym.Env):
    """Discrete(3, start=10) observations, to check the one-hot position is s - start."""

    observation_space = gym.spaces.Discrete(3, start=10)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 11, {}

    def step(self, action):
        return 12, 0.0, True, False, {}


gym.register(id="qzootest/OneStateForever-v0", entry_point=OneStateForever, max_episode_steps=5)


def test_q_update_by_hand_on_a_two_state_mdp():
    # Two states. In s0, action 1 moves to s1 with reward 0; in s1, action 1 ends the episode with reward 1.
    # alpha = 0.5, gamma = 0.9, Q starts at 0.  Q(s,a) += alpha * (r + gamma * (1 - term) * max Q(s',.) - Q(s,a))
    table = QTable(2, 2, learning_rate=0.5, gamma=0.9)
    # (1) s1 --a1--> end, r=1:  target = 1 + 0.9 * 0 * ... = 1;        Q(s1,a1) = 0 + 0.5 * (1 - 0)         = 0.5
    assert table.update(1, 1, 1.0, 0, True) == pytest.approx(1.0)
    # (2) s0 --a1--> s1, r=0:   target = 0 + 0.9 * max(0, 0.5) = 0.45;  Q(s0,a1) = 0 + 0.5 * (0.45 - 0)     = 0.225
    assert table.update(0, 1, 0.0, 1, False) == pytest.approx(0.45)
    # (3) s1 --a1--> end, r=1:  target = 1;                             Q(s1,a1) = 0.5 + 0.5 * (1 - 0.5)     = 0.75
    table.update(1, 1, 1.0, 0, True)
    # (4) s0 --a1--> s1, r=0:   target = 0.9 * 0.75 = 0.675;            Q(s0,a1) = 0.225 + 0.5 * (0.675 - 0.225) = 0.45
    table.update(0, 1, 0.0, 1, False)
    np.testing.assert_allclose(table.values, [[0.0, 0.45], [0.0, 0.75]])
    # From a non-zero table: Q = [[1, 2], [3, -1]], s0 --a0--> s1, r=0.5:
    #   target = 0.5 + 0.9 * max(3, -1) = 3.2;  TD error = 3.2 - 1 = 2.2;  Q(s0,a0) = 1 + 0.5 * 2.2 = 2.1
    table = QTable(2, 2, learning_rate=0.5, gamma=0.9, values=[[1.0, 2.0], [3.0, -1.0]])
    assert table.update(0, 0, 0.5, 1, False) == pytest.approx(2.2)
    np.testing.assert_allclose(table.values, [[2.1, 2.0], [3.0, -1.0]])
    assert table.pop_metrics() == {"loss": pytest.approx(2.2 ** 2), "q_mean": pytest.approx(1.0),
                                   "interval_updates": 1}


def test_termination_cuts_the_bootstrap_and_truncation_does_not():
    # Same transition s0 -> s1 (r = 0.5, Q(s1,.) max 3) from Q(s0,a0) = 1, alpha 1, gamma 0.9:
    #   terminated: target = 0.5                 -> Q(s0,a0) = 0.5
    #   not terminated (truncated or running):   -> Q(s0,a0) = 0.5 + 0.9 * 3 = 3.2
    values = [[1.0, 2.0], [3.0, -1.0]]
    ended = QTable(2, 2, learning_rate=1.0, gamma=0.9, values=values)
    ended.update(0, 0, 0.5, 1, True)
    cut = QTable(2, 2, learning_rate=1.0, gamma=0.9, values=values)
    cut.update(0, 0, 0.5, 1, False)
    assert ended.values[0, 0] == pytest.approx(0.5) and cut.values[0, 0] == pytest.approx(3.2)


def test_the_loop_bootstraps_through_time_limit_truncation():
    # Reward 1 forever, truncated every 5 steps, gamma 0.5: Q = 1 / (1 - 0.5) = 2 for both actions.
    # Treating truncation as termination would settle near 1 / (1 - 0.8 * 0.5) = 1.67 instead.
    config = resolve("qzootest/OneStateForever-v0", "qlearning", flags={"n_timesteps": 2000}, sets=FAST + [
        "gamma=0.5", "learning_rate=0.1", "eval_freq=0", "eval_episodes=1"])
    table = train_tabular(config, None, out=None).agent
    np.testing.assert_allclose(table.values, [[2.0, 2.0]], atol=1e-3)


def test_act_is_greedy_at_epsilon_0_and_uniform_at_1():
    table = QTable(3, 4, values=[[0, 1, 0, 0], [5, 0, 0, 0], [0, 0, 0, 2]])
    rng = np.random.default_rng(0)
    assert table.act(np.array([0, 1, 2]), 0.0, rng).tolist() == [1, 0, 3]
    assert [table.act_one(s, 0.0, rng) for s in range(3)] == [1, 0, 3]
    random_actions = table.act(np.zeros(4000, np.int64), 1.0, rng)
    assert np.bincount(random_actions, minlength=4).min() > 900


def test_exponential_epsilon_schedule():
    schedule = ExponentialSchedule(1.0, 0.05, 0.0005)
    assert schedule(0) == 1.0
    assert schedule(2000) == pytest.approx(0.05 + 0.95 * math.exp(-1.0))
    assert schedule(10 ** 6) == pytest.approx(0.05)


def test_exponential_schedule_is_for_qlearning_only():
    assert resolve("FrozenLake-v1", "qlearning").exploration_schedule == "exponential"
    with pytest.raises(ConfigError, match="'exploration_schedule' 'exponential' is used by --algo qlearning only"):
        Config(exploration_schedule="exponential")


def test_qtable_csv_round_trip_is_exact(tmp_path):
    table = QTable(3, 2, values=[[0.1, 1 / 3], [-2.5, 0.0], [1e-12, 7.0]])
    write_qtable(tmp_path / "qtable.csv", table)
    lines = (tmp_path / "qtable.csv").read_text().splitlines()
    assert lines[0] == "state,action_0,action_1" and lines[1].startswith("0,0.1,0.333") and len(lines) == 4
    np.testing.assert_array_equal(read_qtable(tmp_path / "qtable.csv"), table.values)


@pytest.mark.parametrize("text", ["", "state,action_0\n0,abc\n", "state,action_0,action_1\n0,1\n",
                                  "state,action_0\n1,0.5\n", "x,y\n0,1\n", "state,action_0\n0,nan\n"])
def test_a_bad_qtable_file_is_refused(tmp_path, text):
    (tmp_path / "qtable.csv").write_text(text)
    with pytest.raises(ConfigError, match="is not a qzoo Q-table"):
        read_qtable(tmp_path / "qtable.csv")


def test_loading_checks_the_table_fits_the_environment(tmp_path):
    (tmp_path / "config.yaml").write_text("env_id: FrozenLake-v1\nalgo: qlearning\n")
    with pytest.raises(ConfigError, match="holds no Q-table"):
        load_qtable(tmp_path)
    write_qtable(tmp_path / "qtable.csv", QTable(9, 4))
    with pytest.raises(ConfigError, match="has 9 states x 4 actions; 'FrozenLake-v1' now has 16 x 4"):
        load_qtable(tmp_path)


def test_qlearning_refuses_observations_that_are_not_discrete():
    with pytest.raises(ConfigError, match=r"Box observations of shape \(4,\); --algo qlearning needs a Discrete "
                                          r"observation space .*use --algo dqn"):
        check_env(Config(env_id="CartPole-v1", algo="qlearning"))


def test_discrete_observations_are_one_hot_for_dqn_and_integers_for_the_table():
    assert check_env(Config(env_id="FrozenLake-v1", algo="qlearning")).observation_space == gym.spaces.Discrete(16)
    info = check_env(Config(env_id="FrozenLake-v1"))
    assert info.observation_space == gym.spaces.Box(0.0, 1.0, (16,), np.float32) and info.n_actions == 4

    env = make_env("FrozenLake-v1")()
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (16,) and obs[0] == 1 and obs.sum() == 1
    obs, *_ = env.step(2)  # RIGHT (may slip): still exactly one 1
    assert obs.sum() == 1 and env.observation_space.contains(obs)
    assert make_env("FrozenLake-v1", one_hot=False)().reset(seed=0)[0] == 0

    offset = OneHotObservation(Offset())
    assert offset.reset()[0].tolist() == [0, 1, 0] and offset.step(0)[0].tolist() == [0, 0, 1]


def test_dqn_trains_on_frozenlake_through_the_one_hot_observations():
    from qzoo.trainer import train

    config = resolve("FrozenLake-v1", flags={"n_timesteps": 300}, sets=FAST + [
        "learning_starts=100", "batch_size=8", "eval_freq=0", "eval_episodes=1", "device=cpu"])
    result = train(config, None, out=None)
    assert result.steps == 300 and result.agent.updates > 0
