"""The MinAtar adapter (qzoo/envs/minatar.py) and the MinAtar torso."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from qzoo.config import Config
from qzoo.envs import check_env as qzoo_check_env
from qzoo.envs.minatar import GAMES
from qzoo.networks import MinAtarCNN, build_q_network
from qzoo.resolve import resolve

CHANNELS = {"Asterix": 4, "Breakout": 4, "Freeway": 7, "Seaquest": 10, "SpaceInvaders": 6}
MINIMAL = {"Asterix": 5, "Breakout": 3, "Freeway": 3, "Seaquest": 6, "SpaceInvaders": 4}


@pytest.mark.parametrize("game", sorted(GAMES))
def test_every_game_passes_gymnasiums_env_checker_with_channels_first_uint8_grids(game):
    env = gym.make(f"MinAtar/{game}-v1", render_mode="rgb_array")
    check_env(env.unwrapped)
    assert env.observation_space == gym.spaces.Box(0, 1, (CHANNELS[game], 10, 10), np.uint8)
    assert env.action_space == gym.spaces.Discrete(MINIMAL[game])
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (CHANNELS[game], 10, 10) and set(np.unique(obs)) <= {0, 1}
    frame = env.render()
    assert frame.shape == (160, 160, 3) and frame.dtype == np.uint8 and frame.any()
    env.close()


def test_full_action_set_is_an_option():
    env = gym.make("MinAtar/Breakout-v1", minimal_action_set=False)
    assert env.action_space == gym.spaces.Discrete(6)
    assert env.unwrapped.get_action_meanings() == ["NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE"]
    assert gym.make("MinAtar/Breakout-v1").unwrapped.get_action_meanings() == ["NOOP", "LEFT", "RIGHT"]


def rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    frames, rewards = [obs], []
    for a in actions:
        obs, r, terminated, truncated, _ = env.step(a)
        frames.append(obs)
        rewards.append(r)
        if terminated:
            obs, _ = env.reset()
            frames.append(obs)
    return np.stack(frames), rewards


def test_same_seed_same_trajectory_other_seed_other_trajectory():
    actions = np.random.default_rng(0).integers(0, 5, 400)
    a = rollout(gym.make("MinAtar/Asterix-v1"), 3, actions)
    b = rollout(gym.make("MinAtar/Asterix-v1"), 3, actions)
    c = rollout(gym.make("MinAtar/Asterix-v1"), 4, actions)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])
    # the same env re-seeded replays its first episode exactly (the sticky-action memory is reset too)
    env = gym.make("MinAtar/Asterix-v1")
    first = rollout(env, 5, actions[:50])
    rollout(env, 9, actions[50:150])
    again = rollout(env, 5, actions[:50])
    np.testing.assert_array_equal(first[0], again[0])


def paddle_column(obs):
    return int(np.flatnonzero(obs[0].any(axis=0))[0])  # Breakout channel 0: the paddle, on the bottom row


def test_sticky_actions_repeat_the_previous_action():
    # Breakout's paddle starts in column 4. Always LEFT (minimal action 1) moves it one column per step. With
    # sticky_action_prob=1 every step repeats the previous action, which is no-op after a reset: it never moves.
    never = gym.make("MinAtar/Breakout-v1", sticky_action_prob=1.0)
    obs, _ = never.reset(seed=0)
    for _ in range(3):
        obs, *_ = never.step(1)
    assert paddle_column(obs) == 4
    exact = gym.make("MinAtar/Breakout-v1", sticky_action_prob=0.0)
    obs, _ = exact.reset(seed=0)
    for _ in range(3):
        obs, *_ = exact.step(1)
    assert paddle_column(obs) == 1
    # p = 0.5, alternating LEFT / RIGHT: some steps repeat the last action, so the paddle drifts from column 4
    # by more than the strict alternation allows (|drift| <= 1) in at least one of a few seeds.
    drifts = []
    for seed in range(5):
        env = gym.make("MinAtar/Breakout-v1", sticky_action_prob=0.5)
        obs, _ = env.reset(seed=seed)
        for t in range(6):
            obs, *_ = env.step(1 if t % 2 == 0 else 2)
        drifts.append(abs(paddle_column(obs) - 4))
    assert max(drifts) >= 2


def test_auto_network_is_the_minatar_torso_and_the_preset_is_the_papers_dqn():
    config = resolve("MinAtar/Breakout-v1")
    assert (config.network, config.optimizer, config.learning_rate, config.optimizer_eps) == \
        ("minatar", "rmsprop", 2.5e-4, 0.01)
    assert (config.buffer_size, config.batch_size, config.target_update_interval, config.learning_starts,
            config.train_freq, config.exploration_final_eps) == (100_000, 32, 1000, 5000, 1, 0.1)
    assert config.exploration_fraction * config.n_timesteps == 100_000
    assert Config(env_id="MinAtar/Breakout-v1").resolved_network((4, 10, 10)) == "minatar"
    assert Config().resolved_network((4, 84, 84)) == "nature_cnn"
    info = qzoo_check_env(config)
    net = build_q_network(config, info.observation_space, info.n_actions)
    assert isinstance(net.torso, MinAtarCNN)
    conv, fc = net.torso.convs[0], net.torso.fc
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (4, 16, (3, 3), (1, 1))
    assert (fc.in_features, fc.out_features) == (16 * 8 * 8, 128)
    q = net(torch.ones(2, 4, 10, 10, dtype=torch.uint8))
    assert q.shape == (2, 3)
    rainbow = resolve("MinAtar/Seaquest-v1", "rainbow")
    assert (rainbow.network, rainbow.n_step, rainbow.v_max, rainbow.noisy) == ("minatar", 3, 100.0, True)
