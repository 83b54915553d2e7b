"""Fuzzing where qzoo meets the outside world (issue 21), written apart from the config-grammar fuzzer
(test_cli_fuzz.py): environments refusing the user's env_kwargs, devices, output paths, numbers at the extremes and
the contents of input files. Every generated command line must give exit code 2, one line on stderr, no traceback,
and leave the file system as it was. ``qzoo.cli.main`` runs in this process (fast); a command line that got as far
as training (a valid one) fails the test at once."""

import contextlib
import html
import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qzoo.cli import main
from qzoo.tuning import PRUNERS, SAMPLERS
from qzoo.tuning.objectives import OBJECTIVES

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

    # (video: its first step after record()'s own checks of --episodes and the file name)
    for target in ("qzoo.trainer.train", "qzoo.tabular.train_tabular", "qzoo.bench.run_suite",
                   "qzoo.video.render_env", "qzoo.evaluation.evaluate"):
        monkeypatch.setattr(target, refuse)


def tree() -> dict:
    """Every path under WORK with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(WORK.rglob("*"))}


def refused(argv: list[str]) -> str:
    """Run ``qzoo ARGV``; assert the contract of bad input; return the one line."""
    before = tree()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    message = err.getvalue()
    # a warning Python shows by default is one more line on stderr (pytest would hide it from `message`)
    shown = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning,
                                                               ImportWarning, ResourceWarning))]
    assert not shown, (argv, [str(w.message) for w in shown])
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


# ---- every subcommand (issue 18, item 4) ------------------------------------------------------------------------
# One generator per subcommand of `qzoo --help`: a command line with one bad part (a bad positional, or a good one
# with one bad flag), among valid flags. RUN stands for the trained run. Each subcommand's test counts the distinct
# command lines it ran and asserts at least PER_COMMAND of them: 8 x 40 = 320 at least in all.
PER_COMMAND = 40
EMPTY, FULL, BINARY, NOT_YAML = WORK / "empty", WORK / "full", WORK / "binary.yml", WORK / "list.yml"
BAD_PROGRESS, BAD_EVALS = WORK / "bad_progress_run", WORK / "bad_evals_run"  # the trained run, a log spoilt
word = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
# a value with a line break in it (a pasted path, a quoted argument): the error quoting it is still one line
broken = st.tuples(word, st.sampled_from(list("\n\r\v\f\x1c\x85\u2028")), word).map("".join)
not_int = st.one_of(word, st.sampled_from(["1.5", "1e3", "0x10", "", " ", "one", "nan"]))
non_positive = st.integers(-10**9, 0)
unknown_option = identifier.map(lambda k: [f"--{k.replace('_', '-')}-x"])
bad_device = st.one_of(cuda_missing, not_a_device)
bad_epsilon = st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001),
                        st.just(float("nan"))).map(lambda e: [f"--epsilon={e!r}"])
seed_flag = bad_seed.map(lambda s: [f"--seed={s}"])
not_a_run = st.one_of(identifier.map(lambda k: str(WORK / f"missing_{k}")), broken.map(lambda k: str(WORK / k)),
                      st.sampled_from([str(EMPTY), str(FULL), str(A_FILE), str(BINARY)]))
missing_file = identifier.map(lambda k: str(WORK / f"missing_{k}.yml"))
bad_yaml_file = st.one_of(missing_file, st.sampled_from([str(BINARY), str(NOT_YAML), str(EMPTY)]))
bad_set = st.one_of(
    identifier.map(lambda k: f"{k}_x=1"), broken.map(lambda k: f"{k}=1"), broken.map(lambda v: f"seed={v}"),
    st.sampled_from(["gamma=2", "batch_size=0", "learning_rate=-1", "device=banana", "seed=-1", "n_step=0",
                     "net_arch=[0]", "buffer_size=1e30", "noisy_sigma=1e300", "env_kwargs={render_mode: human}",
                     "no_equals_sign"]),
).map(lambda s: ["--set", s])


def choice_other_than(*allowed: str) -> st.SearchStrategy[str]:
    return word.filter(lambda w: w not in allowed)


@pytest.fixture(scope="module")
def inputs(run_dir) -> None:
    """Folders and files the generated command lines point at (made once, before any snapshot)."""
    EMPTY.mkdir(exist_ok=True)
    FULL.mkdir(exist_ok=True)
    (FULL / "keep.txt").write_text("something\n")
    BINARY.write_bytes(bytes(range(128, 256)))
    NOT_YAML.write_text("- a\n- list\n")
    for run, log, content in ((BAD_PROGRESS, "progress.csv", bytes(range(128, 256))),
                              (BAD_EVALS, "evaluations.csv", b"step,return_mean\r\n100,1.0\r\n200,high\r\n")):
        shutil.copytree(run_dir, run, dirs_exist_ok=True)
        (run / log).write_bytes(content)


def with_flags(head: list[str], valid: list[list[str]], invalid, bad_head=None):
    """``head`` (the command and its good positionals) with up to two valid flags and one invalid part; or, with
    ``bad_head``, a bad positional list and valid flags only."""
    good = st.tuples(st.just(head), st.lists(st.sampled_from(valid), max_size=2), invalid)
    cases = [good.map(lambda t: [*t[0], *sum(t[1], []), *t[2]])]
    if bad_head is not None:
        cases.append(st.tuples(bad_head, st.lists(st.sampled_from(valid), max_size=2)).map(
            lambda t: [*t[0], *sum(t[1], [])]))
    return st.one_of(cases)


unknown_env = st.one_of(word.map(lambda w: w.capitalize() + "-v0"), st.just("CartPole-v9"), broken,
                        st.just("ALE/NoSuchGame-v5"), st.sampled_from(["Pendulum-v1", "MountainCarContinuous-v0"]))
COMMANDS = {
    "train": with_flags(
        train(), [["--seed", "3"], ["--n-envs", "2"], ["--set", "double=true"], ["--device", "cpu"]],
        st.one_of(
            st.sampled_from(["--n-envs", "--total-timesteps"]).flatmap(
                lambda f: non_positive.map(lambda n: [f"{f}={n}"]) | not_int.map(lambda v: [f"{f}={v}"])),
            seed_flag, choice_other_than("dqn", "rainbow", "der", "qlearning").map(lambda a: ["--algo", a]),
            bad_yaml_file.map(lambda p: ["--preset", p]), bad_set, bad_folder().map(lambda p: ["--runs-dir", p]),
            bad_device.map(lambda d: ["--device", d]), st.just(["--resume", str(WORK)]), unknown_option),
        unknown_env.map(lambda e: ["train", e, "-n", "1000", "--runs-dir", str(RUNS)])),
    "eval": with_flags(
        ["eval", "RUN"], [["--episodes", "2"], ["--seed", "5"], ["--model", "best"], ["--epsilon", "0.1"],
                          ["--device", "cpu"]],
        st.one_of(non_positive.map(lambda n: [f"--episodes={n}"]), not_int.map(lambda v: [f"--episodes={v}"]),
                  bad_epsilon, seed_flag, choice_other_than("final", "best").map(lambda m: ["--model", m]),
                  bad_device.map(lambda d: ["--device", d]), unknown_option),
        not_a_run.map(lambda p: ["eval", p])),
    "plot": with_flags(
        ["plot", "RUN", "-o", str(WORK / "curves.png")], [["--smooth", "2"], ["--ci", "0.9"], ["--metric", "train"],
                                                          ["--no-reference"]],
        st.one_of(word.filter(lambda s: s not in ("png", "svg", "pdf")).map(lambda s: ["-o", str(WORK / f"c.{s}")]),
                  bad_folder().map(lambda p: ["-o", f"{p}/curves.png"]), unknown_env.map(lambda e: ["--env", e]),
                  choice_other_than("eval", "train", "score", "length", "loss", "q").map(lambda m: ["--metric", m]),
                  non_positive.map(lambda n: [f"--smooth={n}"]),
                  st.one_of(st.floats(max_value=0), st.floats(min_value=1)).map(lambda c: [f"--ci={c!r}"]),
                  st.just(["--normalized"]), identifier.map(lambda k: [f"{k}={WORK / ('missing_' + k)}"]),
                  unknown_option),
        st.one_of(not_a_run, st.sampled_from([str(BAD_PROGRESS), str(BAD_EVALS)])).map(
            lambda p: ["plot", p, "-o", str(WORK / "curves.png")])),
    "record": with_flags(
        ["record", "RUN"], [["--episodes", "2"], ["--seed", "1"], ["--model", "best"], ["--epsilon", "0.5"],
                            ["-o", str(WORK / "video.mp4")]],
        st.one_of(non_positive.map(lambda n: [f"--episodes={n}"]), bad_epsilon, seed_flag,
                  word.filter(lambda s: s != "mp4").map(lambda s: ["-o", str(WORK / f"video.{s}")]),
                  bad_folder().map(lambda p: ["-o", f"{p}/video.mp4"]), st.just(["-o", str(EMPTY)]),
                  choice_other_than("final", "best").map(lambda m: ["--model", m]), unknown_option,
                  st.just([])),  # valid flags alone: RUN's env (qzoo/Corridor-v0) renders no frames
        not_a_run.map(lambda p: ["record", p])),
    "report": with_flags(
        ["report", "RUN"], [["-o", str(WORK / "report.html")], ["--no-video"]],
        st.one_of(word.filter(lambda s: s not in ("html", "htm")).map(lambda s: ["-o", str(WORK / f"report.{s}")]),
                  bad_folder().map(lambda p: ["-o", f"{p}/report.html"]), st.just(["-o", str(EMPTY)]),
                  st.one_of(identifier.map(lambda k: str(WORK / f"missing_{k}.mp4")),
                            st.sampled_from([str(A_FILE), str(BINARY), str(EMPTY)])).map(lambda v: ["--video", v]),
                  unknown_option),
        st.one_of(not_a_run, st.sampled_from([str(BAD_PROGRESS), str(BAD_EVALS)])).map(
            lambda p: ["report", p, "--no-video"])),
    "export": with_flags(
        ["export", "RUN", str(EXPORT)], [["--episodes", "2"], ["--seed", "3"], ["--no-video"], ["--model", "best"],
                                         ["--repo-id", "someone/corridor"]],
        st.one_of(non_positive.map(lambda n: [f"--episodes={n}"]), seed_flag,
                  choice_other_than("final", "best").map(lambda m: ["--model", m]),
                  st.one_of(word, st.sampled_from(["a/b/c", "/name", "user/", "user name/x", "a/-b", "a/b..c",
                                                   "a/b\nc", "a/" + "b" * 97])).map(lambda r: [f"--repo-id={r}"]),
                  unknown_option),
        st.one_of(st.one_of(not_a_run, st.just(str(BAD_EVALS))).map(lambda p: ["export", p, str(EXPORT)]),
                  st.one_of(st.just(str(FULL)), bad_folder()).map(lambda p: ["export", "RUN", p]))),
    "tune": with_flags(
        ["tune", "CartPole-v1", "--tunes-dir", str(TUNES), "--n-timesteps", "1000"],
        [["--n-trials", "3"], ["--seeds", "2"], ["--sampler", "random"], ["--pruner", "none"], ["--workers", "1"]],
        st.one_of(
            st.sampled_from(["--n-trials", "--seeds", "--n-evals", "--eval-episodes", "--workers", "--heartbeat",
                             "--n-timesteps"]).flatmap(lambda f: non_positive.map(lambda n: [f"{f}={n}"])),
            st.integers(-10**9, -1).map(lambda n: [f"--startup-trials={n}"]),
            st.one_of(st.floats(max_value=0), st.just(float("nan"))).map(lambda t: [f"--timeout={t!r}"]),
            st.sampled_from(["--objective", "--sampler", "--pruner"]).flatmap(
                lambda f: (word | broken).filter(lambda w: w not in (*OBJECTIVES, *SAMPLERS, *PRUNERS)).map(
                    lambda w: [f, w])),
            st.one_of(st.sampled_from(["", ".", "..", "a/b", "../../escape", "/abs"]), broken).map(
                lambda n: [f"--study-name={n}"]),  # not a folder name
            choice_other_than("dqn", "rainbow", "der", "qlearning").map(lambda a: ["--algo", a]),
            st.integers(1001, 10**6).map(lambda n: ["--n-evals", str(n)]),  # more evaluations than steps
            (word | broken).map(lambda w: ["--storage", f"{w}://nowhere/db"]),  # without --study-name
            word.map(lambda w: ["--storage", f"{w}x://nowhere/db", "--study-name", w]),  # no such database
            bad_yaml_file.map(lambda p: ["--space", p]), st.just(["--space-only"]),
            bad_yaml_file.map(lambda p: ["--preset", p]), bad_set, seed_flag,
            bad_seed.map(lambda s: [f"--sampler-seed={s}"]), bad_folder().map(lambda p: ["--tunes-dir", p]),
            bad_device.map(lambda d: ["--set", f"device={d}"]), unknown_option),
        unknown_env.map(lambda e: ["tune", e, "--tunes-dir", str(TUNES), "--n-timesteps", "1000"])),
    "bench": with_flags(
        ["bench", "classic", "--bench-dir", str(BENCH), "-n", "100"],
        [["--seeds", "2"], ["--algos", "dqn,rainbow"], ["--envs", "CartPole-v1"], ["--jobs", "1"]],
        st.one_of(
            st.sampled_from(["--seeds", "--jobs", "--n-timesteps"]).flatmap(
                lambda f: non_positive.map(lambda n: [f"{f}={n}"])),
            choice_other_than("dqn", "rainbow", "der", "drq_eps").map(lambda a: ["--algos", f"dqn,{a}"]),
            st.sampled_from(["", ",", " , "]).map(lambda a: [f"--algos={a}"]),
            word.map(lambda p: ["--peer", p]), unknown_env.map(lambda e: ["--envs", e]),
            broken.map(lambda a: ["--algos", a]),
            bad_yaml_file.map(lambda p: ["--suite-file", p]), bad_folder().map(lambda p: ["--bench-dir", p]),
            bad_set, st.integers(2, 64).map(lambda j: ["--ray", "--jobs", str(j)]), unknown_option),
        (word | broken).filter(lambda s: s not in ("classic", "minatar", "atari", "atari100k")).map(
            lambda s: ["bench", s, "--bench-dir", str(BENCH), "-n", "100"])),
}


def test_every_subcommand_has_a_bad_input_generator():
    from qzoo.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(COMMANDS) == sorted(sub.choices)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_generated_bad_input_to_every_subcommand_is_refused(no_training, run_dir, inputs, command):
    seen = set()

    @settings(max_examples=PER_COMMAND + 12, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(COMMANDS[command])
    def case(argv):
        argv = [str(run_dir) if a == "RUN" else a for a in argv]
        seen.add(tuple(argv))
        refused(argv)

    case()
    print(f"{command}: {len(seen)} distinct bad command lines")
    assert len(seen) >= PER_COMMAND, (command, len(seen))


def test_an_env_without_video_frames_is_refused_a_video_before_anything_is_written(no_training, run_dir, inputs):
    # qzoo/Corridor-v0 renders 'ansi' text only
    said = "environment 'qzoo/Corridor-v0' renders no video frames (its render modes: ansi; a video needs 'rgb_array')"
    assert refused(["record", str(run_dir), "-o", str(WORK / "corridor.mp4")]) == f"qzoo record: error: {said}"
    assert refused(["export", str(run_dir), str(EXPORT)]) == f"qzoo export: error: {said}; export it with --no-video"
    assert refused(["train", "qzoo/Corridor-v0", "-n", "1000", "--runs-dir", str(RUNS), "--set", "video_every=100"]) \
        == f"qzoo train: error: setting 'video_every': {said}; leave it at 0"
    # a report has its curves and tables, and says why it has no video
    page = WORK / "corridor.html"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["report", str(run_dir), "-o", str(page)]) == 0
    assert f"<p id=no-video>No video: {html.escape(said)}.</p>" in page.read_text()
    page.unlink()
