"""Hyperparameter tuning with Optuna: ``qzoo tune ENV --algo ALGO``.

    space.py       search spaces as data (SPACES, --space files) and the sample-then-convert step
    options.py     the command's options (TuneOptions), their checks, the base config of every trial
    storage.py     Optuna storage (SQLite, PostgreSQL; heartbeats, schema retries), the study, sampler, pruner
    objective.py   one trial: every seed trained in-process, evaluations reported for pruning
    objectives.py  a trial's score over its seeds (--objective mean, min, mean-std)
    workers.py     the worker loop, worker processes (--workers N) and tune(), the whole command
    outputs.py     best_preset.yml, trials.csv, history.png, importances.png

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
  training across trials, and can stop a trial during any seed. The trial's score is ``--objective`` over its seeds'
  final evaluations (objectives.py: mean, min, or mean minus standard deviation).
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

from qzoo.tuning.objective import Objective, Say, eval_freq_for, format_params, trial_config, trial_done_callback
from qzoo.tuning.options import PRUNERS, SAMPLERS, TuneOptions, base_config, check_options
from qzoo.tuning.outputs import best_preset_text, write_outputs, write_plots, write_trials_csv
from qzoo.tuning.space import (
    DERIVED,
    EXAMPLE_SPEC,
    NET_ARCHS,
    NOT_TUNABLE,
    SPACES,
    Param,
    load_space,
    net_arch_value,
    parse_enqueue,
    parse_param,
    space_help,
    to_settings,
)
from qzoo.tuning.storage import (
    MAX_RETRY,
    SCHEMA_ATTEMPTS,
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
    safe_url,
    sqlite_url,
    study_signature,
)
from qzoo.tuning.workers import TuneResult, run_worker, settle, trial_counts, tune

__all__ = [
    "DERIVED", "EXAMPLE_SPEC", "MAX_RETRY", "NET_ARCHS", "NOT_TUNABLE", "PRUNERS", "SAMPLERS", "SCHEMA_ATTEMPTS",
    "SPACES", "Objective", "Param", "Say", "TuneOptions", "TuneResult", "base_config", "best_preset_text",
    "check_options", "eval_freq_for", "format_params", "load_space", "make_pruner", "make_sampler", "net_arch_value",
    "open_storage", "open_study", "parse_enqueue", "parse_param", "run_worker", "safe_url", "settle", "space_help",
    "sqlite_url", "study_signature", "to_settings", "trial_config", "trial_counts", "trial_done_callback", "tune",
    "write_outputs", "write_plots", "write_trials_csv",
]
