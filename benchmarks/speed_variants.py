"""Cost of each DQN-family setting in steps/s relative to plain DQN, with the loop's time split, so the price
of prioritized sampling is visible next to the update it feeds.

    python benchmarks/speed_variants.py [--env LunarLander-v3] [--steps 5000] [--rounds 2]

Variants run round-robin (each round runs every variant once) so machine noise spreads over all of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from qzoo.resolve import resolve
from qzoo.trainer import train

VARIANTS = {
    "dqn": [],
    "double": ["double=true"],
    "dueling": ["dueling=true"],
    "prioritized": ["prioritized=true"],
    "n_step=3": ["n_step=3"],
    "noisy": ["noisy=true"],
    "c51": ["distributional=c51", "v_min=-100", "v_max=100"],
    "rainbow (all)": ["double=true", "dueling=true", "prioritized=true", "n_step=3", "noisy=true",
                      "distributional=c51", "v_min=-100", "v_max=100"],
}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="LunarLander-v3")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    base = ["progress_bar=false", "tensorboard=false", "eval_freq=0", "eval_episodes=1", "learning_starts=0",
            "device=cpu"]
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    splits: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, sets in VARIANTS.items():
            res = train(resolve(args.env, flags={"n_timesteps": args.steps}, sets=base + sets), None, out=None)
            rates[name].append(res.steps / res.loop_seconds)
            splits[name] = {k: round(v / res.loop_seconds, 3) for k, v in res.timing.items()}
            splits[name]["ms_per_update"] = round(1e3 * res.timing["update"] / res.agent.updates, 2)
            splits[name]["ms_per_sample"] = round(1e3 * res.timing["sample"] / res.agent.updates, 3)
    dqn = statistics.median(rates["dqn"])
    print("| setting | steps/s | relative to DQN | ms/update | ms/sample | time split env/act/sample/update |")
    print("|---|---|---|---|---|---|")
    for name in VARIANTS:
        r = statistics.median(rates[name])
        s = splits[name]
        print(f"| {name} | {r:.0f} | {r / dqn:.2f} | {s['ms_per_update']} | {s['ms_per_sample']} | "
              f"{s['env']:.2f} / {s['act']:.2f} / {s['sample']:.2f} / {s['update']:.2f} |")
    print(json.dumps({"env": args.env, "steps": args.steps, "rounds": args.rounds, "date": time.strftime("%Y-%m-%d"),
                      "rates": rates}))


if __name__ == "__main__":
    main()
