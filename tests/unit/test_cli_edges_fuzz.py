"""Fuzzing where qzoo meets the outside world (issue 21), written apart from the config-grammar fuzzer
(test_cli_fuzz.py): environments refusing the user's env_kwargs, devices, output paths, numbers at the extremes and
the contents of input files. Every generated command line must give exit code 2, one line on stderr, no traceback,
and leave the file system as it was. ``qzoo.cli.main`` runs in this process (fast); a command line that got as far
as training (a valid one) fails the test at once."""

import contextlib
import io
import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qzoo.cli import main

WORK = Path(tempfile.mkdtemp(prefix="qzoo-edges-"))
RUNS, TUNES, BENCH, EXPORT = WORK / "runs", WORK / "tunes", WORK / "bench", WORK / "export"
A_FILE = WORK / "a_file.txt"
FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])
identifier = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)
SEED_MAX = 2**32 - 1


@pytest.fixture(scope="module")
def run_dir() -> Path:
    """A real (tiny) trained run, so that eval / record / export / report would go ahead if a check were missing."""
    A_FILE.write_text("not a folder\n")
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "qzoo/Corridor-v0", "-n", "200", "--runs-dir", str(WORK / "trained"), "--quiet",
                     "--set", "eval_episodes=1", "--set", "learning_starts=50", "--set", "tensorboard=false"]) == 0
    (config,) = (WORK / "trained").rglob("config.yaml")
    return config.parent


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a valid command line was generated")

    for target in ("qzoo.trainer.train", "qzoo.tabular.train_tabular", "qzoo.bench.run_suite",
                   "qzoo.video.record", "qzoo.evaluation.evaluate"):
        monkeypatch.setattr(target, refuse)
    torch.set_flush_denormal(False)  # see test_cli_fuzz.py: hypothesis needs subnormal floats


def tree() -> dict:
    """Every path under WORK with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(WORK.rglob("*"))}


def refused(argv: list[str]) -> str:
    """Run ``qzoo ARGV``; assert the contract of bad input; return the one line."""
    before = tree()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    message = err.getvalue()
    assert code == 2, (argv, message)
    assert len(message.strip().splitlines()) == 1, (argv, message)
    assert "Traceback" not in message, (argv, message)
    assert tree() == before, argv  # nothing created or changed
    return message.strip()


def train(*extra: str) -> list[str]:
    return ["train", "CartPole-v1", "-n", "1000", "--runs-dir", str(RUNS), *extra]


# ---- environments refusing the user's env_kwargs (and render modes that would wait for a display) ------------------
env_kwargs_case = st.one_of(
    st.floats(0.01, 1e6).map(lambda g: ("LunarLander-v3", f"{{gravity: {g!r}}}", "gravity")),  # must be in [-12, 0]
    st.floats(-1e6, -12.01).map(lambda g: ("LunarLander-v3", f"{{gravity: {g!r}}}", "gravity")),
    identifier.filter(lambda m: m not in ("4x4", "8x8")).map(  # FrozenLake's maps are 4x4 and 8x8
        lambda m: ("FrozenLake-v1", f"{{map_name: {m}}}", "KeyError")),
    st.builds(lambda k: ("CartPole-v1", f"{{{k}_x: 1}}", "unexpected keyword"), identifier),
    st.sampled_from(["human", "rgb_array", "ansi", "rgb_array_list"]).flatmap(  # never reaches gym.make
        lambda mode: st.sampled_from(["CartPole-v1", "LunarLander-v3", "FrozenLake-v1"]).map(
            lambda env: (env, f"{{render_mode: {mode}}}", "render_mode"))),
)


@FUZZ
@given(env_kwargs_case, st.sampled_from(["dqn", "qlearning"]))
def test_an_env_refusing_its_kwargs_is_one_line_naming_env_kwargs_and_its_message(no_training, case, algo):
    env, kwargs, needle = case
    if algo == "qlearning" and env != "FrozenLake-v1":
        algo = "dqn"
    message = refused(["train", env, "--algo", algo, "-n", "100", "--runs-dir", str(RUNS),
                       "--set", f"env_kwargs={kwargs}"])
    assert needle in message, message
    if needle != "render_mode":
        assert f"environment '{env}' refused to start with env_kwargs {{" in message, message


# ---- devices ---------------------------------------------------------------------------------------------------
cuda_missing = st.integers(torch.cuda.device_count(), 99).map(lambda i: f"cuda:{i}") | (
    st.just("cuda") if not torch.cuda.is_available() else st.nothing())
not_a_device = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
                       max_size=12).filter(lambda t: t not in ("auto", "cpu", "cuda") and not t.startswith("cuda:")
                                           and not t.startswith("-"))


@FUZZ
@given(st.one_of(cuda_missing, not_a_device), st.sampled_from(["train", "train-set", "eval", "tune", "bench"]))
def test_a_device_this_machine_lacks_is_refused_up_front(no_training, run_dir, device, command):
    argv = {"train": train("--device", device), "train-set": train("--set", f"device={device}"),
            "eval": ["eval", str(run_dir), "--device", device],
            "tune": ["tune", "CartPole-v1", "--tunes-dir", str(TUNES), "--set", f"device={device}"],
            "bench": ["bench", "classic", "--bench-dir", str(BENCH), "-n", "100", "--set", f"device={device}"]}[command]
    message = refused(argv)
    assert "device" in message, message


# ---- output folders and files ---------------------------------------------------------------------------------
def bad_folder() -> st.SearchStrategy[str]:
    cases = [st.just(str(A_FILE)),  # a file
             identifier.map(lambda k: str(A_FILE / k)),  # below a file
             identifier.flatmap(lambda k: st.sampled_from([f"/proc/{k}", f"/sys/{k}", f"/proc/self/{k}", "/proc"]))]
    if os.geteuid() != 0:  # root may write anywhere: a folder without write permission stops only other users
        locked = WORK / "locked"
        locked.mkdir(mode=0o555, exist_ok=True)
        cases.append(identifier.map(lambda k: str(locked / k)))
    return st.one_of(cases)


@FUZZ
@given(bad_folder(), st.sampled_from(["runs", "tunes", "bench", "export", "plot", "report"]))
def test_an_output_folder_that_cannot_be_one_is_refused(no_training, run_dir, folder, command):
    argv = {"runs": train("--runs-dir", folder),
            "tunes": ["tune", "CartPole-v1", "--tunes-dir", folder, "--n-timesteps", "100"],
            "bench": ["bench", "classic", "--bench-dir", folder, "-n", "100"],
            "export": ["export", str(run_dir), folder],
            "plot": ["plot", str(run_dir), "-o", f"{folder}/curves.png"],
            "report": ["report", str(run_dir), "-o", f"{folder}/report.html", "--no-video"]}[command]
    message = refused(argv)
    assert folder.split("/")[1] in message or str(A_FILE) in message, message


# ---- numbers at the extremes ----------------------------------------------------------------------------------
bad_seed = st.one_of(st.integers(SEED_MAX + 1, 2**70), st.integers(-2**70, -1))
numeric_case = st.one_of(
    st.builds(lambda s, cmd: {"train": train("--seed", str(s)), "train-set": train("--set", f"seed={s}"),
                              "eval": ["eval", "RUN", "--seed", str(s)], "record": ["record", "RUN", "--seed", str(s)],
                              "export": ["export", "RUN", str(EXPORT), "--seed", str(s)],
                              "tune": ["tune", "CartPole-v1", "--tunes-dir", str(TUNES), "--seed", str(s)]}[cmd],
              bad_seed, st.sampled_from(["train", "train-set", "eval", "record", "export", "tune"])),
    st.integers(10**12, 10**18).map(lambda n: train("--set", f"buffer_size={n}")),  # terabytes of replay
    st.lists(st.integers(10**6, 10**8), min_size=2, max_size=3).map(  # terabytes of weights
        lambda sizes: train("--set", f"net_arch={sizes}")),
    st.sampled_from(["v_min=-inf", "v_max=inf", "v_min=-1e308", "v_max=1e999"]).map(
        lambda s: train("--set", "distributional=c51", "--set", s, *(["--set", "v_max=1e308"] if "-1e308" in s
                                                                      else []))),
    st.floats(10.001, 1e308).map(lambda s: train("--set", "noisy=true", "--set", f"noisy_sigma={s!r}")),
    st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001)).filter(lambda e: e == e).flatmap(
        lambda e: st.sampled_from([["record", "RUN", "--epsilon", repr(e)], ["eval", "RUN", "--epsilon", repr(e)]])),
)


@FUZZ
@given(numeric_case)
def test_numbers_at_the_extremes_are_refused(no_training, run_dir, argv):
    refused([str(run_dir) if a == "RUN" else a for a in argv])


@settings(max_examples=6, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(106, 209), st.integers(0, 3))
def test_an_atari_crop_leaving_too_little_of_the_screen_is_refused(no_training, rows, side):
    crop = [0, 0, 0, 0]
    crop[side] = rows if side < 2 else rows * 160 // 210  # more than half of the rows (or of the columns)
    message = refused(["train", "ALE/Pong-v5", "-n", "100", "--runs-dir", str(RUNS), "--set", f"atari_crop={crop}"])
    assert "a crop must keep at least half" in message, message


# ---- file contents ----------------------------------------------------------------------------------------------
def not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


binary = st.binary(min_size=1, max_size=200).filter(not_utf8)
not_mp4 = st.binary(max_size=64).filter(lambda b: b[4:8] != b"ftyp")


@FUZZ
@given(st.one_of(binary.map(lambda b: ("preset", b)), binary.map(lambda b: ("space", b)),
                 binary.map(lambda b: ("suite", b)), not_mp4.map(lambda b: ("video", b))))
def test_input_files_of_the_wrong_kind_are_refused(no_training, run_dir, case):
    kind, data = case
    path = WORK / "inputs" / f"{kind}.{'mp4' if kind == 'video' else 'yml'}"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    argv = {"preset": train("--preset", str(path)),
            "space": ["tune", "CartPole-v1", "--tunes-dir", str(TUNES), "--space", str(path)],
            "suite": ["bench", "classic", "--bench-dir", str(BENCH), "--suite-file", str(path)],
            "video": ["report", str(run_dir), "--video", str(path), "-o", str(WORK / "report.html")]}[kind]
    message = refused(argv)
    assert ("not a text file" in message) if kind != "video" else ("not an MP4 video" in message), message
