"""qzoo's default Atari training envs against RL Zoo's: a trace recorded from stable-baselines3 2.9.2's
``AtariWrapper`` + ``VecFrameStack(4)`` (tests/data/make_atari_sb3_trace.py, run in the SB3 peer venv; SB3 is not a
qzoo dependency) is replayed here, action for action, through ``make_vec_env`` with the settings ``qzoo train``
resolves for the game (only ``noop_max`` 0, so that the actions alone decide what happens).

1,500 random actions per game: Pong plays a whole game (its one termination is the game over), Breakout loses ~43
lives over ~9 games, Space Invaders 9 lives. Per step the clipped reward, terminated and truncated must be equal;
the newest frame of every observation (2x2 mean-pooled, as recorded) and the sum of each stacked frame (0 where the
stack is zero-padded, so a frame stack that does not restart at a life loss shows) must agree, and so must the
final observation of every episode (s', which the replay buffer stores).

Frames: Breakout and Space Invaders agree exactly. Pong agrees within gray-level rounding at moving edges (at most
14 of the 1,764 pooled pixels of a frame differ, by at most 13 gray levels): SB3 takes the max of the last two RGB
frames and then converts to gray, ALE (gymnasium's AtariPreprocessing) converts each frame to gray first. The one
frame that is not compared is the newest one of s' at a game over: both pipelines stop skipping frames at the game
over and keep a stale frame, each a different one (the bootstrap is cut there, so no target reads it).
"""

from pathlib import Path

import numpy as np
import pytest

from qzoo.envs import finished_games, make_vec_env, true_next_obs
from qzoo.resolve import resolve

TRACE = Path(__file__).resolve().parents[1] / "data" / "atari_sb3_trace.npz"
# per game: (pooled pixels of a frame allowed to differ, by at most this many gray levels, slot-sum tolerance)
TOLERANCE = {"Pong": (16, 16, 400), "Breakout": (0, 0, 0), "SpaceInvaders": (0, 0, 0)}


def pool(frame: np.ndarray) -> np.ndarray:
    """As the recorder: 84x84 -> 42x42, mean of each 2x2 block, rounded."""
    return np.rint(frame.astype(np.float32).reshape(42, 2, 42, 2).mean(axis=(1, 3))).astype(np.int64)


def assert_frames_close(ours: np.ndarray, theirs: np.ndarray, game: str, where: str) -> None:
    n_pixels, levels, _ = TOLERANCE[game]
    diff = np.abs(pool(ours) - theirs)
    assert diff.max() <= levels and (diff > 0).sum() <= n_pixels, \
        f"{game} {where}: {(diff > 0).sum()} pooled pixels differ, by up to {diff.max()} gray levels"


def assert_slots_close(ours: np.ndarray, theirs: np.ndarray, game: str, where: str) -> None:
    ours = ours.sum(axis=(1, 2), dtype=np.int64)
    assert np.array_equal(ours == 0, theirs == 0), f"{game} {where}: zero-padded slots {ours == 0} vs {theirs == 0}"
    assert np.abs(ours - theirs).max() <= TOLERANCE[game][2], f"{game} {where}: slot sums {ours} vs {theirs}"


@pytest.mark.parametrize("game", ["Pong", "Breakout", "SpaceInvaders"])
def test_default_training_envs_replay_the_sb3_atari_wrapper_trace(game):
    trace = np.load(TRACE)
    get = lambda key: trace[f"{game}/{key}"]  # noqa: E731
    envs = make_vec_env(resolve(f"ALE/{game}-v5", sets=["noop_max=0"]))
    obs, _ = envs.reset(seed=0)
    assert_frames_close(obs[0, -1], get("reset_frame"), game, "reset")
    assert_slots_close(obs[0], get("reset_slot_sums"), game, "reset")
    final_steps, n_final, game_overs = list(get("final_steps")), 0, 0
    for t, action in enumerate(get("actions")):
        obs, reward, terminated, truncated, infos = envs.step(np.array([action]))
        assert (reward[0], terminated[0], truncated[0]) == \
            (get("rewards")[t], get("terminated")[t], get("truncated")[t]), f"{game} step {t}"
        assert_frames_close(obs[0, -1], get("frames")[t], game, f"step {t}")
        assert_slots_close(obs[0], get("slot_sums")[t], game, f"step {t}")
        if terminated[0] or truncated[0]:
            assert final_steps[n_final] == t
            s_t = true_next_obs(obs, infos)[0]
            if finished_games(infos):  # a game over: its newest frame is stale in both pipelines (see above)
                game_overs += 1
                assert_slots_close(s_t[:-1], get("final_slot_sums")[n_final][:-1], game, f"s' at step {t}")
            else:
                assert_frames_close(s_t[-1], get("final_frames")[n_final], game, f"s' at step {t}")
                assert_slots_close(s_t, get("final_slot_sums")[n_final], game, f"s' at step {t}")
            n_final += 1
    envs.close()
    assert n_final == len(final_steps) and game_overs >= 1
    assert {"Pong": 1, "Breakout": 40, "SpaceInvaders": 9}[game] <= n_final  # the trace covers life losses
