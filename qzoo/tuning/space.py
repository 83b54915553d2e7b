"""Search spaces, as data, and the sample-then-convert step.

A distribution is {type: float|int, low, high[, log][, step]}, {type: categorical, choices: [...]} or a list
(short for categorical); in a --space file, null removes a parameter. Derived parameters (``one_minus_gamma``,
``subsample_steps``, named ``net_arch`` choices) are converted to settings by :func:`to_settings`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from qzoo.config import FIELDS, TABULAR_SETTINGS, Config, ConfigError, coerce
from qzoo.resolve import load_yaml

NET_ARCHS = {"tiny": [64], "small": [64, 64], "medium": [256, 256]}

_DQN_SPACE: dict = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "batch_size": [16, 32, 64, 128, 256],
    "buffer_size": [10_000, 50_000, 100_000, 1_000_000],
    "one_minus_gamma": {"type": "float", "low": 1e-4, "high": 0.05, "log": True},
    "exploration_fraction": {"type": "float", "low": 0.0, "high": 0.5},
    "exploration_final_eps": {"type": "float", "low": 0.0, "high": 0.2},
    "target_update_interval": [1, 10, 100, 250, 1000, 5000],
    "learning_starts": [0, 500, 1000, 5000],
    "train_freq": [1, 4, 16, 64, 256],
    "subsample_steps": [1, 2, 4, 8],
    "net_arch": ["tiny", "small", "medium"],
}
_NOT_FOR_NOISY = ("exploration_fraction", "exploration_final_eps")  # noisy nets explore through their weights
SPACES: dict[str, dict] = {
    "dqn": _DQN_SPACE,
    "rainbow": {**{k: v for k, v in _DQN_SPACE.items() if k not in _NOT_FOR_NOISY},
                "n_step": [1, 3, 5],
                "prioritized_alpha": {"type": "float", "low": 0.2, "high": 0.8},
                "prioritized_beta": {"type": "float", "low": 0.2, "high": 0.6},
                "noisy_sigma": {"type": "float", "low": 0.1, "high": 1.0, "log": True}},
    "qlearning": {
        "learning_rate": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
        "one_minus_gamma": {"type": "float", "low": 1e-3, "high": 0.2, "log": True},
        "exploration_decay_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        "exploration_final_eps": {"type": "float", "low": 0.0, "high": 0.2},
    },
}
# The Atari-100k presets tune like their families: DER is a Rainbow, DrQ(ε) a DQN (epsilon-greedy).
SPACES["der"] = SPACES["rainbow"]
SPACES["drq_eps"] = SPACES["dqn"]

# Derived parameters: name -> (the setting it becomes, how).
DERIVED = {
    "one_minus_gamma": ("gamma", "gamma = 1 - one_minus_gamma"),
    "subsample_steps": ("gradient_steps", "gradient_steps = max(train_freq // subsample_steps, 1)"),
}
# Settings the tuner sets itself, with the option that controls them.
NOT_TUNABLE = {"env_id": "the ENV argument", "algo": "--algo", "seed": "--seed and --seeds",
               "n_timesteps": "--n-timesteps", "eval_freq": "--n-evals", "eval_episodes": "--eval-episodes",
               "progress_bar": "tuning (off in trials)", "tensorboard": "tuning (off in trials)"}

_SETTING_TYPES = typing.get_type_hints(Config)
_SPEC_KEYS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
              "categorical": ("type", "choices")}
EXAMPLE_SPEC = "{type: float, low: 1.0e-5, high: 1.0e-2, log: true}"


@dataclass(frozen=True)
class Param:
    """One dimension of a search space (Optuna's suggest_float / suggest_int / suggest_categorical)."""

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_categorical(self.name, list(self.choices))

    def spec(self) -> dict:
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out = {"type": self.kind, "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    def describe(self) -> str:
        if self.kind == "categorical":
            return "one of " + ", ".join(map(str, self.choices))
        scale = "log-uniform" if self.log else ("uniform" if self.step is None else f"step {self.step:g}")
        return f"{self.kind} {scale} in [{self.low:g}, {self.high:g}]"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _value_problem(name: str, value) -> str | None:
    """None when ``value`` is a valid value of parameter ``name``, else what is wrong (one phrase)."""
    if name == "one_minus_gamma":
        return None if _is_number(value) and 0 < value <= 1 else f"one_minus_gamma must be in (0, 1], got {value!r}"
    if name == "subsample_steps":
        ok = _is_number(value) and float(value).is_integer() and value >= 1
        return None if ok else f"subsample_steps must be an integer >= 1, got {value!r}"
    if name == "net_arch":
        ok = (isinstance(value, str) and value in NET_ARCHS) or (isinstance(value, list) and value and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value))
        return None if ok else (f"net_arch choices must be {', '.join(NET_ARCHS)} or lists of layer sizes such as "
                                f"[128, 128], got {value!r}")
    try:
        coerced = coerce(name, value)
    except ConfigError as e:
        return str(e)
    check = FIELDS[name].metadata["check"]
    problem = check(coerced) if check else None
    return f"setting '{name}' must be {problem}, got {value!r}" if problem else None


def _target(name: str) -> str:
    """The setting a parameter sets."""
    return DERIVED[name][0] if name in DERIVED else name


def parse_param(name: str, spec, algo: str, where: str) -> Param:
    """Validate one ``name: spec`` entry of a search space and build its :class:`Param`."""
    at = f"{where}: parameter '{name}'"
    if name in NOT_TUNABLE:
        raise ConfigError(f"{at} is not sampled: it is set by {NOT_TUNABLE[name]}")
    if name not in FIELDS and name not in DERIVED:
        close = difflib.get_close_matches(name, list(FIELDS) + list(DERIVED), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{where}: unknown parameter '{name}'{hint}; a parameter is a setting (`qzoo train "
                          f"--help`) or one of {', '.join(DERIVED)}")
    if algo == "qlearning" and _target(name) not in TABULAR_SETTINGS:
        raise ConfigError(f"{at}: --algo qlearning does not read '{_target(name)}' (it reads: "
                          f"{', '.join(s for s in TABULAR_SETTINGS if s not in NOT_TUNABLE)})")
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{at} must be a distribution such as {EXAMPLE_SPEC}, a list of choices, or null (to "
                          f"remove it), got {spec!r}")
    kind = spec.get("type")
    if kind not in _SPEC_KEYS:
        raise ConfigError(f"{at}: type must be float, int or categorical, got {kind!r}")
    extra = [k for k in spec if k not in _SPEC_KEYS[kind]]
    if extra:
        raise ConfigError(f"{at}: unknown key '{extra[0]}' for type {kind} (allowed: {', '.join(_SPEC_KEYS[kind])})")
    setting_type = float if name == "one_minus_gamma" else int if name == "subsample_steps" else (
        list if name == "net_arch" else _SETTING_TYPES[name])
    allowed_kinds = {float: ("float", "int", "categorical"), int: ("int", "categorical")}.get(
        setting_type, ("categorical",))
    if setting_type in (list, dict) and name != "net_arch":
        raise ConfigError(f"{at}: a {setting_type.__name__} setting cannot be tuned")
    if kind not in allowed_kinds:
        raise ConfigError(f"{at} is {'an integer' if setting_type is int else setting_type.__name__}: use type "
                          f"{' or '.join(allowed_kinds)}")

    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{at}: choices must be a non-empty list")
        stored = []
        for choice in choices:
            problem = _value_problem(name, choice)
            if problem:
                raise ConfigError(f"{at}: {problem}")
            if isinstance(choice, list):  # Optuna's choices are scalars: a layer list is kept as its JSON text
                choice = json.dumps(choice)
            elif not (choice is None or isinstance(choice, (bool, int, float, str))):
                raise ConfigError(f"{at}: choices must be numbers, strings or booleans, got {choice!r}")
            stored.append(choice)
        if len(set(map(repr, stored))) != len(stored):
            raise ConfigError(f"{at}: choices repeat a value")
        return Param(name, "categorical", choices=tuple(stored))

    low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
    if not (_is_number(low) and _is_number(high)):
        raise ConfigError(f"{at}: low and high must both be numbers, got low={low!r} high={high!r}")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{at}: type int needs integer low and high, got low={low!r} high={high!r}")
    if not low < high:
        raise ConfigError(f"{at}: low ({low!r}) must be below high ({high!r})")
    if not isinstance(log, bool):
        raise ConfigError(f"{at}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{at}: a log scale needs low > 0, got {low!r}")
    if step is not None and (log or not _is_number(step) or step <= 0 or (kind == "int" and step != int(step))):
        raise ConfigError(f"{at}: step must be a number > 0 (an integer for type int) and cannot go with log")
    for bound in (low, high):
        problem = _value_problem(name, int(bound) if kind == "int" or setting_type is int else float(bound))
        if problem:
            raise ConfigError(f"{at}: {problem}")
    cast = int if kind == "int" else float
    return Param(name, kind, cast(low), cast(high), log, None if step is None else cast(step))


def load_space(algo: str, path: str | Path | None = None, replace: bool = False) -> dict[str, Param]:
    """The search space of ``algo`` (:data:`SPACES`), overridden and extended by the YAML file ``path`` (a mapping
    of parameter names to distributions; null removes one), or the file's space alone when ``replace``."""
    raw: dict = {} if replace else dict(SPACES[algo])
    where = "search space"
    if path is not None:
        where = f"search space file '{path}'"
        data = load_yaml(Path(path), "search space file")
        if not data:
            raise ConfigError(f"{where} is empty; it maps parameter names to distributions, e.g. "
                              f"learning_rate: {EXAMPLE_SPEC}")
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a mapping of parameter names to distributions, e.g. "
                              f"learning_rate: {EXAMPLE_SPEC}")
        for name, spec in data.items():
            if spec is None:  # still a name the tuner must know
                if name not in FIELDS and name not in DERIVED:
                    parse_param(str(name), {}, algo, where)  # raises the unknown-parameter message
                raw.pop(name, None)
            else:
                raw[name] = spec
    space = {name: parse_param(str(name), spec, algo, where) for name, spec in raw.items()}
    if not space:
        raise ConfigError(f"the search space is empty: nothing to tune ({where} removes or lacks every parameter; "
                          f"add one such as learning_rate: {EXAMPLE_SPEC})")
    for derived, (setting, _) in DERIVED.items():
        if derived in space and setting in space:
            raise ConfigError(f"{where}: '{derived}' and '{setting}' both set {setting}; keep one")
    return space


def space_help() -> str:
    """Every algo's built-in search space, for ``qzoo tune --help``."""
    lines = []
    for algo in SPACES:
        lines.append(f"\n  --algo {algo}:")
        for name, param in load_space(algo).items():
            how = f"  ({DERIVED[name][1]})" if name in DERIVED else ""
            lines.append(f"    {name:<24} {param.describe()}{how}")
    lines.append(f"\n  net_arch: {', '.join(f'{k} = {v}' for k, v in NET_ARCHS.items())}")
    return "\n".join(lines)


# ---- sample, then convert --------------------------------------------------------------------------------------
def net_arch_value(choice) -> list:
    return list(NET_ARCHS[choice]) if choice in NET_ARCHS else json.loads(choice)


def to_settings(params: dict, base: Config) -> dict:
    """Sampled parameters -> Config settings (derived parameters converted)."""
    settings: dict = {}
    for name, value in params.items():
        if name == "one_minus_gamma":
            settings["gamma"] = 1.0 - value
        elif name == "net_arch":
            settings["net_arch"] = net_arch_value(value)
        elif name != "subsample_steps":
            settings[name] = value
    if "subsample_steps" in params:
        train_freq = int(settings.get("train_freq", base.train_freq))
        settings["gradient_steps"] = max(train_freq // int(params["subsample_steps"]), 1)
    return settings


# ---- trials given by hand (--enqueue) ---------------------------------------------------------------------------
_ENQUEUE_SPLIT = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)")  # commas before `name=`: `net_arch=[64,64]` stays


def _enqueued_value(param: Param, text: str):
    """The value of ``param`` written as ``text``, as Optuna stores it; a ConfigError when it is outside the
    space."""
    where = f"--enqueue: {param.name}={text}"
    if param.kind == "categorical":
        for choice in param.choices:
            if isinstance(choice, bool):
                matches = text.lower() in _BOOL_TEXT and _BOOL_TEXT[text.lower()] == choice
            elif isinstance(choice, (int, float)):
                try:
                    matches = float(text.replace("_", "")) == choice
                except ValueError:
                    matches = False
            elif param.name == "net_arch":
                matches = text == choice or (text not in NET_ARCHS and choice not in NET_ARCHS and _layers(text)
                                             == json.loads(choice))
            else:
                matches = text == str(choice)
            if matches:
                return choice
        raise ConfigError(f"{where} is not in the search space (allowed: {', '.join(map(str, param.choices))})")
    try:
        number = float(text.replace("_", ""))
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and param.low <= number <= param.high) or (
            param.kind == "int" and not number.is_integer()):
        raise ConfigError(f"{where} is not in the search space (allowed: {param.describe()})")
    return int(number) if param.kind == "int" else number


_BOOL_TEXT = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _layers(text: str):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return value if isinstance(value, list) else None


def parse_enqueue(items: list[str], space: dict[str, Param]) -> list[dict]:
    """``--enqueue`` values (``"learning_rate=1e-3,dueling=true"``, one trial each) -> Optuna parameter dicts for
    ``study.enqueue_trial``; each name must be a parameter of ``space`` and each value inside its distribution.
    Parameters a trial leaves out are sampled."""
    trials = []
    for item in items:
        params: dict = {}
        for part in _ENQUEUE_SPLIT.split(item):
            name, sep, text = part.partition("=")
            name, text = name.strip(), text.strip()
            if not sep or not name or not text:
                raise ConfigError(f"--enqueue expects NAME=VALUE,NAME=VALUE,..., got {item!r}")
            if name not in space:
                close = difflib.get_close_matches(name, list(space), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"--enqueue: '{name}' is not a parameter of the search space{hint}; its "
                                  f"parameters: {', '.join(space)}")
            if name in params:
                raise ConfigError(f"--enqueue: '{name}' is given twice in {item!r}")
            params[name] = _enqueued_value(space[name], text)
        trials.append(params)
    return trials
