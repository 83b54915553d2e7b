"""The objective: one trial = every seed, trained in-process (:func:`qzoo.trainer.train` or
:func:`qzoo.tabular.train_tabular`, writing nothing), each evaluation reported to Optuna for pruning."""

from __future__ import annotations

import math
import os
import socket
import sys

from qzoo.config import Config, ConfigError
from qzoo.tuning.objectives import aggregate
from qzoo.tuning.space import Param, to_settings


def eval_freq_for(n_timesteps: int, n_evals: int) -> int:
    """Evaluate every ceil(n / n_evals) steps: n_evals - 1 periodic evaluations, then the final one."""
    return 0 if n_evals <= 1 else math.ceil(n_timesteps / n_evals)


def trial_config(base: Config, settings: dict, seed_index: int, n_evals: int, eval_episodes: int) -> Config:
    """The config one seed of a trial trains: base + sampled settings, its seed, and quiet periodic evaluation."""
    return base.replace(**settings, seed=base.seed + seed_index, eval_freq=eval_freq_for(base.n_timesteps, n_evals),
                        eval_episodes=eval_episodes, progress_bar=False, tensorboard=False)


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


def below_threshold(score: float, prune_below: float | None) -> bool:
    """``--prune-below X``: does this seed's final evaluation end its trial? Yes when it is below X (or not a
    number). Under ``--objective min`` the trial's score is at most this seed's, so it can no longer reach X and
    the remaining seeds need not train. ``None``: never."""
    return prune_below is not None and not score >= prune_below


class Objective:
    """``objective(trial)``: sample, convert, train every seed; report each evaluation; prune (the pruner, or
    ``prune_below``: a seed's final evaluation below it); return ``aggregate`` (mean, min or mean-std;
    qzoo/tuning/objectives.py) of the final evaluations over seeds."""

    def __init__(self, base: Config, space: dict[str, Param], seeds: int, n_evals: int, eval_episodes: int,
                 say: Say, aggregate: str = "mean", prune_below: float | None = None):
        self.base, self.space, self.seeds, self.n_evals, self.eval_episodes = base, space, seeds, n_evals, \
            eval_episodes
        self.say, self.aggregate, self.prune_below = say, aggregate, prune_below

    def __call__(self, trial) -> float:
        import optuna

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
            if below_threshold(score, self.prune_below):  # fail fast: the seeds left cannot lift a min objective
                trial.set_user_attr("seed_scores", scores)
                trial.set_user_attr("pruned_at", f"seed {config.seed} final {score:.2f} < {self.prune_below:g}")
                raise optuna.TrialPruned(f"seed {config.seed}: final evaluation {score:.2f} < {self.prune_below:g}")
        trial.set_user_attr("seed_scores", scores)
        return aggregate(self.aggregate, scores)

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
