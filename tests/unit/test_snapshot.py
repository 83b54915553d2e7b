"""Env snapshots (qzoo/envs/snapshot.py): a snapshot restored into freshly built envs continues exactly as the
original envs do, step for step, across life losses, game resets and episode ends."""

import pickle

import gymnasium as gym
import numpy as np
import pytest

from qzoo.config import Config
from qzoo.envs import make_vec_env
from qzoo.envs.snapshot import ActionLog, restore_vec_env, vec_env_state


def build(env_id: str, **settings):
    return make_vec_env(Config().replace(env_id=env_id, n_envs=2, **settings))


def step_both(a, b, steps: int, rng: np.random.Generator) -> int:
    """Step ``a`` and ``b`` with the same random actions; assert identical results; return the episodes ended."""
    ended = 0
    for t in range(steps):
        actions = rng.integers(0, a.single_action_space.n, a.num_envs)
        (obs_a, r_a, term_a, trunc_a, info_a), (obs_b, r_b, term_b, trunc_b, info_b) = a.step(actions), b.step(actions)
        assert np.array_equal(obs_a, obs_b) and np.array_equal(r_a, r_b), t
        assert np.array_equal(term_a, term_b) and np.array_equal(trunc_a, trunc_b), t
        ep_a, ep_b = info_a.get("final_info", {}).get("episode"), info_b.get("final_info", {}).get("episode")
        assert (ep_a is None) == (ep_b is None), t
        if ep_a is not None:
            assert np.array_equal(ep_a["r"], ep_b["r"]) and np.array_equal(ep_a["l"], ep_b["l"]), t
        if "final_info" in info_a:
            game_a, game_b = info_a["final_info"].get("game_score"), info_b["final_info"].get("game_score")
            assert (game_a is None and game_b is None) or np.array_equal(game_a, game_b), t
        ended += int(term_a.sum() + trunc_a.sum())
    return ended


@pytest.mark.parametrize("env_id,settings,before,after,kind", [
    # Breakout: lives (EpisodicLife), FIRE after each reset, no-op starts from the env's generator, frame stack
    ("ALE/Breakout-v5", {"atari_backend": "wrappers", "max_episode_frames": 1500}, 150, 400, "snapshots"),
    # Box2D: seeded first episode, then unseeded autoresets (the generator's state is what is recorded)
    ("LunarLander-v3", {}, 150, 400, "snapshots"),
    ("CartPole-v1", {}, 30, 200, "envs"),
])
def test_a_restored_snapshot_continues_exactly(env_id, settings, before, after, kind):
    rng = np.random.default_rng(0)
    original = build(env_id, **settings)
    original.reset(seed=3)
    for _ in range(before):
        original.step(rng.integers(0, original.single_action_space.n, 2))
    state = vec_env_state(original)
    assert state.get(kind) is not None
    fresh = build(env_id, **settings)
    fresh.reset(seed=99)  # another episode altogether: everything that matters must come from the snapshot
    fresh, why = restore_vec_env(fresh, state)
    assert why is None
    assert step_both(original, fresh, after, rng) >= 2  # episodes ended (and the envs reset) after the restore


def test_lunar_lander_envs_log_their_episode_and_atari_wrappers_do_not():
    lunar, pong = build("LunarLander-v3"), build("ALE/Pong-v5", atari_backend="wrappers")
    assert all(isinstance(env, ActionLog) for env in lunar.envs)
    assert not any(isinstance(env, ActionLog) for env in pong.envs)
    lunar.reset(seed=5)
    lunar.step(np.array([1, 2]))
    assert lunar.envs[0].start[:2] == ("seed", 5) and lunar.envs[1].start[:2] == ("seed", 6)
    assert [int(a) for a in lunar.envs[1].actions] == [2]


def test_an_atari_snapshot_leaves_out_the_spaces_and_holds_the_emulator():
    envs = build("ALE/Pong-v5", atari_backend="wrappers")
    envs.reset(seed=0)
    snapshot = pickle.loads(vec_env_state(envs)["snapshots"])
    env = snapshot["envs"][0]
    assert "ale" in env["core"] and "_np_random" in env["core"]["fields"]
    saved = [pickle.loads(data) for fields in env["wrappers"] for data in fields.values()]
    assert saved and not any(isinstance(value, gym.spaces.Space) for value in saved)
    assert len(pickle.dumps(env)) < 200_000  # two 210x160 max-pool frames, the 4x84x84 stack, the emulator


def test_the_cpp_vector_env_has_no_snapshot_and_says_why():
    envs = build("ALE/Pong-v5", atari_backend="vector")
    envs.reset(seed=0)
    state = vec_env_state(envs)
    assert state["envs"] is None and "C++ AtariVectorEnv" in state["why"]
    assert restore_vec_env(envs, state) == (envs, state["why"])
