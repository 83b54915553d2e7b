"""Where a study lives: Optuna's RDB storage (SQLite by default, PostgreSQL for workers on several machines) with
heartbeats, the study itself (created, or joined when it trains the same thing), and its sampler and pruner."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from qzoo.config import Config, ConfigError
from qzoo.tuning.options import PRUNERS, SAMPLERS, TuneOptions

if TYPE_CHECKING:
    from qzoo.tuning.space import Param

MAX_RETRY = 2  # a trial lost with its worker is queued again at most this many times


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
                 "space": {name: p.spec() for name, p in space.items()}, "settings": settings,
                 "objective": o.objective, "prune_below": o.prune_below}
    return json.loads(json.dumps(signature))


def open_study(storage, name: str, sampler, pruner, signature: dict):
    """Create the study, or join it when it exists and trains the same thing."""
    import optuna

    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study '{name}' minimises its objective; qzoo tune maximises the evaluation return")
    stored = study.user_attrs.get("qzoo")
    if stored is not None:
        # studies made before --objective scored the mean; before --prune-below, pruned by the pruner alone
        stored = {"objective": "mean", "prune_below": None, **stored}
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
