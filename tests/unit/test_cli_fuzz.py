"""Fuzzing the command line: generated invalid settings, flags and paths always give one line and exit code 2,
never a traceback, and never create a run directory. Runs ``qzoo.cli.main`` in this process (fast)."""

import contextlib
import io
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qzoo.cli import main
from qzoo.config import FIELDS, ConfigError, coerce

WORK = Path(tempfile.mkdtemp(prefix="qzoo-fuzz-"))
RUNS = WORK / "runs"
ENVS = ["CartPole-v1", "qzoo/Corridor-v0", "Acrobot-v1"]
# valid decorations mixed into a command line next to the one invalid part
VALID = [["--seed", "3"], ["--n-envs", "2"], ["--set", "learning_rate=1e-3"], ["--set", "double=true"],
         ["--set", "net_arch=[32]"], ["--device", "cpu"], ["--set", "prioritized=true"]]
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
identifier = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)


def rejected(key: str, value: str) -> bool:
    """The value is invalid for this setting on its own: a type error or a failed range check."""
    try:
        coerced = coerce(key, value)
    except ConfigError:
        return True
    check = FIELDS[key].metadata["check"]
    return check is not None and check(coerced) is not None


@st.composite
def bad_setting(draw) -> list[str]:
    key = draw(st.sampled_from(sorted(k for k, f in FIELDS.items() if f.metadata["check"] is not None
                                      or k in ("learning_rate", "gamma", "n_step", "buffer_size"))))
    value = draw(st.one_of(st.integers(-10**9, 10**9).map(str), st.floats().map(repr), text,
                           st.sampled_from(["", "nan", "-inf", "1e999", "[1, -2]", "{a: 1}", "true", "0x10"])))
    assume(rejected(key, value))
    return ["--set", f"{key}={value}"]


@st.composite
def preset_file(draw) -> list[str]:
    """A preset file with a setting that does not exist (or a value of the wrong kind)."""
    name = draw(identifier.filter(lambda k: k not in FIELDS and k not in ("policy", "policy_kwargs", "n_envs_eval")))
    content = draw(st.sampled_from([{name: 1}, {"learning_rate": "fast"}, ["a", "list"], "just text",
                                    {"policy_kwargs": "__import__('os')"}]))
    path = WORK / f"preset_{abs(hash(repr(content))) % 10**8}.yml"
    path.write_text(yaml.safe_dump(content))
    return ["--preset", str(path)]


invalid_train_part = st.one_of(
    bad_setting(),
    identifier.filter(lambda k: k not in FIELDS).map(lambda k: ["--set", f"{k}=1"]),  # unknown setting
    text.filter(lambda t: "=" not in t).map(lambda t: ["--set", t]),  # not key=value
    st.builds(lambda k: ["--set", f"env_kwargs={{{k}_x: 1}}"], identifier),  # the env does not take it
    st.builds(lambda k: ["--set", f"gym_packages=[qzoo_missing_{k}]"], identifier),  # cannot import
    st.sampled_from(["--seed", "--n-envs", "--total-timesteps"]).flatmap(
        lambda flag: st.one_of(st.integers(-10**6, 0).map(str), text.filter(lambda t: not t.strip().isdigit()))
        .map(lambda v: [flag, v])),
    text.filter(lambda t: t not in ("auto", "cpu", "cuda") and not t.startswith("cuda:")).map(
        lambda t: ["--device", t]),
    st.sampled_from(["ppo", "a2c", "DQN", ""]).map(lambda a: ["--algo", a]),
    identifier.map(lambda k: [f"--{k}-x"]),  # an option that does not exist
    st.builds(lambda k: ["--preset", str(WORK / f"missing_{k}.yml")], identifier),
    preset_file(),
    st.builds(lambda k: ["--resume", str(WORK / f"no_run_{k}")], identifier),
    st.just(["--resume", str(WORK)]),  # a directory that is not a run
)


@st.composite
def train_command(draw) -> list[str]:
    env = draw(st.one_of(st.sampled_from(ENVS), st.sampled_from(ENVS).map(lambda e: e.replace("v", "w")),
                         identifier.map(lambda e: e.capitalize() + "-v0")))
    decoration = draw(st.lists(st.sampled_from(VALID), max_size=2))
    invalid = draw(invalid_train_part)
    if invalid[0] == "--resume":  # a resume with an env id is refused too; without one it fails on the path
        env = draw(st.sampled_from([env, None]))
        decoration = []
    elif env not in ENVS:  # an unknown env id is the invalid part
        invalid = []
    return ["train", *([env] if env else []), "-n", "1", "--runs-dir", str(RUNS), *sum(decoration, []), *invalid]


eval_command = st.one_of(
    st.integers(-5, 0).map(lambda n: ["eval", str(WORK), "--episodes", str(n)]),
    st.floats(allow_nan=False).filter(lambda e: not 0 <= e <= 1).map(lambda e: ["eval", str(WORK), "--epsilon",
                                                                                 repr(e)]),
    identifier.map(lambda k: ["eval", str(WORK / f"no_run_{k}")]),
    st.sampled_from(["last", "worst"]).map(lambda m: ["eval", str(WORK), "--model", m]),
)


@pytest.fixture
def no_training(monkeypatch):
    """A generated command line that got as far as training would be a valid one: fail at once instead."""
    def refuse(config, *args, **kwargs):
        raise AssertionError(f"a valid command line was generated: {config}")

    monkeypatch.setattr("qzoo.trainer.train", refuse)
    monkeypatch.setattr("qzoo.tabular.train_tabular", refuse)


@settings(max_examples=260, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
@given(st.one_of(train_command(), eval_command,
                 st.lists(text, max_size=3).map(lambda argv: ["frobnicate", *argv])))
def test_invalid_command_lines_give_one_line_and_exit_code_2(no_training, argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors
            code = e.code
    message = err.getvalue()
    assert code == 2, (argv, message)
    assert len(message.strip().splitlines()) == 1, (argv, message)
    assert "Traceback" not in message
    assert not RUNS.exists(), argv  # nothing was created

