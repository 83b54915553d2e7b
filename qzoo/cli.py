"""The ``qzoo`` command line: parse, build a config, call a function. Nothing else lives here."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from qzoo import __version__
from qzoo.config import ALGOS, ConfigError, resolve, settings_help

EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage problem is one line (and exit code 2), not a usage dump."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


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
    train.add_argument("env_id", help="Gymnasium environment id, e.g. CartPole-v1")
    train.add_argument("--algo", default="dqn", choices=ALGOS,
                       help="dqn (deep Q-network) or qlearning (a Q-table, for Discrete observations such as "
                            "FrozenLake-v1; default: dqn)")
    train.add_argument("--seed", type=int, help="random seed (default: 0)")
    train.add_argument("--total-timesteps", "-n", type=int, dest="n_timesteps",
                       help="environment steps to train for (default: the preset's n_timesteps)")
    train.add_argument("--n-envs", type=int, help="environments stepped in parallel (default: 1)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    train.add_argument("--preset", metavar="FILE", help="YAML file of settings (RL Zoo format or flat)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                       help="override one setting; repeatable")
    train.add_argument("--runs-dir", default="runs", help="parent of run directories (default: runs)")
    train.add_argument("--quiet", action="store_true", help="no progress output")

    ev = sub.add_parser("eval", help="evaluate a trained model from its run directory")
    ev.add_argument("run_dir", help="run directory (or a model .pt file)")
    ev.add_argument("--episodes", type=int, default=10, help="episodes to play (default: 10)")
    ev.add_argument("--epsilon", type=float, help="exploration during evaluation (default: the run's eval_epsilon)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes (default: 0)")
    ev.add_argument("--model", choices=("final", "best"), default="final",
                    help="final model (or latest checkpoint) or best evaluated model (default: final)")
    ev.add_argument("--device", default="cpu", help="torch device (default: cpu)")

    bench = sub.add_parser("bench", help="run a benchmark suite (envs x algos x seeds) and write its results table",
                           description="Run every (env, algo, seed) of a suite in worker processes, skipping finished "
                                       "runs, then write results.csv, summary.csv and results.md. Suites: "
                                       "qzoo/presets/suites.yml (classic, minatar, minatar-paper, atari), "
                                       "extended by --suite-file.")
    bench.add_argument("suite", help="suite name, e.g. classic or minatar")
    bench.add_argument("--algos", default="dqn", help="comma-separated algos (default: dqn), e.g. dqn,rainbow")
    bench.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per env and algo (default: 3)")
    bench.add_argument("--jobs", type=int, default=1, help="worker processes, one run each (default: 1)")
    bench.add_argument("--peer", choices=("sb3",), help="also train stable-baselines3's DQN on the same settings "
                                                         "(in its own venv, created on first use)")
    bench.add_argument("--envs", help="comma-separated subset of the suite's env ids (default: all)")
    bench.add_argument("--n-timesteps", "-n", type=int, help="override every run's n_timesteps (e.g. a smoke run)")
    bench.add_argument("--suite-file", metavar="FILE", help="YAML file of extra suites (same format as suites.yml)")
    bench.add_argument("--bench-dir", default="bench", help="parent of the suite directories (default: bench)")
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                       help="override one setting of every run; repeatable")
    return parser


def cmd_train(args) -> int:
    from qzoo import checkpoint as ckpt
    from qzoo.envs import check_env
    from qzoo.tabular import train_tabular
    from qzoo.trainer import TrainingDiverged, train

    flags = {"seed": args.seed, "n_timesteps": args.n_timesteps, "n_envs": args.n_envs, "device": args.device}
    sets = list(args.sets) + (["progress_bar=false"] if args.quiet else [])
    config = resolve(args.env_id, args.algo, args.preset, flags, sets)
    check_env(config)  # refuse a bad env id / space before creating anything on disk
    run_dir = ckpt.new_run_dir(args.runs_dir, config)
    out = None if args.quiet else sys.stderr
    print(f"qzoo: training {config.algo} on {config.env_id} for {config.n_timesteps} steps -> {run_dir}",
          file=sys.stderr)
    command = "qzoo " + shlex.join(sys.argv[1:])
    run = train_tabular if config.is_tabular else train  # the one place a training loop is picked by algo
    try:
        result = run(config, run_dir, command=command, out=out)
    except TrainingDiverged as e:
        print(f"qzoo: training stopped: {e}; the last checkpoint in {run_dir}/checkpoints is kept", file=sys.stderr)
        return EXIT_DIVERGED
    if result.interrupted:
        print(f"qzoo: interrupted at step {result.steps}; logs and a checkpoint are in {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"final evaluation: {result.final_eval.summary()}")
    print(f"run directory:    {run_dir}")
    print("  " + " ".join(sorted(p.name + "/" * p.is_dir() for p in run_dir.iterdir())))
    print(f"evaluate:         qzoo eval {run_dir}")
    print(f"tensorboard:      tensorboard --logdir {run_dir / 'tensorboard'}")
    return 0


def cmd_eval(args) -> int:
    from qzoo.envs import make_env
    from qzoo.envs.atari import atari_game, is_atari_id
    from qzoo.evaluation import evaluate, human_normalized
    from qzoo.policy import load_policy

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
        raise ConfigError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    agent, config, path = load_policy(Path(args.run_dir), args.model, args.device)
    epsilon = config.eval_epsilon if args.epsilon is None else args.epsilon
    env = make_env(config.env_id, config.env_kwargs, one_hot=not config.is_tabular, config=config)()
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


def cmd_bench(args) -> int:
    from qzoo.bench import load_suites, plan, run_suite

    if args.seeds < 1 or args.jobs < 1 or (args.n_timesteps is not None and args.n_timesteps < 1):
        raise ConfigError("--seeds, --jobs and --n-timesteps must be >= 1")
    suites = load_suites(args.suite_file)
    if args.suite not in suites:
        raise ConfigError(f"unknown suite '{args.suite}'; allowed: {', '.join(suites)} (or define it in --suite-file)")
    bench_dir = Path(args.bench_dir)
    jobs = plan(suites[args.suite], [a.strip() for a in args.algos.split(",") if a.strip()], list(range(args.seeds)),
                bench_dir, peer=args.peer, n_timesteps=args.n_timesteps, sets=args.sets,
                envs=args.envs.split(",") if args.envs else None)
    result = run_suite(suites[args.suite], jobs, bench_dir, args.jobs)
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
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM takes the same clean path as Ctrl-C
    try:
        return {"train": cmd_train, "eval": cmd_eval, "bench": cmd_bench}[args.command](args)
    except ConfigError as e:
        print(f"qzoo {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("qzoo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
