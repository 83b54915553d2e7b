"""Tabular Q-learning end to end: the command line on FrozenLake, and FrozenLake being solved."""

import csv
import os
import subprocess
import sys

from qzoo.resolve import resolve
from qzoo.runlog import EVAL_COLUMNS, PROGRESS_COLUMNS
from qzoo.tabular import train_tabular

QZOO = [sys.executable, "-m", "qzoo"]
NOT_SLIPPERY = "env_kwargs={map_name: 4x4, is_slippery: false}"


def run(args, cwd=None):
    return subprocess.run(QZOO + args, capture_output=True, text=True, cwd=cwd, timeout=240,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_train_frozenlake_then_eval(runs_dir):
    r = run(["train", "FrozenLake-v1", "--algo", "qlearning", "--seed", "1", "--total-timesteps", "20000",
             "--runs-dir", str(runs_dir), "--set", NOT_SLIPPERY, "--set", "exploration_decay_rate=0.002",
             "--set", "eval_freq=10000", "--set", "log_interval=5000"])
    assert r.returncode == 0, r.stderr
    (run_dir,) = (runs_dir / "FrozenLake-v1").iterdir()
    assert run_dir.name.startswith("qlearning_s1_")
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "command.txt", "progress.csv", "evaluations.csv", "tensorboard", "qtable.csv",
            "best_qtable.csv"} <= names
    assert any(p.name.startswith("events.out.tfevents") for p in (run_dir / "tensorboard").iterdir())
    rows = list(csv.DictReader(open(run_dir / "progress.csv")))
    assert list(rows[0]) == PROGRESS_COLUMNS and [int(r["step"]) for r in rows] == [5000, 10000, 15000, 20000]
    assert int(rows[-1]["updates"]) == 20000 and float(rows[-1]["epsilon"]) < 0.1
    evals = list(csv.DictReader(open(run_dir / "evaluations.csv")))
    assert list(evals[0]) == EVAL_COLUMNS and [int(e["step"]) for e in evals] == [10000, 20000]
    table = list(csv.reader(open(run_dir / "qtable.csv")))
    assert table[0] == ["state", "action_0", "action_1", "action_2", "action_3"] and len(table) == 1 + 16
    assert "algo: qlearning" in (run_dir / "config.yaml").read_text()
    assert "--algo qlearning" in (run_dir / "command.txt").read_text()
    assert "qtable.csv" in r.stdout and f"qzoo eval {run_dir}" in r.stdout

    e = run(["eval", str(run_dir), "--episodes", "3"])
    assert e.returncode == 0, e.stderr
    assert "qtable.csv" in e.stdout and "return 1.00 ± 0.00" in e.stdout and "(3 episodes)" in e.stdout


def test_qlearning_on_a_box_observation_env_is_refused(tmp_path, runs_dir):
    r = run(["train", "CartPole-v1", "--algo", "qlearning", "--runs-dir", str(runs_dir)], cwd=tmp_path)
    assert r.returncode == 2
    assert "--algo qlearning needs a Discrete observation space" in r.stderr and "use --algo dqn" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not runs_dir.exists()


def test_the_preset_solves_deterministic_frozenlake():
    # The FrozenLake-v1 preset (tuned for the slippery map) on the 4x4 map without slipping, on a tenth of its
    # budget: every evaluation episode reaches the goal.
    for seed in (0, 1):
        config = resolve("FrozenLake-v1", "qlearning", flags={"seed": seed, "n_timesteps": 50_000},
                         sets=["progress_bar=false", "tensorboard=false", NOT_SLIPPERY, "eval_freq=0",
                               "eval_episodes=20"])
        result = train_tabular(config, None, out=None)
        assert result.final_eval.mean == 1.0, (seed, result.final_eval.summary())
