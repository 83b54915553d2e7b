"""A run whose last checkpoint is at its final step but which died before model.pt was written (killed during the
final evaluation): ``qzoo train --resume`` finishes it (final evaluation, model.pt, best model, summary) without
asking for more steps, and the result is the straight run's."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qzoo.cli import main

# The reproduction (CartPole-v1, 6000 steps, a checkpoint every 2000), kept quick: few updates, and a final
# evaluation (the only one: eval_freq 0) of 400 random-action episodes (eval_epsilon 1), so a kill can land in it.
ARGS = ["CartPole-v1", "-n", "6000", "--seed", "2", "--quiet"] + [
    arg for s in ("checkpoint_freq=2000", "eval_freq=0", "eval_episodes=400", "eval_epsilon=1.0",
                  "learning_starts=1000", "train_freq=16", "log_interval=1000", "tensorboard=false",
                  "net_arch=[32]", "torch_threads=1") for arg in ("--set", s)]
TIMING = ("time_s", "steps_per_s")


def rows(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(open(path))]


def q_net(path: Path) -> dict:
    payload = torch.load(path, weights_only=True)
    return payload["q_net"] if "q_net" in payload else payload["agent"]["q_net"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def only_run(runs: Path) -> Path:
    (config,) = runs.rglob("config.yaml")
    return config.parent


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("straight")
    assert main(["train", *ARGS, "--runs-dir", str(runs)]) == 0
    return only_run(runs)


def assert_finished_like(run: Path, straight: Path) -> None:
    assert rows(run / "progress.csv") == rows(straight / "progress.csv")
    assert rows(run / "evaluations.csv") == rows(straight / "evaluations.csv")  # the final one once, at 6000
    assert [r["step"] for r in rows(run / "evaluations.csv")] == ["6000"]
    for name in ("model.pt", "best_model.pt"):
        assert same(q_net(run / name), q_net(straight / name)), name
    assert same(q_net(run / "model.pt"), q_net(run / "checkpoints" / "step_6000.pt"))


@pytest.mark.parametrize("final_row", ["written", "not written"])
def test_resume_finishes_a_run_whose_model_was_never_written(straight, tmp_path, capsys, final_row):
    """Killed after the final evaluation's row was written but before model.pt (the issue's reproduction: delete
    model.pt), or in the middle of that evaluation: the finished run has that row once."""
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    (run / "model.pt").unlink()
    if final_row == "not written":
        (run / "evaluations.csv").write_text("".join(open(straight / "evaluations.csv").readlines()[:-1]))
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    out, err = capsys.readouterr()
    assert "finishing (final evaluation) dqn on CartPole-v1 at step 6000 of 6000" in err
    assert "final evaluation: return" in out and "pass a larger" not in err
    assert_finished_like(run, straight)
    # finished now: another resume asks for more steps, and changes nothing
    assert main(["train", "--resume", str(run)]) == 2
    assert "the run is finished (model.pt): pass a larger --total-timesteps" in capsys.readouterr().err


def test_a_run_killed_during_its_final_evaluation_is_finished_by_resume(straight, tmp_path, capsys):
    runs = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "qzoo", "train", *ARGS, "--runs-dir", str(runs)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 180
    while not list(runs.rglob("step_6000.json")) and time.monotonic() < deadline:  # the final checkpoint
        assert proc.poll() is None, "the run ended before its final checkpoint"
        time.sleep(0.005)
    time.sleep(0.1)  # inside the final evaluation (400 episodes: about a second)
    assert proc.poll() is None, "the final evaluation ended before the test could kill the run"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    run = only_run(runs)
    assert not (run / "model.pt").exists()
    assert not (run / "evaluations.csv").exists()  # the final evaluation (the run's only one) never finished

    assert main(["train", "--resume", str(run)]) == 0, capsys.readouterr().err
    assert_finished_like(run, straight)
