"""Learning curves and aggregate scores from run directories.

Pure functions first (load runs -> tidy records, group, smooth, align seeds on one step grid, bootstrap
confidence intervals, IQM), then the matplotlib figures (Agg backend: no display needed).

Aggregation across games follows rliable (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice"): the interquartile mean (IQM) of the human-normalised scores pooled over runs x games, with a
percentile confidence interval from a *stratified* bootstrap (runs resampled with replacement within each game).
The ``rliable`` package itself is not used: rliable 1.2.0 (an sdist) installs from PyPI, but brings nine packages
(arch, statsmodels, pandas, seaborn, ...) for what is two functions here — IQM is
``scipy.stats.trim_mean(x, 0.25, axis=None)`` (rliable's own definition) and the stratified bootstrap below
(rliable delegates it to arch's StratifiedBootstrap, percentile intervals, 95% by default).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qzoo.config import ConfigError
from qzoo.evaluation import human_normalized

# What the y axis shows: (file, column, axis label). "eval" is the greedy evaluation (for Atari: the game score).
METRICS = {
    "eval": ("evaluations.csv", "return_mean", "evaluation return"),
    "train": ("progress.csv", "return_mean", "training episode return"),
    "score": ("progress.csv", "game_score_mean", "training game score (Atari, whole games)"),
    "length": ("progress.csv", "length_mean", "training episode length"),
    "loss": ("progress.csv", "loss", "TD loss"),
    "q": ("progress.csv", "q_mean", "mean Q(s, a)"),
}

# Published reference scores drawn as horizontal lines on evaluation curves, copied from the project's reference
# notes (shared/reference/scores.md), which cite: RL Baselines3 Zoo's benchmark table (rl-baselines3-zoo
# benchmark.md, DQN, single run, at its tuned budgets) for classic control and 10M-step Atari; the papers'
# 200M-frame, 30 no-op evaluation tables (Mnih et al. 2015 Nature DQN; Hessel et al. 2018 Rainbow) for Atari.
REFERENCE_SCORES: dict[str, list[tuple[str, float]]] = {
    "CartPole-v1": [("RL Zoo DQN, 50k steps", 500.0)],
    "Acrobot-v1": [("RL Zoo DQN, 100k steps", -76.6)],
    "MountainCar-v0": [("RL Zoo DQN, 120k steps", -100.8)],
    "LunarLander-v3": [("RL Zoo DQN (v2), 100k steps", 154.4)],
    "pong": [("RL Zoo DQN, 10M steps", 20.6), ("Nature DQN, 200M frames", 18.9), ("Rainbow, 200M frames", 20.9)],
    "breakout": [("RL Zoo DQN, 10M steps", 358.3), ("Nature DQN, 200M frames", 401.2),
                 ("Rainbow, 200M frames", 417.5)],
    "space_invaders": [("RL Zoo DQN, 10M steps", 622.7), ("Nature DQN, 200M frames", 1976.0),
                       ("Rainbow, 200M frames", 18789.0)],
    "seaquest": [("RL Zoo DQN, 10M steps", 2000.3), ("Nature DQN, 200M frames", 5286.0),
                 ("Rainbow, 200M frames", 15898.9)],
    "qbert": [("RL Zoo DQN, 10M steps", 9496.8), ("Nature DQN, 200M frames", 10596.0),
              ("Rainbow, 200M frames", 33817.5)],
    "beam_rider": [("RL Zoo DQN, 10M steps", 4295.9)],
    "enduro": [("RL Zoo DQN, 10M steps", 830.9)],
}


# ---- loading ---------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One run directory: its settings and the step/value series of every logged column."""

    path: Path
    env_id: str
    algo: str
    seed: int
    label: str
    columns: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # file -> column -> values
    n_timesteps: int = 0  # the run's budget (config.yaml)

    def series(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of ``metric`` (a key of METRICS), rows with an empty value dropped."""
        file, column, _ = METRICS[metric]
        table = self.columns.get(file, {})
        if column not in table:
            return np.zeros(0), np.zeros(0)
        steps, values = table["step"], table[column]
        keep = np.isfinite(values)
        return steps[keep], values[keep]

    @property
    def game(self) -> str | None:
        from qzoo.env_ids import atari_game, is_atari_id

        return atari_game(self.env_id) if is_atari_id(self.env_id) else None


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """Every column of a qzoo CSV as a float array (empty cells -> nan). A last line without its line end (a run
    killed while writing it) is left out; anything else that is not a CSV of numbers is a ConfigError naming the
    file and the row."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"log file '{path}' is not a text file (not UTF-8); a qzoo log is a CSV of numbers") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as e:  # a field past the csv module's size limit, ...
        raise ConfigError(f"log file '{path}' is not a CSV ({e}); a qzoo log is a CSV of numbers") from None
    columns: dict[str, list[float]] = {key: [] for key in (rows[0] if rows else {}) if key is not None}
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        for key, values in columns.items():
            cell = row.get(key)
            try:
                values.append(math.nan if cell in ("", None) else float(cell))
            except (TypeError, ValueError):
                raise ConfigError(f"log file '{path}', line {number}: column '{key}' holds {cell!r}, not a number; "
                                  "a qzoo log is a CSV of numbers") from None
    return {key: np.array(values) for key, values in columns.items()}


def load_run(path: str | Path, label: str | None = None) -> Run:
    from qzoo.checkpoint import read_config  # torch loads lazily: `qzoo --help` imports this module

    path = Path(path)
    config = read_config(path)
    run = Run(path, config.env_id, config.algo, config.seed, label or config.algo, n_timesteps=config.n_timesteps)
    for file in ("progress.csv", "evaluations.csv"):
        run.columns[file] = read_csv_columns(path / file)
    return run


def find_runs(targets: list[str], env_id: str | None = None) -> list[Run]:
    """Runs named on the command line: each target is a run directory or a folder searched for run directories
    (any depth), optionally ``LABEL=PATH`` to group it under LABEL. A LABEL=PATH folder that holds runs of several
    algos labels them ``LABEL:algo``: the seeds of one label are averaged, and two algos' runs are no seeds of one
    curve. ``env_id`` keeps only runs of that env."""
    from qzoo.checkpoint import CONFIG_FILE

    runs = []
    for target in targets:
        label, sep, where = target.partition("=")
        if not sep or Path(target).exists():
            label, where = None, target
        where = Path(where)
        if not where.exists():
            raise ConfigError(f"'{where}' does not exist (expected a run directory or a folder of runs)")
        dirs = [where] if (where / CONFIG_FILE).is_file() else sorted(
            p.parent for p in where.rglob(CONFIG_FILE) if (p.parent / "progress.csv").is_file())
        found = [load_run(d, label) for d in dirs]
        if label is not None and len({r.algo for r in found}) > 1:
            for run in found:
                run.label = f"{label}:{run.algo}"
        runs += found
    if env_id is not None:
        runs = [r for r in runs if r.env_id == env_id]
    if not runs:
        where = ", ".join(targets) + (f" for env '{env_id}'" if env_id else "")
        raise ConfigError(f"no qzoo run directories (with config.yaml and progress.csv) found in {where}")
    return runs


def group_runs(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """{(env_id, label): runs}: the seeds of one label on one env are averaged into one curve."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.env_id, run.label), []).append(run)
    return groups


# ---- statistics ------------------------------------------------------------------------------------------------
def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average: ``out[i] = mean(values[max(0, i - window + 1) : i + 1])`` (window 1: unchanged)."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(values) == 0:
        return values.copy()
    window = min(window, len(values))  # a longer window averages the same points (and may not fit an int64)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def align(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Put several runs' (steps, values) on one step grid: the first run's steps up to the shortest run's last
    step, the others linearly interpolated there. Returns (steps, values of shape (n_runs, n_steps))."""
    series = [(s, v) for s, v in series if len(s)]
    if not series:
        return np.zeros(0), np.zeros((0, 0))
    last = min(s[-1] for s, _ in series)
    grid = series[0][0][series[0][0] <= last]
    return grid, np.stack([np.interp(grid, s, v) for s, v in series])


def bootstrap_mean_ci(values: np.ndarray, *, n_boot: int = 2000, interval: float = 0.95,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean across runs (axis 0) and its percentile bootstrap confidence interval: runs are resampled with
    replacement ``n_boot`` times. ``values``: (n_runs, n_points). Returns (mean, low, high), each (n_points,)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    means = values[idx].mean(axis=1)  # (n_boot, n_points)
    tail = (1.0 - interval) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return values.mean(axis=0), low, high


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all scores pooled (runs x games): the mean of the middle 50% (rliable's IQM)."""
    from scipy.stats import trim_mean  # scipy loads lazily: `qzoo --help` imports this module

    return float(trim_mean(np.asarray(scores, dtype=np.float64), 0.25, axis=None))


def stratified_bootstrap_ci(scores: np.ndarray, statistic=iqm, *, n_boot: int = 2000, interval: float = 0.95,
                            seed: int = 0) -> tuple[float, float, float]:
    """``statistic`` of ``scores`` (n_runs, n_games) and its percentile CI from a stratified bootstrap: in each
    resample every game's column gets its own n_runs draws of runs with replacement (rliable's
    StratifiedBootstrap). Returns (point estimate, low, high)."""
    scores = np.asarray(scores, dtype=np.float64)
    n_runs, n_games = scores.shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n_runs, size=(n_boot, n_runs, n_games))
    samples = scores[rows, np.arange(n_games)]  # (n_boot, n_runs, n_games): column j drawn from game j's runs
    if statistic is iqm:  # vectorised: the IQM pools runs x games
        from scipy.stats import trim_mean

        estimates = trim_mean(samples.reshape(n_boot, -1), 0.25, axis=1)
    else:
        estimates = np.array([statistic(s) for s in samples])
    tail = (1.0 - interval) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return statistic(scores), float(low), float(high)


def reference_lines(env_id: str) -> list[tuple[str, float]]:
    from qzoo.env_ids import atari_game, is_atari_id

    key = atari_game(env_id) if is_atari_id(env_id) else env_id
    return REFERENCE_SCORES.get(key, [])


# ---- curves ----------------------------------------------------------------------------------------------------
@dataclass
class Curve:
    """What one line of a plot shows: the mean across ``n_runs`` seeds and its confidence band."""

    env_id: str
    label: str
    n_runs: int
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def curves(runs: list[Run], metric: str = "eval", window: int = 1, *, n_boot: int = 2000, interval: float = 0.95,
           seed: int = 0) -> list[Curve]:
    """One Curve per (env, label): each run smoothed, aligned on one step grid, then mean and bootstrap CI."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric '{metric}'; allowed: {', '.join(METRICS)}")
    out = []
    for (env_id, label), group in group_runs(runs).items():
        series = []
        for run in group:
            steps, values = run.series(metric)
            series.append((steps, smooth(values, window)))
        steps, values = align(series)
        if len(steps) == 0:
            continue
        mean, low, high = bootstrap_mean_ci(values, n_boot=n_boot, interval=interval, seed=seed)
        out.append(Curve(env_id, label, len(values), steps, mean, low, high))
    if not out:
        raise ConfigError(f"the runs have no '{metric}' values yet ({METRICS[metric][0]}: "
                          f"column {METRICS[metric][1]})")
    return out


def normalized_curves(runs: list[Run], window: int = 1, *, n_boot: int = 2000, interval: float = 0.95,
                      seed: int = 0) -> list[Curve]:
    """Across Atari games: per label, the IQM of human-normalised evaluation scores over runs x games at each
    step, with a stratified-bootstrap CI. The bootstrap needs the same number of runs per game (as in rliable): where
    a suite run one game at a time has more seeds of some games, each game contributes its first runs by seed, as
    many as the game with the fewest (as the bench table's IQM does), and the panel's title says so."""
    out = []
    by_label: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    for run in runs:
        if run.game is None or human_normalized(run.game, 0.0) is None:
            raise ConfigError(f"'{run.path}': {run.env_id} has no published human/random scores to normalise by")
        steps, values = run.series("eval")
        if len(steps):
            hns = np.array([human_normalized(run.game, v) for v in smooth(values, window)])
            by_label.setdefault(run.label, {}).setdefault(run.game, []).append((run.seed, steps, hns))
    for label, games in by_label.items():
        n_runs = min(len(s) for s in games.values())
        flat = [(steps, hns) for game in sorted(games)
                for _, steps, hns in sorted(games[game], key=lambda r: r[0])[:n_runs]]
        steps, values = align(flat)  # (n_games * n_runs, n_steps), game-major
        per_step = values.reshape(len(games), n_runs, -1).transpose(2, 1, 0)  # (n_steps, n_runs, n_games)
        stats = [stratified_bootstrap_ci(s, n_boot=n_boot, interval=interval, seed=seed) for s in per_step]
        mean, low, high = (np.array(x) for x in zip(*stats, strict=True))
        equal = len({len(s) for s in games.values()}) == 1
        title = f"{len(games)} game{'' if len(games) == 1 else 's'}"
        title += "" if equal else f", the first {n_runs} run(s) of each"
        out.append(Curve(title, label, n_runs, steps, mean, low, high))
    return out


# ---- figures ---------------------------------------------------------------------------------------------------
def plot_curves(curve_list: list[Curve], *, ylabel: str, references: bool = True, title: str | None = None,
                size: tuple[float, float] = (8.0, 5.0), dpi: int = 100):
    """A matplotlib Figure: one axes per env, a line (mean) and a band (CI) per label, reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(c.env_id for c in curve_list))
    cols = min(len(envs), 3)
    rows = math.ceil(len(envs) / cols)
    figsize = (size[0] if cols == 1 else 5.0 * cols, size[1] if rows == 1 else 4.0 * rows)
    fig, axes = plt.subplots(rows, cols, figsize=figsize, dpi=dpi, squeeze=False)
    colors = {label: f"C{i}" for i, label in enumerate(dict.fromkeys(c.label for c in curve_list))}
    for ax, env_id in zip(axes.flat, envs, strict=False):
        for c in (c for c in curve_list if c.env_id == env_id):
            label = f"{c.label} ({c.n_runs} run{'s' * (c.n_runs > 1)})"
            if len(c.steps) == 1:  # a run evaluated once, at the end (Atari-100k): a point, its CI as an error bar
                yerr = [c.mean - c.low, c.high - c.mean] if c.n_runs > 1 else None
                ax.errorbar(c.steps, c.mean, yerr=yerr, fmt="o", capsize=4, color=colors[c.label], label=label)
                continue
            ax.plot(c.steps, c.mean, color=colors[c.label], label=label)
            if c.n_runs > 1:
                ax.fill_between(c.steps, c.low, c.high, color=colors[c.label], alpha=0.2, linewidth=0)
        if references:
            for i, (name, score) in enumerate(reference_lines(env_id)):
                ax.axhline(score, color="0.4", linestyle=(0, (4, 2 + 2 * i)), linewidth=1, label=name)
        ax.set_title(env_id)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(envs):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def check_output(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"output file '{path}' must end in .png, .svg or .pdf")
    return path


def save_figure(fig, path: str | Path) -> Path:
    path = check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot(targets: list[str], output: str | Path, *, env_id: str | None = None, metric: str = "eval",
         window: int = 1, references: bool = True, normalized: bool | None = None, n_boot: int = 2000,
         interval: float = 0.95, seed: int = 0) -> tuple[Path, list[Curve]]:
    """``qzoo plot``: find runs, compute the curves, write the figure. ``normalized`` (default: when the runs span
    several Atari games) plots the IQM of human-normalised evaluation scores across games instead."""
    check_output(output)
    runs = find_runs(targets, env_id)
    if normalized is None:
        normalized = metric == "eval" and len({r.env_id for r in runs}) > 1 and all(r.game for r in runs)
    if normalized:
        curve_list = normalized_curves(runs, window, n_boot=n_boot, interval=interval, seed=seed)
        ylabel = "IQM human-normalised score"
    else:
        curve_list = curves(runs, metric, window, n_boot=n_boot, interval=interval, seed=seed)
        ylabel = METRICS[metric][2]
    fig = plot_curves(curve_list, ylabel=ylabel, references=references and metric == "eval" and not normalized)
    return save_figure(fig, output), curve_list
