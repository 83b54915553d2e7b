"""Tabular Q-learning, where deep Q-learning starts: one table row per state (FrozenLake, Taxi).

    Q(s, a) <- Q(s, a) + alpha * [r + gamma * (1 - terminated) * max_a' Q(s', a') - Q(s, a)]

As in the deep agent, only termination cuts the bootstrap: an episode cut by the time limit (truncated)
still bootstraps from the state it reached. Exploration is epsilon-greedy; epsilon decays linearly with the
step (``exploration_schedule: linear``) or exponentially with the episode (``exponential``, the Hugging Face
Deep RL course's schedule: eps = final + (initial - final) * exp(-exploration_decay_rate * episode)).

The loop shares the deep trainer's outputs (progress bar, progress.csv / evaluations.csv columns, TensorBoard,
:func:`qzoo.evaluation.evaluate`) and its run directory layout, with the table in place of the network::

    qtable.csv         the final table: header ``state,action_0,...``, one row per state
    best_qtable.csv    the table with the best evaluation so far

The run's config.yaml says which environment a table belongs to; together they are all ``qzoo eval`` needs.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qzoo import checkpoint as ckpt
from qzoo.config import Config, ConfigError
from qzoo.envs import check_env, make_env
from qzoo.evaluation import EvalResult, evaluate
from qzoo.schedules import ExponentialSchedule, epsilon_schedule
from qzoo.trainer import ProgressLog, RunResult, crossed, open_outputs, record_eval
from qzoo.video import capture_training

QTABLE_FILE, BEST_QTABLE_FILE = "qtable.csv", "best_qtable.csv"


class QTable:
    """Q-values of every (state, action) pair, acted on epsilon-greedily and updated one transition at a time."""

    def __init__(self, n_states: int, n_actions: int, *, learning_rate: float = 0.1, gamma: float = 0.99,
                 values: np.ndarray | None = None):
        self.values = np.zeros((n_states, n_actions)) if values is None else np.array(values, dtype=np.float64)
        if self.values.shape != (n_states, n_actions):
            raise ValueError(f"values have shape {self.values.shape}, expected {(n_states, n_actions)}")
        self.n_states, self.n_actions = n_states, n_actions
        self.alpha, self.gamma = learning_rate, gamma
        self.updates = 0
        self._td2_sum = self._q_sum = 0.0  # running sums since the last pop_metrics()
        self._updates_at_pop = 0

    # ---- acting -------------------------------------------------------------------------------------------
    def greedy(self, states: np.ndarray) -> np.ndarray:
        return self.values[states].argmax(axis=1)  # ties go to the lowest action index

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        """epsilon-greedy over a batch of integer states (the same call as the deep agent's)."""
        states = np.asarray(obs, dtype=np.int64)
        n = len(states)
        explore = rng.random(n) < epsilon
        actions = rng.integers(0, self.n_actions, n)
        return np.where(explore, actions, self.greedy(states))

    def act_one(self, state: int, epsilon: float, rng: np.random.Generator) -> int:
        """:meth:`act` for a single state without the array overhead (the training loop's hot path)."""
        if rng.random() < epsilon:
            return int(rng.integers(self.n_actions))
        return int(self.values[state].argmax())

    # ---- learning -----------------------------------------------------------------------------------------
    def update(self, state: int, action: int, reward: float, next_state: int, terminated: bool) -> float:
        """One Q-learning step on (s, a, r, s', terminated); returns the TD error.

        Q(s, a) <- Q(s, a) + alpha * [r + gamma * (1 - terminated) * max_a' Q(s', a') - Q(s, a)]"""
        q_sa = float(self.values[state, action])
        target = reward + self.gamma * (1.0 - terminated) * float(self.values[next_state].max())
        td_error = target - q_sa
        self.values[state, action] = q_sa + self.alpha * td_error
        self.updates += 1
        self._td2_sum += td_error * td_error
        self._q_sum += q_sa
        return td_error

    def pop_metrics(self) -> dict:
        """Mean squared TD error ('loss') and mean Q(s, a) of the updated pairs since the last call."""
        n = self.updates - self._updates_at_pop
        td2_sum, q_sum = self._td2_sum, self._q_sum
        self._td2_sum = self._q_sum = 0.0
        self._updates_at_pop = self.updates
        if n == 0:
            return {"loss": float("nan"), "q_mean": float("nan"), "interval_updates": 0}
        return {"loss": td2_sum / n, "q_mean": q_sum / n, "interval_updates": n}


# ---- the table on disk ---------------------------------------------------------------------------------------
def write_qtable(path: Path, table: QTable) -> None:
    """CSV with header ``state,action_0,...,action_{n-1}``; values in Python's shortest exact repr."""
    lines = ["state," + ",".join(f"action_{a}" for a in range(table.n_actions))]
    lines += [f"{s}," + ",".join(repr(float(v)) for v in row) for s, row in enumerate(table.values)]
    ckpt.atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode())


def read_qtable(path: Path) -> np.ndarray:
    """The values written by :func:`write_qtable` (rows in state order); ConfigError if it is not such a file."""
    bad = f"'{path}' is not a qzoo Q-table (expected a header 'state,action_0,...' and one row per state)"
    try:
        with open(path, newline="") as f:
            header, *rows = [row for row in csv.reader(f) if row]
        if header[0] != "state" or len(header) < 2 or [int(r[0]) for r in rows] != list(range(len(rows))):
            raise ConfigError(bad)
        values = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float64)
    except FileNotFoundError:
        raise ConfigError(f"Q-table file '{path}' does not exist") from None
    except (ValueError, IndexError, UnicodeDecodeError):  # ragged rows, non-numbers, empty or binary file
        raise ConfigError(bad) from None
    if values.shape != (len(rows), len(header) - 1) or not np.isfinite(values).all():
        raise ConfigError(bad)
    return values


def load_qtable(path: Path, which: str = "final") -> tuple[QTable, Config, Path]:
    """(agent, config, table path) from a tabular run directory, or from a Q-table CSV inside one."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    config = ckpt.read_config(run_dir)
    table_path = path if path.is_file() else run_dir / (BEST_QTABLE_FILE if which == "best" else QTABLE_FILE)
    if not table_path.is_file():
        raise ConfigError(f"'{run_dir}' holds no Q-table ({QTABLE_FILE} or {BEST_QTABLE_FILE})")
    return table_agent(config, read_qtable(table_path), table_path), config, table_path


def table_agent(config: Config, values: np.ndarray, source: Path) -> QTable:
    """A QTable holding ``values``; ConfigError if their shape does not fit ``config``'s env."""
    info = check_env(config)
    expected = (int(info.observation_space.start + info.observation_space.n), info.n_actions)
    if values.shape != expected:
        raise ConfigError(f"'{source}' has {values.shape[0]} states x {values.shape[1]} actions; "
                          f"'{config.env_id}' now has {expected[0]} x {expected[1]}")
    return QTable(*expected, values=values)


# ---- training --------------------------------------------------------------------------------------------------
def exploration(config: Config):
    """(epsilon schedule, counts_episodes): the schedule is a function of the episode or of the step."""
    if config.exploration_schedule == "exponential":
        return ExponentialSchedule(config.exploration_initial_eps, config.exploration_final_eps,
                                   config.exploration_decay_rate), True
    return epsilon_schedule(config.exploration_initial_eps, config.exploration_final_eps,
                            config.exploration_fraction, config.n_timesteps), False


def train_tabular(config: Config, run_dir: Path | None = None, *, command: str = "",
                  on_eval: Callable[[int, EvalResult], None] | None = None, out=sys.stderr) -> RunResult:
    """Tabular Q-learning on ``config`` (a Discrete-observation env); write everything to ``run_dir``
    (None: write nothing). Returns the deep trainer's RunResult, whose ``agent`` is the :class:`QTable`.
    ``on_eval(step, result)`` is called after each periodic evaluation, as in :func:`qzoo.trainer.train`."""
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
