"""qzoo tune on CartPole-v1 with a fixed small budget: is the best preset found better than the default preset at
that budget, and how many trials per hour do 1 and 2 worker processes run on this machine?

    nice -n 10 python benchmarks/tuning.py [--trials 16] [--seeds 2] [--steps 10000] [--timeout 720]
        [--check-seeds 10,11,12] [--throughput-trials 6] [--throughput-steps 5000]

1. ``qzoo tune CartPole-v1 --workers 2`` with the built-in DQN space, TPE and the median pruner, ``--trials`` trials of
   ``--seeds`` seeds x ``--steps`` steps (bounded by ``--timeout``).
2. The best trial's score is the maximum over noisy trials (optimistic), so both presets are retrained on fresh seeds
   (``--check-seeds``) at the same budget and scored by 20 greedy evaluation episodes of the final model: the best
   preset found, and the built-in preset (RL Zoo's tuned CartPole values, cut to the same number of steps).
3. Throughput: the same study run with 1 and with 2 workers, ``--throughput-trials`` trials of one seed, on a space
   whose parameters do not change a trial's cost (learning rate, gamma, exploration; network, batch and update
   frequency fixed by the CartPole preset), no pruning; trials/hour = trials / wall time of the whole command
   (worker start-up and the outputs included).
Each part is a ``qzoo`` command (printed), run as the user would run it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ENV_ID = "CartPole-v1"
FIXED_COST_SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "one_minus_gamma": {"type": "float", "low": 1e-3, "high": 0.05, "log": True},
    "exploration_fraction": {"type": "float", "low": 0.05, "high": 0.5},
    "exploration_final_eps": {"type": "float", "low": 0.0, "high": 0.1},
}


def qzoo(args: list[str]) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "qzoo", *args]
    print("$ qzoo " + shlex.join(args), flush=True)
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {r.stderr[-2000:]}")
    return seconds, r.stdout + r.stderr


def final_score(preset: str | None, seed: int, steps: int) -> float:
    """One retraining run (in-process) scored by 20 greedy evaluation episodes of its final model."""
    from qzoo.resolve import resolve
    from qzoo.trainer import train

    sets = ["eval_freq=0", "eval_episodes=20", "progress_bar=false", "tensorboard=false"]
    config = resolve(ENV_ID, "dqn", preset, {"n_timesteps": steps, "seed": seed}, sets)
    return train(config, None, out=None).final_eval.mean


def trial_states(study_dir: Path) -> dict:
    import csv

    rows = list(csv.DictReader(open(study_dir / "trials.csv")))
    states = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    return {"trials": len(rows), "states": states,
            "values": [float(r["value"]) if r["value"] else None for r in rows]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--timeout", type=float, default=720)
    p.add_argument("--check-seeds", default="10,11,12")
    p.add_argument("--throughput-trials", type=int, default=6)
    p.add_argument("--throughput-steps", type=int, default=5000)
    p.add_argument("--skip", default="", help="comma-separated parts to skip: tune, throughput")
    p.add_argument("--dir", default=str(HERE / "results" / "tuning"))
    p.add_argument("--out", default=str(HERE / "results" / "tuning.json"))
    a = p.parse_args()
    root = Path(a.dir) / time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                     "date": time.strftime("%Y-%m-%d %H:%M"), "args": vars(a)}
    skip = set(filter(None, a.skip.split(",")))

    if "tune" not in skip:
        seconds, log = qzoo(["tune", ENV_ID, "--n-trials", str(a.trials), "--seeds", str(a.seeds), "--n-timesteps",
                             str(a.steps), "--n-evals", "4", "--eval-episodes", "5", "--workers", "2",
                             "--timeout", str(a.timeout), "--sampler-seed", "0", "--tunes-dir", str(root),
                             "--study-name", "tune"])
        study_dir = root / ENV_ID / "tune"
        best_preset = study_dir / "best_preset.yml"
        header = best_preset.read_text().splitlines()[:2]
        print("\n".join(header))
        seeds = [int(s) for s in a.check_seeds.split(",")]
        best = [final_score(str(best_preset), s, a.steps) for s in seeds]
        default = [final_score(None, s, a.steps) for s in seeds]
        tuned = yaml.safe_load(best_preset.read_text())
        results["tune"] = {"seconds": seconds, **trial_states(study_dir), "best_trial": header,
                           "check_seeds": seeds, "best_preset_scores": best, "default_preset_scores": default,
                           "best_preset": {k: tuned[k] for k in list(tuned)[:11]}}
        print(f"tuning: {seconds:.0f} s, {results['tune']['states']}")
        print(f"fresh seeds {seeds}: best preset {best} (mean {sum(best) / len(best):.1f}), "
              f"default preset {default} (mean {sum(default) / len(default):.1f})", flush=True)

    if "throughput" not in skip:
        space = root / "fixed_cost_space.yml"
        space.write_text(yaml.safe_dump(FIXED_COST_SPACE, sort_keys=False))
        results["throughput"] = {}
        for workers in (1, 2):
            name = f"throughput_{workers}"
            seconds, _ = qzoo(["tune", ENV_ID, "--n-trials", str(a.throughput_trials), "--seeds", "1",
                               "--n-timesteps", str(a.throughput_steps), "--n-evals", "2", "--eval-episodes", "5",
                               "--pruner", "none", "--space", str(space), "--space-only", "--workers", str(workers),
                               "--sampler", "random", "--sampler-seed", "0", "--tunes-dir", str(root),
                               "--study-name", name])
            info = trial_states(root / ENV_ID / name)
            results["throughput"][workers] = {"seconds": seconds, "trials": info["trials"],
                                              "trials_per_hour": info["trials"] / seconds * 3600}
            print(f"{workers} worker(s): {info['trials']} trials in {seconds:.0f} s = "
                  f"{info['trials'] / seconds * 3600:.0f} trials/hour", flush=True)

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=1))
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
