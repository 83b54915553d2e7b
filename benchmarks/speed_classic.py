"""Training speed on a small network (classic control at RL Zoo's hyperparameters, or MinAtar at the MinAtar paper's
DQN settings): qzoo vs SBX (JAX) vs stable-baselines3, side by side in one run, alternating, each in its own process
pinned to one core with one thread. Per-seed table.

    python benchmarks/speed_classic.py [--env CartPole-v1] [--preset rl-zoo] [--steps N] [--seeds 0,1,2,3,4]
        [--peers sbx,sb3] [--cpu 1] [--base DIR] [--eval-episodes 10] [--set KEY=VALUE ...] [--out FILE.json]
        [--allocators jemalloc,system]

    # MinAtar: qzoo's own preset (the paper's DQN), 6,000 steps learning from step 1,000 (5,000 updates)
    python benchmarks/speed_classic.py --env MinAtar/Breakout-v1 --preset '' --steps 6000 \
        --set learning_starts=1000 --seeds 0,1 --cpu 0 --eval-episodes 3

- ``--set``: qzoo settings over the preset's (as ``qzoo train --set``); the peers get qzoo's resolved config, so
  they follow. On MinAtar SB3 gets qzoo's MinAtar CNN as a features extractor with a linear head, SBX the same
  network in flax (qzoo/bench/sb3_runner.py, sbx_runner.py), both with centered RMSprop and clipping as qzoo.

- qzoo runs from this checkout (``PYTHONPATH`` = its root, so an editable install elsewhere is not what runs);
  ``--base DIR`` adds a second qzoo from another tree (e.g. ``git archive <commit> | tar -x -C DIR``): before vs
  after in the same run. qzoo runs with one torch thread (``torch_threads=1``; its default for MLPs).
- SBX 0.28 and SB3 2.9.2 run in their own venvs (qzoo/bench/peer.py): SBX with XLA on one thread
  (``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``), SB3 with one torch thread.
- ``--cpu N`` pins every run to core N (``taskset``); ``--cpu -1`` does not pin.
- steps/s: qzoo's training loop (``loop_seconds``, setup and final evaluation excluded); the peers' ``learn()``
  (SBX's includes its jit compilation, as a user's does). Also steps per CPU-second of the process (qzoo: all of
  ``train()`` but the final evaluation, so its setup counts against it; the peers: ``learn()``), which
  time-sharing with other jobs on a busy machine disturbs less than wall time (the table shows both). (The
  ``minatar`` package is imported before qzoo's clock starts, as the peers import it before ``learn()``.) Each seed
  runs the variants in a rotated order, so drifting machine load does not always fall on the same one; the load
  average is recorded at each run's start and end.
- ``--eval-episodes``: each run's final model is evaluated greedily on that many episodes (not timed), so the
  learning results at the budget come with the speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def qzoo_child(spec: dict) -> None:
    """In a child process (qzoo imported from PYTHONPATH): train, print one JSON line."""
    from qzoo import trainer
    from qzoo.resolve import resolve
    from qzoo.trainer import train

    sets = ["progress_bar=false", "tensorboard=false", "eval_freq=0", f"eval_episodes={spec['eval_episodes']}",
            "device=cpu", "torch_threads=1", f"seed={spec['seed']}", *spec.get("sets", [])]
    flags = {"n_timesteps": spec["steps"]} if spec.get("steps") else {}
    config = resolve(spec["env"], preset_file=spec.get("preset"), flags=flags, sets=sets)
    eval_cpu = [0.0]
    evaluate = trainer.evaluate

    def timed_evaluate(*a, **kw):  # the final evaluation's CPU time, to leave out of the training's
        c = time.process_time()
        try:
            return evaluate(*a, **kw)
        finally:
            eval_cpu[0] += time.process_time() - c

    trainer.evaluate = timed_evaluate
    if spec["env"].startswith("MinAtar/"):  # its import (~2 s: matplotlib, seaborn) is not training; the peers
        import minatar  # noqa: F401        # import it when they make the env, before learn() is timed
    cpu = time.process_time()
    res = train(config, None, out=None)
    cpu = time.process_time() - cpu - eval_cpu[0]
    print(json.dumps({"steps": res.steps, "seconds": res.loop_seconds, "steps_per_s": res.steps / res.loop_seconds,
                      "cpu_seconds": cpu, "steps_per_cpu_s": res.steps / cpu,
                      "eval_mean": None if res.final_eval is None else float(res.final_eval.mean),
                      "updates": res.agent.updates,
                      "ms_per_update": 1e3 * res.timing["update"] / max(res.agent.updates, 1),
                      "time_split": {k: round(v / res.loop_seconds, 3) for k, v in res.timing.items()},
                      "config": config.to_dict()}))


def run_qzoo(tree: Path, spec: dict, prefix: list[str], malloc: str = "jemalloc") -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    if malloc == "jemalloc":  # as the qzoo command starts its training processes (qzoo/allocator.py)
        from qzoo import allocator

        env = allocator.environ(env)
    else:
        env["QZOO_ALLOCATOR"] = "system"
    out = subprocess.run([*prefix, sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                         capture_output=True, text=True, env=env, cwd=str(tree))
    if out.returncode != 0:
        raise RuntimeError(f"qzoo run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--preset", default="rl-zoo", help="qzoo --preset (rl-zoo: RL Zoo's table; '' for qzoo's own)")
    p.add_argument("--steps", type=int, default=0, help="training steps (0: the preset's n_timesteps)")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--peers", default="sbx,sb3", help="comma-separated: sbx, sb3 (or '' for none)")
    p.add_argument("--cpu", type=int, default=1, help="pin every run to this core with taskset (-1: no pinning)")
    p.add_argument("--base", default="", help="another qzoo tree to run beside this one (before vs after)")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="a qzoo setting over the preset's (repeatable); the peers follow qzoo's resolved config")
    p.add_argument("--allocators", default="jemalloc",
                   help="qzoo's malloc: jemalloc (as the qzoo command runs, with its decay off) and/or system; "
                        "a second one runs as the variant qzoo-<name>")
    p.add_argument("--out", default="")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        qzoo_child(json.loads(args.child))
        return
    sys.path.insert(0, str(ROOT))  # this checkout's qzoo, for the peers' helpers
    from qzoo.bench.peer import run_sb3, run_sbx

    prefix = [] if args.cpu < 0 else ["taskset", "-c", str(args.cpu)]
    seeds = [int(s) for s in args.seeds.split(",") if s != ""]
    mallocs = [m for m in args.allocators.split(",") if m]
    if not mallocs or any(m not in ("jemalloc", "system") for m in mallocs):
        p.error(f"--allocators: a comma-separated list of jemalloc, system; got {args.allocators!r}")
    other_mallocs = {f"qzoo-{m}": m for m in mallocs[1:]}
    variants = (["qzoo", *other_mallocs] + (["qzoo-base"] if args.base else [])
                + [x for x in args.peers.split(",") if x])
    rows: list[dict] = []
    for seed in seeds:
        qspec = {"env": args.env, "preset": args.preset or None, "steps": args.steps, "seed": seed,
                 "eval_episodes": args.eval_episodes, "sets": args.sets}
        order = variants[seed % len(variants):] + variants[:seed % len(variants)]
        for name in order:
            load0 = os.getloadavg()[0]
            t0 = time.time()
            if name == "qzoo":
                res = run_qzoo(ROOT, qspec, prefix, mallocs[0])
                spec = res.pop("config")
            elif name in other_mallocs:
                res = run_qzoo(ROOT, qspec, prefix, other_mallocs[name])
                res.pop("config")
            elif name == "qzoo-base":
                res = run_qzoo(Path(args.base).resolve(), qspec, prefix, mallocs[0])
                res.pop("config")
            else:  # a peer, on qzoo's resolved config for this seed (the first variant of the seed is always run)
                peer_spec = {**spec, "seed": seed, "eval_episodes": args.eval_episodes, "torch_threads": 1}
                res = (run_sbx if name == "sbx" else run_sb3)(peer_spec, prefix=prefix)
            res.update(variant=name, seed=seed, load_start=round(load0, 2), load_end=round(os.getloadavg()[0], 2),
                       started=time.strftime("%H:%M:%S", time.gmtime(t0)))
            rows.append(res)
            print(f"seed {seed} {name:10s} {res['steps_per_s']:7.0f} steps/s  eval {res.get('eval_mean')}  "
                  f"load {res['load_start']}->{res['load_end']}", file=sys.stderr, flush=True)

    def col(name, key="steps_per_s"):
        return [r.get(key) for r in rows if r["variant"] == name]

    med = {v: statistics.median(col(v)) for v in variants}
    med_cpu = {v: statistics.median(col(v, "steps_per_cpu_s")) for v in variants}
    print(f"\nsteps/s wall (steps per CPU-second) [final evaluation]\n\n| seed | {' | '.join(variants)} | "
          + " | ".join(f"qzoo / {v}" for v in variants[1:]) + " |")
    print("|---" * (1 + 2 * len(variants) - 1) + "|")
    for seed in seeds:
        by = {r["variant"]: r for r in rows if r["seed"] == seed}
        cells = [f"{by[v]['steps_per_s']:.0f} ({by[v]['steps_per_cpu_s']:.0f}) [{by[v].get('eval_mean')}]"
                 for v in variants]
        ratios = [f"{by['qzoo']['steps_per_s'] / by[v]['steps_per_s']:.2f}× "
                  f"({by['qzoo']['steps_per_cpu_s'] / by[v]['steps_per_cpu_s']:.2f}×)" for v in variants[1:]]
        print(f"| {seed} | " + " | ".join(cells + ratios) + " |")
    print("| median | " + " | ".join(f"{med[v]:.0f} ({med_cpu[v]:.0f})" for v in variants) + " | "
          + " | ".join(f"{med['qzoo'] / med[v]:.2f}× ({med_cpu['qzoo'] / med_cpu[v]:.2f}×)" for v in variants[1:])
          + " |")
    summary = {"env": args.env, "preset": args.preset, "sets": args.sets, "seeds": seeds, "cpu": cpu_model(),
               "allocators": mallocs,
               "pinned_core": args.cpu,
               "date": time.strftime("%Y-%m-%d"), "median_steps_per_s": {v: round(m) for v, m in med.items()},
               "ratio_of_medians": {v: round(med["qzoo"] / med[v], 3) for v in variants[1:]},
               "median_steps_per_cpu_s": {v: round(m) for v, m in med_cpu.items()},
               "cpu_ratio_of_medians": {v: round(med_cpu["qzoo"] / med_cpu[v], 3) for v in variants[1:]},
               "runs": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
