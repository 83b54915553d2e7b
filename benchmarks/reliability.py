"""Checkpoint cost and memory over a long run (issue 8).

    python benchmarks/reliability.py checkpoint [--repeats 5]       # CartPole and a 100k-transition Atari buffer
    python benchmarks/reliability.py envs [--repeats 5]             # with env states: Atari wrappers, LunarLander
    nice -n 10 python benchmarks/reliability.py rss [--steps 200000] [--every 2]

``checkpoint``: builds a run's parts as the trainer does (agent, replay, envs, progress log), fills the replay
(CartPole: 50k transitions of its 100k buffer from real env steps; Atari: ALE/Pong-v5's frame-once storage with
100k transitions of random 84x84 frames, the RL Zoo Atari buffer size), then times ``Checkpointer.save`` (write,
fsync, rename, sha256 read-back, manifest), ``verify`` (what --resume checks) and a restore into fresh parts;
prints file sizes. ``rss``: runs ``qzoo train CartPole-v1 --total-timesteps N`` (RL Zoo's CartPole settings,
checkpoints with replay every 10%) in a subprocess and samples its resident memory (VmRSS) every few seconds
together with the step reached (progress.csv), to show whether memory grows once the replay buffer is full.
``envs`` (issue 18): the same measurement where the checkpoint holds the training envs' snapshot
(qzoo/envs/snapshot.py): ALE/Pong-v5 through the gymnasium-wrapper pipeline (emulator state with its RNG, frame
stack, max-pool buffer) with a 100k-transition buffer, and LunarLander-v3 (RL Zoo preset: 50k buffer, filled from
the env; its envs are snapshotted as a seed and the actions since) with the envs mid-episode; it also times the
snapshot alone (``vec_env_state``) and reports its pickled size; restore includes the action replay.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qzoo import checkpoint as ckpt
from qzoo.agent import build_agent, resolve_device
from qzoo.envs import check_env, make_vec_env, true_next_obs, vec_env_state
from qzoo.logger import Logger
from qzoo.replay import make_replay
from qzoo.resolve import resolve
from qzoo.runlog import ProgressLog

RESULTS = Path(__file__).parent / "results"  # git-ignored; on the same disk as a run directory would be


def parts(env_id: str, sets: list[str]):
    config = resolve(env_id, sets=sets + ["save_replay=true", "progress_bar=false"])
    info = check_env(config)
    agent = build_agent(config, info.observation_space, info.n_actions, resolve_device("cpu"))
    replay = make_replay(config, info.observation_space)
    envs = make_vec_env(config)
    progress = ProgressLog(config, Logger([]), None, None)
    return config, info, agent, replay, envs, progress


def fill_from_env(replay, envs, n: int, rng) -> np.ndarray:
    obs, _ = envs.reset(seed=0)
    for _ in range(n):
        action = rng.integers(0, envs.single_action_space.n, envs.num_envs)
        next_obs, reward, terminated, truncated, infos = envs.step(action)
        replay.add(obs, action, reward, true_next_obs(next_obs, infos), terminated, truncated)
        obs = next_obs
    return obs


def fill_atari(replay, n: int, rng, episode_length: int = 2000) -> np.ndarray:
    """n steps of synthetic episodes of random frames through ``add`` (as benchmarks/replay_memory.py)."""
    obs = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    for t in range(n):
        next_obs = np.concatenate([obs[:, 1:], rng.integers(0, 256, (1, 1, 84, 84), dtype=np.uint8)], axis=1)
        ended = (t + 1) % episode_length == 0
        replay.add(obs, rng.integers(0, 6, 1), rng.normal(size=1), next_obs, np.array([ended]), np.array([False]))
        obs = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8) if ended else next_obs
    return obs


def measure(name: str, env_id: str, sets: list[str], steps: int, repeats: int, atari: bool) -> None:
    rng = np.random.default_rng(0)
    config, info, agent, replay, envs, progress = parts(env_id, sets)
    t0 = time.perf_counter()
    obs = fill_atari(replay, steps, rng) if atari else fill_from_env(replay, envs, steps, rng)
    if atari:  # the envs mid-episode, as in training (the frames in the buffer are synthetic)
        obs = step_envs(envs, 500, rng)
    print(f"{name}: filled {len(replay)} transitions in {time.perf_counter() - t0:.1f} s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="ckpt-bench-", dir=RESULTS))
    saver = ckpt.Checkpointer(directory, config, info.observation_space.shape, info.n_actions, io.StringIO())
    writes, verifies, restores = [], [], []
    for k in range(repeats):
        step = (k + 1) * 1000
        t0 = time.perf_counter()
        state = ckpt.training_state(step=step, vec_steps=step, obs=obs, rng=rng, best_eval=0.0, agent=agent,
                                    progress=progress, envs=envs)
        saver.save(step, state, replay)
        writes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert ckpt.verify(directory / "checkpoints", step) is None
        verifies.append(time.perf_counter() - t0)
    sizes = {p.name.split(".", 1)[1]: p.stat().st_size for p in (directory / "checkpoints").glob(f"step_{step}.*")}
    snapshots = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        env_state = vec_env_state(envs)
        snapshots.append(time.perf_counter() - t0)
    kind = "pickled envs" if env_state.get("envs") else "per-env snapshots" if "snapshots" in env_state else \
        f"none ({env_state.get('why')})"
    env_bytes = len(env_state.get("envs") or env_state.get("snapshots") or b"")
    resume = ckpt.find_resumable(directory, config, info.observation_space.shape, info.n_actions)
    for _ in range(min(repeats, 2)):
        _, _, agent2, replay2, envs2, progress2 = parts(env_id, sets)
        t0 = time.perf_counter()
        envs2.reset(seed=config.seed)
        out = io.StringIO()
        ckpt.restore(resume, config, agent=agent2, replay=replay2, progress=progress2, envs=envs2, rng=rng, out=out)
        assert "new episodes" not in out.getvalue() or not env_bytes, out.getvalue()
        restores.append(time.perf_counter() - t0)
        envs2.close()
    shutil.rmtree(directory)
    envs.close()
    fmt = lambda xs: ", ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    print(f"{name}: envs in the checkpoint: {kind}, {env_bytes / 1e3:.1f} kB for {envs.num_envs} env(s); "
          f"snapshot s: {fmt(snapshots)}", flush=True)
    print(f"{name}: sizes {', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in sizes.items())}; total "
          f"{sum(sizes.values()) / 1e6:.2f} MB", flush=True)
    print(f"{name}: save (write+fsync+sha256) s: {fmt(writes)} (median {statistics.median(writes):.3f}); "
          f"verify s: {fmt(verifies)}; restore s: {fmt(restores)}", flush=True)


def cmd_checkpoint(args) -> None:
    measure("CartPole-v1 (RL Zoo preset, 100k buffer, 50k filled)", "CartPole-v1", [], 50_000, args.repeats,
            atari=False)
    measure("ALE/Pong-v5 (frame-once buffer, 100k transitions)", "ALE/Pong-v5", ["buffer_size=100000"], 100_000,
            args.repeats, atari=True)


def step_envs(envs, n: int, rng) -> np.ndarray:
    obs, _ = envs.reset(seed=0)
    for _ in range(n):
        obs = envs.step(rng.integers(0, envs.single_action_space.n, envs.num_envs))[0]
    return obs


def cmd_envs(args) -> None:
    measure("ALE/Pong-v5 (wrapper pipeline, frame-once buffer, 100k transitions)", "ALE/Pong-v5",
            ["buffer_size=100000", "atari_backend=wrappers"], 100_000, args.repeats, atari=True)
    measure("LunarLander-v3 (RL Zoo preset, 50k buffer, filled from the env)", "LunarLander-v3", [], 50_000,
            args.repeats, atari=False)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise KeyError("VmRSS")


def last_step(runs: Path) -> int:
    files = list(runs.rglob("progress.csv"))
    if not files:
        return 0
    lines = files[0].read_text().strip().splitlines()
    return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0


def cmd_rss(args) -> None:
    RESULTS.mkdir(exist_ok=True)
    runs = Path(tempfile.mkdtemp(prefix="rss-bench-", dir=RESULTS))
    proc = subprocess.Popen([sys.executable, "-m", "qzoo", "train", "CartPole-v1", "--total-timesteps",
                             str(args.steps), "--runs-dir", str(runs), "--quiet", "--set", "eval_freq=20000",
                             "--set", "save_replay=true"], stdout=subprocess.DEVNULL)
    samples = []
    start = time.monotonic()
    while proc.poll() is None:
        try:
            samples.append((time.monotonic() - start, last_step(runs), rss_kb(proc.pid) / 1024))
        except (FileNotFoundError, ProcessLookupError, KeyError):
            break
        time.sleep(args.every)
    assert proc.wait() == 0
    shutil.rmtree(runs)
    print(f"qzoo train CartPole-v1 --total-timesteps {args.steps}: {time.monotonic() - start:.0f} s, "
          f"{len(samples)} samples")
    for tenth in range(1, 11):  # the first sample at or after each 10% of the run
        at = next((s for s in samples if s[1] >= args.steps * tenth // 10), samples[-1])
        print(f"  step {at[1]:>7}  t {at[0]:6.0f} s  RSS {at[2]:7.1f} MiB")
    full = [s[2] for s in samples if s[1] >= 100_000]  # the 100k buffer is full from here on
    if full:
        print(f"  buffer full (step >= 100000): RSS min {min(full):.1f}, max {max(full):.1f}, last {full[-1]:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("checkpoint")
    c.add_argument("--repeats", type=int, default=5)
    e = sub.add_parser("envs")
    e.add_argument("--repeats", type=int, default=5)
    r = sub.add_parser("rss")
    r.add_argument("--steps", type=int, default=200_000)
    r.add_argument("--every", type=float, default=2.0)
    args = parser.parse_args()
    {"checkpoint": cmd_checkpoint, "envs": cmd_envs, "rss": cmd_rss}[args.what](args)


if __name__ == "__main__":
    main()
