"""The training loop, readable top to bottom.

    obs -> agent.act -> env.step -> replay.add -> (every train_freq) agent.learn: replay.sample -> agent.update
        -> (every target_update_interval) sync target -> log -> evaluate -> checkpoint

Step counting follows Stable-Baselines3 so RL Zoo hyperparameters mean the same thing here: ``step`` counts
environment transitions (all envs together); ``train_freq`` counts vector-env steps; ``target_update_interval``,
``log_interval``, ``eval_freq`` and ``checkpoint_freq`` count transitions; learning starts once
``step > learning_starts``, and before that actions are uniformly random (``warmup_actions: policy``: the agent's).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from qzoo import allocator, native
from qzoo import checkpoint as ckpt
from qzoo.actor import TrainingPhases, learner_threads, resolve_overlap, resolve_target_thread
from qzoo.agent import build_agent, resolve_device
from qzoo.config import Config
from qzoo.envs import check_env, finished_episodes, finished_games, make_eval_envs, make_vec_env, true_next_obs
from qzoo.evaluation import EvalResult, evaluate
from qzoo.precision import resolve_bf16
from qzoo.replay import make_replay
from qzoo.runlog import (  # noqa: F401  (EVAL_COLUMNS, PROGRESS_COLUMNS, ProgressLog: their home is runlog)
    EVAL_COLUMNS,
    PROGRESS_COLUMNS,
    ProgressLog,
    RunResult,
    StopSignals,
    crossed,
    open_outputs,
    record_eval,
)
from qzoo.schedules import LinearSchedule, epsilon_schedule, learning_rate_schedule
from qzoo.video import capture_training


class TrainingDiverged(RuntimeError):
    pass


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def flushing_denormals() -> bool:
    """Whether torch flushes denormal floats to zero now (torch has a setter, no getter: 1e-39 is a float32
    denormal, and a CPU flushing them reads it as zero)."""
    return (torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0


@contextlib.contextmanager
def process_state_kept():
    """A run sets process-wide state for itself: torch's intra-op threads, flushing denormal floats, the global
    numpy and torch generators (its seed). All are put back as they were when the run returns or raises, so a
    later run in the same process (a bench worker's next job, a tuning trial, a notebook) starts from what a
    first run would: an MLP run's one thread no longer carries over to a Nature-CNN run after it."""
    threads, flushing, numpy_state = torch.get_num_threads(), flushing_denormals(), np.random.get_state()
    with torch.random.fork_rng():
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.set_flush_denormal(flushing)
            np.random.set_state(numpy_state)


def close_all(envs: list) -> None:
    for env in envs:
        env.close()


def train(config: Config, run_dir: Path | None = None, *, command: str = "",
          on_eval: Callable[[int, EvalResult], None] | None = None, out=sys.stderr,
          resume: ckpt.Resume | None = None) -> RunResult:
    """Train ``config``; write everything to ``run_dir`` (None: write nothing, e.g. for tuning trials).

    ``on_eval(step, result)`` is called after each periodic evaluation; it may raise to stop the run
    (tuning uses this to prune). ``resume`` (from :func:`qzoo.checkpoint.find_resumable`) continues the run in
    ``run_dir`` from that checkpoint.

    SIGINT / SIGTERM (Ctrl-C, a scheduler's pre-emption) finish the current step, write a checkpoint and return
    with ``interrupted``; a second signal stops at once, keeping the last checkpoint written.

    The process-wide state the run sets (threads, denormal flushing, the global generators) is restored when it
    returns or raises (:func:`process_state_kept`)."""
    with process_state_kept():
        return _train(config, run_dir, command=command, on_eval=on_eval, out=out, resume=resume)


def _train(config: Config, run_dir: Path | None, *, command: str, on_eval: Callable[[int, EvalResult], None] | None,
           out, resume: ckpt.Resume | None) -> RunResult:
    env_info = check_env(config)
    seed_everything(config.seed)
    device = resolve_device(config.device)
    # settings that depend on the machine: resolved once, recorded as resolved in config.yaml
    bf16, bf16_note = resolve_bf16(config, device, env_info.observation_space.shape)
    config = config.replace(bf16=bf16, overlap=str(resolve_overlap(config, env_info.observation_space.shape)).lower(),
                            target_thread=resolve_target_thread(config, env_info.observation_space.shape, device))
    threads = learner_threads(config, env_info.observation_space.shape, device)
    if threads is not None:
        torch.set_num_threads(threads)
    # Adam's second-moment estimates of small networks drift into denormal floats, which x86 CPUs process
    # ~5x slower; flushing them to zero changes no result that matters and keeps updates fast.
    torch.set_flush_denormal(True)
    if bf16_note is not None:
        print(bf16_note, file=out or sys.stderr, flush=True)
    if config.resolved_network(env_info.observation_space.shape) == "nature_cnn":  # where the allocator matters
        print(f"qzoo: memory allocator: {allocator.describe()}", file=out or sys.stderr, flush=True)

    envs = make_vec_env(config)
    # Atari: whole games, raw score; several side by side for the Nature CNN (one batched forward pass a step)
    eval_envs = make_eval_envs(config)
    envs.action_space.seed(config.seed)
    agent = build_agent(config, env_info.observation_space, env_info.n_actions, device)
    if agent.compiled_kernels_apply:  # (qzoo/native.py)
        print(f"qzoo: {native.describe()}", file=out or sys.stderr, flush=True)
    replay = make_replay(config, env_info.observation_space)
    epsilon_at = epsilon_schedule(config.exploration_initial_eps, config.exploration_final_eps,
                                  config.exploration_fraction, config.schedule_horizon, config.exploration_delay)
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
    # seconds spent in each part of the loop (wait: blocked on an overlapped training phase)
    timing = dict.fromkeys(("env", "act", "sample", "update", "wait"), 0.0)
    start = progress.start
    step = vec_steps = 0
    learn_from = config.learning_starts  # learning starts once step > learn_from

    def run_evaluation() -> EvalResult:
        phases.settle()
        with agent.evaluating():  # noisy layers use their mean weights
            return evaluate(agent, eval_envs, config.eval_episodes, config.eval_epsilon, config.seed + 10_000)

    def save_checkpoint() -> None:
        if checkpointer is None:
            return
        phases.settle()
        if not agent.is_finite():  # a diverged agent is never checkpointed: the last good checkpoint stays
            raise TrainingDiverged(f"the Q-network's weights became non-finite before step {step}; "
                                   "try a lower learning_rate or max_grad_norm")
        checkpointer.save(step, ckpt.training_state(
            step=step, vec_steps=vec_steps, obs=obs, rng=rng, best_eval=best_eval, agent=agent, progress=progress,
            envs=envs, acting=phases.acting_state()), replay)

    obs, _ = envs.reset(seed=config.seed)
    if resume is not None:  # continue where the checkpoint left off (qzoo/checkpoint/resume.py: what is restored)
        r = ckpt.restore(resume, config, agent=agent, replay=replay, progress=progress, envs=envs, rng=rng, out=out)
        envs, obs, step, vec_steps, best_eval, learn_from = r.envs, r.obs, r.step, r.vec_steps, r.best_eval, \
            r.learn_from
    phases = TrainingPhases(agent, replay, config, timing, overlap=config.overlap == "true")  # qzoo/actor.py
    if resume is not None:
        phases.load_acting_state(r.acting)
    stop = StopSignals().install()
    consistent = False  # may a checkpoint be written if the loop is interrupted here?
    try:
        while step < config.n_timesteps and stop.signal is None:
            consistent = False  # until this step's act-store-learn is complete
            # ---- act -------------------------------------------------------------------------------------
            t0 = time.perf_counter()
            epsilon = epsilon_at(step)
            if step < config.learning_starts and config.warmup_actions == "random":
                action = rng.integers(0, env_info.n_actions, n_envs)
            else:  # (noisy nets explore through their weights: epsilon is 0 for them)
                action = phases.policy.act(obs, epsilon, rng)  # the agent, or its acting copy (overlap)
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
            # (an n-step replay holds no transition before its window fills: nothing to learn from yet)
            if step > learn_from and vec_steps % config.train_freq == 0 and len(replay) > 0:
                if config.learning_rate_schedule != "constant":  # a phase in flight keeps the rate it began with
                    phases.settle()
                    agent.set_learning_rate(learning_rate_at(step))
                phases.learn(step)  # overlap: runs in the background while the next train_freq steps are taken
            if crossed(step, n_envs, config.target_update_interval):
                phases.settle()
                agent.sync_target(config.tau)
            consistent = True

            # ---- log, evaluate, checkpoint ---------------------------------------------------------------
            if bar is not None:
                bar.update(n_envs)
            if crossed(step, n_envs, config.log_interval) or step >= config.n_timesteps:
                phases.settle()
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
                phases.settle()
                capture_training(run_dir, config, agent, step)
            if crossed(step, n_envs, checkpoint_freq):
                save_checkpoint()
        phases.settle()
        if stop.signal is not None:  # SIGINT / SIGTERM: the step is complete (a second signal cuts the write short)
            interrupted, consistent = True, False
            save_checkpoint()
    except KeyboardInterrupt:  # raised by a hook (a checkpoint if between two steps), or a second signal (none)
        interrupted = True
        if consistent and stop.signal is None:
            save_checkpoint()
    except BaseException:  # divergence, a pruning hook, a crash: nothing below runs, so close what it would use
        close_all(eval_envs)
        logger.close()
        eval_log.close()
        raise
    finally:
        phases.close()
        if agent.second_thread is not None:
            agent.second_thread.close()
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
    close_all(eval_envs)
    logger.close()
    eval_log.close()
    return RunResult(run_dir, step, progress.episodes, final_eval, best_eval, time.perf_counter() - start,
                     loop_seconds, interrupted, agent, timing, checkpointer.latest if checkpointer else None)
