"""What an actor beside the learner costs an update: the wall time of a bf16 Nature-CNN update (DQN's Pong preset,
the second thread on) while a third thread of the same process does an actor's kind of work.

    python benchmarks/update_beside.py [--updates 60] [--set bf16=false ...] [--switch-interval 0.005]

Why: overlapping the actor with the learner (``overlap``, or any loop that steps the envs while an update runs)
needs the update to stay near its in-line speed while the actor works beside it. On 2 cores the update already
uses both (its second thread, ``target_thread``), so the actor takes time from it in two ways: CPU (a third busy
thread on two cores) and the GIL (each of the update's ~150 Python-level steps between torch calls needs it, and
a thread running Python holds it until it calls into C code that lets it go, or for up to the switch interval).

Each case starts the third thread, runs ``--updates`` updates of ``agent.learn`` (after 10 unmeasured), stops it,
and prints the median ms per update. The work beside it:

- ``none``: nothing (the in-line update); run first and last.
- ``actor duty``: an actor's phase: the acting forward pass (one frame, float32, as the loop acts) and a step of
  the real training env (the wrapper pipeline, Pong), in turn, for 4.4 ms out of every 12 — what the 4 steps of
  RL Zoo's phase (train_freq 4) take in line, beside an update of ~12 ms.
- ``act duty``, ``env duty``, ``python duty``: the acting pass alone, the env step alone, or pure Python (which
  holds the GIL throughout), each for 2.4 ms out of every 12.
- ``actor continuous``, ``act continuous``: without pause (a third busy thread on two cores).

The threads are not pinned. ``--switch-interval``: ``sys.setswitchinterval`` for the run (CPython's default 5 ms).
Run it on an otherwise idle machine. Re-executes itself with jemalloc preloaded, as the ``qzoo`` command does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=60)
    p.add_argument("--set", action="append", default=[], help="a setting for the agent (KEY=VALUE)")
    p.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval (seconds)")
    args = p.parse_args()
    from qzoo import allocator

    allocator.restart_python_with_jemalloc(sys.argv)  # as the qzoo command starts itself

    import numpy as np
    import torch
    from update_cost import synthetic_agent

    from qzoo.envs import make_vec_env
    from qzoo.resolve import resolve

    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    torch.set_flush_denormal(True)
    cfg, agent, replay, obs = synthetic_agent("dqn", [*args.set, "target_thread=true"])
    envs = make_vec_env(resolve("ALE/Pong-v5", sets=["device=cpu"]))
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    counter = iter(range(10**12))

    def act():
        agent.act(obs, 0.01, rng)

    def python():
        for _ in range(200):
            pass

    def env_step():
        envs.step(np.array([next(counter) % 6]))

    def actor():
        act()
        env_step()

    stop = threading.Event()

    def beside(work, busy: float, idle: float):
        def run():
            torch.set_num_threads(1)
            while not stop.is_set():
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < busy and not stop.is_set():
                    work()
                if idle:
                    time.sleep(idle)
        return run

    cases = [("none", None), ("actor duty", beside(actor, 0.0044, 0.0076)), ("act duty", beside(act, 0.0024, 0.0096)),
             ("env duty", beside(env_step, 0.0024, 0.0096)), ("python duty", beside(python, 0.0024, 0.0096)),
             ("actor continuous", beside(actor, 1.0, 0)), ("act continuous", beside(act, 1.0, 0)), ("none", None)]
    print(f"bf16={cfg.bf16} switch interval {sys.getswitchinterval() * 1e3:g} ms, torch {torch.__version__}")
    step = 3000
    for name, run in cases:
        stop.clear()
        thread = threading.Thread(target=run) if run else None
        if thread:
            thread.start()
        times = []
        for _ in range(10 + args.updates):
            t0 = time.perf_counter()
            agent.learn(replay, 1, cfg.batch_size, step)
            times.append(time.perf_counter() - t0)
            step += 4
        stop.set()
        if thread:
            thread.join()
        print(f"{name:17s} {1e3 * statistics.median(times[10:]):7.2f} ms per update", flush=True)
    agent.second_thread.close()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
