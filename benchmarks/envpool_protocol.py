"""EnvPool's Atari protocol against RL Zoo's: the SB3 trace the tests replay (tests/data/atari_sb3_trace.npz:
stable-baselines3 2.9.2's ``AtariWrapper`` + ``VecFrameStack(4)``, 1,500 fixed random actions per game, no-op
starts off) replayed action for action through ``envpool.make(..., env_type="gymnasium")`` with the settings
closest to it (frame skip 4 with max-pool, 84x84 gray with area resize, 4-frame stack, life-loss episodes, clipped
rewards, FIRE at reset, no sticky actions, ``noop_max=1``: EnvPool's fewest no-ops).

Where qzoo's default pipeline agrees with the trace step for step (tests/unit/test_atari_sb3_trace.py), this
counts where EnvPool does not: per step the clipped reward, terminated, truncated, the newest frame (2x2 mean-pooled
as recorded; "equal" within Pong's gray-level rounding, as the test allows) and the zero-padded slots of the stack.
EnvPool resets an env in the step *after* the one that ended its episode (the action of that call is ignored): that
extra call is made here so that step t of both shows the next episode's first observation, as SB3's vector env does.

Run it where EnvPool is installed (it needs numpy and envpool only; not a qzoo dependency)::

    python3 -m venv ~/.cache/qzoo/envpool-venv && ~/.cache/qzoo/envpool-venv/bin/pip install envpool
    ~/.cache/qzoo/envpool-venv/bin/python benchmarks/envpool_protocol.py [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TRACE = Path(__file__).resolve().parents[1] / "tests" / "data" / "atari_sb3_trace.npz"
GAMES = ("Pong", "Breakout", "SpaceInvaders")
PIXELS, LEVELS = 16, 16  # pooled pixels allowed to differ, by at most this many gray levels (the test's Pong bound)


def pool(frame: np.ndarray) -> np.ndarray:
    """As the recorder: 84x84 -> 42x42, mean of each 2x2 block, rounded."""
    return np.rint(frame.astype(np.float32).reshape(42, 2, 42, 2).mean(axis=(1, 3))).astype(np.int64)


def frames_agree(ours: np.ndarray, theirs: np.ndarray) -> bool:
    diff = np.abs(pool(ours) - theirs)
    return bool(diff.max() <= LEVELS and (diff > 0).sum() <= PIXELS)


def replay(game: str, trace) -> dict:
    import envpool

    get = lambda key: trace[f"{game}/{key}"]  # noqa: E731
    env = envpool.make(f"{game}-v5", env_type="gymnasium", num_envs=1, batch_size=1, num_threads=1, seed=0,
                       frame_skip=4, img_height=84, img_width=84, gray_scale=True, use_inter_area_resize=True,
                       stack_num=4, episodic_life=True, reward_clip=True, use_fire_reset=True, noop_max=1,
                       repeat_action_probability=0.0, max_episode_steps=27000)
    obs, _ = env.reset()
    first = {"reset frame": frames_agree(obs[0, -1], get("reset_frame")),
             "reset stack padding": bool(np.array_equal(obs[0].sum(axis=(1, 2)) == 0, get("reset_slot_sums") == 0))}
    counts = dict.fromkeys(("reward", "terminated", "truncated", "frame", "stack padding"), 0)
    first_difference: int | None = None
    rewards, ends = [], 0
    for t, action in enumerate(get("actions")):
        obs, reward, terminated, truncated, info = env.step(np.array([action], np.int32))
        done = bool(terminated[0] or truncated[0])
        if done:  # EnvPool resets in the next call: make it, so that step t shows the next episode's start
            ends += 1
            obs, *_ = env.step(np.array([0], np.int32))
        differs = {
            "reward": float(reward[0]) != float(get("rewards")[t]),
            "terminated": bool(terminated[0]) != bool(get("terminated")[t]),
            "truncated": bool(truncated[0]) != bool(get("truncated")[t]),
            "frame": not frames_agree(obs[0, -1], get("frames")[t]),
            "stack padding": not np.array_equal(obs[0].sum(axis=(1, 2)) == 0, get("slot_sums")[t] == 0),
        }
        for key, d in differs.items():
            counts[key] += d
        if first_difference is None and any(differs.values()):
            first_difference = t
        rewards.append(float(reward[0]))
    env.close()
    n = len(get("actions"))
    return {"game": game, "steps": n, "first_difference": first_difference, "at_reset": first,
            "steps_differing": counts, "envpool": {"reward_sum": sum(rewards), "episode_ends": ends},
            "sb3": {"reward_sum": float(get("rewards").sum()),
                    "episode_ends": int(get("terminated").sum() + get("truncated").sum())}}


def main() -> None:
    import envpool

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the results as JSON here too")
    args = parser.parse_args()
    trace = np.load(TRACE)
    results = {"envpool": envpool.__version__, "trace": [str(v) for v in trace["versions"]],
               "games": [replay(game, trace) for game in GAMES]}
    print(f"EnvPool {envpool.__version__} against {', '.join(results['trace'])} (1,500 fixed actions per game)")
    print("| game | first step that differs | reset frame / padding as SB3 | steps differing: reward, terminated, "
          "frame, stack padding | reward sum / episode ends: EnvPool | SB3 |")
    print("|---|---|---|---|---|---|")
    for r in results["games"]:
        c = r["steps_differing"]
        print(f"| {r['game']} | {r['first_difference']} | {r['at_reset']['reset frame']} / "
              f"{r['at_reset']['reset stack padding']} | {c['reward']}, {c['terminated']}, {c['frame']}, "
              f"{c['stack padding']} | {r['envpool']['reward_sum']:.0f} / {r['envpool']['episode_ends']} | "
              f"{r['sb3']['reward_sum']:.0f} / {r['sb3']['episode_ends']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
