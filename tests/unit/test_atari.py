"""The Atari pipeline (qzoo/envs/atari.py), the Nature CNN and the Atari presets.

ALE steps are cheap (~1 ms for an agent step of 4 frames), so these play real games for a few hundred steps.
"""

import copy
import math

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ale_py.vector_env import AtariVectorEnv
from gymnasium.wrappers import AtariPreprocessing

from qzoo import resolve as resolve_module
from qzoo.config import Config, ConfigError
from qzoo.conv_ops import same_pads, space_to_depth
from qzoo.envs import check_env, finished_episodes, finished_games, make_env, make_vec_env, true_next_obs
from qzoo.envs.atari import (
    AtariTrainingVectorEnv,
    CropResize,
    FireReset,
    atari_game,
    is_atari_id,
    make_atari_env,
)
from qzoo.evaluation import human_normalized
from qzoo.networks import NatureCNN, NoisyLinear, QNetwork, build_q_network
from qzoo.resolve import normalise_preset_entry, preset_values, resolve


def actions(n_actions: int, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_actions, n)


def lives(env: gym.Env) -> int:
    return env.unwrapped.ale.lives()


def frame_number(env: gym.Env) -> int:
    return env.unwrapped.ale.getEpisodeFrameNumber()


# ---- (a) the pipeline against an independently built reference ----------------------------------------------
@pytest.mark.parametrize("env_id,rom,n_steps", [("ALE/Breakout-v5", "breakout", 300),
                                               ("ALE/SpaceInvaders-v5", "space_invaders", 200)])
def test_training_pipeline_matches_ales_own_vector_env_step_by_step(env_id, rom, n_steps):
    """Reference: ale-py's C++ ``AtariVectorEnv``, a separate implementation of the same preprocessing (frame
    skip 4 with a max over the last two frames, grayscale, 84x84 area resize, 4-frame stack zero-padded at a
    reset, sign reward clipping), sharing only the emulator with qzoo's gymnasium-wrapper pipeline. Both are
    deterministic given the actions, so they must agree exactly: observations byte for byte, rewards and flags.

    Settings where the two differ by design are switched off here and tested on their own below: no-op starts
    (a random count from different generators), fire reset (C++ presses FIRE for one frame; qzoo, as SB3, FIRE
    then action 2 as agent steps) and episodic life (C++ restarts the game at a life loss; compared with its
    ``life_loss_info`` in the next test). One known difference is allowed: on the step where a game ends,
    gymnasium's AtariPreprocessing stops the frame skip at the game-over frame without reading the screen, so
    that terminal observation (never bootstrapped from: its discount is 0) is not compared."""
    ours = make_atari_env(Config(env_id=env_id, noop_max=0, fire_reset=False, episodic_life=False), training=True)
    ref = AtariVectorEnv(rom, 1, noop_max=0, use_fire_reset=False, episodic_life=False, reward_clipping=True,
                         repeat_action_probability=0.0, autoreset_mode="SameStep")
    obs, _ = ours.reset(seed=0)
    ref_obs, _ = ref.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs, ref_obs[0])
    games, clipped_total = 0, 0.0
    for t, action in enumerate(actions(ours.action_space.n, n_steps)):
        obs, reward, terminated, truncated, info = ours.step(action)
        ref_obs, ref_reward, ref_terminated, ref_truncated, _ = ref.step(np.array([action]))
        assert (reward, terminated, truncated) == (ref_reward[0], ref_terminated[0], ref_truncated[0]), t
        assert reward in (-1.0, 0.0, 1.0)
        clipped_total += reward
        if terminated or truncated:
            games += 1
            obs, _ = ours.reset()  # the reference reset itself (same-step autoreset): its obs is the new game's
        np.testing.assert_array_equal(obs, ref_obs[0], err_msg=f"step {t}")
    assert clipped_total > 0
    if rom == "breakout":
        assert games >= 1  # a random Breakout game is ~180 steps: the comparison crossed a game over and a reset
    ours.close()
    ref.close()


def test_episodic_life_ends_an_episode_where_ale_reports_the_life_loss():
    ours = make_atari_env(Config(env_id="ALE/Breakout-v5", noop_max=0, fire_reset=False), training=True)
    ref = AtariVectorEnv("breakout", 1, noop_max=0, use_fire_reset=False, episodic_life=False, life_loss_info=True,
                         repeat_action_probability=0.0, autoreset_mode="SameStep")
    ours.reset(seed=0)
    ref.reset(seed=0)
    for t, action in enumerate(actions(4, 300)):
        obs, _, terminated, _, _ = ours.step(action)
        ref_obs, _, ref_terminated, _, _ = ref.step(np.array([action]))
        np.testing.assert_array_equal(obs, ref_obs[0], err_msg=f"step {t}")
        assert terminated == ref_terminated[0], t
        if terminated:
            break
    assert terminated and lives(ours) == 4  # the first life was lost, the game goes on


# ---- (a') the C++ training backend against the wrapper pipeline, transition by transition ------------------
def test_vector_backend_transitions_match_the_wrapper_pipeline_step_by_step():
    """qzoo's training envs (AtariTrainingVectorEnv on ale-py's C++ AtariVectorEnv) against an independently
    assembled reference: the gymnasium-wrapper pipeline playing whole games with raw rewards, with the life-loss
    episodes and the clipping worked out here from the emulator's lives and the raw rewards. Two envs with
    different action sequences, 450 steps of Breakout: life losses, game overs and resets in both. Checked per
    step and env: observations byte for byte, clipped rewards, terminated (life loss or game over), truncated,
    s' (the observation itself after a life loss, the true last one at a game over), and the per-life returns
    and lengths and whole-game raw scores reported in final_info. As in the test above, the game-over frame
    itself (which AtariPreprocessing does not read) is not compared, only the frames before it."""
    config = Config(env_id="ALE/Breakout-v5", noop_max=0, fire_reset=False, n_envs=2, atari_backend="vector")
    envs = make_vec_env(config)
    assert isinstance(envs, AtariTrainingVectorEnv)
    refs = [make_atari_env(config, training=False) for _ in range(2)]
    obs, _ = envs.reset(seed=0)
    ref_obs = [ref.reset(seed=0)[0] for ref in refs]
    np.testing.assert_array_equal(obs, np.stack(ref_obs))
    ref_lives = [lives(ref) for ref in refs]
    ep_return, ep_length, score = [0.0, 0.0], [0, 0], [0.0, 0.0]
    life_losses = games = 0
    acts = np.stack([actions(4, 450, seed=1), actions(4, 450, seed=2)], axis=1)
    for t, action in enumerate(acts):
        next_obs, reward, terminated, truncated, infos = envs.step(action)
        s_t = true_next_obs(next_obs, infos)
        episodes = {i: (r, n) for i, r, n in finished_episodes(infos)}
        scores = finished_games(infos)
        for i, ref in enumerate(refs):
            o, raw, game_over, ref_truncated, _ = ref.step(action[i])
            life_lost = 0 < lives(ref) < ref_lives[i]
            ref_lives[i] = lives(ref)
            ep_return[i] += np.sign(raw)
            ep_length[i] += 1
            score[i] += raw
            assert (reward[i], terminated[i], truncated[i]) == (np.sign(raw), game_over or life_lost, ref_truncated)
            if game_over:
                np.testing.assert_array_equal(s_t[i][:-1], o[:-1], err_msg=f"step {t}")  # the final obs...
                assert not np.array_equal(s_t[i], next_obs[i])  # ...not the next game's first one
                o, _ = ref.reset()
                ref_lives[i] = lives(ref)
                assert scores.pop(0) == score[i]
                score[i], games = 0.0, games + 1
            else:
                np.testing.assert_array_equal(s_t[i], o, err_msg=f"step {t}")  # a life loss: the game goes on
            np.testing.assert_array_equal(next_obs[i], o, err_msg=f"step {t}")
            if game_over or life_lost:
                assert episodes.pop(i) == (ep_return[i], ep_length[i])
                ep_return[i], ep_length[i] = 0.0, 0
                life_losses += life_lost
        assert not episodes and not scores, t
    assert life_losses >= 8 and games >= 2  # (a random Breakout game is ~180 steps)
    envs.close()


def test_vector_backend_truncates_at_the_frame_cap_with_the_true_final_observation():
    config = Config(env_id="ALE/Pong-v5", noop_max=0, fire_reset=False, max_episode_frames=400,
                    atari_backend="vector")
    envs = make_vec_env(config)
    ref = make_atari_env(config, training=True)
    obs, _ = envs.reset(seed=0)
    ref.reset(seed=0)
    for t in range(100):  # 400 frames = 100 agent steps
        prev, action = obs, actions(6, 100)[t]
        obs, _, terminated, truncated, infos = envs.step(np.array([action]))
        ref_obs, _, _, ref_truncated, ref_info = ref.step(action)
        assert not terminated[0] and truncated[0] == ref_truncated == (t == 99)
    s_t = true_next_obs(obs, infos)
    np.testing.assert_array_equal(s_t[0][:-1], prev[0][1:])  # the truncated game's last stack, which bootstraps
    np.testing.assert_array_equal(s_t[0][:-1], ref_obs[:-1])  # (its newest frame is the cap frame, unread by ref)
    np.testing.assert_array_equal(obs[0], ref.reset()[0])  # and the next game started at once, as the ref resets
    assert finished_games(infos) == [ref_info["game_score"]] and finished_episodes(infos)[0][2] == 100
    envs.close()


def test_vector_backend_only_when_asked_for_and_the_wrappers_by_default():
    assert isinstance(make_vec_env(Config(env_id="ALE/Pong-v5", atari_backend="vector")), AtariTrainingVectorEnv)
    for settings in ({}, {"atari_backend": "wrappers"}, {"atari_crop": [32, 14, 8, 8]}, {"grayscale": False},
                     {"env_kwargs": {"mode": 0}}):
        assert isinstance(make_vec_env(Config(env_id="ALE/Pong-v5", **settings)), gym.vector.SyncVectorEnv)
    with pytest.raises(ConfigError, match="'atari_backend' 'vector' cannot be used with atari_crop"):
        check_env(Config(env_id="ALE/Pong-v5", atari_backend="vector", atari_crop=[32, 14, 8, 8]))
    machado = make_vec_env(Config(env_id="ALE/Breakout-v5", atari_protocol="machado", atari_backend="vector"))
    assert not machado.episodic_life


# ---- (b) what training and evaluation each get --------------------------------------------------------------
def test_episodic_life_ends_training_episodes_but_not_the_game():
    env = make_atari_env(Config(env_id="ALE/Breakout-v5"), training=True)
    env.reset(seed=1)
    for action in actions(4, 500):
        _, _, terminated, truncated, info = env.step(action)
        if terminated:
            break
    assert terminated and not truncated and lives(env) == 4 and "game_score" not in info
    frames = frame_number(env)
    env.reset()
    assert lives(env) == 4 and frame_number(env) > frames  # no restart: one no-op step, then FIRE and action 2


def test_evaluation_env_plays_the_whole_game_with_raw_rewards():
    env = make_atari_env(Config(env_id="ALE/SpaceInvaders-v5"), training=False)
    env.reset(seed=0)
    rewards = []
    for action in actions(6, 3000):
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        assert not terminated or lives(env) == 0  # a lost life does not end an evaluation episode
        if terminated or truncated:
            break
    assert terminated and max(rewards) > 1  # unclipped (Space Invaders scores 5 to 30 per alien)
    assert info["game_score"] == sum(rewards)


def test_game_score_is_recorded_unclipped_across_lives_in_training(monkeypatch):
    raw_rewards = []  # every reward the preprocessed game gives, recorded below all of qzoo's wrappers
    original_step = AtariPreprocessing.step

    def recording_step(self, action):
        out = original_step(self, action)
        raw_rewards.append(out[1])
        return out

    monkeypatch.setattr(AtariPreprocessing, "step", recording_step)
    envs = make_vec_env(Config(env_id="ALE/SpaceInvaders-v5", atari_backend="wrappers"))
    envs.reset(seed=0)
    episode_returns, scores = [], []
    for action in actions(6, 3000):
        _, reward, _, _, infos = envs.step(np.array([action]))
        assert reward[0] in (-1.0, 0.0, 1.0)
        episode_returns += [r for _, r, _ in finished_episodes(infos)]
        scores += finished_games(infos)
        if scores:
            break
    envs.close()
    assert len(episode_returns) == 3  # Space Invaders: three lives, three training episodes, one game
    assert scores == [sum(raw_rewards)]
    assert sum(episode_returns) == sum(np.sign(raw_rewards)) < scores[0]  # the agent learns from clipped rewards


def test_noop_starts_and_protocols():
    env = make_atari_env(Config(env_id="ALE/Pong-v5", fire_reset=False, noop_max=30), training=False)
    env.reset(seed=0)
    starts = {frame_number(env)}
    for _ in range(8):
        env.reset()
        starts.add(frame_number(env))
    assert all(1 <= s <= 30 for s in starts) and len(starts) > 1  # a random count of no-op frames in [1, 30]
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    env = make_atari_env(Config(env_id="ALE/Pong-v5", fire_reset=False, noop_max=0), training=False)
    env.reset(seed=0)
    assert frame_number(env) == 0
    env = make_atari_env(Config(env_id="ALE/Pong-v5", fire_reset=False, atari_protocol="machado"), training=True)
    env.reset(seed=0)
    assert frame_number(env) == 0  # machado: sticky actions instead of no-op starts
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    env = make_atari_env(Config(env_id="ALE/Breakout-v5", atari_protocol="machado"), training=True)
    assert "EpisodicLife" not in str(env)  # machado: no life-loss episodes


def test_fire_reset_launches_the_ball():
    def lives_after_noops(fire_reset: bool) -> int:
        env = make_atari_env(Config(env_id="ALE/Breakout-v5", noop_max=0, fire_reset=fire_reset), training=False)
        env.reset(seed=0)
        if fire_reset:
            assert frame_number(env) == 8  # FIRE, then action 2: two agent steps of 4 frames
        for _ in range(150):
            env.step(0)
        return lives(env)

    assert lives_after_noops(fire_reset=True) < 5  # the ball was launched, the idle paddle missed it
    assert lives_after_noops(fire_reset=False) == 5  # nothing happens until FIRE
    freeway = make_atari_env(Config(env_id="ALE/Freeway-v5"), training=False)  # actions NOOP, UP, DOWN
    assert not any(isinstance(w, FireReset) for w in _wrappers(freeway))


def test_frame_cap_truncates_a_game_and_records_its_score():
    env = make_atari_env(Config(env_id="ALE/Pong-v5", noop_max=0, fire_reset=False, max_episode_frames=400),
                         training=True)
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated) and steps < 200:
        _, _, terminated, truncated, info = env.step(0)
        steps += 1
    assert (steps, terminated, truncated) == (100, False, True) and "game_score" in info  # 400 frames = 100 steps


def test_crop_then_resize_matches_a_hand_built_frame():
    config = Config(env_id="ALE/Breakout-v5", noop_max=0, fire_reset=False, frame_skip=1, atari_crop=[32, 14, 8, 8])
    env = make_atari_env(config, training=False)
    assert any(isinstance(w, CropResize) for w in _wrappers(env))
    env.reset(seed=0)
    for action in actions(4, 20):
        obs, *_ = env.step(action)
    screen = env.unwrapped.ale.getScreenGrayscale()  # frame_skip 1: no max-pool, the frame is the screen
    expected = cv2.resize(screen[32:210 - 14, 8:160 - 8], (84, 84), interpolation=cv2.INTER_AREA)
    assert obs.shape == (4, 84, 84)
    np.testing.assert_array_equal(obs[-1], expected)
    with pytest.raises(ConfigError, match="atari_crop"):
        check_env(config.replace(atari_crop=[200, 20, 0, 0]))


def test_rgb_frames_are_stacked_channels_first():
    env = make_atari_env(Config(env_id="ALE/Pong-v5", noop_max=0, fire_reset=False, frame_skip=1, grayscale=False),
                         training=False)
    obs, _ = env.reset(seed=0)
    expected = cv2.resize(env.unwrapped.ale.getScreenRGB(), (84, 84), interpolation=cv2.INTER_AREA)
    assert obs.shape == (12, 84, 84) and env.observation_space.shape == (12, 84, 84)
    np.testing.assert_array_equal(obs[-3:], expected.transpose(2, 0, 1))
    assert not obs[:9].any()  # zero padding of the three older frames


def _wrappers(env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env


# ---- wiring: ids, check_env, make_env, presets, scores ------------------------------------------------------
def test_ale_ids_are_recognised_and_checked():
    assert is_atari_id("ALE/Pong-v5") and is_atari_id("PongNoFrameskip-v4")
    assert not is_atari_id("CartPole-v1") and not is_atari_id("ALE/NoSuchGame-v5")
    assert atari_game("ALE/SpaceInvaders-v5") == "space_invaders"
    info = check_env(Config(env_id="ALE/Pong-v5"))
    assert info.observation_space.shape == (4, 84, 84) and info.observation_space.dtype == np.uint8
    assert info.n_actions == 6
    with pytest.raises(ConfigError, match="'mlp' network needs a flat Box"):
        check_env(Config(env_id="ALE/Pong-v5", network="mlp"))
    with pytest.raises(ConfigError, match="'nature_cnn' network needs image observations"):
        check_env(Config(env_id="CartPole-v1", network="nature_cnn"))
    with pytest.raises(ConfigError, match="unknown environment id 'ALE/NoSuchGame-v5'"):
        check_env(Config(env_id="ALE/NoSuchGame-v5"))
    with pytest.raises(ConfigError, match="'screen_size' must be an integer >= 36"):
        Config(screen_size=20)


def test_make_env_builds_the_evaluation_pipeline_unless_training():
    config = Config(env_id="ALE/Breakout-v5")
    evaluation = make_env(config.env_id, config=config)()
    names = [type(w).__name__ for w in _wrappers(evaluation)]
    assert names[0] == "RecordEpisodeStatistics" and "EpisodicLife" not in names and "TransformReward" not in names
    training = make_env(config.env_id, config=config, training=True)()
    names = [type(w).__name__ for w in _wrappers(training)]
    assert "EpisodicLife" in names and "TransformReward" in names and "FireReset" in names


def test_atari_preset_group_applies_to_every_ale_id(tmp_path, monkeypatch):
    c = resolve("ALE/SpaceInvaders-v5")
    assert (c.n_timesteps, c.learning_rate, c.batch_size, c.buffer_size, c.learning_starts) == (
        10_000_000, 1e-4, 32, 100_000, 100_000)
    assert (c.gamma, c.target_update_interval, c.train_freq, c.gradient_steps) == (0.99, 1000, 4, 1)
    assert (c.exploration_fraction, c.exploration_final_eps, c.eval_epsilon, c.network) == (0.1, 0.01, 0.05,
                                                                                          "nature_cnn")
    r = resolve("ALE/Pong-v5", "rainbow")
    assert (r.learning_rate, r.optimizer_eps, r.n_step, r.prioritized_alpha, r.prioritized_beta) == (
        6.25e-5, 1.5e-4, 3, 0.5, 0.4)
    assert (r.target_update_interval, r.learning_starts, r.buffer_size, r.noisy, r.distributional) == (
        8000, 20000, 1_000_000, True, "c51")  # the paper's 1M: frames stored once
    assert resolve("CartPole-v1").network == "mlp" and resolve("Acrobot-v1").learning_starts == 0  # untouched
    (tmp_path / "dqn.yml").write_text("default: {batch_size: 1, gamma: 0.5, tau: 0.5}\n"
                                      "atari: {batch_size: 2, gamma: 0.6}\nALE/Pong-v5: {batch_size: 3}\n")
    monkeypatch.setattr(resolve_module, "PRESET_DIR", tmp_path)
    assert preset_values("dqn", "ALE/Pong-v5") == {"batch_size": 3, "gamma": 0.6, "tau": 0.5}
    assert preset_values("dqn", "ALE/Breakout-v5") == {"batch_size": 2, "gamma": 0.6, "tau": 0.5}
    assert preset_values("dqn", "CartPole-v1") == {"batch_size": 1, "gamma": 0.5, "tau": 0.5}


def test_rl_zoo_cnn_policy_maps_to_nature_cnn_and_auto_resolves_by_observation():
    assert normalise_preset_entry({"policy": "CnnPolicy"}, "x") == {"network": "nature_cnn"}
    assert Config().network == "auto"
    assert Config().resolved_network((4, 84, 84)) == "nature_cnn" and Config().resolved_network((4,)) == "mlp"
    assert Config(network="mlp").resolved_network((4, 84, 84)) == "mlp"


def test_human_normalized_scores():
    assert human_normalized("pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("Pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("SpaceInvaders", 1668.7) == human_normalized("space_invaders", 1668.7) == 1.0
    assert human_normalized("breakout", 30.5 + 28.8) == pytest.approx(2.0)
    assert human_normalized("no_such_game", 1.0) is None


# ---- (c) the Nature CNN -------------------------------------------------------------------------------------
def test_nature_cnn_shapes_and_uint8_scaling():
    torch.manual_seed(0)
    torso = NatureCNN((4, 84, 84))
    assert [m.out_channels for m in torso.convs if isinstance(m, torch.nn.Conv2d)] == [32, 64, 64]
    assert torso.fc.in_features == 64 * 7 * 7 and torso.feature_dim == 512
    frames = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    features = torso(frames)
    assert features.shape == (5, 512)
    by_hand = F.relu(torso.fc(torso.convs(frames.float() / 255.0)))  # the network divides by 255 itself
    torch.testing.assert_close(features, by_hand)
    torch.testing.assert_close(torso(frames.float()), features)
    q = QNetwork(torso, torso.feature_dim, 6)
    assert q(frames).shape == (5, 6)


def test_space_to_depth_by_hand():
    x = torch.arange(2 * 4 * 4).view(1, 2, 4, 4)  # channel 0: 0..15 row by row, channel 1: 16..31
    y = space_to_depth(x, 2)
    assert y.shape == (1, 8, 2, 2)
    # channel 4c + 2dy + dx holds x[c, 2i + dy, 2j + dx]: c 0, (dy, dx) (0, 0) -> [[0, 2], [8, 10]]; (0, 1) -> [[1, 3],
    # [9, 11]]; (1, 0) -> [[4, 6], [12, 14]]; c 1, (1, 1) -> 16 + [[5, 7], [13, 15]]
    assert y[0, 0].tolist() == [[0, 2], [8, 10]] and y[0, 1].tolist() == [[1, 3], [9, 11]]
    assert y[0, 2].tolist() == [[4, 6], [12, 14]] and y[0, 7].tolist() == [[21, 23], [29, 31]]
    assert torch.equal(y, F.pixel_unshuffle(x, 2))


def test_float32_stem_convolution_gradient_equals_autograd_and_forward_is_the_same_convolution():
    """The float32 CPU path computes the first convolution's weight gradient from the space-to-depth input (a
    different summation order than oneDNN's stride-4 kernel): equal to autograd's to float32 rounding."""
    torch.manual_seed(0)
    torso = NatureCNN((4, 84, 84))
    frames = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    upstream = torch.randn(8, 512)
    features = torso(frames)
    (features * upstream).sum().backward()
    grads = {name: p.grad.clone() for name, p in torso.named_parameters()}
    torso.zero_grad(set_to_none=True)
    first = torso.convs[0]
    plain = F.relu(torso.fc(torso.convs[1:](F.conv2d(frames.float(), first.weight / 255.0, first.bias, 4))))
    assert torch.equal(features, F.relu(torso.fc(torso.convs[1:](
        F.conv2d(frames.float(), first.weight * (1.0 / 255.0), first.bias, 4)))))  # the forward: the same op
    torch.testing.assert_close(features, plain)
    (plain * upstream).sum().backward()
    assert features.grad_fn is not None and grads["convs.0.weight"].abs().sum() > 0
    for name, p in torso.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)
    with torch.no_grad():  # no gradient wanted (the target net, acting): the plain convolution
        torch.testing.assert_close(torso(frames), features.detach())


def test_same_padding_by_hand():
    # 84 through 8/4: out ceil(84/4) = 21, total (21-1)*4 + 8 - 84 = 4 -> 2 and 2; 21 through 4/2: out 11, total
    # 10*2 + 4 - 21 = 3 -> 1 before, 2 after; 11 through 3/1: out 11, total 2 -> 1 and 1
    assert same_pads((84, 84), [(8, 4), (4, 2), (3, 1)]) == [(2, 2, 2, 2), (1, 2, 1, 2), (1, 1, 1, 1)]
    # a non-square input: width 80 -> 20 (total 4), height 84 -> 21; then 20 -> 10 (total 2), 21 -> 11 (total 3)
    assert same_pads((84, 80), [(8, 4), (4, 2)]) == [(2, 2, 2, 2), (1, 1, 1, 2)]


def test_nature_cnn_with_same_padding_is_the_explicitly_padded_stack():
    """Dopamine's JAX network (flax's default 'SAME' padding): 64 x 11 x 11 = 7744 features for 84x84; the forward
    pass is the three convolutions on explicitly zero-padded inputs, in float32 (its stem's gradient too) and bf16."""
    torch.manual_seed(0)
    torso = NatureCNN((4, 84, 84), padding="same")
    assert torso.fc.in_features == 7744 and set(torso.state_dict()) == set(NatureCNN((4, 84, 84)).state_dict())
    c1, c2, c3 = torso.convs[0], torso.convs[2], torso.convs[4]
    frames = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)

    def by_hand(x):
        x = F.relu(F.conv2d(F.pad(x.float(), (2, 2, 2, 2)), c1.weight * (1.0 / 255.0), c1.bias, 4))
        assert x.shape[-2:] == (21, 21)
        x = F.relu(c2(F.pad(x, (1, 2, 1, 2))))
        x = F.relu(c3(F.pad(x, (1, 1, 1, 1))))
        assert x.shape[-2:] == (11, 11)
        return F.relu(torso.fc(x.flatten(1)))

    upstream = torch.randn(5, 512)
    features = torso(frames)
    assert torch.equal(features, by_hand(frames))
    (features * upstream).sum().backward()
    grads = {name: p.grad.clone() for name, p in torso.named_parameters()}
    torso.zero_grad(set_to_none=True)
    (by_hand(frames) * upstream).sum().backward()
    for name, p in torso.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(torso(frames[:1]), by_hand(frames[:1]))  # acting: one observation
    bf16 = NatureCNN((4, 84, 84), padding="same", bf16=True)
    bf16.load_state_dict(torso.state_dict())
    with torch.no_grad():
        assert (bf16(frames) - features).norm() / features.norm() < 0.02


def test_xavier_uniform_init_as_dopamine_and_noisy_layers_keep_theirs():
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    torch.manual_seed(0)
    net = build_q_network(Config(env_id="ALE/Pong-v5", weight_init="xavier_uniform", dueling=True), space, 6)
    # Glorot uniform: U(+-sqrt(6 / (fan_in + fan_out))); conv1 fan_in 4*8*8 = 256, fan_out 32*8*8 = 2048 -> 0.0510;
    # fc 3136 -> 512: 0.0406; advantage 512 -> 6: 0.1076
    for layer, bound in ((net.torso.convs[0], math.sqrt(6 / 2304)), (net.torso.fc, math.sqrt(6 / 3648)),
                         (net.advantage, math.sqrt(6 / 518))):
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
        assert torch.all(layer.bias == 0)
    default = build_q_network(Config(env_id="ALE/Pong-v5"), space, 6)
    assert default.torso.fc.weight.abs().max() <= 1 / math.sqrt(3136) and default.torso.fc.bias.abs().max() > 0
    noisy = build_q_network(Config(env_id="ALE/Pong-v5", weight_init="xavier_uniform", noisy=True, noisy_sigma=0.1),
                            space, 6)
    assert torch.all(noisy.torso.fc.weight_sigma == 0.1 / math.sqrt(3136)) and noisy.torso.fc.bias_mu.abs().max() > 0
    assert torch.all(noisy.torso.convs[0].bias == 0)  # its convolutions are Glorot's, as in Dopamine


def test_nature_cnn_bf16_autocast_stays_close_to_float32_and_learns_in_float32():
    torch.manual_seed(0)
    fp32, bf16 = NatureCNN((4, 84, 84)), NatureCNN((4, 84, 84), bf16=True)
    bf16.load_state_dict(fp32.state_dict())
    frames = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    features = bf16(frames)
    assert features.dtype == torch.float32 and all(p.dtype == torch.float32 for p in bf16.parameters())
    reference = fp32(frames)
    assert not torch.equal(features, reference)  # it did compute in bfloat16...
    assert (features - reference).norm() / reference.norm() < 0.02  # ...to within bfloat16's ~3 digits
    torch.testing.assert_close(bf16(frames[:1]), reference[:1], rtol=1e-4, atol=1e-5)  # acting: float32
    features.sum().backward()
    assert bf16.convs[0].weight.grad.dtype == torch.float32 and bf16.convs[0].weight.grad.abs().sum() > 0
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert build_q_network(Config(env_id="ALE/Pong-v5", bf16="true"), space, 6).torso.bf16
    assert not build_q_network(Config(env_id="ALE/Pong-v5", bf16="false"), space, 6).torso.bf16


def autocast_reference(torso: NatureCNN, frames: torch.Tensor) -> torch.Tensor:
    """The bf16 batch forward as autocast alone computes it: float32 frames, every weight cast on each call."""
    with torch.autocast("cpu", torch.bfloat16):
        first = torso.convs[0]
        x = F.conv2d(frames.float(), first.weight * (1.0 / 255.0), first.bias, first.stride)
        return F.relu(torso.fc(torso.convs[1:](x))).float()


def test_nature_cnn_bf16_batches_compute_what_autocast_computes_with_the_cast_kept_until_a_change():
    torch.manual_seed(0)
    online = NatureCNN((4, 84, 84), bf16=True)
    frames = torch.randint(0, 256, (6, 4, 84, 84), dtype=torch.uint8)
    assert torch.equal(online(frames), autocast_reference(online, frames))  # uint8 -> bf16 directly: same values
    assert online._kept_cast is None  # a pass that learns, first on these weights: autocast's cast, not kept
    with torch.no_grad():
        assert torch.equal(online(frames[:2]), autocast_reference(online, frames[:2]))
    kept_online = online._kept_cast[1]  # a pass without gradients keeps it for the passes after it...
    out = online(frames)
    assert online._kept_cast[1] is kept_online and torch.equal(out, autocast_reference(online, frames))
    out.square().sum().backward()  # ...the one that learns included, with autocast's gradient (SharedCast)
    grad = online.fc.weight.grad.clone()
    online.zero_grad(set_to_none=True)
    autocast_reference(online, frames).square().sum().backward()
    assert torch.equal(grad, online.fc.weight.grad)
    target = copy.deepcopy(online).requires_grad_(False)
    assert torch.equal(target(frames), autocast_reference(target, frames))
    kept = target._kept_cast[1]
    assert torch.equal(target(frames[:3]), autocast_reference(target, frames[:3]))
    assert target._kept_cast[1] is kept  # no change since: the same cast, not a new one
    other = NatureCNN((4, 84, 84), bf16=True)
    changes = [lambda: torch._foreach_copy_(list(target.parameters()), list(other.parameters())),  # hard sync
               lambda: torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), 0.5),  # soft
               lambda: target.load_state_dict(online.state_dict())]  # a checkpoint
    for change in changes:
        before = target(frames)
        with torch.no_grad():
            change()
        after = target(frames)
        assert not torch.equal(after, before) and target._kept_cast[1] is not kept
        assert torch.equal(after, autocast_reference(target, frames))  # the new weights' cast
        kept = target._kept_cast[1]
    with torch.no_grad():
        online.fc.weight.add_(1.0)  # learning weights: never a stale cast either
    with torch.no_grad():
        assert torch.equal(online(frames), autocast_reference(online, frames))
    assert online._kept_cast[1] is not kept_online


def test_noisy_bf16_fc_computes_what_autocast_computes_and_casts_once_per_weight_change():
    """DER's noisy fc in bf16: the factorised form under autocast, with the bfloat16 casts of weight_mu and
    weight_sigma kept until a weight changes in place: the target's for a sync period, the online net's across the
    passes of one update (a no-grad pass, then the one that learns), renewed by the optimizer's fused step."""
    from qzoo.fastpath import FusedAdamStep

    torch.manual_seed(0)
    online = NatureCNN((4, 84, 84), linear=NoisyLinear, bf16=True).train()
    frames = torch.randint(0, 256, (6, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        first = online(frames)
        kept = online._kept_cast[1]
    assert torch.equal(first, autocast_reference(online, frames).detach())
    out = online(frames)  # with gradients: the same casts, recorded by autograd
    assert online._kept_cast[1] is kept and kept[0].grad_fn is not None and torch.equal(out, first)
    out.square().sum().backward()
    grads = [online.fc.weight_mu.grad.clone(), online.fc.weight_sigma.grad.clone()]
    online.zero_grad(set_to_none=True)
    autocast_reference(online, frames).square().sum().backward()  # autocast casting on the call itself
    assert torch.equal(grads[0], online.fc.weight_mu.grad) and torch.equal(grads[1], online.fc.weight_sigma.grad)
    online.fc.reset_noise()  # new noise: applied outside the casts, which stay
    noisier = online(frames)
    assert not torch.equal(noisier, out) and online._kept_cast[1] is kept
    optimizer = torch.optim.Adam(online.parameters(), lr=1e-2, fused=True)
    adam = FusedAdamStep.of(optimizer, list(online.parameters()))
    for _ in range(2):  # the first step creates the state through optimizer.step(), the second is the kernel alone
        versions = online.fc.weight_mu._version, online.fc.weight_sigma._version
        adam.step()
        assert online.fc.weight_mu._version > versions[0] and online.fc.weight_sigma._version > versions[1]
        stepped = online(frames)
        assert online._kept_cast[1] is not kept and torch.equal(stepped, autocast_reference(online, frames))
        kept = online._kept_cast[1]
    target = copy.deepcopy(online).requires_grad_(False)
    before = target(frames)
    kept = target._kept_cast[1]
    assert kept[0].grad_fn is None and torch.equal(target(frames), before) and target._kept_cast[1] is kept
    with torch.no_grad():
        torch._foreach_copy_(list(target.parameters()), list(NatureCNN((4, 84, 84), linear=NoisyLinear).parameters()))
    assert not torch.equal(target(frames), before) and target._kept_cast[1] is not kept
    assert torch.equal(target(frames), autocast_reference(target, frames))


def drq_like_replay(config, space):
    from qzoo.replay import make_replay

    rng = np.random.default_rng(0)
    replay, obs = make_replay(config, space), rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    for i in range(64):  # sliding frame stacks, as the replay stores them
        nxt = np.concatenate([obs[:, 1:], rng.integers(0, 256, (1, 1, 84, 84), dtype=np.uint8)], 1)
        replay.add(obs, rng.integers(0, 6, 1), rng.normal(size=1).astype(np.float32), nxt, np.array([i == 40]),
                   np.zeros(1, bool))
        obs = nxt
    return replay


@pytest.mark.parametrize("prioritized", [False, True])
def test_kept_casts_and_the_lazy_sync_give_the_updates_of_plain_autocast_and_eager_copies_bit_for_bit(
        monkeypatch, prioritized):
    """DrQ(eps) syncs the target after every update. With ``lazy_sync`` the sync copies nothing and the target pass
    reads the online net, whose fc keeps one bf16 cast per weight version for both passes (SharedCast in the pass
    that learns). Six synced Double-dueling updates give the same weights, bit for bit, as eager copies with
    autocast casting on every call; the lazy agent copied nothing and cast the fc once per update."""
    from qzoo import networks
    from qzoo.agent import build_agent

    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    config = Config(env_id="ALE/Pong-v5", bf16="true", double=True, dueling=True, batch_size=8, buffer_size=300,
                    target_update_interval=1, learning_rate=1e-3, prioritized=prioritized)

    def run(lazy: bool):
        torch.manual_seed(0)
        agent = build_agent(config, space, 6, torch.device("cpu"))
        assert agent.lazy_sync
        replay = drq_like_replay(config, space)
        copies, casts = [], []
        real_copy, real_cast = torch._foreach_copy_, networks.NatureCNN._fc_bf16
        monkeypatch.setattr(torch, "_foreach_copy_", lambda *a: (copies.append(1), real_copy(*a))[1])
        if lazy:
            def counting(self, x):
                before = self._kept_cast
                out = real_cast(self, x)
                casts.append(self._kept_cast is not before)
                return out
            monkeypatch.setattr(networks.NatureCNN, "_fc_bf16", counting)
        else:
            agent.lazy_sync = False
            monkeypatch.setattr(networks.NatureCNN, "_fc_bf16", lambda self, x: self.fc(x))  # autocast alone
        for step in range(6):
            agent.sync_target()
            agent.learn(replay, 1, 8, 100 + step)
        monkeypatch.undo()
        return agent, len(copies), casts

    lazy, lazy_copies, casts = run(True)
    eager, eager_copies, _ = run(False)
    assert lazy_copies == 0 and eager_copies == 6
    assert sum(casts) == 6  # one new cast per update: the target pass made it, the learning pass reused it
    for a, b in zip(lazy.q_net.parameters(), eager.q_net.parameters(), strict=True):
        assert torch.equal(a, b)
    # a lazy sync's weights reach target_net when something reads it: the checkpoint holds the online weights
    lazy.sync_target()
    state = lazy.state_dict()
    for name, value in lazy.q_net.state_dict().items():
        assert torch.equal(state["target_net"][name], value)


def test_a_lazy_sync_refuses_a_target_read_after_an_update_without_a_sync():
    from qzoo.agent import build_agent

    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    config = Config(env_id="ALE/Pong-v5", bf16="false", double=True, batch_size=8, buffer_size=300,
                    target_update_interval=1)
    agent = build_agent(config, space, 6, torch.device("cpu"))
    replay = drq_like_replay(config, space)
    agent.sync_target()
    agent.learn(replay, 1, 8, 100)
    agent.sync_target()
    agent.learn(replay, 1, 8, 101)  # no sync after it: the target's weights (the online net's before) are gone
    with pytest.raises(RuntimeError, match="lazy_sync"):
        agent.learn(replay, 1, 8, 102)
    # other settings keep eager copies: a sync that is not after every update, several updates per phase, noise
    assert not build_agent(config.replace(target_update_interval=4), space, 6, torch.device("cpu")).lazy_sync
    assert not build_agent(config.replace(gradient_steps=2), space, 6, torch.device("cpu")).lazy_sync
    assert not build_agent(config.replace(noisy=True), space, 6, torch.device("cpu")).lazy_sync
    assert build_agent(config.replace(n_envs=4, target_update_interval=4), space, 6, torch.device("cpu")).lazy_sync


def test_nature_cnn_composes_with_noisy_dueling_c51_heads():
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    config = Config(env_id="ALE/Pong-v5", noisy=True, dueling=True, distributional="c51")
    net = build_q_network(config, space, 6)
    assert isinstance(net.torso, NatureCNN) and isinstance(net.torso.fc, NoisyLinear)  # noisy fc 512 (Rainbow)
    assert isinstance(net.advantage, NoisyLinear) and net.value is not None
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    assert net(frames).shape == (3, 6) and net.logits(frames).shape == (3, 6, 51)
    assert isinstance(build_q_network(Config(env_id="ALE/Pong-v5"), space, 6).torso.fc, torch.nn.Linear)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from qzoo import precision

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f\n\n"
                       "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f\n")
    flags = precision.cpu_flags(cpuinfo)
    assert flags == {"fpu", "sse2", "avx2", "avx512f"} and not precision.native_bf16_cpu(flags)
    assert precision.native_bf16_cpu({"avx2", "avx512_bf16"}) and precision.native_bf16_cpu({"amx_bf16", "amx_tile"})
    assert precision.cpu_flags(tmp_path / "missing") is None


def test_bf16_auto_resolves_by_hardware_and_says_so_in_one_line(monkeypatch):
    from qzoo import precision

    pong, shape, cpu, cuda = Config(env_id="ALE/Pong-v5", bf16="auto"), (4, 84, 84), torch.device("cpu"), \
        torch.device("cuda")
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda flags=None: False)
    value, line = precision.resolve_bf16(pong, cpu, shape)
    assert value == "false" and line.startswith("qzoo: bf16=auto: off (") and "\n" not in line
    assert precision.resolve_bf16(pong, cuda, shape) == ("true", "qzoo: bf16=auto: on (CUDA)")
    # forced on where it is emulated: a one-line warning
    value, warning = precision.resolve_bf16(pong.replace(bf16="true"), cpu, shape)
    assert value == "true" and "warning" in warning and "bf16=false" in warning and "\n" not in warning
    assert precision.resolve_bf16(pong.replace(bf16="true"), cuda, shape) == ("true", None)
    assert precision.resolve_bf16(pong.replace(bf16="false"), cpu, shape) == ("false", None)
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda flags=None: True)
    value, line = precision.resolve_bf16(pong, cpu, shape)
    assert value == "true" and line.startswith("qzoo: bf16=auto: on (this CPU computes bfloat16 natively")
    assert precision.resolve_bf16(pong.replace(bf16="true"), cpu, shape) == ("true", None)
    # no CNN torso, no bf16 path: auto is off, silently
    assert precision.resolve_bf16(Config(env_id="CartPole-v1", bf16="auto"), cpu, (4,)) == ("false", None)


def test_tri_state_settings_also_take_booleans():
    from qzoo.config import from_dict

    assert from_dict({"bf16": True}).bf16 == "true" and from_dict({"bf16": "off"}).bf16 == "false"
    assert from_dict({"overlap": "Auto".lower()}).overlap == "auto" and from_dict({"save_replay": False}).save_replay \
        == "false"
    assert Config().bf16 == "auto" and Config().overlap == "auto"  # the shipped defaults
    with pytest.raises(ConfigError, match="setting 'bf16' must be one of 'auto', 'true', 'false', got 'fast'"):
        from_dict({"bf16": "fast"})


def test_a_video_env_renders_the_game_while_the_config_refuses_a_render_mode():
    from qzoo.video import render_env

    # a Config refuses render_mode in env_kwargs (the user's input: 'human' would wait for a display) ...
    with pytest.raises(ConfigError, match="without 'render_mode'"):
        Config(env_id="ALE/Pong-v5", env_kwargs={"render_mode": "rgb_array"})
    # ... while qzoo's own video env passes it to gym.make beside the config: the whole screen, in colour
    env = render_env(Config(env_id="ALE/Pong-v5", env_kwargs={"mode": 0}))
    env.reset(seed=0)
    assert env.render().shape == (210, 160, 3)
    assert env.unwrapped._game_mode == 0  # the user's env_kwargs still reach the game
    env.close()
