"""The options of ``qzoo tune`` (:class:`TuneOptions`), their checks, and the base config every trial starts from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qzoo.config import Config, ConfigError
from qzoo.resolve import resolve
from qzoo.tuning.objectives import OBJECTIVES

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none", "halving")

@dataclass
class TuneOptions:
    env_id: str
    algo: str = "dqn"
    n_trials: int = 20
    seeds: int = 1
    objective: str = "mean"  # qzoo/tuning/objectives.py
    prune_below: float | None = None  # prune a trial once a seed's final evaluation is below this (--objective min)
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
    enqueue: list = field(default_factory=list)  # ["name=value,name=value", ...]: trials to run first
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
    if o.objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective '{o.objective}'; allowed: {', '.join(OBJECTIVES)}")
    if o.prune_below is not None:
        if not math.isfinite(o.prune_below):
            raise ConfigError(f"--prune-below must be a finite number (an evaluation return), got {o.prune_below}")
        if o.objective != "min":
            raise ConfigError(f"--prune-below needs --objective min (a seed below it caps only the worst seed's "
                              f"score), got --objective {o.objective}")
    if o.sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler '{o.sampler}'; allowed: {', '.join(SAMPLERS)}")
    if o.pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner '{o.pruner}'; allowed: {', '.join(PRUNERS)}")
    if o.study_name is not None and (o.study_name in ("", ".", "..") or "/" in o.study_name
                                     or not o.study_name.isprintable()):  # it names the folder of the outputs
        raise ConfigError(f"--study-name {o.study_name!r} must be a folder name (TUNES_DIR/ENV/STUDY_NAME/): "
                          "printable characters, no '/', not '.' or '..'")
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
