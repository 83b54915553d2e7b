"""Records the golden trace tests/unit/test_atari_sb3_trace.py replays: RL Zoo's Atari pipeline (stable-baselines3's
``AtariWrapper`` + ``VecFrameStack(4)``, as ``make_atari_env`` builds it, on the game created with ``frameskip=1,
repeat_action_probability=0``) driven by fixed random actions with ``noop_max=0``, so that nothing but the actions
decides what happens. Run it in the SB3 peer venv (qzoo/bench/peer.py; it has no qzoo)::

    QZOO_SB3_VENV=benchmarks/.sb3-venv python -c "from qzoo.bench.peer import ensure_sb3; ensure_sb3()"
    benchmarks/.sb3-venv/bin/python tests/data/make_atari_sb3_trace.py   # writes tests/data/atari_sb3_trace.npz

Per game and step t (after the t-th action): the action, the clipped reward, terminated, truncated, the newest
frame of the observation (84x84 gray; after an episode ended, the next episode's first observation, as SB3's
vector env auto-resets) and the sum of each of its 4 stacked frames (0 for a zero-padded slot, so a frame stack
that restarts shows), and where an episode ended the same two of the final observation (``terminal_observation``).
Frames are stored 2x2 mean-pooled (42x42, rounded) to keep the file small.
"""

from __future__ import annotations

import sys
from pathlib import Path

import ale_py
import gymnasium as gym
import numpy as np
import stable_baselines3
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

GAMES = ("ALE/Pong-v5", "ALE/Breakout-v5", "ALE/SpaceInvaders-v5")
N_STEPS = 1500
SEED = 0
OUT = Path(__file__).resolve().parent / "atari_sb3_trace.npz"


def pool(frame: np.ndarray) -> np.ndarray:
    """84x84 -> 42x42, mean of each 2x2 block, rounded to uint8."""
    f = frame.astype(np.float32).reshape(42, 2, 42, 2).mean(axis=(1, 3))
    return np.rint(f).astype(np.uint8)


def record(env_id: str) -> dict:
    venv = VecFrameStack(make_atari_env(env_id, n_envs=1, seed=SEED, wrapper_kwargs={"noop_max": 0},
                                        env_kwargs={"frameskip": 1, "repeat_action_probability": 0.0}), 4)
    n_actions = int(venv.action_space.n)
    actions = np.random.default_rng(SEED).integers(0, n_actions, N_STEPS).astype(np.uint8)
    obs = venv.reset()  # (1, 84, 84, 4): stacked on the last axis
    out = {"reset_frame": pool(obs[0, :, :, -1]), "reset_slot_sums": obs[0].sum(axis=(0, 1)).astype(np.int64)}
    rewards, terminated, truncated, frames, slot_sums = [], [], [], [], []
    final_steps, final_frames, final_slot_sums = [], [], []
    for t, action in enumerate(actions):
        obs, reward, done, infos = venv.step(np.array([action]))
        trunc = bool(infos[0].get("TimeLimit.truncated", False))
        rewards.append(reward[0])
        terminated.append(bool(done[0]) and not trunc)
        truncated.append(trunc)
        frames.append(pool(obs[0, :, :, -1]))
        slot_sums.append(obs[0].sum(axis=(0, 1)))
        if done[0]:
            final = infos[0]["terminal_observation"]  # (84, 84, 4)
            final_steps.append(t)
            final_frames.append(pool(final[:, :, -1]))
            final_slot_sums.append(final.sum(axis=(0, 1)))
    venv.close()
    out.update(actions=actions, rewards=np.array(rewards, np.float32), terminated=np.array(terminated),
               truncated=np.array(truncated), frames=np.stack(frames), slot_sums=np.array(slot_sums, np.int64),
               final_steps=np.array(final_steps, np.int64), final_frames=np.stack(final_frames),
               final_slot_sums=np.array(final_slot_sums, np.int64))
    return out


def main() -> None:
    arrays = {"versions": np.array([f"stable-baselines3 {stable_baselines3.__version__}",
                                    f"ale-py {ale_py.__version__}", f"gymnasium {gym.__version__}"])}
    for env_id in GAMES:
        trace = record(env_id)
        game = env_id.split("/")[1].split("-")[0]
        arrays.update({f"{game}/{k}": v for k, v in trace.items()})
        print(f"{env_id}: {N_STEPS} steps, reward sum {trace['rewards'].sum():.0f}, "
              f"{trace['terminated'].sum()} terminations, {trace['truncated'].sum()} truncations", file=sys.stderr)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)


if __name__ == "__main__":
    gym.register_envs(ale_py)
    main()
