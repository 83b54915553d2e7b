"""How varied are a noisy agent's warm-up actions: the DER preset's 1,600 steps before learning starts, acting with
the untrained noisy net (``warmup_actions: policy``), noise fixed until the first update (``acting_noise: update``,
qzoo's default) or drawn anew before every action (``acting_noise: fresh``, Dopamine's full Rainbow agent).

    python benchmarks/der_warmup_actions.py [--games MsPacman,Pong,Breakout] [--seeds 0,1,2] [--steps 1600]

Prints, per game, seed and setting: how many of the game's actions were taken, the share of the most common one and
the entropy of the action counts (bits; uniform over the action set is log2(n)). Only the acting: no update runs,
so this is the data the first updates learn from, not what the run learns.
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import torch

from qzoo.agent import build_agent
from qzoo.envs import check_env, make_vec_env
from qzoo.resolve import resolve


def warmup_counts(game: str, seed: int, acting_noise: str, steps: int) -> tuple[collections.Counter, int]:
    torch.manual_seed(seed)  # (as the training loop does before building the agent)
    config = resolve(f"ALE/{game}-v5", "der", flags={"seed": seed, "acting_noise": acting_noise})
    info = check_env(config)
    envs = make_vec_env(config)
    agent = build_agent(config, info.observation_space, info.n_actions, torch.device("cpu"))
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    counts: collections.Counter = collections.Counter()
    for _ in range(steps):
        action = agent.act(obs, 0.0, rng)  # (noisy: epsilon 0, the preset's zero_epsilon)
        counts[int(action[0])] += 1
        obs, *_ = envs.step(action)
    envs.close()
    return counts, info.n_actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", default="MsPacman,Pong,Breakout")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=1600, help="the DER preset's learning_starts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("game seed acting_noise actions_taken most_common_share entropy_bits uniform_bits")
    for game in args.games.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for acting_noise in ("update", "fresh"):
                counts, n_actions = warmup_counts(game, seed, acting_noise, args.steps)
                p = np.array(sorted(counts.values(), reverse=True)) / args.steps
                entropy = max(0.0, float(-(p * np.log2(p)).sum()))  # (one action: 0, not -0)
                print(f"{game} {seed} {acting_noise} {len(counts)}/{n_actions} {p[0]:.3f} {entropy:.2f} "
                      f"{np.log2(n_actions):.2f}", flush=True)


if __name__ == "__main__":
    main()
