"""The worker loop (trials until the study's target, then waiting for the others), worker processes for
``--workers N``, and :func:`tune`, the whole command: open the study, run its workers, write the outputs."""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from qzoo.config import ConfigError
from qzoo.tuning.objective import Objective, Say, trial_done_callback
from qzoo.tuning.options import TuneOptions, base_config, check_options
from qzoo.tuning.outputs import write_outputs
from qzoo.tuning.space import load_space, parse_enqueue
from qzoo.tuning.storage import (
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
    safe_url,
    sqlite_url,
    study_signature,
)


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


def objective_of(o: TuneOptions, base, space, say: Say) -> Objective:
    return Objective(base, space, o.seeds, o.n_evals, o.eval_episodes, say, o.objective, o.prune_below)


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
        run_worker(study, objective_of(o, base, space, say), o.n_trials,
                   deadline, say, o.heartbeat)
    except KeyboardInterrupt:
        return 130
    except ConfigError as e:
        say(f"error: {e}")
        return 2
    return 0


# ---- the whole command -----------------------------------------------------------------------------------------
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
    enqueued = parse_enqueue(o.enqueue, space)  # checked before anything is created
    study_name = o.study_name or f"{o.algo}_{time.strftime('%Y%m%d-%H%M%S')}"
    study_dir = Path(o.tunes_dir) / base.env_id / study_name
    if o.storage is None:
        study_dir.mkdir(parents=True, exist_ok=True)
    url = o.storage or sqlite_url(study_dir)
    storage = open_storage(url, o.heartbeat)
    seed = o.sampler_seed
    study = open_study(storage, study_name, make_sampler(o.sampler, seed, o.startup_trials),
                       make_pruner(o.pruner, o.startup_trials, o.n_evals), study_signature(base, space, o))
    for params in enqueued:  # run before any sampled trial; a resumed study does not queue them again
        study.enqueue_trial(params, skip_if_exists=True)
    say = Say(out)
    say(f"qzoo: tuning {o.algo} on {base.env_id}: study '{study_name}' in {safe_url(url)}; {o.n_trials} trials x "
        f"{o.seeds} seed(s) x {base.n_timesteps} steps (objective: {o.objective}"
        f"{'' if o.prune_below is None else f'; pruned once a seed ends below {o.prune_below:g}'}), "
        f"{o.n_evals} evaluation(s) of "
        f"{o.eval_episodes} episode(s) each; sampler {o.sampler}, pruner {o.pruner}, {o.workers} worker(s) -> "
        f"{study_dir}")
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
            run_worker(study, objective_of(o, base, space, say), o.n_trials,
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
