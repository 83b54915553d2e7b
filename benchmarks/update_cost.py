"""CPU time of one gradient update of an Atari agent, and where it goes (torch's profiler, by op and shape).

    python benchmarks/update_cost.py ALGO [--set KEY=VALUE ...] [--updates 200] [--profile 30] [--base DIR]
    # e.g.  update_cost.py der --set bf16=true        update_cost.py dqn --set bf16=false --base /tmp/base
    # --base DIR: a `git archive` of another commit; its update is timed in a subprocess, alternating with this
    # tree's, --rounds times (ratios on a shared machine need the alternation).

The agent of ALGO's Pong preset (Nature CNN, 6 actions), one torch thread, a replay of 3,000 random frames; each
timing is the process CPU time of ``--updates`` calls of ``agent.learn`` after 20 warm-up updates, with a hard target
sync every target_update_interval / train_freq updates, as training does (DrQ(eps): every update). Run it as qzoo runs
(jemalloc preloaded with its decay off: the script re-executes itself so, as the ``qzoo`` command does), or
with QZOO_ALLOCATOR=system for glibc's malloc.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def synthetic_agent(algo: str, sets: list[str]):
    """(config, agent, replay, last observation): ALGO's Pong preset (Nature CNN, 6 actions) with ``sets``, and a
    replay of 3,000 random frames, one torch thread."""
    import gymnasium as gym
    import numpy as np
    import torch

    from qzoo.agent import build_agent
    from qzoo.replay import make_replay
    from qzoo.resolve import resolve

    torch.set_num_threads(1)
    cfg = resolve("ALE/Pong-v5", algo=algo, sets=["buffer_size=20000", *sets])
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    agent = build_agent(cfg, space, 6, torch.device("cpu"))
    replay = make_replay(cfg, space)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    for i in range(3000):
        nxt = np.concatenate([obs[:, 1:], rng.integers(0, 256, (1, 1, 84, 84), dtype=np.uint8)], 1)
        replay.add(obs, np.array([i % 6]), np.array([float(i % 3 - 1)]), nxt, np.array([i % 500 == 499]),
                   np.array([False]))
        obs = nxt
    return cfg, agent, replay, obs


def time_updates(algo: str, sets: list[str], updates: int, profile: int, rows: int) -> float:
    import torch

    cfg, agent, replay, _ = synthetic_agent(algo, sets)
    step = 3000
    sync_every = max(cfg.target_update_interval // cfg.train_freq, 1)  # updates between target syncs, as in training

    def learn(step: int) -> None:
        agent.learn(replay, 1, cfg.batch_size, step)
        if step % sync_every == 0:
            agent.sync_target()

    for _ in range(20):
        learn(step)
        step += 1
    start = time.process_time()
    for _ in range(updates):
        learn(step)
        step += 1
    ms = (time.process_time() - start) * 1000 / updates
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(profile):
                learn(step)
                step += 1
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=32, max_shapes_column_width=80))
    return ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("algo")
    p.add_argument("--set", action="append", default=[], help="a setting for the agent (KEY=VALUE)")
    p.add_argument("--updates", type=int, default=200)
    p.add_argument("--profile", type=int, default=0, help="profile this many more updates (0: none)")
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--base", help="a source tree of another commit to time against, alternating")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    from qzoo import allocator

    allocator.restart_python_with_jemalloc(sys.argv)  # as the qzoo command starts itself
    print(f"allocator: {allocator.describe()}", flush=True)
    if not args.base:
        ms = time_updates(args.algo, args.set, args.updates, args.profile, args.rows)
        print(f"{args.algo} {' '.join(args.set)}: {ms:.2f} ms CPU per update")
        return
    trees = {"this tree": str(Path(__file__).resolve().parents[1]), "base": str(Path(args.base).resolve())}
    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2]); "
            "from update_cost import time_updates; "
            "print(time_updates(sys.argv[3], sys.argv[5:], int(sys.argv[4]), 0, 0))")
    results: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            out = subprocess.run([sys.executable, "-c", code, tree, str(Path(__file__).parent), args.algo,
                                  str(args.updates), *args.set], check=True, capture_output=True, text=True,
                                 cwd="/tmp").stdout
            results[name].append(float(out.strip().splitlines()[-1]))
    for name, values in results.items():
        print(f"{name:>9}: " + ", ".join(f"{v:.2f}" for v in values) + " ms CPU per update")
    ratio = min(results["base"]) / min(results["this tree"])
    print(f"base / this tree (best of each): {ratio:.2f}x")


if __name__ == "__main__":
    main()
