"""Tabular Q-learning at the built-in presets (qzoo/presets/qlearning.yml): does each reach its target?

    python benchmarks/tabular.py [--seeds 5] [--jobs 2] [--cases frozenlake,frozenlake-slippery,taxi]
                                 [--eval-episodes 1000] [--out benchmarks/results/tabular.json]

| case | target (mean of the final model's evaluation episodes) |
|---|---|
| FrozenLake-v1 4x4, not slippery | success rate 1.0 |
| FrozenLake-v1 4x4, slippery     | success rate >= 0.70 (the best policy reaches 0.74 within the 100-step limit) |
| Taxi-v3 (Taxi-v4 on gymnasium >= 1.3, same dynamics) | mean return >= 7.5 (optimal: 7.93) |

Each run is exactly ``qzoo train ENV --algo qlearning --seed S ...`` (the command is printed) with the
evaluation moved to the end of training (``eval_freq=0``) over ``--eval-episodes`` episodes; FrozenLake's
return is 1 on reaching the goal and 0 otherwise, so its mean return is the success rate.
Runs go to worker processes; 'seconds' is one run's wall time including its final evaluation.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import gymnasium as gym

HERE = Path(__file__).resolve().parent
TAXI = "Taxi-v4" if "Taxi-v4" in gym.registry else "Taxi-v3"

# name: (env id, --set overrides, target, what the score is)
CASES = {
    "frozenlake": ("FrozenLake-v1", ["env_kwargs={map_name: 4x4, is_slippery: false}"], 1.0, "success rate"),
    "frozenlake-slippery": ("FrozenLake-v1", ["env_kwargs={map_name: 4x4, is_slippery: true}"], 0.70, "success rate"),
    "taxi": (TAXI, [], 7.5, "mean return"),
}


def command(env_id: str, seed: int, sets: list[str]) -> str:
    return shlex.join(["qzoo", "train", env_id, "--algo", "qlearning", "--seed", str(seed),
                       *[arg for s in sets for arg in ("--set", s)]])


def run_case(name: str, seed: int, eval_episodes: int) -> dict:
    from qzoo.resolve import resolve
    from qzoo.tabular import train_tabular

    env_id, sets, _, _ = CASES[name]
    sets = [*sets, "eval_freq=0", f"eval_episodes={eval_episodes}"]
    config = resolve(env_id, "qlearning", flags={"seed": seed}, sets=[*sets, "progress_bar=false", "tensorboard=false"])
    start = time.perf_counter()
    res = train_tabular(config, None, out=None)
    return {"case": name, "seed": seed, "score": res.final_eval.mean, "steps": res.steps, "episodes": res.episodes,
            "seconds": time.perf_counter() - start, "steps_per_s": res.steps / res.loop_seconds,
            "command": command(env_id, seed, sets)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--eval-episodes", type=int, default=1000)
    p.add_argument("--out", default=str(HERE / "results" / "tabular.json"))
    args = p.parse_args()
    names = args.cases.split(",")
    unknown = set(names) - set(CASES)
    if unknown:
        p.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")

    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_case, name, seed, args.eval_episodes)
                   for name in names for seed in range(args.seeds)]
        results = []
        for f in futures:
            r = f.result()
            results.append(r)
            print(f"{r['case']:20} seed {r['seed']}: {r['score']:.3f}  ({r['steps']} steps, {r['episodes']} episodes, "
                  f"{r['steps_per_s']:.0f} steps/s, {r['seconds']:.1f} s)", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start

    print(f"\n{args.eval_episodes} evaluation episodes of the final table per seed; {args.jobs} parallel jobs, "
          f"{wall:.0f} s wall in all ({platform.processor() or platform.machine()}).\n")
    print("| case | score | target | per-seed score (seed 0..) | mean | seeds at target | per-seed seconds | "
          "command (seed 0) |\n|---|---|---|---|---|---|---|---|")
    for name in names:
        rs = sorted((r for r in results if r["case"] == name), key=lambda r: r["seed"])
        scores = [r["score"] for r in rs]
        _, _, target, what = CASES[name]
        hit = sum(s >= target - 1e-9 for s in scores)
        per_seed = ", ".join(f"{s:.3f}" for s in scores)
        seconds = ", ".join(f"{r['seconds']:.1f}" for r in rs)
        print(f"| {name} | {what} | ≥ {target} | {per_seed} | {sum(scores) / len(scores):.3f} | {hit}/{len(scores)} "
              f"| {seconds} | `{rs[0]['command']}` |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
                               "wall_seconds": wall, "results": results}, indent=1))


if __name__ == "__main__":
    main()
