"""The training loop, readable top to bottom.

    obs -> agent.act -> env.step -> replay.add -> (every train_freq) agent.learn: replay.sample -> agent.update
        -> (every target_update_interval) sync target -> log -> evaluate -> checkpoint

Step counting follows Stable-Baselines3 so RL Zoo hyperparameters mean the same thing here: ``step`` counts
environment transitions (all envs together); ``train_freq`` counts vector-env steps; ``target_update_interval``,
``log_interval``, ``eval_freq`` and ``checkpoint_freq`` count transitions; learning starts once
``step > learning_starts``, and before that actions are uniformly random.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
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
from qzoo.networks import bf16_warning
from qzoo.replay import make_replay
from qzoo.schedules import LinearSchedule, epsilon_schedule, learning_rate_schedule
from qzoo.video import capture_training

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
    checkpoint: Path | None = None  # the last checkpoint written


def crossed(step: int, advanced: int, interval: int) -> bool:
    """True when the step counter passed a multiple of ``interval`` while advancing by ``advanced``."""
    return interval > 0 and step // interval > (step - advanced) // interval


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(config: Config, run_dir: Path | None = None, *, command: str = "",
          on_eval: Callable[[int, EvalResult], None] | None = None, out=sys.stderr,
          resume: ckpt.Resume | None = None) -> RunResult:
    """Train ``config``; write everything to ``run_dir`` (None: write nothing, e.g. for tuning trials).

    ``on_eval(step, result)`` is called after each periodic evaluation; it may raise to stop the run
    (tuning uses this to prune). ``resume`` (from :func:`qzoo.checkpoint.find_resumable`) continues the run in
    ``run_dir`` from that checkpoint.

    SIGINT / SIGTERM (Ctrl-C, a scheduler's pre-emption) finish the current step, write a checkpoint and return
    with ``interrupted``; a second signal stops at once, keeping the last checkpoint written."""
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
    if (warning := bf16_warning(config, device, env_info.observation_space.shape)) is not None:
        print(warning, file=out or sys.stderr, flush=True)
    replay = make_replay(config, env_info.observation_space)
    epsilon_at = epsilon_schedule(config.exploration_initial_eps, config.exploration_final_eps,
                                  config.exploration_fraction, config.schedule_horizon)
    if config.noisy:
        epsilon_at = LinearSchedule(0.0, 0.0, 0)
    learning_rate_at = learning_rate_schedule(config.learning_rate_schedule, config.learning_rate,
                                              config.schedule_horizon)
    rng = np.random.default_rng(config.seed)
    obs_shape = env_info.observation_space.shape

    logger, eval_log, bar = open_outputs(config, run_dir, command, out, resume.step if resume else None)
    progress = ProgressLog(config, logger, bar, out)
    checkpointer = ckpt.Checkpointer(run_dir, config, obs_shape, env_info.n_actions, out) if run_dir else None
    best_eval, final_eval, interrupted = -math.inf, None, False
    checkpoint_freq = config.checkpoint_freq or max(config.n_timesteps // 10, 1)
    n_envs = config.n_envs
    timing = dict.fromkeys(("env", "act", "sample", "update"), 0.0)  # seconds spent in each part of the loop
    start = progress.start
    step = vec_steps = 0
    learn_from = config.learning_starts  # learning starts once step > learn_from

    def run_evaluation() -> EvalResult:
        with agent.evaluating():  # noisy layers use their mean weights
            return evaluate(agent, eval_env, config.eval_episodes, config.eval_epsilon, config.seed + 10_000)

    def save_checkpoint() -> None:
        if checkpointer is None:
            return
        if not agent.is_finite():  # a diverged agent is never checkpointed: the last good checkpoint stays
            raise TrainingDiverged(f"the Q-network's weights became non-finite before step {step}; "
                                   "try a lower learning_rate or max_grad_norm")
        checkpointer.save(step, ckpt.training_state(
            step=step, vec_steps=vec_steps, obs=obs, rng=rng, best_eval=best_eval, agent=agent, progress=progress,
            envs=envs), replay)

    obs, _ = envs.reset(seed=config.seed)
    if resume is not None:  # continue where the checkpoint left off (qzoo/checkpoint.py: what is restored)
        r = ckpt.restore(resume, config, agent=agent, replay=replay, progress=progress, envs=envs, rng=rng, out=out)
        envs, obs, step, vec_steps, best_eval, learn_from = r.envs, r.obs, r.step, r.vec_steps, r.best_eval, \
            r.learn_from
    stop = StopSignals().install()
    consistent = False  # may a checkpoint be written if the loop is interrupted here?
    try:
        while step < config.n_timesteps and stop.signal is None:
            consistent = False  # until this step's act-store-learn is complete
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
            if step > learn_from and vec_steps % config.train_freq == 0:
                agent.set_learning_rate(learning_rate_at(step))
                sample_s, update_s = agent.learn(replay, config.updates_per_phase, config.batch_size, step)
                timing["sample"] += sample_s
                timing["update"] += update_s
            if crossed(step, n_envs, config.target_update_interval):
                agent.sync_target(config.tau)
            consistent = True

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
                                         progress.start)
                if on_eval is not None:
                    on_eval(step, result)
            if crossed(step, n_envs, config.video_every):
                capture_training(run_dir, config, agent, step)
            if crossed(step, n_envs, checkpoint_freq):
                save_checkpoint()
        if stop.signal is not None:  # SIGINT / SIGTERM: the step is complete (a second signal cuts the write short)
            interrupted, consistent = True, False
            save_checkpoint()
    except KeyboardInterrupt:  # raised by a hook (a checkpoint if between two steps), or a second signal (none)
        interrupted = True
        if consistent and stop.signal is None:
            save_checkpoint()
    except BaseException:  # divergence, a pruning hook, a crash: nothing below runs, so close what it would use
        eval_env.close()
        logger.close()
        eval_log.close()
        raise
    finally:
        stop.uninstall()
        loop_seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        envs.close()

    if not interrupted:
        final_eval = run_evaluation()
        best_eval = record_eval(eval_log, run_dir, config, agent, step, obs_shape, final_eval, best_eval,
                                progress.start)
        if run_dir is not None:
            ckpt.save(run_dir / ckpt.MODEL_FILE, ckpt.model_payload(config, agent, step, obs_shape))
    eval_env.close()
    logger.close()
    eval_log.close()
    return RunResult(run_dir, step, progress.episodes, final_eval, best_eval, time.perf_counter() - start,
                     loop_seconds, interrupted, agent, timing, checkpointer.latest if checkpointer else None)


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

    def state_dict(self) -> dict:
        return {"episodes": self.episodes, "last_return": self.last_return, "returns": list(self.returns),
                "lengths": list(self.lengths), "scores": list(self.scores),
                "seconds": time.perf_counter() - self.start, "last_step": self._last_step}

    def load_state_dict(self, state: dict) -> None:
        """Continue the statistics (and time_s) of a checkpoint."""
        self.episodes, self.last_return = state["episodes"], state["last_return"]
        for name in ("returns", "lengths", "scores"):
            getattr(self, name).extend(state[name])
        self._last_time = time.perf_counter()
        self.start = self._last_time - state["seconds"]
        self._last_step = state["last_step"]

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


def open_outputs(config: Config, run_dir: Path | None, command: str, out, resume_step: int | None = None):
    """Loggers (and the progress bar) of a run; ``resume_step``: continue the logs of the run in ``run_dir``
    from that step (later rows, written before the run died, are dropped)."""
    writers, eval_writers = [], []
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_config(run_dir, config)
        with open(run_dir / "command.txt", "a" if resume_step is not None else "w") as f:
            f.write(command + "\n")
        if resume_step is not None:
            ckpt.discard_newer(run_dir, resume_step)
            ckpt.rewind_logs(run_dir, resume_step)
        append = resume_step is not None
        writers.append(CSVWriter(run_dir / "progress.csv", PROGRESS_COLUMNS, append=append))
        eval_writers.append(CSVWriter(run_dir / "evaluations.csv", EVAL_COLUMNS, append=append))
        if config.tensorboard:
            tb = TensorBoardWriter(run_dir / "tensorboard", "train",
                                   purge_step=None if resume_step is None else resume_step + 1)
            writers.append(tb)
            eval_writers.append(_Prefixed(tb, "eval"))
    bar = None
    if config.progress_bar and out is not None and getattr(out, "isatty", lambda: False)():
        from tqdm import tqdm

        bar = tqdm(total=config.n_timesteps, initial=resume_step or 0, unit="step", dynamic_ncols=True, file=out,
                   smoothing=0.1)
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


class StopSignals:
    """Once installed, SIGINT and SIGTERM ask the loop to stop after the current step (``signal`` is set); a second
    one raises KeyboardInterrupt at once. Only in the main thread (elsewhere Python delivers no signals)."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict = {}

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\nqzoo: {signal.Signals(signum).name}: stopping after this step to write a checkpoint "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def show_progress(bar, out, row: dict, step: int, advanced: int, total: int) -> None:
    """Live postfix on the progress bar; without a terminal, one plain line per 10% of training."""
    score = row.get("game_score_mean", math.nan)
    text = (f"return {row['return_mean']:.2f}  " + (f"game score {score:.1f}  " if math.isfinite(score) else "")
            + f"eps {row['epsilon']:.3f}  loss {row['loss']:.4g}  {row['steps_per_s']:.0f} steps/s")
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
    elif out is not None and (crossed(step, advanced, max(total // 10, 1)) or step >= total):
        print(f"step {step}/{total}  episodes {row['episodes']}  {text}", file=out, flush=True)
