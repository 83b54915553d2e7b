"""Evaluation speed: whole Atari games played one env at a time vs side by side (``eval_envs``).

    python benchmarks/eval_speed.py [--algo drq_eps] [--env ALE/Pong-v5] [--episodes 16] [--envs 1,8]
        [--set KEY=VALUE ...]

A randomly initialised agent of ALGO's preset (one torch thread, the preset's bf16 unless --set) plays EPISODES whole
games at the preset's eval_epsilon with each eval_envs value, in turn, from the same seed; prints the CPU seconds
and the agent steps per CPU-second of each (CPU time: what a shared machine disturbs least), and the mean score.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from qzoo.agent import build_agent
from qzoo.envs import check_env, make_eval_envs
from qzoo.evaluation import evaluate
from qzoo.resolve import resolve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algo", default="drq_eps")
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--envs", default="1,8")
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args()
    torch.set_num_threads(1)
    for n in [int(v) for v in args.envs.split(",")]:
        config = resolve(args.env, args.algo, sets=[*args.set, f"eval_envs={n}"])
        info = check_env(config, training=False)
        torch.manual_seed(0)
        agent = build_agent(config, info.observation_space, info.n_actions, torch.device("cpu"))
        envs = make_eval_envs(config, args.episodes)
        t0 = time.process_time()
        with agent.evaluating():
            result = evaluate(agent, envs, args.episodes, config.eval_epsilon, seed=10_000)
        cpu = time.process_time() - t0
        print(f"{args.env} {args.algo} eval_envs={len(envs)}: {args.episodes} games, {int(result.lengths.sum())} "
              f"agent steps in {cpu:.1f} CPU s ({result.lengths.sum() / cpu:.0f} steps per CPU-second), "
              f"score {np.mean(result.returns):.2f}", flush=True)
        for env in envs:
            env.close()


if __name__ == "__main__":
    main()
