"""Can an actor in its own process fill the update's idle core time? The wall time of a bf16 Nature-CNN update
(DQN's Pong preset, the second thread on) while another process does an actor's work, and how many actor steps
that process completes meanwhile.

    python benchmarks/actor_process.py [--updates 80] [--set bf16=false ...]

Why: in one process an actor beside the update costs it ~40% (``update_beside.py``): the env step needs the GIL
the update's ~150 Python steps need, and a third busy thread takes CPU from the update's two. A second process
holds no GIL of the learner's. Linux also lets a ``SCHED_IDLE`` process run only when a core would otherwise be
idle: a waking normal thread preempts it at once (CFS wakeup preemption), so such an actor could use the time the
update leaves idle (its two threads wait on each other for part of each update) without lengthening it, at the
price of the caches they share.

The actor process acts as the training loop does (one frame, float32, one torch thread) and steps the real
training env (the wrapper pipeline, Pong) in turn, without pause, counting steps in shared memory. Cases:

- ``none``: no actor (the in-line update); run first and last.
- ``process normal``: the actor at normal priority (nice 0).
- ``process nice19``: the actor at nice 19.
- ``process idle``: the actor under ``SCHED_IDLE``.
- ``phase normal``, ``phase idle``: as an overlapped loop would run: at the start of each update the learner lets
  the actor take 4 steps (a semaphore), and after the update waits until it has; prints the ms per phase.
- ``alone``: the actor's steps/s with no update running (how fast it goes on a free core).

Prints the median ms per update and the actor's steps per update (steps completed during the measured updates /
updates). An actor that keeps RL Zoo's replay ratio needs 4 steps per update (train_freq 4). Run it on an idle
machine. Re-executes itself with jemalloc preloaded, as the ``qzoo`` command does.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time


def actor_main(policy: str, counter, go, stop, permits=None) -> None:
    """The actor process: act and step the env, counting steps in ``counter``: without pause while ``go`` is set,
    or, with ``permits`` (a semaphore the learner releases 4 times at the start of each update), one step per
    permit after 50 warm-up steps."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if policy == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif policy == "nice19":
        os.nice(19)
    import numpy as np
    import torch
    from update_cost import synthetic_agent

    from qzoo.envs import make_vec_env
    from qzoo.resolve import resolve

    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    _, agent, _, obs = synthetic_agent("dqn", ["buffer_size=4000"])
    envs = make_vec_env(resolve("ALE/Pong-v5", sets=["device=cpu"]))
    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    i = 0
    while not stop.is_set():
        if permits is not None and i >= 50:
            if not permits.acquire(timeout=0.05):
                continue
        elif not go.wait(0.05):
            continue
        obs, *_ = envs.step(agent.act(obs, 0.01, rng))
        i += 1
        counter.value = i


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=80)
    p.add_argument("--set", action="append", default=[], help="a setting for the agent (KEY=VALUE)")
    args = p.parse_args()
    from qzoo import allocator

    allocator.restart_python_with_jemalloc(sys.argv)  # as the qzoo command starts itself

    ctx = mp.get_context("spawn")  # before torch loads here; the child imports its own
    import torch
    from update_cost import synthetic_agent

    torch.set_flush_denormal(True)
    cfg, agent, replay, _ = synthetic_agent("dqn", [*args.set, "target_thread=true"])
    from qzoo.precision import bf16_enabled

    on = "on" if bf16_enabled(cfg.bf16) else "off"
    print(f"bf16={cfg.bf16} ({on}), torch {torch.__version__}, {os.cpu_count()} cores", flush=True)
    step = 3000

    def updates(n: int) -> list[float]:
        nonlocal step
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            agent.learn(replay, 1, cfg.batch_size, step)
            times.append(time.perf_counter() - t0)
            step += 4
        return times

    def phase_times(permits, counter, n: int) -> tuple[list[float], list[float]]:
        """Phases as an overlapped loop runs them: 4 actor steps released, an update, then wait for the steps."""
        nonlocal step
        times, walls = [], []
        for _ in range(n):
            target = counter.value + 4
            t0 = time.perf_counter()
            for _ in range(4):
                permits.release()
            agent.learn(replay, 1, cfg.batch_size, step)
            times.append(time.perf_counter() - t0)
            while counter.value < target:
                time.sleep(0.0001)
            walls.append(time.perf_counter() - t0)
            step += 4
        return times, walls

    cases = [("none", None), ("process normal", "normal"), ("process nice19", "nice19"),
             ("process idle", "idle"), ("phase normal", "normal"), ("phase idle", "idle"), ("none", None)]
    for name, policy in cases:
        if policy is None:
            updates(10)
            t = updates(args.updates)
            print(f"{name:16s} {1e3 * statistics.median(t):7.2f} ms per update", flush=True)
            continue
        counter, go, stop = ctx.Value("q", 0, lock=False), ctx.Event(), ctx.Event()
        permits = ctx.Semaphore(0) if name.startswith("phase") else None
        proc = ctx.Process(target=actor_main, args=(policy, counter, go, stop, permits))
        proc.start()
        go.set()
        while counter.value < 50:  # the actor has started and warmed up
            time.sleep(0.05)
        if permits is not None:
            phase_times(permits, counter, 10)
            t, wall = phase_times(permits, counter, args.updates)
            stop.set()
            proc.join()
            print(f"{name:16s} {1e3 * statistics.median(t):7.2f} ms per update, {1e3 * statistics.median(wall):7.2f} "
                  f"ms per phase (update and the actor's 4 steps beside it)", flush=True)
            continue
        t0, c0 = time.perf_counter(), counter.value
        time.sleep(1.0)
        alone = (counter.value - c0) / (time.perf_counter() - t0)
        updates(10)
        c0 = counter.value
        t = updates(args.updates)
        steps = counter.value - c0
        stop.set()
        proc.join()
        print(f"{name:16s} {1e3 * statistics.median(t):7.2f} ms per update, actor {steps / len(t):5.2f} steps per "
              f"update ({steps / sum(t):5.0f}/s; alone {alone:5.0f}/s)", flush=True)
    agent.second_thread.close()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
