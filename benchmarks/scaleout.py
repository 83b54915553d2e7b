"""Runs per hour of a small classic suite: ``qzoo bench --jobs 2`` (the local process pool) vs ``qzoo bench --ray``
(a local Ray instance started by the command) vs ``qzoo bench --ray ADDRESS`` on a two-node Ray cluster on this
machine (a head node process and a second node process, one CPU each; ray.cluster_utils.Cluster, loopback only).

    nice -n 5 python benchmarks/scaleout.py [--envs CartPole-v1,Acrobot-v1] [--seeds 3] [--steps 5000]
        [--modes jobs2,ray,ray2nodes] [--out DIR]

Each mode runs the same fresh suite (same runs, same seeds) as the user would: one ``qzoo`` command, timed from
start to exit (Ray's start-up and the tables included; the two-node cluster is started before the command and
timed separately). runs/h = runs / wall time. The load average is printed before and after each mode: on a shared
machine it is what to read the figures against. The results of the modes are compared too (same final evaluations).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def qzoo(args: list[str], env: dict) -> float:
    print("$ qzoo " + shlex.join(args), flush=True)
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "qzoo", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {r.stderr[-3000:]}")
    return seconds


def scores(suite_dir: Path) -> list[tuple]:
    return [(r["env"], r["seed"], r["final_eval"]) for r in csv.DictReader(open(suite_dir / "results.csv"))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", default="CartPole-v1,Acrobot-v1")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--modes", default="jobs2,ray,ray2nodes")
    p.add_argument("--out", help="bench directories (default: a temporary directory)")
    a = p.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="qzoo-scaleout-"))
    out.mkdir(parents=True, exist_ok=True)
    suite_file = out / "suites.yml"
    envs = a.envs.split(",")
    suite_file.write_text("scaleout:\n  description: runs/hour benchmark\n  settings: {eval_freq: 0, eval_episodes: 5, "
                          "tensorboard: false}\n  envs:\n" + "".join(f"    {e}: {{}}\n" for e in envs))
    runs = len(envs) * a.seeds
    # One-machine Ray: every address is 127.0.0.1 (set before ray is imported, here and in the commands).
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # the two-node cluster's workers at the script's priority, as `qzoo bench --ray` starts a local instance's (Ray's
    # default is nice 15: on a shared machine that alone makes its runs slower than --jobs' processes)
    os.environ.setdefault("RAY_worker_niceness", "0")
    print(f"{cpu_model()}, {os.cpu_count()} logical CPUs; {runs} runs ({', '.join(envs)} x {a.seeds} seeds x "
          f"{a.steps} steps); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    base = ["bench", "scaleout", "--suite-file", str(suite_file), "--seeds", str(a.seeds), "-n", str(a.steps)]
    table, results = [], {}
    for mode in a.modes.split(","):
        load = os.getloadavg()[0]
        bench_dir = out / mode
        cluster, extra, start_s = None, [], 0.0
        if mode == "jobs2":
            extra = ["--jobs", "2"]
        elif mode == "ray":
            extra = ["--ray"]
        elif mode == "ray2nodes":
            from ray.cluster_utils import Cluster

            t = time.perf_counter()
            node = {"node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20, "num_cpus": 1}
            cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
            cluster.add_node(**node)
            cluster.wait_for_nodes()
            start_s = time.perf_counter() - t
            extra = ["--ray", cluster.address]
        else:
            sys.exit(f"unknown mode {mode!r}; allowed: jobs2, ray, ray2nodes")
        try:
            seconds = qzoo(base + extra + ["--bench-dir", str(bench_dir)], env)
        finally:
            if cluster is not None:
                cluster.shutdown()
        results[mode] = scores(bench_dir / "scaleout")
        run_s = sum(float(r["seconds"]) for r in csv.DictReader(open(bench_dir / "scaleout" / "results.csv"))) / runs
        after = os.getloadavg()[0]
        table.append((mode, seconds, runs / seconds * 3600, start_s, load, after, run_s))
        print(f"  {mode}: {seconds:.1f} s, {runs / seconds * 3600:.0f} runs/h (load {load:.1f} -> {after:.1f})",
              flush=True)
    reference = table[0][0]
    # overhead: the wall time beyond the runs' own time on 2 slots (start-up, scheduling, tables and plots)
    print(f"\n| mode | wall s | runs/h | vs {reference} | mean s per run (its own timer) | overhead s = wall - runs x "
          "mean / 2 | cluster start s (not in wall) | load avg before → after |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, seconds, per_hour, start_s, load, after, run_s in table:
        print(f"| {mode} | {seconds:.1f} | {per_hour:.0f} | {per_hour / table[0][2]:.2f}× | {run_s:.1f} | "
              f"{seconds - runs * run_s / 2:.1f} | {start_s:.1f} | {load:.1f} → {after:.1f} |")
    same = all(results[m] == results[reference] for m in results)
    print(f"\nfinal evaluations identical across modes: {same}")


if __name__ == "__main__":
    main()
