"""Hyperparameter tuning with Optuna: ``qzoo tune ENV --algo ALGO``.

Design decisions
----------------
* **Sample, then convert** (RL Zoo's ``hyperparams_opt.py``). A search space maps parameter names to
  distributions, as data (:data:`SPACES`, overridable with a YAML file of the same form). A parameter is a setting
  of :class:`qzoo.config.Config`, or a derived one sampled where it behaves better and then converted:
  ``one_minus_gamma`` -> ``gamma = 1 - one_minus_gamma`` (log-uniform: 0.99 -> 0.999 is as big a step as
  0.9 -> 0.99), ``subsample_steps`` -> ``gradient_steps = max(train_freq // subsample_steps, 1)``, and ``net_arch``
  choices named ``tiny`` / ``small`` / ``medium`` (or given as lists). A trial's config is the base config
  (built-in preset < --preset < --set, with the --n-timesteps budget) plus the converted settings, validated like
  any other: a combination Config refuses fails that trial with its one-line reason.
* **In-process**: every seed of a trial is one call of :func:`qzoo.trainer.train` (or
  :func:`qzoo.tabular.train_tabular`) that writes nothing, with ``on_eval`` as the pruning hook. Nothing re-runs
  the command line.
* **Seeds one after another; pruning compares like with like.** A trial trains seed 0, then seed 1, ... Each seed
  is evaluated ``n_evals`` times (periodically, the last one at the end of training); seed i's k-th evaluation is
  reported at step ``i * n_evals + k``. A pruner therefore always compares the same seed at the same point of
  training across trials, and can stop a trial during any seed. The trial's score (the objective) is the mean over
  its seeds of the final evaluation.
* **Scaling is processes.** ``--workers N`` starts N processes that run Optuna's optimize loop on the same storage
  (Optuna's threads share one interpreter, which CPU-bound torch does not scale across). Workers on other
  machines join with ``--storage URL --study-name NAME``. ``--n-trials`` is the *study's* target: a worker
  starts no new trial once finished + running trials reach it (finished = complete, pruned or failed; a trial
  whose worker died is retried and not counted), so a study can be resumed by raising it.
* **Dead workers do not block a study.** Every running trial's worker writes a heartbeat every ``--heartbeat``
  seconds; a trial without one for twice that long is marked FAIL by the next worker that looks (Optuna's
  ``fail_stale_trials``) and queued again with the same parameters (``RetryHeartbeatStaleTrialCallback``). A worker that
  has reached the target waits for the trials still running elsewhere (or for their heartbeats to expire), so the
  outputs it writes cover the whole study.

Outputs (in ``<tunes_dir>/<env_id>/<study_name>/``, also on Ctrl-C): ``study.db`` (the default SQLite storage),
``best_preset.yml`` (a flat mapping of settings that ``qzoo train ENV --preset FILE`` takes unchanged),
``trials.csv``, ``history.png`` and ``importances.png``.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import os
import signal
import socket
import sys
import time
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qzoo.config import FIELDS, TABULAR_SETTINGS, Config, ConfigError, coerce, load_yaml, resolve

# --------------------------------------------------------------------------------------------------------------
# Search spaces, as data. A distribution is {type: float|int, low, high[, log][, step]}, {type: categorical,
# choices: [...]} or a list (short for categorical); in a --space file, null removes a parameter.
# --------------------------------------------------------------------------------------------------------------
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

# Derived parameters: name -> (the setting it becomes, how).
DERIVED = {
    "one_minus_gamma": ("gamma", "gamma = 1 - one_minus_gamma"),
    "subsample_steps": ("gradient_steps", "gradient_steps = max(train_freq // subsample_steps, 1)"),
}
# Settings the tuner sets itself, with the option that controls them.
NOT_TUNABLE = {"env_id": "the ENV argument", "algo": "--algo", "seed": "--seed and --seeds",
               "n_timesteps": "--n-timesteps", "eval_freq": "--n-evals", "eval_episodes": "--eval-episodes",
               "progress_bar": "tuning (off in trials)", "tensorboard": "tuning (off in trials)"}
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none", "halving")
MAX_RETRY = 2  # a trial lost with its worker is queued again at most this many times
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


# --------------------------------------------------------------------------------------------------------------
# Sample, then convert.
# --------------------------------------------------------------------------------------------------------------
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


def eval_freq_for(n_timesteps: int, n_evals: int) -> int:
    """Evaluate every ceil(n / n_evals) steps: n_evals - 1 periodic evaluations, then the final one."""
    return 0 if n_evals <= 1 else math.ceil(n_timesteps / n_evals)


def trial_config(base: Config, settings: dict, seed_index: int, n_evals: int, eval_episodes: int) -> Config:
    """The config one seed of a trial trains: base + sampled settings, its seed, and quiet periodic evaluation."""
    return base.replace(**settings, seed=base.seed + seed_index, eval_freq=eval_freq_for(base.n_timesteps, n_evals),
                        eval_episodes=eval_episodes, progress_bar=False, tensorboard=False)


# --------------------------------------------------------------------------------------------------------------
# Options, sampler, pruner, storage, study.
# --------------------------------------------------------------------------------------------------------------
@dataclass
class TuneOptions:
    env_id: str
    algo: str = "dqn"
    n_trials: int = 20
    seeds: int = 1
    n_timesteps: int | None = None  # None: the preset's n_timesteps
    n_evals: int = 5
    eval_episodes: int = 5
    sampler: str = "tpe"
    pruner: str = "median"
    startup_trials: int = 5
    storage: str | None = None  # None: sqlite:///<study_dir>/study.db
    study_name: str | None = None  # None: <algo>_<YYYYmmdd-HHMMSS>
    tunes_dir: str = "tunes"
    timeout: float | None = None
    workers: int = 1
    space: str | None = None
    space_only: bool = False
    preset: str | None = None
    sets: list = field(default_factory=list)
    seed: int = 0
    sampler_seed: int | None = None
    heartbeat: int = 60
    ray: str | None = None  # the workers as tasks on this Ray cluster ("": a local instance); None: processes here


def check_options(o: TuneOptions) -> None:
    for name, value, lowest in (("--n-trials", o.n_trials, 1), ("--seeds", o.seeds, 1), ("--n-evals", o.n_evals, 1),
                                ("--eval-episodes", o.eval_episodes, 1), ("--workers", o.workers, 1),
                                ("--startup-trials", o.startup_trials, 0), ("--heartbeat", o.heartbeat, 1),
                                ("--seed", o.seed, 0)):
        if value < lowest:
            raise ConfigError(f"{name} must be an integer >= {lowest}, got {value}")
    if o.timeout is not None and not o.timeout > 0:
        raise ConfigError(f"--timeout must be a number of seconds > 0, got {o.timeout}")
    if o.sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler '{o.sampler}'; allowed: {', '.join(SAMPLERS)}")
    if o.pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner '{o.pruner}'; allowed: {', '.join(PRUNERS)}")
    if o.storage and not o.study_name:
        raise ConfigError("--storage needs --study-name: every worker names the study it joins")


def base_config(o: TuneOptions) -> Config:
    """built-in preset < --preset < --set, with the trial budget; env checked before anything runs."""
    from qzoo.envs import check_env

    config = resolve(o.env_id, o.algo, o.preset, {"n_timesteps": o.n_timesteps, "seed": o.seed}, list(o.sets))
    if o.n_evals > config.n_timesteps:
        raise ConfigError(f"--n-evals ({o.n_evals}) must not exceed the budget of {config.n_timesteps} steps")
    check_env(config)
    return config


def make_sampler(name: str, seed: int | None, startup_trials: int):
    import optuna

    if name == "tpe":  # constant_liar: running trials count as bad guesses, so parallel workers spread out
        return optuna.samplers.TPESampler(n_startup_trials=startup_trials, seed=seed, multivariate=True,
                                          constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"unknown sampler '{name}'; allowed: {', '.join(SAMPLERS)}")


def make_pruner(name: str, startup_trials: int, n_evals: int):
    import optuna

    if name == "median":  # stop a trial below the median of earlier trials at the same step
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=n_evals // 3)
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    raise ConfigError(f"unknown pruner '{name}'; allowed: {', '.join(PRUNERS)}")


def safe_url(url: str) -> str:
    """The storage URL without its password (for messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


def sqlite_url(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'study.db').resolve()}"


SCHEMA_ATTEMPTS = 5  # opening a storage whose schema another worker is creating at the same moment


def open_storage(url: str, heartbeat: int):
    """Optuna's RDB storage with heartbeats; a killed worker's trial becomes FAIL and is queued again."""
    import optuna
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    allowed = "a database URL such as sqlite:///path/study.db or postgresql://user:password@host:5432/dbname"
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"--storage must be {allowed}, got '{url}'") from None
    backend, engine_kwargs, shown = parsed.get_backend_name(), {}, safe_url(url)
    if backend == "sqlite":  # several worker processes write: wait for the lock instead of failing
        engine_kwargs = {"connect_args": {"timeout": 60}}
    elif backend == "postgresql":
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
        if parsed.drivername == "postgresql":  # SQLAlchemy 2.1 would pick psycopg 3; qzoo[postgres] installs psycopg2
            url = parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    try:
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRY))
            except sqlalchemy.exc.IntegrityError:
                # Workers started together on an empty database all create optuna's tables and types; the losers
                # of that race hit "already exists". The schema is there once the winner commits: open it again.
                if attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except ImportError as e:  # the database driver
        hint = " (pip install 'qzoo[postgres]')" if backend == "postgresql" else ""
        cause = e.__cause__ if isinstance(e.__cause__, ImportError) else e
        raise ConfigError(f"storage {shown} needs a driver that is not installed: {cause}{hint}") from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigError(f"--storage must be {allowed}; '{backend}' is not a database SQLAlchemy knows") from None
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()
        raise ConfigError(f"cannot open storage {shown}: {reason[0] if reason else type(e).__name__}") from None


def study_signature(base: Config, space: dict[str, Param], o: TuneOptions) -> dict:
    """What makes trials comparable: every worker of a study must train the same thing."""
    settings = {k: v for k, v in base.to_dict().items() if k not in ("device", "torch_threads", "progress_bar",
                                                                     "tensorboard")}
    signature = {"env_id": base.env_id, "algo": base.algo, "n_timesteps": base.n_timesteps, "seeds": o.seeds,
                 "n_evals": o.n_evals, "eval_episodes": o.eval_episodes,
                 "space": {name: p.spec() for name, p in space.items()}, "settings": settings}
    return json.loads(json.dumps(signature))


def open_study(storage, name: str, sampler, pruner, signature: dict):
    """Create the study, or join it when it exists and trains the same thing."""
    import optuna

    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study '{name}' minimises its objective; qzoo tune maximises the evaluation return")
    stored = study.user_attrs.get("qzoo")
    if stored is None:
        study.set_user_attr("qzoo", signature)
    elif stored != signature:
        key = next(k for k in signature if stored.get(k) != signature[k])
        mine, theirs = signature[key], stored.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            sub = next(k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k))
            key, mine, theirs = f"{key}.{sub}", mine.get(sub), theirs.get(sub)
        raise ConfigError(f"study '{name}' exists with {key} = {theirs!r}, this command has {mine!r}; join it with "
                          "the same settings, or choose another --study-name")
    return study


# --------------------------------------------------------------------------------------------------------------
# The objective: one trial = every seed, trained in-process, with the pruning hook.
# --------------------------------------------------------------------------------------------------------------
def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Say:
    """Live progress lines (prefixed with the worker when there are several)."""

    def __init__(self, out=sys.stderr, prefix: str = ""):
        self.out, self.prefix = out, prefix

    def __call__(self, text: str) -> None:
        if self.out is not None:
            print(self.prefix + text, file=self.out, flush=True)


def format_params(params: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class Objective:
    """``objective(trial)``: sample, convert, train every seed; report each evaluation; prune; return the mean
    final evaluation over seeds."""

    def __init__(self, base: Config, space: dict[str, Param], seeds: int, n_evals: int, eval_episodes: int,
                 say: Say):
        self.base, self.space, self.seeds, self.n_evals, self.eval_episodes = base, space, seeds, n_evals, \
            eval_episodes
        self.say = say

    def __call__(self, trial) -> float:
        from qzoo.tabular import train_tabular
        from qzoo.trainer import TrainingDiverged, train

        trial.set_user_attr("worker", worker_name())
        params = {name: param.suggest(trial) for name, param in self.space.items()}
        self.say(f"trial {trial.number} started: {format_params(params)}")
        try:
            settings = to_settings(params, self.base)
            configs = [trial_config(self.base, settings, i, self.n_evals, self.eval_episodes)
                       for i in range(self.seeds)]
        except ConfigError as e:
            trial.set_user_attr("fail_reason", str(e))
            raise
        scores = []
        for i, config in enumerate(configs):
            run = train_tabular if config.is_tabular else train
            evals = [0]

            def on_eval(step, result, i=i, evals=evals):  # periodic evaluations
                self.report(trial, i, min(evals[0], self.n_evals - 2), step, result.mean)
                evals[0] += 1

            try:
                result = run(config, None, on_eval=on_eval, out=None)
            except TrainingDiverged as e:
                trial.set_user_attr("fail_reason", f"seed {config.seed}: {e}")
                raise
            if result.interrupted:
                trial.set_user_attr("fail_reason", "interrupted")
                trial.set_user_attr("interrupted", True)
                raise KeyboardInterrupt
            score = result.final_eval.mean
            self.report(trial, i, self.n_evals - 1, result.steps, score, last=i == self.seeds - 1)
            scores.append(score)
        trial.set_user_attr("seed_scores", scores)
        return sum(scores) / len(scores)

    def report(self, trial, seed_index: int, k: int, step: int, value: float, last: bool = False) -> None:
        import optuna

        seed = self.base.seed + seed_index
        trial.report(value, seed_index * self.n_evals + k)
        self.say(f"trial {trial.number} seed {seed} step {step}: {value:.2f}")
        if not last and trial.should_prune():
            trial.set_user_attr("pruned_at", f"seed {seed} step {step}")
            raise optuna.TrialPruned(f"{value:.2f} at seed {seed} step {step}")


def trial_done_callback(say: Say):
    """After each trial: its outcome and the best so far."""
    from optuna.trial import TrialState

    def callback(study, trial) -> None:
        try:
            best = study.best_trial
            best_text = f"best: trial {best.number} = {best.value:.2f}"
        except ValueError:
            best_text = "best: none yet"
        seconds = trial.duration.total_seconds() if trial.duration else float("nan")
        if trial.state == TrialState.COMPLETE:
            scores = ", ".join(f"{s:.2f}" for s in trial.user_attrs.get("seed_scores", []))
            say(f"trial {trial.number} complete: {trial.value:.2f} (seeds: {scores}) in {seconds:.0f} s; {best_text}")
        elif trial.state == TrialState.PRUNED:
            say(f"trial {trial.number} pruned at {trial.user_attrs.get('pruned_at', '?')} after {seconds:.0f} s; "
                f"{best_text}")
        else:
            say(f"trial {trial.number} failed: {trial.user_attrs.get('fail_reason', trial.state.name)}; {best_text}")

    return callback


# --------------------------------------------------------------------------------------------------------------
# The worker loop.
# --------------------------------------------------------------------------------------------------------------
def trial_counts(study) -> tuple[int, int]:
    """(finished, running): finished = complete, pruned or failed, except failures that were queued again and
    trials interrupted by Ctrl-C (a resumed study runs them again)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials}
    finished = sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                   or (t.state == TrialState.FAIL and t.number not in retried and not t.user_attrs.get("interrupted")))
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    return finished, running


def run_worker(study, objective: Objective, n_trials: int, deadline: float | None, say: Say, heartbeat: int) -> str:
    """Run trials until finished + running trials reach ``n_trials``, then wait for the trials still running in
    other workers: one whose worker died is marked failed when its heartbeat expires and queued again, which brings
    the count below the target, so this worker runs it. Returns "done" or "timeout"; Ctrl-C raises
    KeyboardInterrupt."""
    import optuna

    from qzoo.trainer import TrainingDiverged

    def stop_at_target(study, trial) -> None:  # checked between trials
        if sum(trial_counts(study)) >= n_trials:
            study.stop()

    callbacks = [trial_done_callback(say), stop_at_target]
    said = 0
    while True:
        remaining = None if deadline is None else deadline - time.time()
        if remaining is not None and remaining <= 0:
            say("time limit reached: no new trials")
            return "timeout"
        finished, running = trial_counts(study)
        if finished + running < n_trials:
            study.optimize(objective, timeout=remaining, callbacks=callbacks, gc_after_trial=False,
                           catch=(ConfigError, TrainingDiverged))
            continue
        if running == 0:
            return "done"
        if running != said:
            say(f"waiting for {running} trial(s) running in other workers (a dead worker's trial is marked failed "
                f"after {2 * heartbeat} s without a heartbeat)")
            said = running
        time.sleep(1.0)
        optuna.storages.fail_stale_trials(study)


def settle(study, say: Say, heartbeat: int, deadline: float | None) -> None:
    """Wait until no trial is running (a dead worker's trial is marked failed once its heartbeat expires)."""
    import optuna

    _, running = trial_counts(study)
    if running:
        say(f"waiting for {running} trial(s) left running by a worker that stopped")
    while running and (deadline is None or time.time() < deadline):
        time.sleep(1.0)
        optuna.storages.fail_stale_trials(study)
        _, running = trial_counts(study)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # qzoo prints its own line per trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _prepare(o: TuneOptions):
    check_options(o)
    base = base_config(o)
    space = load_space(o.algo, o.space, o.space_only)
    return base, space


def _worker_process(o: TuneOptions, index: int, study_name: str, url: str, deadline: float | None) -> None:
    """A worker started by --workers N (a fresh interpreter): join the study and run trials."""
    interrupted = []

    def interrupt_once(signum, frame):  # Ctrl-C reaches every process of the terminal: act on the first only
        if not interrupted:
            interrupted.append(signum)
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt_once)
    signal.signal(signal.SIGTERM, interrupt_once)
    sys.exit(study_worker(o, index, study_name, url, deadline))


def study_worker(o: TuneOptions, index: int, study_name: str, url: str, deadline: float | None) -> int:
    """One worker: join the study and run trials (in a --workers process, or a Ray task). The exit code."""
    _quiet_optuna()
    say = Say(sys.stderr, f"[worker {index}] ")
    try:
        import optuna
        import torch

        torch.set_num_threads(1)  # N workers on N cores (MLP trials use one thread anyway)
        base, space = _prepare(o)
        storage = open_storage(url, o.heartbeat)
        seed = None if o.sampler_seed is None else o.sampler_seed + index
        study = optuna.load_study(study_name=study_name, storage=storage,
                                  sampler=make_sampler(o.sampler, seed, o.startup_trials),
                                  pruner=make_pruner(o.pruner, o.startup_trials, o.n_evals))
        run_worker(study, Objective(base, space, o.seeds, o.n_evals, o.eval_episodes, say), o.n_trials, deadline,
                   say, o.heartbeat)
    except KeyboardInterrupt:
        return 130
    except ConfigError as e:
        say(f"error: {e}")
        return 2
    return 0


# --------------------------------------------------------------------------------------------------------------
# The whole command.
# --------------------------------------------------------------------------------------------------------------
@dataclass
class TuneResult:
    study_dir: Path
    study_name: str
    storage: str
    best_value: float | None
    best_params: dict | None
    files: list
    interrupted: bool = False
    worker_exit_codes: list = field(default_factory=list)


def tune(o: TuneOptions, out=sys.stderr) -> TuneResult:
    """Run (or join) a study; write best_preset.yml, trials.csv and the plots, also when interrupted."""
    import multiprocessing

    _quiet_optuna()
    base, space = _prepare(o)
    study_name = o.study_name or f"{o.algo}_{time.strftime('%Y%m%d-%H%M%S')}"
    study_dir = Path(o.tunes_dir) / base.env_id / study_name
    if o.storage is None:
        study_dir.mkdir(parents=True, exist_ok=True)
    url = o.storage or sqlite_url(study_dir)
    storage = open_storage(url, o.heartbeat)
    seed = o.sampler_seed
    study = open_study(storage, study_name, make_sampler(o.sampler, seed, o.startup_trials),
                       make_pruner(o.pruner, o.startup_trials, o.n_evals), study_signature(base, space, o))
    say = Say(out)
    say(f"qzoo: tuning {o.algo} on {base.env_id}: study '{study_name}' in {safe_url(url)}; {o.n_trials} trials x "
        f"{o.seeds} seed(s) x {base.n_timesteps} steps, {o.n_evals} evaluation(s) of {o.eval_episodes} episode(s) "
        f"each; sampler {o.sampler}, pruner {o.pruner}, {o.workers} worker(s) -> {study_dir}")
    say("search space: " + "; ".join(f"{n} {p.describe()}" for n, p in space.items()))
    deadline = None if o.timeout is None else time.time() + o.timeout
    interrupted, exit_codes = False, []
    if o.ray is not None:  # the workers as Ray tasks (qzoo/scaleout.py)
        from qzoo.scaleout import run_workers

        exit_codes = run_workers(o.ray, study_worker, [(o, i, study_name, url, deadline) for i in range(o.workers)],
                                 say, base.to_dict(), None if o.storage else study_dir)
        interrupted = 130 in exit_codes
        if any(code not in (0, 130) for code in exit_codes) and not interrupted:
            settle(study, say, o.heartbeat, deadline)
    elif o.workers == 1:
        try:
            run_worker(study, Objective(base, space, o.seeds, o.n_evals, o.eval_episodes, say), o.n_trials,
                       deadline, say, o.heartbeat)
        except KeyboardInterrupt:
            interrupted = True
    else:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch state
        procs = [context.Process(target=_worker_process, args=(o, i, study_name, url, deadline), daemon=False)
                 for i in range(o.workers)]
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            interrupted = True
            for p in procs:
                if p.is_alive():
                    os.kill(p.pid, signal.SIGINT)
            for p in procs:
                p.join(60)
                if p.is_alive():
                    p.terminate()
                    p.join()
        exit_codes = [p.exitcode for p in procs]
        interrupted = interrupted or 130 in exit_codes  # (workers interrupted on their own)
        if any(code not in (0, 130) for code in exit_codes):
            say(f"worker exit codes: {exit_codes}")
            if not interrupted:  # a worker that died may have left a running trial: wait for its heartbeat to expire
                try:
                    settle(study, say, o.heartbeat, deadline)
                except KeyboardInterrupt:
                    interrupted = True
    if interrupted:
        say("interrupted: writing the outputs of the trials so far")
    files = write_outputs(study, study_dir, base, o, say)
    best_value = best_params = None
    try:
        best_value, best_params = study.best_value, study.best_params
    except ValueError:
        pass
    return TuneResult(study_dir, study_name, safe_url(url), best_value, best_params, files, interrupted, exit_codes)


# --------------------------------------------------------------------------------------------------------------
# Outputs.
# --------------------------------------------------------------------------------------------------------------
def best_preset_text(base: Config, settings: dict, header: list[str]) -> str:
    """A flat mapping of settings for ``qzoo train ENV --preset FILE``: the tuned ones first, then every other
    setting of the trials' configuration (so the file reproduces them whatever the built-in preset says)."""
    full = base.replace(**settings).to_dict()
    skip = ("env_id", "algo", "seed")  # given on the command line
    tuned = {k: full[k] for k in settings}
    rest = {k: v for k, v in full.items() if k not in settings and k not in skip}
    dump = lambda d: yaml.safe_dump(d, sort_keys=False, width=1000)
    return ("".join(f"# {line}\n" for line in header) + "# tuned settings\n" + dump(tuned)
            + "# every other setting of the tuning runs\n" + dump(rest))


def write_trials_csv(trials, path: Path) -> None:
    names = sorted({name for t in trials for name in t.params})
    columns = ["number", "state", "value", "seed_scores", "duration_s", "datetime_start", "datetime_complete",
               "worker", "pruned_at", "fail_reason", "retry_of", "last_step"] + [f"params_{n}" for n in names]
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for t in sorted(trials, key=lambda t: t.number):
            attrs = t.user_attrs
            retry_of = RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
            writer.writerow([t.number, t.state.name, "" if t.value is None else t.value,
                             " ".join(f"{s:g}" for s in attrs.get("seed_scores", [])),
                             "" if t.duration is None else f"{t.duration.total_seconds():.1f}",
                             t.datetime_start or "", t.datetime_complete or "", attrs.get("worker", ""),
                             attrs.get("pruned_at", ""), attrs.get("fail_reason", ""),
                             "" if retry_of is None else retry_of, t.last_step if t.last_step is not None else ""]
                            + [t.params.get(n, "") for n in names])


def write_outputs(study, study_dir: Path, base: Config, o: TuneOptions, say: Say) -> list[Path]:
    """best_preset.yml, trials.csv, history.png, importances.png (each when there is enough to write it)."""
    from optuna.trial import TrialState

    study_dir.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    files = []
    write_trials_csv(trials, study_dir / "trials.csv")
    files.append(study_dir / "trials.csv")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState if any(t.state == s
                                                                                          for t in trials)}
    say(f"trials: {len(trials)} ({', '.join(f'{n} {s}' for s, n in counts.items()) or 'none'})")
    if complete:
        best = study.best_trial
        path = study_dir / "best_preset.yml"
        header = [f"qzoo tune: best trial {best.number} of study '{study.study_name}': {best.value:.2f}, the mean "
                  f"final evaluation of {o.seeds} seed(s) after {base.n_timesteps} steps",
                  f"parameters: {format_params(best.params)}",
                  f"train with: qzoo train {base.env_id} --algo {base.algo} --preset {path}"]
        path.write_text(best_preset_text(base, to_settings(best.params, base), header))
        files.append(path)
    else:
        say("no trial completed: no best_preset.yml")
    files += write_plots(study, study_dir, len(complete), say)
    return files


def write_plots(study, study_dir: Path, n_complete: int, say: Say) -> list[Path]:
    if n_complete == 0:
        say("no trial completed: no history.png or importances.png")
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator  # numpy only (fANOVA would need scikit-learn)
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    files = []
    for name, plot, needed in (("history.png", plot_optimization_history, 1),
                               ("importances.png", plot_param_importances, 2)):
        if n_complete < needed:
            say(f"{name} not written: parameter importances need at least {needed} complete trials "
                f"(have {n_complete})")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study) if name == "history.png" else plot(study, evaluator=PedAnovaImportanceEvaluator())
            ax.figure.savefig(study_dir / name, dpi=100, bbox_inches="tight")
            plt.close(ax.figure)
            files.append(study_dir / name)
        except (ValueError, RuntimeError, ZeroDivisionError) as e:
            say(f"{name} not written: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    return files
