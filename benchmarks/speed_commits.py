"""Training speed of two versions of qzoo, alternating in one run (same venv, same machine, same load): what a
change gains, separated from the drift of a shared machine.

    python benchmarks/speed_commits.py [--base HEAD~1] [--env CartPole-v1] [--steps 15000] [--repeats 3] \
        [--set key=value ...]

The base commit is checked out with ``git worktree`` into a temporary folder and imported from there (first on
PYTHONPATH, the child running outside the repository so that its own folder does not shadow it); the other side is
the working tree. Each run is its own process training the env's preset (evaluation off) for ``--steps`` steps,
seed = repeat number. Prints one line per run and a JSON summary: steps/s of the training loop and ms per update.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys
import qzoo
from qzoo.resolve import resolve
from qzoo.trainer import train
env, steps, seed, sets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
config = resolve(env, flags={"n_timesteps": steps, "seed": seed},
                 sets=["progress_bar=false", "tensorboard=false", "eval_freq=0", "eval_episodes=1", "device=cpu",
                       *sets])
r = train(config, None, out=None)
print(json.dumps({"qzoo": qzoo.__file__, "steps_per_s": r.steps / r.loop_seconds,
                  "ms_per_update": 1e3 * r.timing["update"] / max(r.agent.updates, 1)}))
"""


def run(source: Path, args, seed: int, workdir: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(source))
    out = subprocess.run([sys.executable, "-c", CHILD, args.env, str(args.steps), str(seed), json.dumps(args.sets)],
                         env=env, cwd=workdir, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"run from {source} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(result["qzoo"]).resolve().is_relative_to(source.resolve()):
        raise SystemExit(f"imported {result['qzoo']} instead of the copy in {source}")
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base", default="HEAD~1", help="git revision to compare the working tree with")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--steps", type=int, default=15_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", action="append", default=[], dest="sets", help="extra settings for both sides")
    args = p.parse_args()
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.base], capture_output=True, text=True,
                         check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / f"qzoo-{rev}"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), rev], check=True)
        try:
            results: dict[str, list[dict]] = {rev: [], "working tree": []}
            for seed in range(args.repeats):
                for name, source in ((rev, base), ("working tree", ROOT)):
                    r = run(source, args, seed, tmp)
                    results[name].append(r)
                    print(f"seed {seed} {name}: {r['steps_per_s']:.0f} steps/s, {r['ms_per_update']:.3f} ms/update",
                          file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    summary = {name: {"steps_per_s": [round(r["steps_per_s"]) for r in rs],
                      "ms_per_update": [round(r["ms_per_update"], 3) for r in rs],
                      "median_steps_per_s": round(statistics.median(r["steps_per_s"] for r in rs))}
               for name, rs in results.items()}
    summary["speedup_of_medians"] = round(summary["working tree"]["median_steps_per_s"]
                                          / summary[rev]["median_steps_per_s"], 2)
    print(json.dumps({"env": args.env, "steps": args.steps, "base": rev, **summary}))


if __name__ == "__main__":
    main()
