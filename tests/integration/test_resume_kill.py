"""kill -9 at random steps, several times per run, then --resume: the run ends as if it had never been stopped.

Each family of environment state is covered: ALE games through the gymnasium-wrapper pipeline (emulator + RNG +
wrapper state), Box2D (seeded reset + action replay) with the stateful replay parts (PER sum tree, n-step windows),
and a pickled classic-control env with Rainbow (noisy nets, distributions). Budgets are tiny; what is compared is
exact: progress.csv and evaluations.csv without their timing columns, and the final weights."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qzoo.cli import main

TIMING = ("steps_per_s", "time_s")


def sets(*settings: str) -> list[str]:
    return [arg for setting in settings for arg in ("--set", setting)]


COMMON = ("log_interval=200", "eval_freq=0", "eval_episodes=1", "tensorboard=false", "save_replay=true",
          "torch_threads=1", "keep_checkpoints=2")
RUNS = {
    # Nature CNN on 42x42 frames (its smallest comfortable size), two envs, Pong ends no game in 2400 steps but its
    # episodes do (max_episode_frames), so resets, no-op starts and the frame stack's padding are crossed
    "pong-wrappers": ["ALE/Pong-v5", "-n", "2400", "--seed", "1", "--n-envs", "2"] + sets(
        *COMMON, "atari_backend=wrappers", "screen_size=42", "learning_starts=400", "buffer_size=2000",
        "batch_size=8", "max_episode_frames=1200", "checkpoint_freq=400", "train_freq=4"),
    "lunarlander-per-nstep": ["LunarLander-v3", "-n", "2400", "--seed", "2"] + sets(
        *COMMON, "learning_starts=200", "train_freq=2", "checkpoint_freq=400", "batch_size=16", "net_arch=[32]",
        "prioritized=true", "n_step=3", "buffer_size=5000"),
    "cartpole-rainbow": ["CartPole-v1", "--algo", "rainbow", "-n", "2400", "--seed", "3"] + sets(
        *COMMON, "learning_starts=200", "train_freq=2", "checkpoint_freq=400", "batch_size=16", "net_arch=[32]",
        "buffer_size=5000", "target_update_interval=100", "gradient_steps=1"),
}


def only_run(runs: Path) -> Path:
    (config,) = runs.rglob("config.yaml")
    return config.parent


def rows(path: Path) -> list[dict]:
    import csv

    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["q_net"]


def complete_steps(runs: Path) -> list[int]:
    return sorted(int(p.stem.removeprefix("step_")) for p in runs.rglob("checkpoints/step_*.json"))


def kill_at_random_steps(args: list[str], runs: Path, kills: int, rng: random.Random) -> Path:
    """Start ``qzoo train ARGS``, and ``kills`` times: wait for a checkpoint newer than any seen, let it run on for a
    random moment (so the kill lands at a random step, sometimes inside the next checkpoint's write), SIGKILL it,
    and start ``qzoo train --resume``. Returns the run directory (unfinished)."""
    command = ["train", *args, "--runs-dir", str(runs), "--quiet"]
    seen = 0
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_WAIT_POLICY": "PASSIVE"}
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-m", "qzoo", *command], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 180
        while not [s for s in complete_steps(runs) if s > seen]:
            assert proc.poll() is None, "the run ended before the test could kill it"
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.02)
        seen = max(complete_steps(runs))
        time.sleep(rng.uniform(0.0, 0.25))
        assert proc.poll() is None, "the run ended before the test could kill it"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        command = ["train", "--resume", str(only_run(runs)), "--quiet"]
    return only_run(runs)


@pytest.mark.parametrize("name", list(RUNS))
def test_kill_9_at_random_steps_then_resume_matches_an_uninterrupted_run(name, tmp_path, capsys):
    args = RUNS[name]
    assert main(["train", *args, "--runs-dir", str(tmp_path / "straight"), "--quiet"]) == 0
    straight = only_run(tmp_path / "straight")
    capsys.readouterr()

    killed = kill_at_random_steps(args, tmp_path / "killed", kills=3, rng=random.Random(name))
    assert not (killed / "model.pt").exists()
    assert main(["train", "--resume", str(killed)]) == 0
    err = capsys.readouterr().err
    assert "qzoo: resuming from step_" in err and "new episodes" not in err, err
    assert (killed / "command.txt").read_text().count("--resume") == 3  # two resumes killed again, then this one
    assert rows(killed / "progress.csv") == rows(straight / "progress.csv")
    assert [int(r["step"]) for r in rows(killed / "progress.csv")] == list(range(200, 2401, 200))
    assert rows(killed / "evaluations.csv") == rows(straight / "evaluations.csv")
    a, b = weights(killed / "model.pt"), weights(straight / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
