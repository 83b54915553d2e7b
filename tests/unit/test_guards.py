"""qzoo.guards: the checks where qzoo meets the machine and the file system, with hand-computed figures."""

import argparse

import gymnasium as gym
import numpy as np
import pytest
import torch

from qzoo import guards
from qzoo.config import Config, ConfigError

CARTPOLE_OBS = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
PONG_OBS = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


def test_replay_row_bytes_follow_the_storage_layout():
    cartpole = Config(env_id="CartPole-v1")
    assert guards.replay_bytes_per_row(cartpole, CARTPOLE_OBS) == 2 * 4 * 4 + 8 + 4 + 4  # s, s', a, r, discount
    assert guards.replay_bytes_per_row(cartpole.replace(prioritized=True), CARTPOLE_OBS) == 48 + 32  # + sum tree
    # stacked Atari frames are stored once: one 84x84 uint8 frame, int32 action, float64 reward, 2 flag bytes
    assert guards.replay_bytes_per_row(Config(env_id="ALE/Pong-v5"), PONG_OBS) == 84 * 84 + 4 + 8 + 1 + 1


def test_network_bytes_count_the_layers_five_times():
    # 4 -> 64 -> 64 -> 2: (4+1)*64 + (64+1)*64 + (64+1)*2 = 320 + 4160 + 130 = 4610 parameters, float32, x5
    config = Config(env_id="CartPole-v1", net_arch=[64, 64])
    assert guards.network_bytes(config, CARTPOLE_OBS, 2) == 4610 * 4 * 5
    assert guards.network_bytes(config.replace(noisy=True), CARTPOLE_OBS, 2) == 4610 * 4 * 5 * 2
    # Nature CNN on 84x84: 64 x 7 x 7 = 3136 features -> 512 -> 6 actions: 3137*512 + 513*6 = 1609222
    assert guards.network_bytes(Config(env_id="ALE/Pong-v5"), PONG_OBS, 6) == 1609222 * 20


def test_memory_refusals_give_the_figure(monkeypatch):
    monkeypatch.setattr(guards, "memory_available", lambda: (2**29, 2 * 2**30))  # 0.5 GiB now, 2 GiB in all
    config = Config(env_id="CartPole-v1", net_arch=[64, 64], batch_size=32)
    # 50e6 rows x 48 bytes = 2.4e9 bytes = 2.24 GiB > 2 GiB: the allocation itself cannot succeed
    with pytest.raises(ConfigError, match=r"setting 'buffer_size' 50000000 needs about 2\.2 GiB of memory "
                                          r"\(replay 2\.2 GiB, network 90 KiB\); this machine has 2\.0 GiB in all"):
        guards.check_memory(config.replace(buffer_size=50_000_000), CARTPOLE_OBS, 2)
    # 20e6 rows x 48 = 960e6 bytes = 915.5 MiB (+ 92200 network bytes: 915.6 MiB) fit in all, but a 30M-step run
    # fills every row: more than the 512 MiB available now
    long_run = config.replace(buffer_size=20_000_000, n_timesteps=30_000_000)
    with pytest.raises(ConfigError, match=r"needs about 915\.6 MiB of memory for 30000000 steps \(replay 915\.5 MiB, "
                                          r"network 90 KiB\); 512\.0 MiB is available now"):
        guards.check_memory(long_run, CARTPOLE_OBS, 2)
    guards.check_memory(long_run.replace(n_timesteps=1_000_000), CARTPOLE_OBS, 2)  # 1M rows: 46 MiB, fine
    with pytest.raises(ConfigError, match=r"setting 'net_arch' \[100000, 100000\] needs about"):
        guards.check_memory(config.replace(net_arch=[100_000, 100_000]), CARTPOLE_OBS, 2)  # 1e10 params


def test_devices_this_machine_lacks_are_refused():
    assert guards.device_problem("cpu") is None and guards.device_problem("auto") is None
    assert "not a device" in guards.device_problem("banana")
    missing = f"cuda:{torch.cuda.device_count()}"
    assert guards.device_problem(missing) is not None
    if not torch.cuda.is_available():
        assert guards.device_problem("cuda") == "this torch is built without CUDA; use 'cpu' (or 'auto')" or \
            guards.device_problem("cuda") == "no CUDA device is visible; use 'cpu' (or 'auto')"
    with pytest.raises(ConfigError, match=r"^--device 'cuda\\r': not a device"):  # repr: one line, always
        guards.check_device("cuda\r", "--device")


def test_output_folders_that_cannot_be_folders_are_refused_and_nothing_is_created(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for path, needle in ((a_file, "is not a folder"), (a_file / "sub" / "deeper", "('" + str(a_file) + "' is a file)"),
                         ("/proc/qzoo", "is under /proc, a kernel file system"),
                         ("/sys/kernel/x", "is under /sys")):
        with pytest.raises(ConfigError, match=None) as e:
            guards.check_output_dir(path, "--runs-dir")
        assert needle in str(e.value)
    guards.check_output_dir(tmp_path / "new" / "runs", "--runs-dir")  # a new folder under a writable one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_video_files_must_be_mp4(tmp_path):
    mp4 = tmp_path / "v.mp4"
    mp4.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(16))
    guards.check_video_file(mp4)
    (tmp_path / "text.mp4").write_text("hello")
    with pytest.raises(ConfigError, match="is not an MP4 video"):
        guards.check_video_file(tmp_path / "text.mp4")
    with pytest.raises(ConfigError, match="is a folder"):
        guards.check_video_file(tmp_path)


def test_seeds_are_the_ones_numpy_takes():
    guards.check_seed(2**32 - 1, "--seed")
    with pytest.raises(ConfigError, match=r"--seed must be an integer in \[0, 4294967295\], got 4294967296"):
        guards.check_seed(2**32, "--seed")
    with pytest.raises(ConfigError, match=r"in \[0, 4294967295 - 2\] \(3 seeds from it\), got 4294967294"):
        guards.check_seed(2**32 - 2, "--seed", 3)
    with pytest.raises(ConfigError, match="'seed' must be an integer in"):
        Config(seed=-1)


def test_bench_seeds_are_a_count_a_range_or_a_list():
    assert guards.seed_list("3") == [0, 1, 2]
    assert guards.seed_list(" 2-4 ") == [2, 3, 4]
    assert guards.seed_list("1,") == [1]  # one seed: a session or machine runs only seed 1 of a suite
    assert guards.seed_list("5,0,7") == [5, 0, 7]
    assert guards.seed_list(f"{guards.SEED_MAX},") == [guards.SEED_MAX]
    for bad, why in [("0", "names no seed"), ("-2", "names no seed"), ("3-1", "names no seed"), (",", "names no seed"),
                     ("1,1", "a seed twice"), ("1-2,3", "is not N"), ("x", "is not N"), ("1.5", "is not N"),
                     ("-1,2", "every seed must be in"), (f"{guards.SEED_MAX + 1},", "every seed must be in"),
                     ("0-100000", "100001 seeds; at most 100000")]:
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            guards.seed_list(bad)
