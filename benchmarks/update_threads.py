"""Wall time of a Nature-CNN update with and without the second thread (``target_thread``), and where it goes.

    python benchmarks/update_threads.py [--algo drq_eps] [--set bf16=false ...] [--updates 100]

DQN's Pong preset (RL Zoo's Atari settings: Nature CNN, 6 actions, batch 32; or ALGO's), one torch thread per
thread, a replay of 3,000 random frames (``update_cost.synthetic_agent``), jemalloc preloaded as the ``qzoo``
command does. Prints the median wall time per update of ``agent.learn`` in line and with the second thread, then
(DQN) one threaded update taken apart on the calling thread (online forward; wait for the target pass; backward;
wait for the weight gradients; Adam) and the submit / start / end times (ms from the update's start) of the
weight-gradient jobs of the fc layer and the upper two convolutions on the second thread (the first layer's is
split between the threads where the halves agree, and not timed). Run it on an otherwise idle machine: the two
threads need the two cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", default="dqn", help="the preset (dqn, drq_eps, ...); the parts: dqn only")
    p.add_argument("--set", action="append", default=[], help="a setting for the agent (KEY=VALUE)")
    p.add_argument("--updates", type=int, default=100)
    args = p.parse_args()
    from qzoo import allocator

    allocator.restart_python_with_jemalloc(sys.argv)  # as the qzoo command starts itself

    import torch
    from update_cost import synthetic_agent

    import qzoo.split_grads as sg
    from qzoo.losses import q_learning_target, td_loss

    torch.set_flush_denormal(True)
    for mode in ("false", "true"):
        cfg, agent, replay, _ = synthetic_agent(args.algo, [*args.set, f"target_thread={mode}"])
        sync_every = max(cfg.target_update_interval // cfg.train_freq, 1)  # updates between syncs, as in training
        times = []
        for i in range(20 + args.updates):
            t0 = time.perf_counter()
            agent.learn(replay, 1, cfg.batch_size, 3000 + i)
            times.append(time.perf_counter() - t0)
            if i % sync_every == 0:
                agent.sync_target()
        print(f"{args.algo} target_thread={mode}: {1000 * statistics.median(times[20:]):.2f} ms per update (median)")
    if args.algo != "dqn":
        return

    # one threaded update taken apart (the agent's update with timestamps between its parts)
    jobs, origin = [], [0.0]
    real_add = sg.WeightGrads.add

    def timed_add(self, params, job):
        submitted = time.perf_counter()

        def timed():
            start = time.perf_counter()
            result = job()
            jobs.append((tuple(params[0].shape), submitted - origin[0], start - origin[0],
                         time.perf_counter() - origin[0]))
            return result
        return real_add(self, params, timed)

    sg.WeightGrads.add = timed_add
    second = agent.second_thread
    parts = []
    for i in range(20 + args.updates):
        jobs.clear()
        obs_tm1, action, reward, discount, obs_t, _ = agent._tensors(replay.sample_phase(1, cfg.batch_size, 3000))
        origin[0] = t0 = time.perf_counter()
        pending = second.forward(agent.target_net, obs_t)
        for p_ in agent.params:
            p_.grad = None
        q = agent.q_net(obs_tm1).gather(1, action.unsqueeze(1)).squeeze(1)
        t1 = time.perf_counter()
        target = q_learning_target(reward, discount, pending.result())
        t2 = time.perf_counter()
        td_loss(q, target).mean().backward()
        t3 = time.perf_counter()
        agent._weight_grads.collect()
        t4 = time.perf_counter()
        agent._adam.step() if agent._adam is not None else agent.optimizer.step()
        t5 = time.perf_counter()
        if i >= 20:
            parts.append((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0))
    names = ("online forward", "wait for target pass", "backward", "wait for weight gradients", "Adam", "total")
    print("one threaded update, calling thread (median ms): " + ", ".join(
        f"{n} {1000 * statistics.median(x[k] for x in parts):.2f}" for k, n in enumerate(names)))
    print("the first layer's weight gradient split by output channel between the threads: "
          + ", ".join(str(agree) for agree in sg.HALVES_AGREE.values()))
    for shape, submitted, start, end in jobs:  # (the last update's)
        print(f"  weight-gradient job {shape}: submitted {1000 * submitted:.2f}, ran {1000 * start:.2f} to "
              f"{1000 * end:.2f} ms")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
