"""Atari environment throughput: agent steps per second (4 emulator frames each, random actions, no learning) of
qzoo's training envs against what the peers step, each library in its own process and venv:

    qzoo            qzoo's default training envs (``atari_backend: auto``: gymnasium's wrappers in SyncVectorEnv,
                    the protocol RL Zoo trains on; tests/unit/test_atari_sb3_trace.py)
    qzoo-async      qzoo's pipeline (the same wrappers) one process per env: gymnasium's AsyncVectorEnv with shared
                    memory (not a qzoo setting: what a faithful multi-core pipeline would give)
    qzoo-vector     ``atari_backend: vector``: ale-py's C++ AtariVectorEnv (threads; not the standard protocol)
    sb3             stable-baselines3 2.9.2's ``make_atari_env`` + ``VecFrameStack(4)`` (what RL Zoo trains on;
                    DummyVecEnv), in the SB3 peer venv (qzoo/bench/peer.py)
    envpool         ``envpool.make(GAME-v5, env_type="gymnasium")`` with its Atari defaults closest to the
                    others' (life-loss episodes, clipped rewards, FIRE reset, 30 no-ops), one thread per core (at
                    most one per env); not RL Zoo's protocol (benchmarks/envpool_protocol.py)
    ale             the floor: ``ALEInterface.act`` four times per step, one game, no preprocessing at all

    python benchmarks/env_throughput.py [--games Pong,SpaceInvaders] [--n-envs 1,8] [--steps 3000] [--repeats 2]
        [--envpool-python ~/.cache/qzoo/envpool-venv/bin/python] [--out FILE.json]

Steps/s are n_envs x vector steps over ``--steps`` vector steps after 200 for warm-up; the runs alternate backend by
backend, and each cell is the median over ``--repeats``. A backend whose python is missing is left out with a note
(EnvPool is no qzoo dependency: ``python3 -m venv ~/.cache/qzoo/envpool-venv &&
~/.cache/qzoo/envpool-venv/bin/pip install envpool opencv-python-headless``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BACKENDS = ("qzoo", "qzoo-async", "qzoo-vector", "sb3", "envpool", "ale")
WARMUP = 200


def make(backend: str, game: str, n_envs: int):
    """(step function taking an int array of n_envs actions, number of actions) for one backend."""
    import numpy as np

    env_id = f"ALE/{game}-v5"
    if backend in ("qzoo", "qzoo-vector"):  # (atari_backend auto is wrappers)
        from qzoo.envs import make_vec_env
        from qzoo.resolve import resolve

        sets = [f"atari_backend={'vector' if backend == 'qzoo-vector' else 'wrappers'}"]
        envs = make_vec_env(resolve(env_id, sets=sets), n_envs)
        envs.reset(seed=0)
        return envs.step, int(envs.single_action_space.n)
    if backend == "qzoo-async":
        from gymnasium.vector import AsyncVectorEnv, AutoresetMode

        from qzoo.envs import make_env
        from qzoo.resolve import resolve

        config = resolve(env_id)
        envs = AsyncVectorEnv([make_env(env_id, config.env_kwargs, config=config, training=True)] * n_envs,
                              shared_memory=True, autoreset_mode=AutoresetMode.SAME_STEP, context="fork")
        envs.reset(seed=0)
        return envs.step, int(envs.single_action_space.n)
    if backend == "sb3":
        import ale_py
        import gymnasium as gym
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)
        venv = VecFrameStack(make_atari_env(env_id, n_envs=n_envs, seed=0,
                                            env_kwargs={"frameskip": 1, "repeat_action_probability": 0.0}), 4)
        venv.reset()
        return venv.step, int(venv.action_space.n)
    if backend == "envpool":
        import envpool

        env = envpool.make(f"{game}-v5", env_type="gymnasium", num_envs=n_envs, batch_size=n_envs, seed=0,
                           num_threads=min(n_envs, len(os.sched_getaffinity(0))), episodic_life=True,
                           reward_clip=True, use_fire_reset=True, noop_max=30, repeat_action_probability=0.0,
                           stack_num=4, frame_skip=4, img_height=84, img_width=84, gray_scale=True)
        env.reset()
        return (lambda actions: env.step(actions.astype(np.int32))), int(env.action_space.n)
    if backend == "ale":
        import ale_py
        import gymnasium as gym

        if n_envs != 1:
            raise ValueError("the emulator floor is one game")  # (and qzoo-async is left out at one env)
        gym.register_envs(ale_py)
        env = gym.make(env_id, frameskip=1, repeat_action_probability=0.0)
        env.reset(seed=0)
        ale, action_set = env.unwrapped.ale, env.unwrapped._action_set

        def step(actions):
            action = action_set[int(actions[0])]
            for _ in range(4):
                ale.act(action)
            if ale.game_over():
                ale.reset_game()
        return step, len(action_set)
    raise ValueError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")


def worker(backend: str, game: str, n_envs: int, steps: int) -> dict:
    import numpy as np

    step, n_actions = make(backend, game, n_envs)
    actions = np.random.default_rng(0).integers(0, n_actions, (steps + WARMUP, n_envs))
    for a in actions[:WARMUP]:
        step(a)
    t0 = time.perf_counter()
    for a in actions[WARMUP:]:
        step(a)
    seconds = time.perf_counter() - t0
    return {"backend": backend, "game": game, "n_envs": n_envs, "steps_per_s": n_envs * steps / seconds,
            "us_per_vector_step": seconds / steps * 1e6}


def pythons(args) -> dict[str, Path | None]:
    here = Path(sys.executable)
    sb3 = Path(args.sb3_python) if args.sb3_python else None
    if sb3 is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from qzoo.bench.peer import default_venv

        sb3 = default_venv() / "bin" / "python"
    envpool = Path(args.envpool_python).expanduser()
    return {"qzoo": here, "qzoo-async": here, "qzoo-vector": here, "ale": here, "sb3": sb3 if sb3.exists() else None,
            "envpool": envpool if envpool.exists() else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", default="Pong,SpaceInvaders")
    parser.add_argument("--n-envs", default="1,8", help="comma-separated env counts (default: 1,8)")
    parser.add_argument("--steps", type=int, default=3000, help="vector steps timed per run (default: 3000)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--sb3-python", help="python with stable-baselines3 (default: the SB3 peer venv's)")
    parser.add_argument("--envpool-python", default="~/.cache/qzoo/envpool-venv/bin/python")
    parser.add_argument("--out", help="write every run as JSON here too")
    parser.add_argument("--worker", nargs=3, metavar=("BACKEND", "GAME", "N_ENVS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        backend, game, n_envs = args.worker
        print(json.dumps(worker(backend, game, int(n_envs), args.steps)))
        return
    python = pythons(args)
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if python[b] is None:
            print(f"note: {b} left out (no python with it; see --help)", file=sys.stderr)
    root = str(Path(__file__).resolve().parents[1])
    runs = []
    for repeat in range(args.repeats):
        for game in args.games.split(","):
            for n in map(int, args.n_envs.split(",")):
                for b in backends:
                    if python[b] is None or (b == "ale" and n != 1) or (b == "qzoo-async" and n == 1):
                        continue
                    env = {**os.environ, "PYTHONPATH": root if b.startswith("qzoo") else ""}
                    r = subprocess.run([str(python[b]), __file__, "--worker", b, game, str(n), "--steps",
                                        str(args.steps)], capture_output=True, text=True, env=env)
                    if r.returncode != 0:
                        raise SystemExit(f"{b} {game} x{n} failed: {r.stderr.strip().splitlines()[-1:]}")
                    runs.append({**json.loads(r.stdout.strip().splitlines()[-1]), "repeat": repeat})
                    print(f"{game} x{n} {b}: {runs[-1]['steps_per_s']:.0f} steps/s", file=sys.stderr, flush=True)
    print("| game | envs | " + " | ".join(backends) + " |")
    print("|---|---|" + "---|" * len(backends))
    for game in args.games.split(","):
        for n in map(int, args.n_envs.split(",")):
            cells = []
            for b in backends:
                values = [r["steps_per_s"] for r in runs if (r["backend"], r["game"], r["n_envs"]) == (b, game, n)]
                cells.append(f"{statistics.median(values):,.0f} ({', '.join(f'{v:,.0f}' for v in values)})"
                             if values else "—")
            print(f"| {game} | {n} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
