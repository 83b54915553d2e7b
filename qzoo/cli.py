"""The ``qzoo`` command line: parse, build a config, call a function. Nothing else lives here."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from qzoo import __version__
from qzoo.config import ALGOS, ConfigError, parse_set, resolve, settings_help

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


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
    train.add_argument("env_id", nargs="?", help="Gymnasium environment id, e.g. CartPole-v1")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its latest intact checkpoint, with its own settings "
                            "(only --total-timesteps, --device, --quiet and --set for device, torch_threads, "
                            "progress_bar, keep_checkpoints, checkpoint_freq, save_replay may be given)")
    train.add_argument("--algo", choices=ALGOS,
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
    return parser


def cmd_train(args) -> int:
    from qzoo import checkpoint as ckpt
    from qzoo.envs import check_env
    from qzoo.tabular import train_tabular
    from qzoo.trainer import TrainingDiverged, train

    sets = list(args.sets) + (["progress_bar=false"] if args.quiet else [])
    resume = None
    if args.resume is not None:  # refuse anything wrong before touching the run directory
        given = [flag for flag, value in (("ENV_ID", args.env_id), ("--algo", args.algo), ("--seed", args.seed),
                                          ("--n-envs", args.n_envs), ("--preset", args.preset),
                                          ("--runs-dir", args.runs_dir)) if value is not None]
        if given:
            raise ConfigError(f"--resume continues a run with its own settings; {given[0]} cannot be given with it")
        changes = parse_set(sets) | ({"device": args.device} if args.device else {})
        run_dir = Path(args.resume)
        config, resume = ckpt.prepare_resume(run_dir, args.n_timesteps, changes)
        print(f"qzoo: resuming {config.algo} on {config.env_id} at step {resume.step} of {config.n_timesteps} -> "
              f"{run_dir}", file=sys.stderr)
    else:
        if args.env_id is None:
            raise ConfigError("give an environment id (e.g. CartPole-v1), or --resume RUN_DIR")
        flags = {"seed": args.seed, "n_timesteps": args.n_timesteps, "n_envs": args.n_envs, "device": args.device}
        config = resolve(args.env_id, args.algo or "dqn", args.preset, flags, sets)
        check_env(config)  # refuse a bad env id / space before creating anything on disk
        run_dir = ckpt.new_run_dir(args.runs_dir or "runs", config)
        print(f"qzoo: training {config.algo} on {config.env_id} for {config.n_timesteps} steps -> {run_dir}",
              file=sys.stderr)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # for command.txt
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM takes the same clean path as Ctrl-C
    try:
        return {"train": cmd_train, "eval": cmd_eval}[args.command](args)
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
