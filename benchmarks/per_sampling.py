"""Time of one prioritised-replay step: PrioritizedSampler.sample + update_priorities on a full buffer.

    python benchmarks/per_sampling.py [--capacity 100000] [--batch-sizes 32 128] [--iters 5000]

Not a test: prints microseconds per call for each batch size: wall-clock "best / median" of 7 timing rounds, and
the best process CPU time (time.process_time), which other load on a shared machine disturbs less.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from qzoo.replay.samplers import PrioritizedSampler
from qzoo.schedules import LinearSchedule


def time_per_call(fn, iters: int, rounds: int = 7) -> str:
    """Microseconds per call over ``rounds`` rounds of ``iters`` calls: "wall best / median, cpu best"."""
    wall, cpu = [], []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(iters):
            fn()
        wall.append((time.perf_counter() - start) / iters * 1e6)
        cpu.append((time.process_time() - start_cpu) / iters * 1e6)
    return f"{min(wall):6.1f} / {statistics.median(wall):6.1f}, cpu {min(cpu):6.1f}"


def bench(sampler: PrioritizedSampler, size: int, batch_size: int, rng: np.random.Generator,
          iters: int) -> tuple[str, str, str]:
    """Microseconds per sample, per update_priorities, and per sample + update_priorities."""
    td_errors = rng.normal(size=batch_size)
    step = 0

    def sample():
        nonlocal step
        step += 1  # beta is read from the schedule on every call, as in training
        return sampler.sample(size, batch_size, rng, step)

    def sample_and_update():
        indices, _ = sample()
        sampler.update_priorities(indices, td_errors)

    indices, _ = sample()
    t_sample = time_per_call(sample, iters)
    t_update = time_per_call(lambda: sampler.update_priorities(indices, td_errors), iters)
    return t_sample, t_update, time_per_call(sample_and_update, iters)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--capacity", type=int, default=100_000)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    p.add_argument("--iters", type=int, default=5000)
    args = p.parse_args()

    rng = np.random.default_rng(0)
    sampler = PrioritizedSampler(args.capacity, alpha=0.6, beta_schedule=LinearSchedule(0.4, 1.0, 1_000_000))
    sampler.on_add(np.arange(args.capacity))
    sampler.update_priorities(np.arange(args.capacity), rng.exponential(1.0, args.capacity))  # a full, varied buffer
    print(f"capacity {args.capacity}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{platform.processor() or platform.machine()}")
    for batch_size in args.batch_sizes:
        t_sample, t_update, t_both = bench(sampler, args.capacity, batch_size, rng, args.iters)
        print(f"batch {batch_size:4d}  (us per call, wall best / median, cpu best)")
        print(f"  sample                    {t_sample}")
        print(f"  update_priorities         {t_update}")
        print(f"  sample + update           {t_both}")


if __name__ == "__main__":
    main()
