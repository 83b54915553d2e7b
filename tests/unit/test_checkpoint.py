"""Checkpoint mechanics: the parts' state round trips, integrity checks, disk-full handling, log rewinding."""

import errno
import io

import numpy as np
import pytest

from qzoo import checkpoint as ckpt
from qzoo.checkpoint import periodic  # where Checkpointer writes (patched below)
from qzoo.config import Config
from qzoo.replay import ReplayBuffer
from qzoo.replay.frames import FrameStorage
from qzoo.replay.nstep import NStepAccumulator
from qzoo.replay.samplers import PrioritizedSampler, UniformSampler
from qzoo.replay.storage import TransitionStorage
from qzoo.schedules import LinearSchedule


def through_npz(state: dict) -> dict:
    """What a checkpoint does to a replay state: flatten, np.savez, np.load, unflatten."""
    data = io.BytesIO()
    np.savez(data, **ckpt.flatten(state))
    data.seek(0)
    with np.load(data, allow_pickle=False) as loaded:
        return ckpt.unflatten({k: loaded[k] for k in loaded.files})


def random_steps(rng, n_envs, obs_shape, n, dtype=np.float32, end_prob=0.15):
    """Steps of n_envs envs with random episode ends (terminations and truncations)."""
    for _ in range(n):
        obs_tm1 = rng.random((n_envs, *obs_shape)).astype(dtype)
        obs_t = rng.random((n_envs, *obs_shape)).astype(dtype)
        ends = rng.random((2, n_envs)) < end_prob
        yield obs_tm1, rng.integers(0, 3, n_envs), rng.normal(size=n_envs), obs_t, ends[0], ends[1] & ~ends[0]


def transition_buffer(prioritized: bool) -> ReplayBuffer:
    storage = TransitionStorage(50, (3,), n_step=3, gamma=0.9, n_envs=2)
    sampler = PrioritizedSampler(50, 0.6, LinearSchedule(0.4, 1.0, 1000)) if prioritized else UniformSampler()
    return ReplayBuffer(storage, sampler, seed=3)


@pytest.mark.parametrize("prioritized", [False, True])
def test_transition_replay_continues_identically_after_a_round_trip(prioritized):
    rng = np.random.default_rng(0)
    a, b = transition_buffer(prioritized), transition_buffer(prioritized)
    for step in random_steps(rng, 2, (3,), 70):  # wraps around the 50 rows
        a.add(*step)
    for step in random_steps(rng, 2, (3,), 2, end_prob=0.0):  # leaves n-step windows pending
        a.add(*step)
    batch = a.sample(8, 10)
    a.update_priorities(batch.indices, rng.random(8) * 5)
    assert any(a.storage.accumulator.windows)  # something pending, so the test covers it
    b.load_state_dict(through_npz(a.state_dict()))
    for step in random_steps(np.random.default_rng(1), 2, (3,), 30):
        a.add(*step)
        b.add(*step)
        x, y = a.sample(8, 500), b.sample(8, 500)
        for u, v in zip(x, y, strict=True):
            np.testing.assert_array_equal(u, v)
        a.update_priorities(x.indices, np.arange(8.0))
        b.update_priorities(y.indices, np.arange(8.0))


def test_frame_replay_continues_identically_after_a_round_trip():
    def frame_buffer():
        storage = FrameStorage(40, (2, 2), stack=2, n_envs=2, n_step=2, gamma=0.9)
        return ReplayBuffer(storage, PrioritizedSampler(storage.n_rows, 0.5, LinearSchedule(0.4, 1.0, 100)), seed=1)

    rng = np.random.default_rng(0)
    a, b = frame_buffer(), frame_buffer()

    def steps(n, obs):
        for _ in range(n):
            new = rng.integers(0, 255, (2, 1, 2, 2), dtype=np.uint8)
            next_obs = np.concatenate([obs[:, 1:], new], axis=1)
            ends = rng.random(2) < 0.1
            yield obs, rng.integers(0, 3, 2), rng.normal(size=2), next_obs, ends, np.zeros(2, bool)
            obs = np.where(ends[:, None, None, None], rng.integers(0, 255, obs.shape, dtype=np.uint8), next_obs)

    obs = rng.integers(0, 255, (2, 2, 2, 2), dtype=np.uint8)
    history = list(steps(60, obs))  # more than the 20 rows per env: the rings wrap
    for step in history[:45]:
        a.add(*step)
    b.load_state_dict(through_npz(a.state_dict()))
    for step in history[45:]:
        a.add(*step)
        b.add(*step)
        for u, v in zip(a.sample(6, 50), b.sample(6, 50), strict=True):
            np.testing.assert_array_equal(u, v)


def test_nstep_pending_windows_round_trip():
    acc, copy = NStepAccumulator(3, 0.5, 2), NStepAccumulator(3, 0.5, 2)
    steps = list(random_steps(np.random.default_rng(2), 2, (2,), 12))
    for step in steps[:5]:
        acc.push(*step)
    copy.load_state_dict(through_npz(acc.state_dict()))
    for step in steps[5:]:
        for u, v in zip(acc.push(*step), copy.push(*step), strict=True):
            np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="do not fit"):
        NStepAccumulator(2, 0.5, 2).load_state_dict(acc.state_dict() | {"lengths": np.array([2, 0])})


# ---- the checkpoint files ------------------------------------------------------------------------------------
def checkpointer(tmp_path, **settings) -> ckpt.Checkpointer:
    config = Config(env_id="qzoo/Corridor-v0", save_replay="true", keep_checkpoints=2).replace(**settings)
    return ckpt.Checkpointer(tmp_path, config, (8,), 2)


def small_replay() -> ReplayBuffer:
    buffer = transition_buffer(prioritized=True)
    for step in random_steps(np.random.default_rng(0), 2, (3,), 10):
        buffer.add(*step)
    return buffer


def test_a_checkpoint_is_complete_once_its_manifest_verifies_and_old_ones_are_pruned(tmp_path):
    saver = checkpointer(tmp_path)
    for step in (100, 200, 300):
        saver.save(step, {"marker": step}, small_replay())
    directory = tmp_path / "checkpoints"
    assert sorted(p.name for p in directory.iterdir()) == [
        "step_200.json", "step_200.pt", "step_200.replay.npz", "step_300.json", "step_300.pt", "step_300.replay.npz"]
    assert ckpt.verify(directory, 300) is None
    written = (directory / "step_300.pt").stat().st_mtime_ns
    saver.save(300, {"marker": "again"}, small_replay())  # a stop right after a periodic checkpoint: no rewrite
    assert (directory / "step_300.pt").stat().st_mtime_ns == written
    (directory / "step_300.json").unlink()  # as if killed between the data files and the manifest
    assert "no manifest" in ckpt.verify(directory, 300)


@pytest.mark.parametrize("damage,reason", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated"),
    (lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1]) + p.read_bytes()[1:]), "checksum"),
])
@pytest.mark.parametrize("name", ["step_100.pt", "step_100.replay.npz"])
def test_a_truncated_or_flipped_file_fails_verification(tmp_path, damage, reason, name):
    checkpointer(tmp_path).save(100, {"marker": 1}, small_replay())
    damage(tmp_path / "checkpoints" / name)
    assert reason in ckpt.verify(tmp_path / "checkpoints", 100)


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    saver = checkpointer(tmp_path)
    saver.save(100, {"marker": 1}, small_replay())
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}
    real_write = ckpt.atomic_write

    def write_then_run_out_of_space(path, write):
        if path.name == "step_200.replay.npz":  # half of it reaches the disk, then ENOSPC
            def half(f):
                f.write(b"x" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(path, half)
        return real_write(path, write)

    monkeypatch.setattr(periodic, "atomic_write", write_then_run_out_of_space)
    with pytest.raises(ckpt.CheckpointError) as err:
        saver.save(200, {"marker": 2}, small_replay())
    message = str(err.value)
    assert "the disk is full" in message and "step_100.pt is intact" in message and "\n" not in message
    after = {p.name: p.read_bytes() for p in (tmp_path / "checkpoints").iterdir()}
    assert after == before  # nothing of step 200 (no .pt, no temporary file) and step 100 untouched
    assert ckpt.verify(tmp_path / "checkpoints", 100) is None


def test_save_replay_auto_leaves_out_a_buffer_the_disk_cannot_hold(tmp_path, monkeypatch):
    out = io.StringIO()
    saver = ckpt.Checkpointer(tmp_path, Config(save_replay="auto"), (8,), 2, out)
    saver.save(1, {}, small_replay())
    assert (tmp_path / "checkpoints" / "step_1.replay.npz").is_file() and out.getvalue() == ""
    monkeypatch.setattr(periodic.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 1000})())
    saver.save(2, {}, small_replay())
    assert not (tmp_path / "checkpoints" / "step_2.replay.npz").exists()
    assert "leave out the replay buffer" in out.getvalue() and "refills it" in out.getvalue()


def test_rewind_logs_drops_rows_after_the_checkpoint_and_a_half_written_line(tmp_path):
    (tmp_path / "progress.csv").write_bytes(b"step,loss,epsilon\r\n100,0.5,0.9\r\n200,0.4,0.8\r\n300,0.3,0.7\r\n400,0.")
    (tmp_path / "evaluations.csv").write_bytes(b"step,return_mean\r\n200,1.0\r\n400,2.0\r\n")
    ckpt.rewind_logs(tmp_path, 200)
    assert (tmp_path / "progress.csv").read_bytes() == b"step,loss,epsilon\r\n100,0.5,0.9\r\n200,0.4,0.8\r\n"
    assert (tmp_path / "evaluations.csv").read_bytes() == b"step,return_mean\r\n200,1.0\r\n"


def test_rewind_logs_for_finishing_a_run_drops_the_final_evaluation_written_after_the_last_checkpoint(tmp_path):
    # a 400-step run killed after its final evaluation's row, before model.pt: the checkpoint at 400 came first
    (tmp_path / "progress.csv").write_bytes(b"step,loss\r\n200,0.4\r\n400,0.3\r\n")
    (tmp_path / "evaluations.csv").write_bytes(b"step,return_mean\r\n200,1.0\r\n400,2.0\r\n")
    ckpt.rewind_logs(tmp_path, 400, finishing=True)
    assert (tmp_path / "progress.csv").read_bytes() == b"step,loss\r\n200,0.4\r\n400,0.3\r\n"  # logged before
    assert (tmp_path / "evaluations.csv").read_bytes() == b"step,return_mean\r\n200,1.0\r\n"


def test_flatten_round_trip_keeps_nesting_scalars_and_strings():
    tree = {"a": {"b": np.arange(3), "c": 2.5}, "rng": '{"state": 1}', "n": 7, "empty": {"x": np.zeros(0)}}
    back = through_npz(tree)
    np.testing.assert_array_equal(back["a"]["b"], np.arange(3))
    assert back["a"]["c"] == 2.5 and back["rng"] == '{"state": 1}' and back["n"] == 7
    assert back["empty"]["x"].shape == (0,)
