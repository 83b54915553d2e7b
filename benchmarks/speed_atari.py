"""Atari training speed with RL Zoo's Atari hyperparameters: qzoo vs stable-baselines3's DQN (issue 3).

Both train the Nature CNN on the same game with the same settings (RL Zoo's ``atari`` entry: train_freq 4,
gradient_steps 1, batch 32, Adam 1e-4, 100k replay, one env; learning_starts lowered so learning starts early),
one after the other in alternation, each in its own process (so each has its own peak RSS). The figure compared
is the training steps/s *after* learning starts (acting, env, replay, one update every 4 steps), measured over
the ``--window`` steps that follow ``--learning-starts``. For qzoo it also reports ms per update (the learner
alone), the time split (env / act / sample / update, as fractions of the whole loop, which includes the
learning_starts random-action steps; ``wait``: blocked on an overlapped training phase) and which env backend
trained. ``--extra-envs 4,8`` adds qzoo-only runs
with more envs and train_freq scaled to keep one update per 4 env steps, ``--variant`` qzoo-only runs with other
settings (neither is SB3's configuration: labelled as extra lines).

    nice -n 5 python benchmarks/speed_atari.py [--envs ALE/Pong-v5,ALE/SpaceInvaders-v5] [--window 3000]
        [--learning-starts 1000] [--repeats 2] [--extra-envs 4] [--set torch_threads=1 ...] [--variant bf16=true]
    # issue 14's table: the default (faithful wrapper pipeline) in fp32 and bf16, in line and overlapped, vs SB3
    nice -n 5 python benchmarks/speed_atari.py --variant bf16=true --variant overlap=true \
        --variant bf16=true,overlap=true

Every variant is reported with its peak RSS, time split and ratio of medians to SB3.

Prints one line per run to stderr and a JSON summary (medians, ratio of medians) to stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from qzoo import allocator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def qzoo_config(env_id: str, learning_starts: int, window: int, sets: list[str]):
    from qzoo.resolve import resolve

    return resolve(env_id, flags={"n_timesteps": learning_starts + window, "learning_starts": learning_starts},
                   sets=["progress_bar=false", "tensorboard=false", "eval_freq=0", "eval_episodes=1",
                         "device=cpu", f"log_interval={learning_starts}", f"checkpoint_freq={10 * window}", *sets])


def worker(args_json: str) -> None:
    """One qzoo run in this process; prints its JSON result."""
    from qzoo.trainer import train

    spec = json.loads(args_json)
    config = qzoo_config(spec["env_id"], spec["learning_starts"], spec["window"], spec["sets"])
    with tempfile.TemporaryDirectory() as tmp:
        res = train(config, Path(tmp) / "run", out=None)
        rows = list(csv.DictReader(open(Path(tmp) / "run" / "progress.csv")))
        ran = yaml.safe_load(open(Path(tmp) / "run" / "config.yaml"))  # bf16 / overlap as resolved
    at_start = next(float(r["time_s"]) for r in rows if int(r["step"]) >= config.learning_starts)
    learning_steps = res.steps - next(int(r["step"]) for r in rows if int(r["step"]) >= config.learning_starts)
    updates = res.agent.updates
    print(json.dumps({
        "learning_steps_per_s": learning_steps / (res.loop_seconds - at_start),
        "steps_per_s": res.steps / res.loop_seconds,
        "ms_per_update": 1e3 * res.timing["update"] / max(updates, 1),
        "ms_per_sample": 1e3 * res.timing["sample"] / max(updates, 1),
        "us_per_env_step": 1e6 * res.timing["env"] / res.steps,
        "us_per_act": 1e6 * res.timing["act"] / res.steps * config.n_envs,
        "time_split": {k: round(v / res.loop_seconds, 3) for k, v in res.timing.items()},
        "updates": updates,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": __import__("torch").get_num_threads(),
        "settings": {k: ran[k] for k in ("atari_backend", "bf16", "overlap")},
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "allocator": allocator.in_use() or "system"}))


def run_qzoo(env_id: str, learning_starts: int, window: int, sets: list[str], timeout: int) -> dict:
    """One qzoo run in a worker process, started as the ``qzoo`` command would be (jemalloc preloaded when found,
    qzoo/allocator.py). ``sets`` of the form ``env:NAME=VALUE`` go to the worker's environment instead, e.g.
    ``env:QZOO_ALLOCATOR=system`` for glibc's malloc."""
    env = dict(os.environ)
    env.update(s[4:].split("=", 1) for s in sets if s.startswith("env:"))
    sets = [s for s in sets if not s.startswith("env:")]
    spec = json.dumps({"env_id": env_id, "learning_starts": learning_starts, "window": window, "sets": sets})
    out = subprocess.run([sys.executable, __file__, "--worker", spec], capture_output=True, text=True,
                         timeout=timeout, env=allocator.environ(env))
    if out.returncode != 0:
        raise RuntimeError(f"qzoo worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", default="ALE/Pong-v5,ALE/SpaceInvaders-v5")
    p.add_argument("--window", type=int, default=3000, help="steps measured after learning starts")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--extra-envs", default="", help="qzoo-only runs with these n_envs (train_freq scaled)")
    p.add_argument("--set", action="append", default=[],
                   help="setting for every run of both (torch_threads reaches SB3 too; the rest qzoo only)")
    p.add_argument("--variant", action="append", default=[],
                   help="extra qzoo-only runs with these comma-separated settings on top, e.g. bf16=true")
    p.add_argument("--qzoo-only", action="store_true")
    p.add_argument("--keep-going", action="store_true",
                   help="a run that fails is reported (stderr, the summary's 'failed') and left out, not fatal")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per run")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker)

    from peer import run_sb3

    failed = []

    def attempt(label: str, fn, *a, **kw):
        """``fn(*a, **kw)``; with --keep-going a failure is reported and gives None instead of stopping the run."""
        try:
            return fn(*a, **kw)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            if not args.keep_going:
                raise
            failed.append({"run": label, "error": str(e)[-2000:]})
            print(f"{label}: FAILED: {str(e)[-2000:]}", file=sys.stderr, flush=True)
            return None

    summary = {"window": args.window, "learning_starts": args.learning_starts, "repeats": args.repeats,
               "qzoo_sets": args.set, "machine": platform.processor() or platform.machine(),
               "date": time.strftime("%Y-%m-%d"), "games": {}}
    for env_id in args.envs.split(","):
        config = qzoo_config(env_id, args.learning_starts, args.window, args.set)
        spec = {**config.to_dict(), "atari": True, "eval_episodes": 0}
        if not any(x.startswith("torch_threads=") for x in args.set):
            spec["torch_threads"] = None  # SB3 at torch's default thread count, as qzoo's auto is for a CNN
        qz, sb, extra = [], [], {}
        for r in range(args.repeats):
            res = attempt(f"{env_id} repeat {r} qzoo", run_qzoo, env_id, args.learning_starts, args.window,
                          [*args.set, f"seed={r}"], args.timeout)
            if res is not None:
                qz.append(res)
                print(f"{env_id} repeat {r}: qzoo {res['learning_steps_per_s']:.0f} steps/s "
                      f"({res['ms_per_update']:.1f} ms/update, split {res['time_split']}, "
                      f"{res['peak_rss_mb']:.0f} MB)", file=sys.stderr, flush=True)
            if not args.qzoo_only:
                res = attempt(f"{env_id} repeat {r} sb3", run_sb3, {**spec, "seed": r}, timeout=args.timeout)
                if res is not None:
                    sb.append(res)
                    print(f"{env_id} repeat {r}: sb3 {res['learning_steps_per_s']:.0f} steps/s "
                          f"({res['peak_rss_mb']:.0f} MB)", file=sys.stderr, flush=True)
            variants = {v: v.split(",") for v in args.variant}
            for n in filter(None, args.extra_envs.split(",")):
                # one update per 4 env steps: train_freq 4 / n vector steps, or more updates per phase
                variants[f"n_envs={n}"] = [f"n_envs={n}", f"train_freq={max(4 // int(n), 1)}",
                                           f"gradient_steps={max(int(n) // 4, 1)}"]
            for label, sets in variants.items():
                res = attempt(f"{env_id} repeat {r} qzoo {label}", run_qzoo, env_id, args.learning_starts,
                              args.window, [*args.set, *sets, f"seed={r}"], args.timeout)
                if res is None:
                    continue
                extra.setdefault(label, []).append(res)
                print(f"{env_id} repeat {r}: qzoo {label} {res['learning_steps_per_s']:.0f} steps/s "
                      f"({res['ms_per_update']:.1f} ms/update, split {res['time_split']}, "
                      f"{res['peak_rss_mb']:.0f} MB)", file=sys.stderr, flush=True)
        q = statistics.median(x["learning_steps_per_s"] for x in qz) if qz else None
        game = {"qzoo_steps_per_s": [round(x["learning_steps_per_s"], 1) for x in qz],
                "qzoo_ms_per_update": [round(x["ms_per_update"], 2) for x in qz],
                "qzoo_ms_per_sample": [round(x["ms_per_sample"], 3) for x in qz],
                "qzoo_us_per_env_step": [round(x["us_per_env_step"]) for x in qz],
                "qzoo_us_per_act": [round(x["us_per_act"]) for x in qz],
                "qzoo_time_split": [x["time_split"] for x in qz],
                "qzoo_torch_threads": qz[-1]["torch_threads"] if qz else None,
                "qzoo_peak_rss_mb": [round(x["peak_rss_mb"]) for x in qz]}
        if sb:
            s = statistics.median(x["learning_steps_per_s"] for x in sb)
            game.update({"sb3_steps_per_s": [round(x["learning_steps_per_s"], 1) for x in sb],
                         "sb3_torch_threads": sb[-1].get("torch_threads"),
                         "sb3_omp_wait_policy": sb[-1].get("omp_wait_policy"),
                         "sb3_peak_rss_mb": [round(x["peak_rss_mb"]) for x in sb],
                         "ratio_of_medians": round(q / s, 2) if q is not None else None})
        for label, runs in extra.items():
            game[f"extra qzoo {label}"] = {"steps_per_s": [round(x["learning_steps_per_s"], 1) for x in runs],
                                          "ms_per_update": [round(x["ms_per_update"], 2) for x in runs],
                                          "time_split": [x["time_split"] for x in runs],
                                          "peak_rss_mb": [round(x["peak_rss_mb"]) for x in runs]}
            if sb:
                game[f"extra qzoo {label}"]["ratio_of_medians"] = round(
                    statistics.median(x["learning_steps_per_s"] for x in runs) / s, 2)
        summary["games"][env_id] = game
    if failed:
        summary["failed"] = failed
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
