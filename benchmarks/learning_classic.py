"""(Superseded by `qzoo bench classic [--peer sb3]`, same protocol; kept for the figures recorded with it.)

Learning at RL Zoo's budgets on classic control: final evaluation return per seed, optionally beside
stable-baselines3's DQN on the same hyperparameters and seeds.

    python benchmarks/learning_classic.py --envs CartPole-v1,Acrobot-v1,MountainCar-v0,LunarLander-v3 \
        --seeds 5 --jobs 2 [--peer] [--algo rainbow] [--preset rl-zoo] [--set double=true] [--out FILE.json]

Each run uses the built-in preset (qzoo's own; `--preset rl-zoo`: RL Zoo's tuned values) and its full
n_timesteps; the score is the mean
return of 10 greedy evaluation episodes of the final model (RL Zoo's protocol evaluates the final model).
Runs go to worker processes (one torch thread each).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

THRESHOLDS = {"CartPole-v1": 475, "Acrobot-v1": -100, "MountainCar-v0": -110, "LunarLander-v3": 150}


def run_qzoo(env_id: str, seed: int, sets: list[str], algo: str = "dqn", preset: str | None = None) -> dict:
    from qzoo.resolve import resolve
    from qzoo.trainer import train

    config = resolve(env_id, algo, preset, flags={"seed": seed}, sets=["progress_bar=false", "tensorboard=false",
                                                         "eval_episodes=10", "device=cpu", *sets])
    res = train(config, None, out=None)
    return {"impl": "qzoo", "env": env_id, "seed": seed, "final": res.final_eval.mean, "best": res.best_eval_mean,
            "steps_per_s": res.steps / res.loop_seconds, "seconds": res.seconds}


def run_peer(env_id: str, seed: int, sets: list[str], algo: str = "dqn", preset: str | None = None) -> dict:
    from peer import run_sb3

    from qzoo.resolve import resolve

    spec = resolve(env_id, "dqn", preset, flags={"seed": seed}, sets=list(sets)).to_dict()
    spec.update(eval_episodes=10, torch_threads=1)
    r = run_sb3(spec)
    return {"impl": "sb3", "env": env_id, "seed": seed, "final": r["eval_mean"], "best": None,
            "steps_per_s": r["steps_per_s"], "seconds": r["seconds"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--envs", default="CartPole-v1,Acrobot-v1,MountainCar-v0,LunarLander-v3")
    p.add_argument("--seeds", default="5", help="a count N (seeds 0..N-1) or a comma list of seeds, e.g. 2,3,4")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--peer", action="store_true", help="also run stable-baselines3 (its own venv)")
    p.add_argument("--peer-only", action="store_true", help="run only stable-baselines3")
    p.add_argument("--set", action="append", default=[], dest="sets")
    p.add_argument("--preset", help="a preset file or name for every run, e.g. rl-zoo (default: the built-in one)")
    p.add_argument("--algo", default="dqn", help="qzoo preset family: dqn or rainbow (the peer is always SB3's DQN)")
    p.add_argument("--out", default=str(HERE / "results" / "learning_classic.json"))
    args = p.parse_args()

    seeds = [int(s) for s in args.seeds.split(",") if s] if "," in args.seeds else list(range(int(args.seeds)))
    jobs = [] if args.peer_only else [(run_qzoo, env, s) for env in args.envs.split(",") for s in seeds]
    if args.peer or args.peer_only:
        from peer import ensure_sb3

        ensure_sb3()
        jobs += [(run_peer, env, s) for env in args.envs.split(",") for s in seeds]
    results = []
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(fn, env, seed, args.sets, args.algo, args.preset) for fn, env, seed in jobs]
        for f in futures:
            r = f.result()
            results.append(r)
            print(f"{r['impl']:5} {r['env']:15} seed {r['seed']}: final {r['final']:8.1f}  "
                  f"({r['steps_per_s']:.0f} steps/s, {r['seconds']:.0f} s)", file=sys.stderr, flush=True)

    print("\n| impl | env | per-seed final eval return | mean | seeds ≥ target |\n|---|---|---|---|---|")
    for impl in ("qzoo", "sb3"):
        for env in args.envs.split(","):
            rs = sorted((r for r in results if r["impl"] == impl and r["env"] == env), key=lambda r: r["seed"])
            if not rs:
                continue
            finals = [r["final"] for r in rs]
            target = THRESHOLDS.get(env)
            hit = f"{sum(f >= target for f in finals)}/{len(finals)} (≥ {target})" if target is not None else ""
            print(f"| {impl} | {env} | {', '.join(f'{f:.1f}' for f in finals)} | {sum(finals) / len(finals):.1f} "
                  f"| {hit} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
                               "preset": args.preset, "sets": args.sets, "results": results}, indent=1))


if __name__ == "__main__":
    main()
