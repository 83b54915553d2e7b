"""Tabular Q-learning, where deep Q-learning starts: one table row per state (FrozenLake, Taxi).

    Q(s, a) <- Q(s, a) + alpha * [r + gamma * (1 - terminated) * max_a' Q(s', a') - Q(s, a)]

As in the deep agent, only termination cuts the bootstrap: an episode cut by the time limit (truncated)
still bootstraps from the state it reached. Exploration is epsilon-greedy; epsilon decays linearly with the
step (``exploration_schedule: linear``) or exponentially with the episode (``exponential``, the Hugging Face
Deep RL course's schedule: eps = final + (initial - final) * exp(-exploration_decay_rate * episode)).

The loop shares the deep trainer's outputs (:mod:`qzoo.runlog`: progress bar, progress.csv / evaluations.csv
columns, TensorBoard; :func:`qzoo.evaluation.evaluate`) and its run directory layout, with the table
(:mod:`qzoo.qtable`) in place of the network::

    qtable.csv         the final table: header ``state,action_0,...``, one row per state
    best_qtable.csv    the table with the best evaluation so far

The run's config.yaml says which environment a table belongs to; together they are all ``qzoo eval`` needs.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qzoo.config import Config
from qzoo.envs import check_env, make_env
from qzoo.evaluation import EvalResult, evaluate
from qzoo.qtable import (  # noqa: F401  (the table and its files live in qzoo.qtable; re-exported)
    BEST_QTABLE_FILE,
    QTABLE_FILE,
    QTable,
    load_qtable,
    read_qtable,
    table_agent,
    write_qtable,
)
from qzoo.runlog import ProgressLog, RunResult, crossed, open_outputs, record_eval
from qzoo.schedules import ExponentialSchedule, epsilon_schedule
from qzoo.video import capture_training


# ---- training --------------------------------------------------------------------------------------------------
def exploration(config: Config):
    """(epsilon schedule, counts_episodes): the schedule is a function of the episode or of the step."""
    if config.exploration_schedule == "exponential":
        return ExponentialSchedule(config.exploration_initial_eps, config.exploration_final_eps,
                                   config.exploration_decay_rate), True
    return epsilon_schedule(config.exploration_initial_eps, config.exploration_final_eps,
                            config.exploration_fraction, config.n_timesteps, config.exploration_delay), False


def train_tabular(config: Config, run_dir: Path | None = None, *, command: str = "",
                  on_eval: Callable[[int, EvalResult], None] | None = None, out=sys.stderr) -> RunResult:
    """Tabular Q-learning on ``config`` (a Discrete-observation env); write everything to ``run_dir``
    (None: write nothing). Returns the deep trainer's :class:`~qzoo.runlog.RunResult`, whose ``agent`` is the
    :class:`QTable`. ``on_eval(step, result)`` is called after each periodic evaluation, as in
    :func:`qzoo.trainer.train`."""
    info = check_env(config)  # refuses observations that are not Discrete
    env = make_env(config.env_id, config.env_kwargs, one_hot=False)()
    eval_env = make_env(config.env_id, config.env_kwargs, one_hot=False)()
    states = info.observation_space
    agent = QTable(int(states.start + states.n), info.n_actions, learning_rate=config.learning_rate, gamma=config.gamma)
    epsilon_at, per_episode = exploration(config)
    rng = np.random.default_rng(config.seed)

    logger, eval_log, bar = open_outputs(config, run_dir, command, out)
    progress = ProgressLog(config, logger, bar, out)
    best_eval, final_eval, interrupted = -math.inf, None, False
    start = progress.start
    step = 0

    def evaluate_and_record(best: float) -> tuple[EvalResult, float]:
        result = evaluate(agent, eval_env, config.eval_episodes, config.eval_epsilon, config.seed + 10_000)
        if result.mean > best and run_dir is not None:
            write_qtable(run_dir / BEST_QTABLE_FILE, agent)
        # run_dir None: the shared recorder only logs; the best table was saved just above
        return result, record_eval(eval_log, None, config, agent, step, None, result, best, start)

    state, _ = env.reset(seed=config.seed)
    try:
        while step < config.n_timesteps:
            # ---- act, step, update: (s, a, r, s', terminated); truncation still bootstraps from s' -----------
            epsilon = epsilon_at(progress.episodes if per_episode else step)
            action = agent.act_one(state, epsilon, rng)
            next_state, reward, terminated, truncated, step_info = env.step(action)
            agent.update(state, action, reward, next_state, terminated)
            state = next_state
            step += 1
            if terminated or truncated:
                progress.episode(float(step_info["episode"]["r"]), int(step_info["episode"]["l"]))
                state, _ = env.reset()

            # ---- log, evaluate -----------------------------------------------------------------------------
            if bar is not None:
                bar.update(1)
            if crossed(step, 1, config.log_interval) or step >= config.n_timesteps:
                progress.dump(step, agent.pop_metrics(), epsilon, agent.updates)
            if crossed(step, 1, config.eval_freq) and step < config.n_timesteps:
                result, best_eval = evaluate_and_record(best_eval)
                if on_eval is not None:
                    on_eval(step, result)
            if crossed(step, 1, config.video_every):
                capture_training(run_dir, config, agent, step)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        loop_seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        env.close()

    if not interrupted:
        final_eval, best_eval = evaluate_and_record(best_eval)
    if run_dir is not None:  # also when interrupted, so that the run can be evaluated
        write_qtable(run_dir / QTABLE_FILE, agent)
    eval_env.close()
    logger.close()
    eval_log.close()
    return RunResult(run_dir, step, progress.episodes, final_eval, best_eval, time.perf_counter() - start, loop_seconds,
                     interrupted, agent)
