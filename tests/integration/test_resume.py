"""Resuming runs: exactness after a kill, signals, refusals of bad checkpoints, divergence, a full disk."""

import csv
import errno
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qzoo import checkpoint as ckpt
from qzoo.checkpoint import periodic  # where Checkpointer writes (patched below)
from qzoo.cli import main


def sets(*settings: str) -> list[str]:
    """``--set K=V`` for each setting."""
    return [arg for setting in settings for arg in ("--set", setting)]


TIMING = ("steps_per_s", "time_s")
# The toy corridor with every replay part that holds state: 2 envs, n-step windows, a PER sum tree.
CORRIDOR = ["qzoo/Corridor-v0", "--seed", "1", "--n-envs", "2"] + sets(
        "learning_starts=100", "log_interval=100", "eval_freq=400", "eval_episodes=2", "checkpoint_freq=400",
        "target_update_interval=50", "train_freq=1", "exploration_fraction=0.8", "tensorboard=false",
        "prioritized=true", "n_step=3", "dueling=true", "batch_size=16", "save_replay=true",
        "keep_checkpoints=2")


def qzoo(capsys, *args) -> tuple[int, str]:
    """``qzoo ARGS`` in this process: (exit code, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


def only_run(runs: Path) -> Path:
    (run_dir,) = [p for p in runs.rglob("config.yaml")]
    return run_dir.parent


def rows(path: Path, drop=TIMING) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(open(path))]


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["q_net"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def tree_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        digest.update(str(p.relative_to(directory)).encode())
        if p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def corridor_run(tmp_path_factory) -> Path:
    """A finished 1200-step corridor run (checkpoints at 800 and 1200)."""
    runs = tmp_path_factory.mktemp("straight")
    assert main(["train", *CORRIDOR, "-n", "1200", "--runs-dir", str(runs), "--quiet"]) == 0
    return only_run(runs)


def test_resume_after_a_kill_continues_exactly(corridor_run, tmp_path, capsys):
    # What a kill -9 after the checkpoint at step 800 leaves: checkpoints up to 800, logs beyond it (the last
    # line half written), no model.pt. The resumed run must reproduce the straight run's rows and weights.
    killed = tmp_path / "killed"
    shutil.copytree(corridor_run, killed)
    for name in ("step_1200.pt", "step_1200.replay.npz", "step_1200.json"):
        (killed / "checkpoints" / name).unlink()
    (killed / "model.pt").unlink()
    with open(killed / "progress.csv", "a") as f:
        f.write("1300,77,0.")
    code, err = qzoo(capsys, "train", "--resume", killed)
    assert code == 0, err
    assert "resuming from step_800.pt (step 800)" in err and "refills" not in err
    straight, resumed = rows(corridor_run / "progress.csv"), rows(killed / "progress.csv")
    assert [int(r["step"]) for r in resumed] == list(range(100, 1201, 100))
    assert resumed == straight
    # epsilon is a function of the step: right after the resume it is the straight run's, mid-decay
    after = next(i for i, r in enumerate(straight) if int(r["step"]) == 900)
    assert resumed[after]["epsilon"] == straight[after]["epsilon"] and 0.05 < float(resumed[after]["epsilon"]) < 1
    assert rows(killed / "evaluations.csv") == rows(corridor_run / "evaluations.csv")
    assert_same_weights(weights(killed / "model.pt"), weights(corridor_run / "model.pt"))
    assert (killed / "command.txt").read_text().splitlines()[-1] == f"qzoo train --resume {killed}"


def test_sigkill_after_a_checkpoint_then_resume_matches_a_straight_run(tmp_path, capsys):
    args = ["CartPole-v1", "-n", "1600", "--seed", "3"] + sets(
            "learning_starts=300", "log_interval=200", "eval_freq=800", "eval_episodes=2", "train_freq=4",
            "gradient_steps=1", "checkpoint_freq=800", "target_update_interval=200", "tensorboard=false",
            "save_replay=true", "buffer_size=5000", "net_arch=[64, 64]")
    assert main(["train", *args, "--runs-dir", str(tmp_path / "straight"), "--quiet"]) == 0
    straight = only_run(tmp_path / "straight")

    proc = subprocess.Popen([sys.executable, "-m", "qzoo", "train", *args, "--runs-dir", str(tmp_path / "killed"),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + 120
    while not list((tmp_path / "killed").rglob("step_800.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the test could kill it"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    killed = only_run(tmp_path / "killed")
    assert not (killed / "model.pt").exists()

    code, err = qzoo(capsys, "train", "--resume", killed)
    assert code == 0, err
    assert rows(killed / "progress.csv") == rows(straight / "progress.csv")
    assert rows(killed / "evaluations.csv") == rows(straight / "evaluations.csv")
    assert_same_weights(weights(killed / "model.pt"), weights(straight / "model.pt"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_write_a_resumable_checkpoint(sig, tmp_path, capsys):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "qzoo", "train", *CORRIDOR, "-n", "1000000", "--runs-dir",
                             str(runs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (list(runs.rglob("progress.csv"))
                                               and len(open(next(runs.rglob("progress.csv"))).readlines()) > 3):
        assert proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run_dir = only_run(runs)
    assert f"resume with: qzoo train --resume {run_dir}" in err
    assert "Traceback" not in err
    # the checkpoint of the step it stopped at, intact: step 300 itself when the signal lands between that step's
    # log row (what the loop above waits for) and the next step (seen on a loaded machine), a later one otherwise
    # (the periodic checkpoints come every 400 steps: one at 300 can only be the interruption's)
    _, resume = ckpt.prepare_resume(run_dir)
    assert resume.step >= 300 and not resume.skipped
    assert ckpt.verify(run_dir / "checkpoints", resume.step) is None
    logged = [int(r["step"]) for r in rows(run_dir / "progress.csv")]
    end = resume.step + 200
    code, err = qzoo(capsys, "train", "--resume", run_dir, "--total-timesteps", end)
    assert code == 0, err
    assert f"resuming from step_{resume.step}.pt" in err
    expected = [s for s in logged if s <= resume.step] + sorted({*range(resume.step // 100 * 100 + 100, end, 100), end})
    assert [int(r["step"]) for r in rows(run_dir / "progress.csv")] == expected


def rewrite_checkpoint(run_dir: Path, step: int, **changes) -> None:
    """Change fields of a checkpoint and re-sign it (a checkpoint that is intact but does not fit)."""
    directory = run_dir / "checkpoints"
    payload = torch.load(directory / f"step_{step}.pt", weights_only=True) | changes
    torch.save(payload, directory / f"step_{step}.pt")
    manifest = directory / f"step_{step}.json"
    data = json.loads(manifest.read_text())
    data["files"][f"step_{step}.pt"] = {"bytes": (directory / f"step_{step}.pt").stat().st_size,
                                        "sha256": ckpt.sha256_file(directory / f"step_{step}.pt")}
    manifest.write_text(json.dumps(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def each_checkpoint(damage, suffix):
    return lambda run: [damage(p) for p in (run / "checkpoints").glob(f"step_*{suffix}")]


@pytest.mark.parametrize("damage,extra,needle", [
    (each_checkpoint(truncate, ".pt"), [], "(truncated?)"),
    (each_checkpoint(flip_byte, ".pt"), [], "does not match its sha256 checksum (corrupted)"),
    (each_checkpoint(flip_byte, ".replay.npz"), [], "step_1200.replay.npz does not match its sha256 checksum"),
    (each_checkpoint(lambda p: p.unlink(), ".json"), [], "no manifest"),
    (lambda run: rewrite_checkpoint(run, 1200, env_id="CartPole-v1"), [], "is from env 'CartPole-v1', the run is on"),
    (lambda run: rewrite_checkpoint(run, 1200, obs_shape=(9,)), [], "has observations (9,) and 2 actions"),
    (lambda run: rewrite_checkpoint(run, 1200, algo="rainbow"), [], "is from algo 'rainbow', the run is 'dqn'"),
    (lambda run: rewrite_checkpoint(run, 1200, version=99), [], "has format version 99"),
    (lambda run: (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(
        "learning_rate: 0.001\n", "learning_rate: 0.01\n")), [], "learning_rate 0.001 vs 0.01"),
    (lambda run: (run / "config.yaml").write_text("env_id: [unclosed"), [], "config.yaml' cannot be read"),
    (lambda run: (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(
        "algo: dqn", "algo: qlearning")), [], "is a qlearning run; --resume continues deep Q-learning runs"),
    (lambda run: None, ["--seed", "2"], "--seed cannot be given with it"),
    (lambda run: None, ["--set", "gamma=0.5"], "'gamma' cannot change"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_and_nothing_changes(corridor_run, tmp_path, capsys, damage, extra,
                                                                      needle):
    run = tmp_path / "run"
    shutil.copytree(corridor_run, run)
    damage(run)
    before = tree_hash(run)
    code, err = qzoo(capsys, "train", "--resume", run, "--total-timesteps", 1600, *extra)
    assert code == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert tree_hash(run) == before


def test_a_finished_run_needs_a_larger_budget_and_extending_keeps_the_schedules(corridor_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(corridor_run, run)
    before = tree_hash(run)
    code, err = qzoo(capsys, "train", "--resume", run)
    assert code == 2 and "pass a larger --total-timesteps" in err and tree_hash(run) == before
    code, err = qzoo(capsys, "train", "--resume", run, "--total-timesteps", 1600)
    assert code == 0, err
    config = ckpt.read_config(run)
    assert (config.n_timesteps, config.schedule_timesteps) == (1600, 1200)
    extended = [r for r in rows(run / "progress.csv") if int(r["step"]) > 1200]
    # epsilon decayed over 0.8 * 1200 steps and stays at its final value; over 0.8 * 1600 it would be ~0.3
    assert [int(r["step"]) for r in extended] == [1300, 1400, 1500, 1600]
    assert all(r["epsilon"] == "0.05" for r in extended)


def test_a_corrupted_newest_checkpoint_is_skipped_for_the_previous_one(corridor_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(corridor_run, run)
    flip_byte(run / "checkpoints" / "step_1200.pt")
    code, err = qzoo(capsys, "train", "--resume", run)
    assert code == 0, err
    assert "resuming from step_800.pt (step 800); skipped step_1200: step_1200.pt does not match its sha256" in err
    assert rows(run / "progress.csv") == rows(corridor_run / "progress.csv")


def test_resume_without_the_replay_buffer_refills_it_first(corridor_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(corridor_run, run)
    rewrite_checkpoint(run, 1200, replay=False)
    code, err = qzoo(capsys, "train", "--resume", run, "--total-timesteps", 1600)
    assert code == 0, err
    assert "the replay buffer was not saved: it refills for 100 steps before learning" in err
    updates = {int(r["step"]): int(r["updates"]) for r in rows(run / "progress.csv")}
    assert updates[1300] == updates[1200] < updates[1400]  # learning resumes once step > 1300


def test_divergence_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    code, err = qzoo(capsys, "train", "qzoo/Corridor-v0", "-n", "3000", "--runs-dir", tmp_path, "--set",
                     "learning_rate=1e30", "--set", "checkpoint_freq=200", "--set", "learning_starts=250", "--set",
                     "eval_freq=0", "--set", "eval_episodes=1", "--set", "train_freq=1", "--set", "tensorboard=false",
                     "--quiet")
    assert code == 3, err
    assert "non-finite" in err and "the last good checkpoint, checkpoints/step_200.pt, is kept" in err
    assert "Traceback" not in err
    run = only_run(tmp_path)
    assert ckpt.verify(run / "checkpoints", 200) is None and not (run / "model.pt").exists()
    kept = torch.load(run / "checkpoints" / "step_200.pt", weights_only=True)["agent"]["q_net"]
    assert all(torch.isfinite(w).all() for w in kept.values())


def test_a_full_disk_stops_the_run_and_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    real_write = ckpt.atomic_write

    def no_space_for_step_800(path, write):
        if path.name.startswith("step_800"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, write)

    monkeypatch.setattr(periodic, "atomic_write", no_space_for_step_800)
    code, err = qzoo(capsys, "train", *CORRIDOR, "-n", "1200", "--runs-dir", tmp_path, "--quiet")
    assert code == 1
    assert err.strip().endswith("the disk is full; nothing of it was kept and the previous checkpoint step_400.pt "
                                "is intact")
    run = only_run(tmp_path)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == \
        ["step_400.json", "step_400.pt", "step_400.replay.npz"]
    assert ckpt.verify(run / "checkpoints", 400) is None


def simulate_kill_after(run: Path, step: int) -> None:
    """What a kill -9 right after checkpoint ``step`` leaves: no later checkpoint and no model.pt."""
    for path in (run / "checkpoints").iterdir():
        if int(path.name.split(".")[0].removeprefix("step_")) > step:
            path.unlink()
    (run / "model.pt").unlink()


@pytest.mark.parametrize("acting_noise", ["update", "fresh"])
def test_rainbow_resumes_exactly_noise_and_distributions_included(tmp_path, capsys, acting_noise):
    # fresh: the acting noise's own generator is in the checkpoint; the warm-up acts with the noisy net, whose
    # sigma 4 lets the noise flip actions (at 0.5 no Corridor action depended on it: a lost state went unseen)
    args = ["train", "qzoo/Corridor-v0", "--algo", "rainbow", "-n", "800", "--quiet"] + sets(
            "learning_starts=100", "log_interval=100", "eval_freq=400", "eval_episodes=2", "train_freq=1",
            "checkpoint_freq=400", "target_update_interval=50", "tensorboard=false", "batch_size=16",
            "save_replay=true", f"acting_noise={acting_noise}",
            *(["warmup_actions=policy", "noisy_sigma=4"] if acting_noise == "fresh" else []))
    assert main([*args, "--runs-dir", str(tmp_path / "straight")]) == 0
    straight = only_run(tmp_path / "straight")
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    simulate_kill_after(run, 400)
    code, err = qzoo(capsys, "train", "--resume", run)
    assert code == 0, err
    assert rows(run / "progress.csv") == rows(straight / "progress.csv")
    assert_same_weights(weights(run / "model.pt"), weights(straight / "model.pt"))


def test_a_replay_that_reaches_another_observation_falls_back_to_new_episodes(tmp_path, capsys):
    # Box2D worlds do not pickle: LunarLander is rebuilt by a seeded reset and the episode's actions replayed
    # (test_resume_kill.py: exact). When the replay does not reach the saved observation (here: the saved one is
    # altered, as an env that is not deterministic would), the resume starts new, seeded episodes and says so.
    args = ["train", "LunarLander-v3", "-n", "300", "--quiet"] + sets(
            "learning_starts=100", "log_interval=100", "eval_freq=0", "eval_episodes=1", "train_freq=4",
            "checkpoint_freq=200", "tensorboard=false", "batch_size=16", "net_arch=[16]",
            "save_replay=true")
    assert main([*args, "--runs-dir", str(tmp_path)]) == 0
    run = only_run(tmp_path)
    simulate_kill_after(run, 200)
    envs = torch.load(run / "checkpoints" / "step_200.pt", weights_only=True)["envs"]
    snapshot = pickle.loads(envs["snapshots"])
    replay = snapshot["envs"][0]["replay"]
    assert replay["start"][0] in ("seed", "rng") and len(replay["actions"]) > 0
    replay["obs"] = replay["obs"] + 1.0
    rewrite_checkpoint(run, 200, envs={**envs, "snapshots": pickle.dumps(snapshot)})
    code, err = qzoo(capsys, "train", "--resume", run)
    assert code == 0, err
    assert (f"resuming from step_200.pt (step 200); the environments start new episodes (env 0: replaying its "
            f"{len(replay['actions'])} actions since the episode's reset reached another observation") in err
    assert [int(r["step"]) for r in rows(run / "progress.csv")] == [100, 200, 300]


def test_atari_vector_backend_resumes_with_its_frame_replay_and_new_episodes(tmp_path, capsys):
    # ale-py's C++ AtariVectorEnv keeps its games to itself: new episodes on resume (the wrapper pipeline resumes
    # exactly: test_resume_kill.py); the frame-once replay is restored and drops the unfinished episodes' pending
    # n-step windows, so learning goes on at once from the saved transitions
    args = ["train", "ALE/Pong-v5", "-n", "300", "--quiet"] + sets("atari_backend=vector",
            "learning_starts=100", "buffer_size=1000", "batch_size=16", "log_interval=100", "eval_freq=0",
            "eval_episodes=1", "max_episode_frames=800", "torch_threads=1", "checkpoint_freq=200",
            "n_step=3", "save_replay=true", "tensorboard=false")
    assert main([*args, "--runs-dir", str(tmp_path)]) == 0
    run = only_run(tmp_path)
    simulate_kill_after(run, 200)
    code, err = qzoo(capsys, "train", "--resume", run)
    assert code == 0, err
    assert ("resuming from step_200.pt (step 200); the environments start new episodes (ale-py's C++ "
            "AtariVectorEnv (atari_backend vector) gives no access to each game's state)") in err
    assert "refills" not in err
    updates = {int(r["step"]): int(r["updates"]) for r in rows(run / "progress.csv")}
    assert list(updates) == [100, 200, 300] and updates[300] == updates[200] + 25  # train_freq 4: 100 / 4


def test_a_run_directory_in_use_is_refused_until_its_process_ends(corridor_run, tmp_path, capsys):
    """A running `qzoo train` holds its run directory: a second process (`--resume` of the same run, e.g. started
    twice by a scheduler) is refused in one line and changes nothing; once the first process is gone, even by
    kill -9, the directory is free again."""
    run_dir = tmp_path / "run"
    shutil.copytree(corridor_run, run_dir)
    before = tree_hash(run_dir)
    proc = subprocess.Popen([sys.executable, "-m", "qzoo", "train", "--resume", str(run_dir), "-n", "10000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        deadline = time.monotonic() + 120
        while "resuming" not in proc.stderr.readline():  # the lock is taken before this line is printed
            assert proc.poll() is None and time.monotonic() < deadline, "the resume did not start"
        code, err = qzoo(capsys, "train", "--resume", run_dir, "-n", "20000000")
        assert code == 2 and "in use by another qzoo process" in err and str(run_dir) in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    with ckpt.run_dir_lock(run_dir):  # free again after the kill
        pass
    other = tmp_path / "other"
    shutil.copytree(corridor_run, other)
    with ckpt.run_dir_lock(other):  # held by this process: the CLI in this process is refused too
        code, err = qzoo(capsys, "train", "--resume", other, "-n", "1600")
        assert code == 2 and "in use" in err
        assert tree_hash(other) == before  # the refusal left the directory exactly as it was
    code, err = qzoo(capsys, "train", "--resume", other, "-n", "1600")
    assert code == 0, err


def test_an_overlapped_run_resumes_exactly(tmp_path, capsys):
    # overlap: the actor acts with a copy of the weights one phase old; the checkpoint keeps that copy, so a run
    # resumed from step 800 writes the straight run's rows and ends with its weights
    args = ["CartPole-v1", "-n", "1600", "--seed", "3"] + sets(
            "overlap=true", "learning_starts=300", "log_interval=100", "eval_freq=800", "eval_episodes=2",
            "train_freq=32", "gradient_steps=32", "learning_rate=1e-2", "checkpoint_freq=800",
            "target_update_interval=200", "exploration_fraction=0.2", "tensorboard=false", "save_replay=true",
            "buffer_size=5000", "net_arch=[64, 64]")
    assert main(["train", *args, "--runs-dir", str(tmp_path / "straight"), "--quiet"]) == 0
    straight = only_run(tmp_path / "straight")
    killed = tmp_path / "killed"
    shutil.copytree(straight, killed)
    for name in ("step_1600.pt", "step_1600.replay.npz", "step_1600.json", "../model.pt"):
        (killed / "checkpoints" / name).unlink()
    code, err = qzoo(capsys, "train", "--resume", killed)
    assert code == 0, err
    assert "resuming from step_800.pt (step 800)" in err
    assert rows(killed / "progress.csv") == rows(straight / "progress.csv")
    assert rows(killed / "evaluations.csv") == rows(straight / "evaluations.csv")
    assert_same_weights(weights(killed / "model.pt"), weights(straight / "model.pt"))
