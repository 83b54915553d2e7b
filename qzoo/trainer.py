"""The training loop, readable top to bottom.

    obs -> agent.act -> env.step -> replay.add -> (every train_freq) replay.sample -> agent.update
        -> (every target_update_interval) sync target -> log -> evaluate -> checkpoint

Step counting follows Stable-Baselines3 so RL Zoo hyperparameters mean the same thing here: ``step`` counts
environment transitions (all envs together); ``train_freq`` counts vector-env steps; ``target_update_interval``,
``log_interval``, ``eval_freq`` and ``checkpoint_freq`` count transitions; learning starts once
``step > learning_starts``, and before that actions are uniformly random.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qzoo import checkpoint as ckpt
from qzoo.agent import build_agent, resolve_device
from qzoo.config import Config
from qzoo.envs import check_env, finished_episodes, finished_games, make_env, make_vec_env, true_next_obs
from qzoo.evaluation import EvalResult, evaluate
from qzoo.logger import CSVWriter, Logger, TensorBoardWriter
from qzoo.replay import make_replay
from qzoo.schedules import LinearSchedule, epsilon_schedule

# return_*: episodes as the agent learns from them (for Atari: one life, clipped rewards); game_score_mean: the raw
# score of recent whole games (Atari only, empty otherwise).
PROGRESS_COLUMNS = ["step", "episodes", "return_mean", "return_last", "game_score_mean", "length_mean", "q_mean",
                    "loss", "epsilon", "updates", "steps_per_s", "time_s"]
EVAL_COLUMNS = ["step", "return_mean", "return_std", "length_mean", "episodes", "time_s"]


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class RunResult:
    run_dir: Path | None
    steps: int
    episodes: int
    final_eval: EvalResult | None
    best_eval_mean: float
    seconds: float  # whole call, including the final evaluation
    loop_seconds: float  # the training loop alone (what steps/s figures are computed from)
    interrupted: bool = False
    agent: object = None
    timing: dict | None = None  # seconds in env stepping / acting / sampling / updating


def crossed(step: int, advanced: int, interval: int) -> bool:
    """True when the step counter passed a multiple of ``interval`` while advancing by ``advanced``."""
    return interval > 0 and step // interval > (step - advanced) // interval


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(config: Config, run_dir: Path | None = None, *, command: str = "",
          on_eval: Callable[[int, EvalResult], None] | None = None, out=sys.stderr) -> RunResult:
    """Train ``config``; write everything to ``run_dir`` (None: write nothing, e.g. for tuning trials).

    ``on_eval(step, result)`` is called after each periodic evaluation; it may raise to stop the run
    (tuning uses this to prune)."""
    env_info = check_env(config)
    seed_everything(config.seed)
    if config.torch_threads or config.resolved_network(env_info.observation_space.shape) in ("mlp", "minatar"):
        torch.set_num_threads(config.torch_threads or 1)
    # Adam's second-moment estimates of small networks drift into denormal floats, which x86 CPUs process
    # ~5x slower; flushing them to zero changes no result that matters and keeps updates fast.
    torch.set_flush_denormal(True)
    device = resolve_device(config.device)

    envs = make_vec_env(config)
    eval_env = make_env(config.env_id, config.env_kwargs, config=config)()  # Atari: whole games, raw score
    envs.action_space.seed(config.seed)
    agent = build_agent(config, env_info.observation_space, env_info.n_actions, device)
    replay = make_replay(config, env_info.observation_space)
    epsilon_at = epsilon_schedule(config.exploration_initial_eps, config.exploration_final_eps,
                                  config.exploration_fraction, config.n_timesteps)
    if config.noisy:
        epsilon_at = LinearSchedule(0.0, 0.0, 0)
    rng = np.random.default_rng(config.seed)
    obs_shape = env_info.observation_space.shape

    logger, eval_log, bar = open_outputs(config, run_dir, command, out)
    progress = ProgressLog(config, logger, bar, out)
    best_eval, final_eval, interrupted = -math.inf, None, False
    checkpoint_freq = config.checkpoint_freq or max(config.n_timesteps // 10, 1)
    n_envs = config.n_envs
    timing = dict.fromkeys(("env", "act", "sample", "update"), 0.0)  # seconds spent in each part of the loop
    start = progress.start
    step = vec_steps = 0

    def run_evaluation() -> EvalResult:
        with agent.evaluating():  # noisy layers use their mean weights
            return evaluate(agent, eval_env, config.eval_episodes, config.eval_epsilon, config.seed + 10_000)

    def save_checkpoint() -> None:
        if run_dir is not None:
            payload = ckpt.checkpoint_payload(config, agent, step, obs_shape, {"episodes": progress.episodes})
            ckpt.save_checkpoint(run_dir, payload, config.keep_checkpoints)

    obs, _ = envs.reset(seed=config.seed)
    try:
        while step < config.n_timesteps:
            # ---- act -------------------------------------------------------------------------------------
            t0 = time.perf_counter()
            epsilon = epsilon_at(step)
            if step < config.learning_starts:
                action = rng.integers(0, env_info.n_actions, n_envs)
            else:  # (noisy nets explore through their weights: epsilon is 0 for them)
                action = agent.act(obs, epsilon, rng)
            t1 = time.perf_counter()
            next_obs, reward, terminated, truncated, infos = envs.step(action)
            t2 = time.perf_counter()
            timing["act"] += t1 - t0
            timing["env"] += t2 - t1

            # ---- store (s, a, r, s', terminated): s' is the true last observation when an episode ended;
            # only `terminated` cuts the bootstrap, a time-limit truncation does not ----------------------
            replay.add(obs, action, reward, true_next_obs(next_obs, infos), terminated, truncated)
            obs = next_obs
            step += n_envs
            vec_steps += 1
            for _, ep_return, ep_length in finished_episodes(infos):
                progress.episode(ep_return, ep_length)
            progress.scores.extend(finished_games(infos))  # whole-game raw scores (Atari)

            # ---- learn -----------------------------------------------------------------------------------
            if step > config.learning_starts and vec_steps % config.train_freq == 0:
                for _ in range(config.updates_per_phase):
                    t0 = time.perf_counter()
                    batch = replay.sample(config.batch_size, step)
                    t1 = time.perf_counter()
                    replay.update_priorities(batch.indices, agent.update(batch))
                    timing["sample"] += t1 - t0
                    timing["update"] += time.perf_counter() - t1
            if crossed(step, n_envs, config.target_update_interval):
                agent.sync_target(config.tau)

            # ---- log, evaluate, checkpoint ---------------------------------------------------------------
            if bar is not None:
                bar.update(n_envs)
            if crossed(step, n_envs, config.log_interval) or step >= config.n_timesteps:
                metrics = agent.pop_metrics()
                if metrics["interval_updates"] and not all(map(math.isfinite, (metrics["loss"], metrics["q_mean"]))):
                    raise TrainingDiverged(f"loss or Q-value became non-finite at step {step} "
                                           f"(loss {metrics['loss']}, mean Q {metrics['q_mean']}); "
                                           "try a lower learning_rate or max_grad_norm")
                progress.dump(step, metrics, epsilon, agent.updates)

            if crossed(step, n_envs, config.eval_freq) and step < config.n_timesteps:
                result = run_evaluation()
                best_eval = record_eval(eval_log, run_dir, config, agent, step, obs_shape, result, best_eval,
                                         start)
                if on_eval is not None:
                    on_eval(step, result)
            if crossed(step, n_envs, checkpoint_freq):
                save_checkpoint()
    except KeyboardInterrupt:
        interrupted = True
        save_checkpoint()
    finally:
        loop_seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        envs.close()

    if not interrupted:
        final_eval = run_evaluation()
        best_eval = record_eval(eval_log, run_dir, config, agent, step, obs_shape, final_eval, best_eval, start)
        if run_dir is not None:
            ckpt.save(run_dir / ckpt.MODEL_FILE, ckpt.model_payload(config, agent, step, obs_shape))
    eval_env.close()
    logger.close()
    eval_log.close()
    return RunResult(run_dir, step, progress.episodes, final_eval, best_eval, time.perf_counter() - start,
                     loop_seconds, interrupted, agent, timing)


# ---- helpers (shared with qzoo.tabular) ---------------------------------------------------------------------
def mean_or_nan(values) -> float:
    return float(np.mean(values)) if values else float("nan")


class ProgressLog:
    """Recent-episode statistics and the progress.csv row (with the live display), for every training loop."""

    def __init__(self, config: Config, logger: Logger, bar, out):
        self.logger, self.bar, self.out, self.total = logger, bar, out, config.n_timesteps
        self.returns, self.lengths = deque(maxlen=config.stats_window), deque(maxlen=config.stats_window)
        self.scores = deque(maxlen=config.stats_window)  # whole-game raw scores (Atari), fed by the loop
        self.episodes, self.last_return = 0, float("nan")
        self.start = self._last_time = time.perf_counter()
        self._last_step = 0

    def episode(self, episode_return: float, length: int) -> None:
        self.episodes += 1
        self.last_return = episode_return
        self.returns.append(episode_return)
        self.lengths.append(length)

    def dump(self, step: int, metrics: dict, epsilon: float, updates: int) -> dict:
        now = time.perf_counter()
        row = {"episodes": self.episodes, "return_mean": mean_or_nan(self.returns), "return_last": self.last_return,
               "game_score_mean": mean_or_nan(self.scores), "length_mean": mean_or_nan(self.lengths),
               "q_mean": metrics["q_mean"], "loss": metrics["loss"], "epsilon": epsilon, "updates": updates,
               "steps_per_s": (step - self._last_step) / max(now - self._last_time, 1e-9), "time_s": now - self.start}
        for key, value in row.items():
            self.logger.record(key, value)
        self.logger.dump(step)
        show_progress(self.bar, self.out, row, step, step - self._last_step, self.total)
        self._last_step, self._last_time = step, now
        return row


def open_outputs(config: Config, run_dir: Path | None, command: str, out):
    writers, eval_writers = [], []
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_config(run_dir, config)
        (run_dir / "command.txt").write_text(command + "\n")
        writers.append(CSVWriter(run_dir / "progress.csv", PROGRESS_COLUMNS))
        eval_writers.append(CSVWriter(run_dir / "evaluations.csv", EVAL_COLUMNS))
        if config.tensorboard:
            tb = TensorBoardWriter(run_dir / "tensorboard", "train")
            writers.append(tb)
            eval_writers.append(_Prefixed(tb, "eval"))
    bar = None
    if config.progress_bar and out is not None and getattr(out, "isatty", lambda: False)():
        from tqdm import tqdm

        bar = tqdm(total=config.n_timesteps, unit="step", dynamic_ncols=True, file=out, smoothing=0.1)
    return Logger(writers), Logger(eval_writers), bar


class _Prefixed:
    """Reuse one TensorBoard writer under another tag prefix (so both logs land in one event file)."""

    def __init__(self, tb: TensorBoardWriter, prefix: str):
        self.tb, self.prefix = tb, prefix

    def write(self, values: dict, step: int) -> None:
        prefix, self.tb.prefix = self.tb.prefix, self.prefix
        self.tb.write(values, step)
        self.tb.prefix = prefix

    def close(self) -> None:
        pass


def record_eval(eval_log: Logger, run_dir, config, agent, step, obs_shape, result: EvalResult, best: float,
                 start: float) -> float:
    for key, value in {"return_mean": result.mean, "return_std": result.std,
                       "length_mean": float(np.mean(result.lengths)), "episodes": len(result.returns),
                       "time_s": time.perf_counter() - start}.items():
        eval_log.record(key, value)
    eval_log.dump(step)
    if result.mean > best and run_dir is not None:
        ckpt.save(run_dir / ckpt.BEST_FILE, ckpt.model_payload(config, agent, step, obs_shape))
    return max(best, result.mean)


def show_progress(bar, out, row: dict, step: int, advanced: int, total: int) -> None:
    """Live postfix on the progress bar; without a terminal, one plain line per 10% of training."""
    score = row.get("game_score_mean", math.nan)
    text = (f"return {row['return_mean']:.2f}  " + (f"game score {score:.1f}  " if math.isfinite(score) else "")
            + f"eps {row['epsilon']:.3f}  loss {row['loss']:.4g}  {row['steps_per_s']:.0f} steps/s")
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
    elif out is not None and (crossed(step, advanced, max(total // 10, 1)) or step >= total):
        print(f"step {step}/{total}  episodes {row['episodes']}  {text}", file=out, flush=True)
