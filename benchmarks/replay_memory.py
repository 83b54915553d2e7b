"""Resident memory of a full Atari replay: FrameStorage (each 84x84 frame stored once) with 1M transitions.

    python benchmarks/replay_memory.py [--capacity 1000000] [--n-envs 1] [--n-step 3] [--episode-length 2000]

Not a test (it needs ~7.2 GB of free memory at the default capacity). Fills the storage through ``add``, as the
trainer does, with synthetic episodes of random frames (every row is written, so every page is touched), then
reports the process's resident memory (VmRSS / VmHWM from /proc/self/status) against the raw frames
(capacity * 84 * 84 bytes = 7.06 GB at 1M) and the 7.5 GB target, plus the time per ``add`` and per sampled
batch of 32. For comparison it prints what TransitionStorage (s_tm1 and s_t stacks per row) would need.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from qzoo.replay.frames import FrameStorage

FRAME = (84, 84)
TARGET_GB = 7.5


def proc_status_gb(key: str) -> float:
    """A memory line of /proc/self/status (reported in kB) in GB (1e9 bytes)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    raise KeyError(key)


def fill(storage: FrameStorage, episode_length: int, pool_size: int, rng: np.random.Generator) -> tuple[int, float]:
    """Synthetic episodes until every env's ring has been written once; returns (vector steps, seconds in add)."""
    n_envs, stack = storage.n_envs, storage.stack
    pool = rng.integers(0, 256, (pool_size, *FRAME), dtype=np.uint8)  # random frames, reused cyclically
    cursor = rng.integers(0, pool_size, n_envs)  # index of each env's newest frame in the pool
    left = rng.integers(episode_length // 2, 3 * episode_length // 2 + 1, n_envs)

    def stacks(newest):  # (n_envs, stack, 84, 84): the last `stack` pool frames up to `newest`
        return pool[(newest[:, None] + np.arange(1 - stack, 1)) % pool_size]

    steps, add_seconds = 0, 0.0
    while storage.written.min() < storage.env_capacity:
        obs_tm1, obs_t = stacks(cursor), stacks(cursor + 1)
        left -= 1
        ended = left == 0
        terminated = ended & (rng.random(n_envs) < 0.5)
        action, reward = rng.integers(0, 18, n_envs), rng.integers(-1, 2, n_envs).astype(np.float64)
        t0 = time.perf_counter()
        storage.add(obs_tm1, action, reward, obs_t, terminated, ended & ~terminated)
        add_seconds += time.perf_counter() - t0
        cursor += 1
        # a new episode starts on a fresh stretch of the pool (its first stack: earlier pool frames)
        cursor[ended] = rng.integers(0, pool_size, int(ended.sum()))
        left[ended] = rng.integers(episode_length // 2, 3 * episode_length // 2 + 1, int(ended.sum()))
        steps += 1
    return steps, add_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, default=1_000_000, help="frames (about transitions) held")
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--stack", type=int, default=4)
    parser.add_argument("--n-step", type=int, default=3)
    parser.add_argument("--episode-length", type=int, default=2000, help="mean synthetic episode length")
    parser.add_argument("--pool", type=int, default=4096, help="distinct random frames cycled through")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    frame_bytes = int(np.prod(FRAME))
    raw_gb = args.capacity * frame_bytes / 1e9

    rss_start = proc_status_gb("VmRSS")
    storage = FrameStorage(args.capacity, FRAME, args.stack, args.n_envs, args.n_step, gamma=0.99)
    rss_allocated = proc_status_gb("VmRSS")
    steps, seconds = fill(storage, args.episode_length, args.pool, rng)
    filled_rss = proc_status_gb("VmRSS")

    batches, start = 2000, time.perf_counter()
    for _ in range(batches):
        storage.get(storage.sample_uniform(32, rng))
    sample_us = (time.perf_counter() - start) / batches * 1e6

    rss, hwm = proc_status_gb("VmRSS"), proc_status_gb("VmHWM")
    naive_gb = args.capacity * (2 * args.stack * frame_bytes + 8 + 4 + 4) / 1e9
    print(f"machine: {platform.node()} {platform.machine()}, python {platform.python_version()}")
    print(f"FrameStorage(capacity={args.capacity:,}, stack={args.stack}, n_envs={args.n_envs}, n_step={args.n_step})")
    print(f"  filled with {steps:,} vector steps ({steps * args.n_envs:,} transitions added); add took {seconds:.1f} s "
          f"in all: {seconds / steps * 1e6:.1f} us per add (check={storage.check})")
    print(f"  valid transitions held: {storage.size:,} ({storage.size / storage.n_rows:.2%} of rows; the rest: "
          f"each episode's first-stack padding and final observation)")
    print(f"  storage arrays: {storage.nbytes / 1e9:.3f} GB ({storage.nbytes / storage.n_rows:.1f} bytes per row)")
    print(f"  sample_uniform(32) + get: {sample_us:.0f} us per batch")
    print(f"  RSS: {rss_start:.3f} GB before allocating, {rss_allocated:.3f} GB after (pages untouched), "
          f"{filled_rss:.3f} GB after filling, {rss:.3f} GB after sampling; peak (VmHWM) {hwm:.3f} GB")
    print(f"  raw frames {raw_gb:.3f} GB, target {TARGET_GB} GB: RSS {rss:.3f} GB = {rss / raw_gb:.3f}x the raw frames "
          f"(the storage's share, RSS - RSS before allocating: {(rss - rss_start) / raw_gb:.3f}x); peak {hwm:.3f} GB "
          f"{'within' if hwm <= TARGET_GB else 'OVER'} the target")
    print(f"  (TransitionStorage with both stacks per row would need {naive_gb:.1f} GB)")


if __name__ == "__main__":
    main()
