"""An Atari game through the command line, end to end: the same agent and loop, configured for images."""

import csv
import os
import subprocess
import sys

from qzoo import allocator
from qzoo.precision import native_bf16_cpu

QZOO = [sys.executable, "-m", "qzoo"]


def run(args, cwd=None):
    return subprocess.run(QZOO + args, capture_output=True, text=True, cwd=cwd, timeout=240,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_train_pong_then_eval_reports_the_game_score(runs_dir):
    # max_episode_frames 800 (200 agent steps) keeps both the training games and the evaluation short;
    # one torch thread keeps the CNN updates quick on a small, busy machine.
    r = run(["train", "ALE/Pong-v5", "--total-timesteps", "300", "--runs-dir", str(runs_dir), "--quiet",
             "--set", "learning_starts=100", "--set", "buffer_size=1000", "--set", "batch_size=16",
             "--set", "log_interval=100", "--set", "eval_episodes=1", "--set", "max_episode_frames=800",
             "--set", "torch_threads=1", "--set", "bf16=auto"])
    assert r.returncode == 0, r.stderr
    (run_dir,) = (runs_dir / "ALE" / "Pong-v5").iterdir()
    assert {"config.yaml", "progress.csv", "evaluations.csv", "model.pt"} <= {p.name for p in run_dir.iterdir()}
    config = (run_dir / "config.yaml").read_text()
    assert "network: nature_cnn" in config and "learning_rate: 0.0001" in config  # the atari preset
    on = native_bf16_cpu()  # bf16 auto: said in the first line, recorded resolved (so is overlap's auto: off)
    assert r.stderr.splitlines()[1].startswith(f"qzoo: bf16=auto: {'on' if on else 'off'} (")  # after "training"
    found = allocator.find_jemalloc()  # the qzoo command restarted itself on jemalloc when there is one
    assert r.stderr.splitlines()[2] == ("qzoo: memory allocator: " + (f"jemalloc ({found})" if found else
                                        "the system's malloc (no jemalloc found: apt install libjemalloc2, or pip "
                                        "install 'qzoo[ray]'; a CNN run's memory may fragment and grow, "
                                        "qzoo/allocator.py)"))
    assert f"bf16: '{str(on).lower()}'" in config and "overlap: 'false'" in config
    rows = list(csv.DictReader(open(run_dir / "progress.csv")))
    assert [int(row["step"]) for row in rows] == [100, 200, 300]
    # Pong has no lives, so a training episode is a game: both columns filled once the 200-step cap ended one
    assert rows[-1]["return_mean"] != "" and rows[-1]["game_score_mean"] != ""
    assert int(rows[-1]["updates"]) > 0

    e = run(["eval", str(run_dir), "--episodes", "1"])
    assert e.returncode == 0, e.stderr
    assert "game score" in e.stdout and "human-normalised" in e.stdout and "(1 episodes)" in e.stdout


def test_unknown_ale_id_is_one_line(runs_dir):
    r = run(["train", "ALE/NoSuchGame-v5", "--runs-dir", str(runs_dir)])
    assert r.returncode == 2
    assert "unknown environment id 'ALE/NoSuchGame-v5'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not runs_dir.exists()
