"""`qzoo bench` on a tiny suite, and `qzoo train` on MinAtar, end to end (real subprocesses)."""

import csv
import json
import os
import shutil
import subprocess
import sys

import torch
from PIL import Image

QZOO = [sys.executable, "-m", "qzoo"]
TINY = """tiny:
  description: a tiny suite
  settings: {eval_episodes: 2, eval_freq: 0, tensorboard: false, learning_starts: 100}
  envs:
    qzoo/Corridor-v0: {n_timesteps: 300}
    CartPole-v1: {n_timesteps: 300, train_freq: 4, gradient_steps: 1}
"""


def run(args, cwd=None):
    return subprocess.run(QZOO + args, capture_output=True, text=True, cwd=cwd, timeout=240,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})


def test_bench_runs_in_parallel_resumes_and_redoes_unfinished_runs(tmp_path):
    suite_file = tmp_path / "suites.yml"
    suite_file.write_text(TINY)
    args = ["bench", "tiny", "--suite-file", str(suite_file), "--seeds", "2", "--jobs", "2",
            "--bench-dir", str(tmp_path / "bench")]
    r = run(args)
    assert r.returncode == 0, r.stderr
    suite_dir = tmp_path / "bench" / "tiny"
    results = {p.parent: json.loads(p.read_text()) for p in suite_dir.glob("*/*/*_s*/result.json")} | \
        {p.parent: json.loads(p.read_text()) for p in suite_dir.glob("*/*_s*/result.json")}
    assert len(results) == 4
    for run_dir, res in results.items():
        assert (run_dir / "model.pt").is_file() and (run_dir / "progress.csv").is_file()
        assert res["status"] == "finished" and res["n_timesteps"] == 300 and res["config"]["torch_threads"] == 1
    assert len({res["worker_pid"] for res in results.values()}) == 2  # two worker processes shared the runs
    assert {(res["env"], res["seed"]) for res in results.values()} == {
        ("qzoo/Corridor-v0", 0), ("qzoo/Corridor-v0", 1), ("CartPole-v1", 0), ("CartPole-v1", 1)}
    rows = list(csv.DictReader(open(suite_dir / "results.csv")))
    assert len(rows) == 4 and {row["algo"] for row in rows} == {"dqn"}
    assert "| CartPole-v1 | dqn | 300 |" in (suite_dir / "results.md").read_text()
    assert "(4 run, 0 already finished)" in r.stdout
    with Image.open(suite_dir / "curves.png") as image:
        assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 300  # curves, by `qzoo plot`

    # second invocation: everything is finished, nothing is rerun
    mtimes = {d: (d / "result.json").stat().st_mtime_ns for d in results}
    r = run(args)
    assert r.returncode == 0, r.stderr
    assert "(0 run, 4 already finished)" in r.stdout
    assert mtimes == {d: (d / "result.json").stat().st_mtime_ns for d in results}
    # an invocation for one env keeps the other env's finished runs in the tables (a suite run game by game)
    (suite_dir / "results.csv").unlink()
    r = run([*args, "--envs", "CartPole-v1"])
    assert r.returncode == 0, r.stderr
    assert "(0 run, 2 already finished)" in r.stdout
    rows = list(csv.DictReader(open(suite_dir / "results.csv")))
    assert sorted((row["env"], row["seed"]) for row in rows) == [
        ("CartPole-v1", "0"), ("CartPole-v1", "1"), ("qzoo/Corridor-v0", "0"), ("qzoo/Corridor-v0", "1")]
    # one more seed alone (a suite's seeds split between machines or sessions): only it runs, the tables hold all
    r = run([*args[:4], "--seeds", "2,", *args[6:], "--envs", "CartPole-v1"])
    assert r.returncode == 0, r.stderr
    assert "(1 run, 0 already finished)" in r.stdout
    rows = list(csv.DictReader(open(suite_dir / "results.csv")))
    assert sorted((row["env"], row["seed"]) for row in rows) == [("CartPole-v1", "0"), ("CartPole-v1", "1"), (
        "CartPole-v1", "2"), ("qzoo/Corridor-v0", "0"), ("qzoo/Corridor-v0", "1")]
    shutil.rmtree(suite_dir / "CartPole-v1" / "dqn_s2")  # the checks below are about seeds 0 and 1

    # results committed without their model files and checkpoints (benchmarks/results/, .gitignore): still finished
    for run_dir in results:
        for heavy in run_dir.glob("*.pt"):
            heavy.unlink()
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    r = run(args)
    assert r.returncode == 0, r.stderr
    assert "(0 run, 4 already finished)" in r.stdout
    assert mtimes == {d: (d / "result.json").stat().st_mtime_ns for d in results}

    # an unfinished run (result.json missing, say the machine stopped) without a checkpoint to continue from is
    # redone from scratch; the others are not
    redo = suite_dir / "CartPole-v1" / "dqn_s1"
    (redo / "result.json").unlink()
    shutil.rmtree(redo / "checkpoints", ignore_errors=True)
    (redo / "leftover.txt").write_text("from the interrupted run")
    r = run(args)
    assert r.returncode == 0, r.stderr
    assert "(1 run, 3 already finished)" in r.stdout
    assert (redo / "result.json").is_file() and not (redo / "leftover.txt").exists()
    assert all(mtimes[d] == (d / "result.json").stat().st_mtime_ns for d in results if d != redo)


def test_an_unfinished_bench_run_continues_from_its_last_checkpoint_exactly(tmp_path):
    suite_file = tmp_path / "suites.yml"
    suite_file.write_text("mid:\n  settings: {eval_freq: 500, eval_episodes: 2, tensorboard: false, log_interval: 100,"
                          " learning_starts: 200, checkpoint_freq: 500, save_replay: 'true'}\n  envs:\n"
                          "    CartPole-v1: {n_timesteps: 1500, train_freq: 4, gradient_steps: 2}\n")
    args = ["bench", "mid", "--suite-file", str(suite_file), "--seeds", "1"]
    r = run([*args, "--bench-dir", str(tmp_path / "straight")])
    assert r.returncode == 0, r.stderr
    straight = tmp_path / "straight" / "mid" / "CartPole-v1" / "dqn_s0"
    # what a machine stopping after the checkpoint at step 1000 leaves: no result.json, no model, logs beyond it
    shutil.copytree(tmp_path / "straight", tmp_path / "stopped")
    stopped = tmp_path / "stopped" / "mid" / "CartPole-v1" / "dqn_s0"
    for name in ("result.json", "model.pt", "best_model.pt", *(p.name for p in (stopped / "checkpoints").glob(
            "step_1500.*"))):
        (stopped / name if "step_" not in name else stopped / "checkpoints" / name).unlink()
    r = run([*args, "--bench-dir", str(tmp_path / "stopped")])
    assert r.returncode == 0, r.stderr
    assert "(1 run, 0 already finished)" in r.stdout and "(continued from step 1000)" in r.stderr
    result = json.loads((stopped / "result.json").read_text())
    assert result["resumed_from"] == 1000 and result["status"] == "finished"
    # its steps/s is over the 500 steps this call took, not the run's 1,500
    assert result["steps_run"] == 500 and json.loads((straight / "result.json").read_text())["steps_run"] == 1500
    timing = ("steps_per_s", "time_s")
    def rows(d, name):  # noqa: E306
        return [{k: v for k, v in row.items() if k not in timing} for row in csv.DictReader(open(d / name))]
    assert rows(stopped, "progress.csv") == rows(straight, "progress.csv")
    assert rows(stopped, "evaluations.csv") == rows(straight, "evaluations.csv")
    a, b = (torch.load(d / "model.pt", weights_only=True)["q_net"] for d in (straight, stopped))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert result["final_eval"] == json.loads((straight / "result.json").read_text())["final_eval"]


def test_bench_bad_input_is_one_line_and_exit_2(tmp_path):
    r = run(["bench", "no-such-suite", "--bench-dir", str(tmp_path)])
    assert r.returncode == 2
    assert r.stderr.strip() == ("qzoo bench: error: unknown suite 'no-such-suite'; allowed: classic, minatar, "
                                "minatar-paper, atari, atari-check, atari100k (or define it in --suite-file)")
    suite_file = tmp_path / "s.yml"
    suite_file.write_text("s:\n  envs: [CartPole-v1, CartPol-v1]\n")
    r = run(["bench", "s", "--suite-file", str(suite_file), "--bench-dir", str(tmp_path)])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "suite 's', env 'CartPol-v1', dqn: unknown environment id 'CartPol-v1'" in r.stderr
    assert not (tmp_path / "s").exists()  # nothing ran


def test_train_minatar_end_to_end(runs_dir):
    r = run(["train", "MinAtar/Breakout-v1", "-n", "300", "--runs-dir", str(runs_dir), "--set", "learning_starts=100",
             "--set", "eval_episodes=2", "--set", "log_interval=100", "--quiet"])
    assert r.returncode == 0, r.stderr
    (run_dir,) = (runs_dir / "MinAtar" / "Breakout-v1").iterdir()
    assert (run_dir / "model.pt").is_file()
    config = (run_dir / "config.yaml").read_text()
    assert "network: minatar" in config and "optimizer: rmsprop" in config
    rows = list(csv.DictReader(open(run_dir / "progress.csv")))
    assert [int(row["step"]) for row in rows] == [100, 200, 300] and int(rows[-1]["updates"]) == 200
    e = run(["eval", str(run_dir), "--episodes", "2"])
    assert e.returncode == 0, e.stderr
    assert "(2 episodes)" in e.stdout


def test_bench_stops_cleanly_on_sigterm_and_leaves_the_run_unfinished(tmp_path):
    import signal
    import time

    suite_file = tmp_path / "suites.yml"
    suite_file.write_text("long:\n  settings: {eval_freq: 0, tensorboard: false, log_interval: 200, "
                          "learning_starts: 100}\n  envs:\n    CartPole-v1: {n_timesteps: 1000000}\n")
    proc = subprocess.Popen(QZOO + ["bench", "long", "--suite-file", str(suite_file), "--seeds", "1",
                                    "--bench-dir", str(tmp_path / "bench")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    run_dir = tmp_path / "bench" / "long" / "CartPole-v1" / "dqn_s0"
    deadline = time.monotonic() + 120
    while not (run_dir / "progress.csv").is_file() or (run_dir / "progress.csv").stat().st_size < 200:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; rerun the same command" in err
    assert list((run_dir / "checkpoints").glob("step_*.pt"))  # the worker stopped cleanly and checkpointed
    assert not (run_dir / "result.json").exists() and not (run_dir / "model.pt").exists()


def test_a_signalled_worker_stops_the_suite_without_starting_the_next_run(tmp_path):
    """A scheduler (or a user) may signal the worker instead of ``qzoo bench``: its run checkpoints and stops, and
    the runs not started yet stay unstarted (the executor used to have one queued ahead, which the worker then ran)."""
    import signal
    import time

    suite_file = tmp_path / "suites.yml"
    suite_file.write_text("long:\n  settings: {eval_freq: 0, tensorboard: false, log_interval: 200, "
                          "learning_starts: 100}\n  envs:\n    CartPole-v1: {n_timesteps: 1000000}\n")
    proc = subprocess.Popen(QZOO + ["bench", "long", "--suite-file", str(suite_file), "--seeds", "2", "--jobs", "1",
                                    "--bench-dir", str(tmp_path / "bench")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    first, second = (tmp_path / "bench" / "long" / "CartPole-v1" / f"dqn_s{seed}" for seed in (0, 1))
    deadline = time.monotonic() + 120
    while not (first / "progress.csv").is_file() or (first / "progress.csv").stat().st_size < 200:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    children = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True, text=True)
    (worker,) = [int(pid) for pid in children.stdout.split()]
    os.kill(worker, signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=120)
    finally:  # never leave a million-step run behind
        if proc.poll() is None:
            subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)])
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; rerun the same command" in err
    assert list((first / "checkpoints").glob("step_*.pt")) and not (first / "result.json").exists()
    assert not second.exists()  # never started
