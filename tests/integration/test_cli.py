"""The command line end to end, as a user runs it (real subprocesses)."""

import csv
import os
import subprocess
import sys

import pytest

QZOO = [sys.executable, "-m", "qzoo"]


def run(args, cwd=None):
    return subprocess.run(QZOO + args, capture_output=True, text=True, cwd=cwd, timeout=240,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_train_cartpole_then_eval(runs_dir):
    r = run(["train", "CartPole-v1", "--total-timesteps", "2000", "--seed", "1", "--runs-dir", str(runs_dir),
             "--set", "learning_starts=500", "--set", "eval_freq=1000", "--set", "eval_episodes=2",
             "--set", "log_interval=500", "--set", "train_freq=16", "--set", "gradient_steps=8"])
    assert r.returncode == 0, r.stderr
    (run_dir,) = (runs_dir / "CartPole-v1").iterdir()
    assert run_dir.name.startswith("dqn_s1_")
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "command.txt", "progress.csv", "evaluations.csv", "model.pt", "best_model.pt",
            "checkpoints", "tensorboard"} <= names
    assert any(p.name.startswith("events.out.tfevents") for p in (run_dir / "tensorboard").iterdir())
    assert len(list((run_dir / "checkpoints").glob("step_*.pt"))) == 3  # every 10% of 2000, 3 kept
    rows = list(csv.DictReader(open(run_dir / "progress.csv")))
    assert [int(r["step"]) for r in rows] == [500, 1000, 1500, 2000]
    assert set(rows[0]) == {"step", "episodes", "return_mean", "return_last", "game_score_mean", "length_mean",
                            "q_mean", "loss", "epsilon", "updates", "steps_per_s", "time_s"}
    assert all(r["game_score_mean"] == "" for r in rows)  # not an Atari game
    assert rows[0]["loss"] == "" and float(rows[-1]["loss"]) >= 0  # no updates before learning_starts
    assert int(rows[-1]["updates"]) == (2000 - 512) // 16 * 8 + 8  # phases at vec steps 512, 528, ... 2000
    evals = list(csv.DictReader(open(run_dir / "evaluations.csv")))
    assert [int(e["step"]) for e in evals] == [1000, 2000]
    assert "--total-timesteps 2000" in (run_dir / "command.txt").read_text()
    assert "n_timesteps: 2000" in (run_dir / "config.yaml").read_text()
    assert f"qzoo eval {run_dir}" in r.stdout  # the last lines say where everything is
    best, final = max(float(e["return_mean"]) for e in evals), float(evals[-1]["return_mean"])
    # ... and what the score means, and how to see the agent play
    verdict = "solved" if final >= 475 else "not solved"
    assert (f"(the average total reward of 2 episodes played by the final model, always taking its best-rated "
            f"action; CartPole-v1 counts as solved at 475 or more: {verdict})") in r.stdout
    assert f"watch it play:    qzoo record {run_dir}   (writes {run_dir / 'video.mp4'})" in r.stdout
    assert ("best evaluation:" in r.stdout) == (best > final)  # said exactly when an earlier model did better
    if best > final:
        assert f"best evaluation:  return {best:.2f}, earlier in training (best_model.pt" in r.stdout

    e = run(["eval", str(run_dir), "--episodes", "3", "--seed", "7"])
    assert e.returncode == 0, e.stderr
    assert "return" in e.stdout and "(3 episodes)" in e.stdout


def test_train_help_documents_every_setting_with_its_default():
    from qzoo.config import FIELDS

    r = run(["train", "--help"])
    assert r.returncode == 0
    for name in FIELDS:
        assert f"  {name} " in r.stdout, name
    assert "default 0.99" in r.stdout  # gamma


@pytest.mark.parametrize("args,needle", [
    (["train", "CartPole-v1", "--set", "learnig_rate=1"], "unknown setting 'learnig_rate' (did you mean"),
    (["train", "CartPole-v1", "--set", "learning_rate=abc"], "'learning_rate' must be a number"),
    (["train", "CartPole-v1", "--set", "learning_rate=-0.1"], "'learning_rate' must be a finite number > 0"),
    (["train", "CartPole-v1", "--set", "gamma=2"], "'gamma' must be a number in [0, 1]"),
    (["train", "CartPole-v1", "--set", "buffer_size=10"], "'batch_size' (128) must not exceed 'buffer_size' (10)"),
    (["train", "CartPole-v9"], "unknown environment id 'CartPole-v9'"),
    (["train", "Pendulum-v1"], "needs a Discrete action space"),
    (["train", "CartPole-v1", "--preset", "/nonexistent.yml"], "preset file '/nonexistent.yml' does not exist"),
    (["train", "CartPole-v1", "--preset", "rl-zo"], "--preset 'rl-zo' is neither a file nor a named preset (named: "
                                                      "course, rl-zoo)"),
    (["train", "FrozenLake-v1", "--preset", "rl-zoo"], "preset 'rl-zoo' has no entry for 'FrozenLake-v1' (it has: "
                                                       "atari, CartPole-v1,"),
    (["train", "CartPole-v1", "--algo", "rainbow", "--preset", "rl-zoo"], "preset 'rl-zoo' has no rainbow settings"),
    (["train", "CartPole-v1", "--seed", "x"], "invalid int value: 'x'"),
    (["train", "CartPole-v1", "--algo", "ppo"], "invalid choice: 'ppo'"),
    (["eval", "/nonexistent/run"], "run directory '/nonexistent/run' does not exist"),
    (["eval", "."], "'.' holds no model"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path, runs_dir):
    r = run(args + (["--runs-dir", str(runs_dir)] if args[0] == "train" else []), cwd=tmp_path)
    assert r.returncode == 2
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert not runs_dir.exists()  # nothing was created


def test_eval_refuses_a_corrupted_model(tmp_path):
    (tmp_path / "config.yaml").write_text("env_id: CartPole-v1\n")
    (tmp_path / "model.pt").write_bytes(b"not a model")
    r = run(["eval", str(tmp_path)])
    assert r.returncode == 2 and "is not a readable qzoo model" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
