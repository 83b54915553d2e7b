"""The Q-table of tabular Q-learning and its files: one row of Q-values per state (FrozenLake, Taxi).

    qtable.csv         the final table: header ``state,action_0,...``, one row per state
    best_qtable.csv    the table with the best evaluation so far

Its learning loop is :func:`qzoo.tabular.train_tabular`; :func:`qzoo.policy.load_policy` loads a table from a run
directory or an export through :func:`load_qtable` / :func:`table_agent`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from qzoo import checkpoint as ckpt
from qzoo.config import Config, ConfigError
from qzoo.envs import check_env

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
