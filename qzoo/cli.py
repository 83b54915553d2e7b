"""The ``qzoo`` command line: parse, build a config, call a function. Nothing else lives here."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import textwrap
from pathlib import Path

from qzoo import __version__, allocator
from qzoo.config import ALGOS, ConfigError, settings_help
from qzoo.guards import check_args, seed_list
from qzoo.resolve import parse_set, resolve

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


def cmd_train(args) -> int:
    with contextlib.ExitStack() as held:  # holds the run directory's lock for the whole run
        config, run_dir, resume = prepare_train(args, held)
        return train_and_report(args, config, run_dir, resume)


def prepare_train(args, held: contextlib.ExitStack):
    """(config, run_dir, resume) of ``qzoo train``, with the run directory locked in ``held``; every refusal is a
    ConfigError raised before anything in the run directory changes."""
    from qzoo import checkpoint as ckpt
    from qzoo.envs import check_env

    sets = list(args.sets) + (["progress_bar=false"] if args.quiet else [])
    if args.resume is not None:  # refuse anything wrong before touching the run directory
        given = [flag for flag, value in (("ENV_ID", args.env_id), ("--algo", args.algo), ("--seed", args.seed),
                                          ("--n-envs", args.n_envs), ("--preset", args.preset),
                                          ("--runs-dir", args.runs_dir)) if value is not None]
        if given:
            raise ConfigError(f"--resume continues a run with its own settings; {given[0]} cannot be given with it")
        changes = parse_set(sets) | ({"device": args.device} if args.device else {})
        run_dir = Path(args.resume)
        if run_dir.is_dir():  # one process per run directory (a missing one is refused by prepare_resume)
            held.enter_context(ckpt.run_dir_lock(run_dir))
        config, resume = ckpt.prepare_resume(run_dir, args.n_timesteps, changes)
        doing = "finishing (final evaluation)" if resume.step >= config.n_timesteps else "resuming"
        print(f"qzoo: {doing} {config.algo} on {config.env_id} at step {resume.step} of {config.n_timesteps} -> "
              f"{run_dir}", file=sys.stderr)
        return config, run_dir, resume
    if args.env_id is None:
        raise ConfigError("give an environment id (e.g. CartPole-v1), or --resume RUN_DIR")
    flags = {"seed": args.seed, "n_timesteps": args.n_timesteps, "n_envs": args.n_envs, "device": args.device}
    config = resolve(args.env_id, args.algo or "dqn", args.preset, flags, sets)
    check_env(config)  # refuse a bad env id / space before creating anything on disk
    run_dir = ckpt.new_run_dir(args.runs_dir or "runs", config)
    held.enter_context(ckpt.run_dir_lock(run_dir))
    print(f"qzoo: training {config.algo} on {config.env_id} for {config.n_timesteps} steps -> {run_dir}",
          file=sys.stderr)
    return config, run_dir, None


def train_and_report(args, config, run_dir: Path, resume) -> int:
    """Run the training loop and print where everything is (or why it stopped); the exit code."""
    from qzoo import checkpoint as ckpt
    from qzoo.tabular import train_tabular
    from qzoo.trainer import TrainingDiverged, train

    out = None if args.quiet else sys.stderr
    command = "qzoo " + shlex.join(args.argv)
    run = train_tabular if config.is_tabular else train  # the one place a training loop is picked by algo
    try:
        result = run(config, run_dir, command=command, out=out, **({"resume": resume} if resume else {}))
    except TrainingDiverged as e:
        kept = ckpt.checkpoint_files(run_dir)
        print(f"qzoo: training stopped: {e}; " + (f"the last good checkpoint, checkpoints/{kept[-1].name}, is kept"
                                                  if kept else "no checkpoint had been written yet"), file=sys.stderr)
        return EXIT_DIVERGED
    except ckpt.CheckpointError as e:
        print(f"qzoo: training stopped: {e}", file=sys.stderr)
        return EXIT_FAILED
    if result.interrupted:
        where = f"checkpoint {result.checkpoint.name} and logs are" if result.checkpoint else "logs are"
        print(f"qzoo: interrupted at step {result.steps}; the {where} in {run_dir}", file=sys.stderr)
        if result.checkpoint is not None:
            print(f"qzoo: resume with: qzoo train --resume {shlex.quote(str(run_dir))}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"final evaluation: {result.final_eval.summary()}")
    print(f"                  {score_meaning(config, result.final_eval.mean)}")
    if (line := best_evaluation_line(result, config.is_tabular)) is not None:
        print(line)
    print(f"run directory:    {run_dir}")
    print("  " + " ".join(sorted(p.name + "/" * p.is_dir() for p in run_dir.iterdir())))
    where = shlex.quote(str(run_dir))
    print(f"watch it play:    qzoo record {where}   (writes {run_dir / 'video.mp4'})")
    print(f"one-page report:  qzoo report {where}   (curves, evaluations and that video: "
          f"{run_dir / 'report.html'})")
    print(f"evaluate again:   qzoo eval {where}")
    print(f"tensorboard:      tensorboard --logdir {run_dir / 'tensorboard'}")
    return 0


def score_meaning(config, mean_return: float) -> str:
    """What the final evaluation's number means, for someone who has never trained an agent."""
    from qzoo.bench.tables import load_anchors

    what = (f"(the average total reward of {config.eval_episodes} episodes played by the final model, always "
            "taking its best-rated action")
    threshold = (load_anchors().get(config.env_id) or {}).get("threshold")
    if threshold is None:
        return what + ")"
    verdict = "solved" if mean_return >= threshold else "not solved"
    return what + f"; {config.env_id} counts as solved at {threshold:g} or more: {verdict})"


def best_evaluation_line(result, tabular: bool) -> str | None:
    """Where the best model is, when an earlier evaluation beat the final one (a DQN run may fall back at the end)."""
    if not result.best_eval_mean > result.final_eval.mean:
        return None
    from qzoo.checkpoint import BEST_FILE
    from qzoo.tabular import BEST_QTABLE_FILE

    return (f"best evaluation:  return {result.best_eval_mean:.2f}, earlier in training "
            f"({BEST_QTABLE_FILE if tabular else BEST_FILE}; qzoo eval {result.run_dir} --model best)")


def cmd_eval(args) -> int:
    from qzoo.env_ids import atari_game, is_atari_id
    from qzoo.envs import make_eval_env
    from qzoo.evaluation import evaluate, human_normalized
    from qzoo.policy import load_policy

    agent, config, path = load_policy(Path(args.run_dir), args.model, args.device)
    epsilon = config.eval_epsilon if args.epsilon is None else args.epsilon
    env = make_eval_env(config)
    result = evaluate(agent, env, args.episodes, epsilon, args.seed)
    env.close()
    print(f"{config.env_id}  {path}  epsilon {epsilon}  seed {args.seed}")
    print(f"return {result.mean:.2f} ± {result.std:.2f}   length {result.lengths.mean():.1f} "
          f"± {result.lengths.std():.1f}   ({args.episodes} episodes)")
    if is_atari_id(config.env_id):  # the return of a whole game with its own rewards is the game score
        game = atari_game(config.env_id)
        normalized = human_normalized(game, result.mean)
        hns = "" if normalized is None else f"   human-normalised {normalized:.1%} (random 0%, human 100%)"
        print(f"game score {result.mean:.1f} ± {result.std:.1f} ({game}, whole games, unclipped){hns}")
    return 0


def cmd_plot(args) -> int:
    from qzoo.plotting import plot

    if args.smooth < 1 or not 0 < args.ci < 1:
        raise ConfigError(f"--smooth must be >= 1 and --ci in (0, 1), got {args.smooth} and {args.ci}")
    if args.final:
        return cmd_plot_final(args)
    path, curves = plot(args.runs, args.output or "curves.png", env_id=args.env, metric=args.metric,
                        window=args.smooth, references=not args.no_reference, normalized=args.normalized,
                        interval=args.ci)
    for c in curves:
        print(f"{c.env_id}  {c.label}: {c.n_runs} run(s), last step {int(c.steps[-1])}: {c.mean[-1]:.3g} "
              f"[{c.low[-1]:.3g}, {c.high[-1]:.3g}]")
    print(f"plot: {path}")
    return 0


def cmd_plot_final(args) -> int:
    from qzoo.bench.figures import plot_final
    from qzoo.bench.tables import ci_text, human_normalized_score

    given = [flag for flag, on in (("--metric", args.metric != "eval"), ("--smooth", args.smooth != 1),
                                   ("--normalized", args.normalized is not None)) if on]
    if given:
        raise ConfigError(f"{', '.join(given)} cannot go with --final (it draws each run's final evaluation score, "
                          "human-normalised); allowed with --final: --env, --ci, --no-reference, -o")
    path, rows, left_out, aggregate = plot_final(args.runs, args.output or "scores.png", env_id=args.env,
                                                 references=not args.no_reference, interval=args.ci)
    for r in rows:
        finals = ", ".join(f"{f:.1f}" for f in r["finals"])
        hns = ", ".join(f"{human_normalized_score(r['env'], f):.3f}" for f in r["finals"])
        print(f"{r['env']}  {r['algo']}: {len(r['finals'])} run(s) at {r['n_timesteps']:,} steps: {finals} "
              f"(human-normalised {hns})")
    for a in aggregate:
        published = "".join(f"; {key} published {p['iqm']:.3f}" for key, p in a["anchors"].items())
        print(f"IQM {a['algo']} over {a['games']} game(s) x {a['runs_per_game']} run(s): {a['iqm']:.3f} "
              f"{ci_text(a)}{published}")
    for run in left_out:
        print(f"left out (no final evaluation yet): {run.path}")
    print(f"plot: {path}")
    return 0


def cmd_record(args) -> int:
    from qzoo.video import record_run

    rec = record_run(args.run_dir, args.output, episodes=args.episodes, which=args.model, epsilon=args.epsilon,
                     seed=args.seed)
    print(f"{rec.path}: {rec.frames} frames {rec.width}x{rec.height} at {rec.fps:g} fps; returns "
          + ", ".join(f"{r:g}" for r in rec.result.returns))
    return 0


def cmd_report(args) -> int:
    from qzoo.report import build_report

    print(f"report: {build_report(args.run_dir, args.output, video=args.video, record_video=not args.no_video)}")
    return 0


def cmd_export(args) -> int:
    from qzoo.export import export_run

    results = export_run(args.run_dir, args.out_dir, which=args.model, episodes=args.episodes, seed=args.seed,
                         video=not args.no_video, repo_id=args.repo_id)
    ev = results["evaluation"]
    print(f"exported to {args.out_dir}: return {ev['mean_return']:.2f} ± {ev['std_return']:.2f} "
          f"({ev['episodes']} episodes); check with: qzoo eval {args.out_dir}")
    return 0


def cmd_tune(args) -> int:
    from qzoo.tuning import TuneOptions, tune

    options = TuneOptions(**{k: v for k, v in vars(args).items() if k not in ("command", "argv")})
    with contextlib.ExitStack() as held:
        if options.ray is not None:  # connected before the study is created or joined
            from qzoo.scaleout import connect

            held.enter_context(connect(options.ray))
        result = tune(options)
    if result.best_value is not None:
        params = " ".join(f"{k}={v}" for k, v in result.best_params.items())
        print(f"best score:    {result.best_value:.2f}  ({params})")
    print(f"study:         {result.study_name} in {result.storage}")
    print(f"outputs:       {result.study_dir}: " + " ".join(p.name for p in result.files))
    if (result.study_dir / "best_preset.yml").exists():
        print(f"train with:    qzoo train {args.env_id} --algo {args.algo} --preset {result.study_dir}/best_preset.yml")
    return EXIT_INTERRUPTED if result.interrupted else 0


def cmd_bench(args) -> int:
    from qzoo.bench import load_suites, plan, run_suite

    if args.jobs < 1 or (args.n_timesteps is not None and args.n_timesteps < 1):
        raise ConfigError("--jobs and --n-timesteps must be >= 1")
    suites = load_suites(args.suite_file)
    if args.suite not in suites:
        raise ConfigError(f"unknown suite '{args.suite}'; allowed: {', '.join(suites)} (or define it in --suite-file)")
    bench_dir = Path(args.bench_dir)
    jobs = plan(suites[args.suite], [a.strip() for a in args.algos.split(",") if a.strip()], args.seeds,
                bench_dir, peer=args.peer, n_timesteps=args.n_timesteps, sets=args.sets,
                envs=args.envs.split(",") if args.envs else None)
    with contextlib.ExitStack() as held:
        executor = None
        if args.ray is not None:  # connected, and runs bigger than any node refused, before anything is written
            if args.jobs != 1:
                raise ConfigError("--jobs sets the local worker processes; with --ray the cluster's CPUs set how many "
                                  "runs go at once (leave out --jobs)")
            from qzoo.bench.ray_runner import RayCluster

            executor = held.enter_context(RayCluster(args.ray, jobs))
        result = run_suite(suites[args.suite], jobs, bench_dir, args.jobs, executor=executor)
    print((result.suite_dir / "results.md").read_text())
    print(f"results: {result.suite_dir / 'results.md'}, results.csv, summary.csv  ({result.ran} run, "
          f"{result.skipped} already finished)")
    if result.interrupted:
        print("qzoo: interrupted; rerun the same command to finish the remaining runs", file=sys.stderr)
        return EXIT_INTERRUPTED
    for line in result.failed:
        print(f"qzoo bench: failed: {line}", file=sys.stderr)
    return 1 if result.failed else 0


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] and sys.argv[1] in ("train", "tune", "bench"):
        allocator.restart_with_jemalloc(sys.argv[1:])  # training processes: jemalloc when found (qzoo/allocator.py)
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # for command.txt
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM takes the same clean path as Ctrl-C
    try:
        check_args(args)  # devices, seeds, output folders, input files: once, before any command runs
        commands = {"train": cmd_train, "eval": cmd_eval, "plot": cmd_plot, "record": cmd_record, "report": cmd_report,
                    "export": cmd_export, "tune": cmd_tune,
                    "bench": cmd_bench}
        return commands[args.command](args)
    except ConfigError as e:
        print(one_line(f"qzoo {args.command}: error: {e}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("qzoo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
