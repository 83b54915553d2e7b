"""The ``qzoo`` command line: parse (``qzoo.cli_parser``), build a config, call a function. Nothing else lives here."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from pathlib import Path

from qzoo import allocator
from qzoo.cli_parser import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_FAILED, EXIT_INTERRUPTED, build_parser, one_line
from qzoo.config import ConfigError
from qzoo.guards import check_args
from qzoo.resolve import parse_set, resolve


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
