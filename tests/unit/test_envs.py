import numpy as np
import pytest

from qzoo.config import Config, ConfigError
from qzoo.envs import check_env, finished_episodes, make_vec_env, true_next_obs


def test_unknown_env_id_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match="unknown environment id 'CartPole-v7'; did you mean 'CartPole-v1'"):
        check_env(Config(env_id="CartPole-v7"))


def test_continuous_actions_are_refused():
    with pytest.raises(ConfigError, match="needs a Discrete action space"):
        check_env(Config(env_id="Pendulum-v1"))


def test_bad_env_kwargs_are_refused():
    with pytest.raises(ConfigError, match=r"environment 'CartPole-v1' refused to start with env_kwargs \{'nope': 1\}: "
                                          r".*unexpected keyword argument 'nope'"):
        check_env(Config(env_id="CartPole-v1", env_kwargs={"nope": 1}))


@pytest.mark.parametrize("env_id,kwargs,said", [
    ("LunarLander-v3", {"gravity": 5}, "AssertionError: gravity (current value: 5) must be between -12 and 0"),
    ("FrozenLake-v1", {"map_name": "9x9"}, "KeyError: '9x9'"),
])
def test_any_exception_of_the_env_with_the_users_kwargs_is_one_line(env_id, kwargs, said):
    with pytest.raises(ConfigError) as e:
        check_env(Config(env_id=env_id, env_kwargs=kwargs))
    assert str(e.value) == f"environment '{env_id}' refused to start with env_kwargs {kwargs}: {said}"


def test_missing_gym_package_is_refused():
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        check_env(Config(env_id="CartPole-v1", gym_packages=["no_such_module"]))


def test_true_next_obs_is_the_final_observation_of_a_truncated_episode():
    # Corridor truncates after 30 steps; env 0 walks right (reaches goal at step 7, terminated),
    # env 1 walks left forever (truncated at step 30, at position 0).
    envs = make_vec_env(Config(env_id="qzoo/Corridor-v0", n_envs=2))
    obs, _ = envs.reset(seed=0)
    seen = {}
    for t in range(1, 31):
        next_obs, _, terminated, truncated, infos = envs.step(np.array([1, 0]))
        obs_t = true_next_obs(next_obs, infos)
        for i, _, _ in finished_episodes(infos):
            seen.setdefault(i, (t, bool(terminated[i]), bool(truncated[i]), obs_t[i].argmax(), next_obs[i].argmax()))
    envs.close()
    assert seen[0] == (7, True, False, 7, 0)  # s' is the goal cell, not the reset cell
    assert seen[1] == (30, False, True, 0, 0)  # truncated at the wall: final obs position 0


def test_render_problem_reads_the_render_modes_an_env_class_declares():
    from qzoo.envs import render_problem

    for env_id in ("CartPole-v1", "FrozenLake-v1", "ALE/Pong-v5", "MinAtar/Breakout-v1"):
        assert render_problem(env_id) is None, env_id
    assert render_problem("qzoo/Corridor-v0") == ("environment 'qzoo/Corridor-v0' renders no video frames (its render "
                                                  "modes: ansi; a video needs 'rgb_array')")
    # a class that declares none (gymnasium.Env's default metadata), registered by its class, not a string
    assert "(its render modes: none;" in render_problem("qzootest/ConstantReward-v0")
    check_env(Config(env_id="qzoo/Corridor-v0", video_every=100), training=False)  # evaluating a run: no video
    with pytest.raises(ConfigError, match="setting 'video_every': environment 'qzoo/Corridor-v0' renders no"):
        check_env(Config(env_id="qzoo/Corridor-v0", video_every=100))
