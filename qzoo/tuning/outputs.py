"""What a study leaves in its folder (also on Ctrl-C): best_preset.yml, trials.csv, history.png,
importances.png."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import yaml

from qzoo.config import Config
from qzoo.tuning.objective import Say, format_params
from qzoo.tuning.options import TuneOptions
from qzoo.tuning.space import to_settings


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
