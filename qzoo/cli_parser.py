"""What the ``qzoo`` command line accepts: its commands, their options and help, and a usage problem as one line
(exit code 2). ``qzoo.cli`` runs what this parses."""

from __future__ import annotations

import argparse
import textwrap

from qzoo import __version__
from qzoo.config import ALGOS, settings_help
from qzoo.guards import seed_list

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


# What str.splitlines breaks a line at: a value the user typed may hold one (a pasted path, a quoted argument).
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def one_line(message: str) -> str:
    """``message`` with each line break escaped (``\\n``): an error is one line, whatever values it quotes."""
    return message.translate({ord(c): repr(c)[1:-1] for c in LINE_BREAKS})


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage problem is one line (and exit code 2), not a usage dump."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, one_line(f"{self.prog}: error: {message} (see `{self.prog} --help`)") + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qzoo", description="Deep Q-learning toolkit: train, evaluate and compare DQN agents.")
    parser.add_argument("--version", action="version", version=f"qzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser(
        "train", help="train an agent on a Gymnasium environment",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train an agent. Settings resolve as: defaults < built-in preset for the env id < --preset "
                    "FILE < flags < --set key=value.",
        epilog="settings (use --set key=value; the preset for the env id may change a default):" + settings_help())
    train.add_argument("env_id", nargs="?", help="Gymnasium environment id, e.g. CartPole-v1")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its latest intact checkpoint, with its own settings "
                            "(only --total-timesteps, --device, --quiet and --set for device, torch_threads, "
                            "progress_bar, keep_checkpoints, checkpoint_freq, save_replay may be given)")
    train.add_argument("--algo", choices=ALGOS,
                       help="dqn (deep Q-network), rainbow, der (data-efficient Rainbow) and drq_eps (DrQ(ε)) "
                            "(the one agent's preset families, qzoo/presets/<algo>.yml; der and drq_eps follow the "
                            "Atari-100k protocol), or qlearning (a Q-table, for Discrete observations such as "
                            "FrozenLake-v1; default: dqn)")
    train.add_argument("--seed", type=int, help="random seed (default: 0)")
    train.add_argument("--total-timesteps", "-n", type=int, dest="n_timesteps",
                       help="environment steps to train for (default: the preset's n_timesteps)")
    train.add_argument("--n-envs", type=int, help="environments stepped in parallel (default: 1)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    train.add_argument("--preset", metavar="FILE|NAME",
                       help="YAML file of settings (RL Zoo format or flat), or the name of a shipped preset: "
                            "rl-zoo (RL Baselines3 Zoo's tuned presets in place of qzoo's, qzoo/presets/rl-zoo/), "
                            "course (RL Zoo's Atari DQN at the course's 1M steps, qzoo/presets/named/)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                       help="override one setting; repeatable")
    train.add_argument("--runs-dir", help="parent of run directories (default: runs)")
    train.add_argument("--quiet", action="store_true", help="no progress output")

    ev = sub.add_parser("eval", help="evaluate a trained model from its run directory")
    ev.add_argument("run_dir", help="run directory (or a model .pt file)")
    ev.add_argument("--episodes", type=int, default=10, help="episodes to play (default: 10)")
    ev.add_argument("--epsilon", type=float, help="exploration during evaluation (default: the run's eval_epsilon)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes (default: 0)")
    ev.add_argument("--model", choices=("final", "best"), default="final",
                    help="final model (or latest checkpoint) or best evaluated model (default: final)")
    ev.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_results_commands(sub)
    _add_tune_parser(sub)

    bench = sub.add_parser("bench", help="run a benchmark suite (envs x algos x seeds) and write its results table",
                           description="Run every (env, algo, seed) of a suite in worker processes, skipping finished "
                                       "runs, then write results.csv, summary.csv and results.md. Suites: "
                                       "qzoo/presets/suites.yml (classic, minatar, minatar-paper, atari, atari-check, "
                                       "atari100k), "
                                       "extended by --suite-file.")
    bench.add_argument("suite", help="suite name, e.g. classic or minatar")
    bench.add_argument("--algos", default="dqn",
                       help="comma-separated algos (default: dqn), e.g. dqn,rainbow or drq_eps,der")
    bench.add_argument("--seeds", type=seed_list, default=[0, 1, 2],
                       help="seeds per env and algo: N (0..N-1), A-B (A..B) or a comma list such as 1,3 (one seed: 1,) "
                            "(default: 3)")
    bench.add_argument("--jobs", type=int, default=1, help="worker processes, one run each (default: 1)")
    bench.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run every run as a task on the Ray "
                       "cluster at ADDRESS (the head's HOST:PORT, or auto), or on a local Ray instance without one; "
                       "the bench directory must be on storage every node mounts at the same path; needs "
                       "pip install 'qzoo[ray]' (default: off)")
    bench.add_argument("--peer", choices=("sb3",), help="also train stable-baselines3's DQN on the same settings "
                                                         "(in its own venv, created on first use)")
    bench.add_argument("--envs", help="comma-separated subset of the suite's env ids (default: all)")
    bench.add_argument("--n-timesteps", "-n", type=int, help="override every run's n_timesteps (e.g. a smoke run)")
    bench.add_argument("--suite-file", metavar="FILE", help="YAML file of extra suites (same format as suites.yml)")
    bench.add_argument("--bench-dir", default="bench", help="parent of the suite directories (default: bench)")
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                       help="override one setting of every run; repeatable")
    return parser


def add_results_commands(sub) -> None:
    """plot, record, report, export (qzoo/plotting.py, video.py, report.py, export.py)."""
    from qzoo.plotting import METRICS

    pl = sub.add_parser("plot", help="learning curves of runs (mean and bootstrap CI across seeds), or with --final "
                        "the final scores of Atari runs")
    pl.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or folders of runs (searched at any "
                    "depth); LABEL=PATH groups those runs under LABEL (LABEL:algo where they are of several algos; "
                    "default label: the algo)")
    pl.add_argument("-o", "--output", help="image file: .png, .svg or .pdf (default: curves.png; with --final: "
                    "scores.png)")
    pl.add_argument("--env", help="only runs of this env id")
    pl.add_argument("--metric", "-y", choices=tuple(METRICS), default="eval",
                    help="y axis: eval (evaluation return; Atari: game score), train (training episode return), "
                         "score (Atari training game score), length, loss, q (default: eval)")
    pl.add_argument("--smooth", type=int, default=1, metavar="N", help="moving average over N points (default: 1)")
    pl.add_argument("--ci", type=float, default=0.95, help="confidence level of the bootstrap band (default: 0.95)")
    pl.add_argument("--normalized", action=argparse.BooleanOptionalAction, default=None,
                    help="IQM of human-normalised scores across Atari games with a stratified bootstrap CI "
                         "(default: when the runs span several Atari games)")
    pl.add_argument("--no-reference", action="store_true", help="no published reference scores")
    pl.add_argument("--final", action="store_true",
                    help="final scores instead of curves (Atari runs): per game the human-normalised last evaluation "
                         "of each finished run (bar = mean, dot = seed) with the scores published at the same budget "
                         "(Atari-100k: DER, DrQ(eps)), and per label the IQM with its bootstrap CI")
    rec = sub.add_parser("record", help="MP4 video of a trained agent playing")
    rec.add_argument("run_dir", help="run directory or export folder")
    rec.add_argument("--episodes", type=int, default=1, help="episodes to record (default: 1)")
    rec.add_argument("-o", "--output", help="video file (.mp4; default: RUN_DIR/video.mp4)")
    rec.add_argument("--epsilon", type=float, help="exploration (default: the run's eval_epsilon)")
    rec.add_argument("--seed", type=int, default=0, help="seed of the episodes (default: 0)")
    rec.add_argument("--model", choices=("final", "best"), default="final", help="which model (default: final)")
    rep = sub.add_parser("report", help="self-contained HTML page of a run: curves, evaluations, video, settings")
    rep.add_argument("run_dir", help="run directory")
    rep.add_argument("-o", "--output", help="HTML file (default: RUN_DIR/report.html)")
    rep.add_argument("--video", help="MP4 to embed (default: RUN_DIR/video.mp4, recorded when missing)")
    rep.add_argument("--no-video", action="store_true", help="do not record a video when there is none")
    ex = sub.add_parser("export", help="folder for a model hub: safetensors weights, config, model card, video")
    ex.add_argument("run_dir", help="run directory")
    ex.add_argument("out_dir", help="new (or empty) output folder")
    ex.add_argument("--model", choices=("final", "best"), default="final", help="which model (default: final)")
    ex.add_argument("--episodes", type=int, default=10, help="evaluation episodes for the card (default: 10)")
    ex.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes (default: 0)")
    ex.add_argument("--no-video", action="store_true", help="no replay.mp4")
    ex.add_argument("--repo-id", help="hub repository id (user/name) for the card's usage lines")


def _add_tune_parser(sub) -> None:
    from qzoo.tuning import PRUNERS, SAMPLERS, space_help
    from qzoo.tuning.objectives import OBJECTIVES

    tu = sub.add_parser(
        "tune", help="tune hyperparameters with Optuna (several seeds per trial, parallel workers, shared storage)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run an Optuna study: each trial samples the search space, trains every seed in-process with "
                    "periodic evaluations (reported to the pruner) and scores the final evaluations "
                    "(--objective). Writes "
                    "best_preset.yml (for `qzoo train ENV --preset FILE`), trials.csv, history.png and "
                    "importances.png to TUNES_DIR/ENV/STUDY_NAME/, also on Ctrl-C.",
        epilog=textwrap.fill("search spaces (override or extend them with --space FILE.yml, a mapping such as `name: "
                             "{type: float, low: 1.0e-5, high: 1.0e-2, log: true}`, `name: {type: int, low: 1, high: "
                             "8}`, `name: [choice, ...]`; `name: null` removes one; a name is a setting or a derived "
                             "parameter):", 116) + space_help())
    tu.add_argument("env_id", help="Gymnasium environment id, e.g. CartPole-v1")
    tu.add_argument("--algo", default="dqn", choices=ALGOS, help="algorithm and its search space (default: dqn)")
    tu.add_argument("--n-trials", type=int, default=20, help="trials the study runs to, over all workers; "
                    "complete, pruned and failed trials count (default: 20)")
    tu.add_argument("--seeds", "--seeds-per-trial", type=int, default=1, help="seeds per trial (--seed, --seed + 1, "
                    "...), trained one after another (default: 1)")
    tu.add_argument("--objective", default="mean", help=f"{', '.join(OBJECTIVES)}: the trial's score over its seeds' "
                    "final-model evaluations: their mean, the worst seed, or the mean minus the standard deviation "
                    "(rewards settings that work on every seed) (default: mean)")
    tu.add_argument("--prune-below", type=float, metavar="RETURN", help="with --objective min: stop a trial as soon "
                    "as one seed's final evaluation is below RETURN (recorded as pruned, with the seed and its "
                    "score), so a setting that fails a seed costs no more seeds (default: off)")
    tu.add_argument("--n-timesteps", type=int, help="training steps per seed (default: the preset's n_timesteps)")
    tu.add_argument("--n-evals", type=int, default=5, help="evaluations per seed, the last at the end; each is "
                    "reported to the pruner (default: 5)")
    tu.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (default: 5)")
    tu.add_argument("--sampler", default="tpe", help=f"{', '.join(SAMPLERS)} (default: tpe)")
    tu.add_argument("--pruner", default="median", help=f"{', '.join(PRUNERS)} (successive halving) (default: "
                    "median)")
    tu.add_argument("--startup-trials", type=int, default=5, help="trials sampled at random and never pruned before "
                    "TPE and the median pruner start (default: 5)")
    tu.add_argument("--timeout", type=float, metavar="SECONDS", help="no new trial starts after this time; "
                    "running ones finish (default: none)")
    tu.add_argument("--workers", "--n-jobs", type=int, default=1, help="worker processes on this machine, sharing "
                    "the study (default: 1)")
    tu.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="run the --workers as tasks on the Ray "
                    "cluster at ADDRESS (the head's HOST:PORT, or auto), or on a local Ray instance without one; the "
                    "storage must be reachable from every node (PostgreSQL; the default SQLite file only where all "
                    "nodes share its disk); needs pip install 'qzoo[ray]' (default: off)")
    tu.add_argument("--storage", metavar="URL", help="study storage shared by workers, e.g. postgresql://user:pw@host"
                    "/db (default: sqlite:///TUNES_DIR/ENV/STUDY_NAME/study.db)")
    tu.add_argument("--study-name", help="study to create or join (default: ALGO_DATE-TIME; needed with --storage)")
    tu.add_argument("--heartbeat", type=int, default=60, metavar="SECONDS", help="a running trial's heartbeat "
                    "period; a trial silent for twice this is marked failed and queued again (default: 60)")
    tu.add_argument("--space", metavar="FILE", help="YAML search space overriding / extending the built-in one")
    tu.add_argument("--space-only", action="store_true", help="use the --space file alone")
    tu.add_argument("--preset", metavar="FILE|NAME", help="YAML file of settings the trials start from, or rl-zoo "
                    "(as for qzoo train)")
    tu.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                    help="fix one setting of every trial; repeatable")
    tu.add_argument("--enqueue", action="append", default=[], metavar="NAME=VALUE,...",
                    help="a trial to run before the sampled ones, e.g. learning_rate=1e-3,dueling=true (parameters "
                         "of the search space, values inside it; those left out are sampled); repeatable; a resumed "
                         "study does not queue the same trial twice (default: none)")
    tu.add_argument("--seed", type=int, default=0, help="first training seed (default: 0)")
    tu.add_argument("--sampler-seed", type=int, help="seed of the sampler (worker i: +i) (default: random)")
    tu.add_argument("--tunes-dir", default="tunes", help="parent of study directories (default: tunes)")
